package storage_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

func TestConsent(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	mustCreateClient(t, db, "consent-client")
	var userID string
	if err := db.Pool().QueryRow(ctx, `INSERT INTO users (username, password_hash) VALUES ('alice', 'x') RETURNING id`).Scan(&userID); err != nil {
		t.Fatal(err)
	}

	if _, err := db.Consent(ctx, userID, "consent-client"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("no consent yet: err = %v, want ErrNotFound", err)
	}
	c := storage.Consent{UserID: userID, ClientID: "consent-client", Scopes: []string{"mcp", "openid"}, Audiences: []string{"https://a.example/mcp"}}
	if err := db.SaveConsent(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := db.Consent(ctx, userID, "consent-client")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Scopes, c.Scopes) || !slices.Equal(got.Audiences, c.Audiences) || got.ExpiresAt != nil {
		t.Errorf("consent = %+v", got)
	}
	first := got.GrantedAt

	// A narrower decision replaces the remembered one.
	c.Scopes = []string{"mcp"}
	if err := db.SaveConsent(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err = db.Consent(ctx, userID, "consent-client")
	if err != nil || !slices.Equal(got.Scopes, []string{"mcp"}) || !got.GrantedAt.Equal(first) {
		t.Errorf("after narrowing: %+v, %v", got, err)
	}

	// Revoked and expired consents are not live.
	if _, err := db.Pool().Exec(ctx, `UPDATE oauth_consents SET revoked_at = now()`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Consent(ctx, userID, "consent-client"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("revoked consent: err = %v", err)
	}
	past := time.Now().Add(-time.Minute)
	c.ExpiresAt = &past
	if err := db.SaveConsent(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Consent(ctx, userID, "consent-client"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("expired consent: err = %v", err)
	}
	// Saving again revives it.
	c.ExpiresAt = nil
	if err := db.SaveConsent(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Consent(ctx, userID, "consent-client"); err != nil {
		t.Errorf("revived consent: %v", err)
	}
}
