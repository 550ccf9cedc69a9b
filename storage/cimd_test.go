package storage_test

import (
	"crypto/sha256"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

func cimdTestClient(id string, redirects ...string) *storage.Client {
	return &storage.Client{
		ID:                      id,
		Source:                  storage.SourceCIMD,
		TokenEndpointAuthMethod: storage.AuthMethodNone,
		RedirectURIs:            redirects,
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		Scopes:                  []string{"mcp"},
		Audiences:               []string{"https://as.example/mcp"},
		Metadata:                storage.ClientMetadata{ClientName: "Doc App"},
	}
}

func TestCIMDClientSaveAndRefetch(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	const id = "https://app.example/client.json"
	if _, _, err := db.CIMDClient(ctx, id); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("CIMDClient before save: err %v, want ErrNotFound", err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := cimdTestClient(id, "http://127.0.0.1/cb", "https://app.example/cb")
	if err := db.SaveCIMDClient(ctx, c, storage.CIMDDocument{FetchedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatalf("SaveCIMDClient: %v", err)
	}
	got, doc, err := db.CIMDClient(ctx, id)
	if err != nil {
		t.Fatalf("CIMDClient: %v", err)
	}
	if doc == nil || !doc.FetchedAt.Equal(t0) || !doc.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("document = %+v, want fetched %v expires %v", doc, t0, t0.Add(time.Hour))
	}
	if got.Source != storage.SourceCIMD || got.Metadata.ClientName != "Doc App" || len(got.RedirectURIs) != 2 {
		t.Fatalf("client = %+v", got)
	}

	// An administrator disables it; a refetch that drops a redirect URI
	// updates the row but keeps it disabled.
	got.DisabledAt = &t0
	if err := db.UpdateClient(ctx, got); err != nil {
		t.Fatal(err)
	}
	c2 := cimdTestClient(id, "https://app.example/cb")
	c2.Metadata.ClientName = "Doc App 2"
	t1 := t0.Add(2 * time.Hour)
	if err := db.SaveCIMDClient(ctx, c2, storage.CIMDDocument{FetchedAt: t1, ExpiresAt: t1.Add(time.Minute)}); err != nil {
		t.Fatalf("SaveCIMDClient (refetch): %v", err)
	}
	if c2.DisabledAt == nil {
		t.Error("refetch result: DisabledAt = nil, want the administrator's block kept")
	}
	got, doc, err = db.CIMDClient(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.RedirectURIs, []string{"https://app.example/cb"}) || got.Metadata.ClientName != "Doc App 2" {
		t.Errorf("after refetch: redirect URIs %v, name %q", got.RedirectURIs, got.Metadata.ClientName)
	}
	if got.DisabledAt == nil {
		t.Error("after refetch: not disabled any more")
	}
	if !doc.ExpiresAt.Equal(t1.Add(time.Minute)) {
		t.Errorf("after refetch: expires %v, want %v", doc.ExpiresAt, t1.Add(time.Minute))
	}

	// Deleting the client deletes its cache entry (FK cascade).
	if err := db.DeleteClient(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.CIMDClient(ctx, id); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after delete: err %v", err)
	}
}

func TestCIMDClientNeverOverwritesOtherSources(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	const id = "https://app.example/client.json"
	admin := cimdTestClient(id, "https://admin.example/cb")
	admin.Source = storage.SourceAdmin
	if err := db.CreateClient(ctx, admin); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err := db.SaveCIMDClient(ctx, cimdTestClient(id, "https://evil.example/cb"), storage.CIMDDocument{FetchedAt: now, ExpiresAt: now.Add(time.Hour)})
	if !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("SaveCIMDClient over an admin client: err %v, want ErrConflict", err)
	}
	got, doc, err := db.CIMDClient(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if doc != nil || got.Source != storage.SourceAdmin || !slices.Equal(got.RedirectURIs, []string{"https://admin.example/cb"}) {
		t.Fatalf("admin client changed: %+v, document %+v", got, doc)
	}
	if err := db.SaveCIMDClient(ctx, admin, storage.CIMDDocument{}); err == nil {
		t.Fatal("SaveCIMDClient with source admin: no error")
	}
}

func TestCIMDFailures(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	h := sha256.Sum256([]byte("https://app.example/client.json"))
	other := sha256.Sum256([]byte("https://other.example/client.json"))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := db.CIMDFailure(ctx, h[:], t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("no entry: err %v", err)
	}
	f := storage.CIMDFailure{Code: "invalid_client", Description: "unreachable", ExpiresAt: t0.Add(time.Minute)}
	if err := db.SaveCIMDFailure(ctx, h[:], f); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveCIMDFailure(ctx, other[:], storage.CIMDFailure{Code: "invalid_client", Description: "x", ExpiresAt: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	got, err := db.CIMDFailure(ctx, h[:], t0)
	if err != nil || *got != f {
		t.Fatalf("CIMDFailure = %+v, %v; want %+v", got, err, f)
	}
	if _, err := db.CIMDFailure(ctx, h[:], t0.Add(time.Minute)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired entry: err %v, want ErrNotFound", err)
	}
	// Replacing updates in place.
	f.Description = "too large"
	if err := db.SaveCIMDFailure(ctx, h[:], f); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.CIMDFailure(ctx, h[:], t0); got == nil || got.Description != "too large" {
		t.Fatalf("replaced entry = %+v", got)
	}
	// Deleting h also drops every expired entry (other, at t0+2s).
	if err := db.DeleteCIMDFailures(ctx, h[:], t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM cimd_failures`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d entries left (err %v), want 0", n, err)
	}
}
