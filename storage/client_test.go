package storage_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// A P-256 public key, RFC 7517 format.
const testJWKS = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","use":"sig",
	"x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`

func fullClient(id string) *storage.Client {
	expires := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Microsecond)
	return &storage.Client{
		ID:                          id,
		SecretHash:                  []byte("0123456789abcdef0123456789abcdef"),
		SecretHashAlg:               "sha256",
		RotatedSecretHashes:         [][]byte{[]byte("old-hash")},
		SecretExpiresAt:             &expires,
		TokenEndpointAuthMethod:     storage.AuthMethodPrivateKeyJWT,
		TokenEndpointAuthSigningAlg: "ES256",
		RedirectURIs:                []string{"https://app.example/cb", "http://127.0.0.1/cb"},
		GrantTypes:                  []string{"authorization_code", "refresh_token", "client_credentials"},
		ResponseTypes:               []string{"code"},
		Scopes:                      []string{"mcp", "admin"},
		Audiences:                   []string{"https://as.example/mcp"},
		JWKS:                        json.RawMessage(testJWKS),
		JWKSURI:                     "https://app.example/jwks.json",
		Metadata: storage.ClientMetadata{
			ClientName: "App", ClientURI: "https://app.example", LogoURI: "https://app.example/logo.png",
			Contacts: []string{"ops@app.example"}, TOSURI: "https://app.example/tos", PolicyURI: "https://app.example/privacy",
			SoftwareID: "app", SoftwareVersion: "1.0", ApplicationType: "web",
		},
		RegistrationTokenHash: []byte("rat-hash"),
		Source:                storage.SourceDCR,
	}
}

// clientCmp compares clients on their exported fields; JSON by meaning.
var clientCmp = cmp.Options{
	cmpopts.IgnoreUnexported(storage.Client{}),
	cmpopts.IgnoreFields(storage.Client{}, "JWKS", "CreatedAt", "UpdatedAt"),
	cmpopts.EquateEmpty(),
}

func TestClientCRUD(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()

	want := fullClient("client-1")
	if err := db.CreateClient(ctx, want); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	if want.CreatedAt.IsZero() || want.UpdatedAt.IsZero() {
		t.Errorf("CreateClient did not set CreatedAt/UpdatedAt: %v %v", want.CreatedAt, want.UpdatedAt)
	}
	got, err := db.Client(ctx, "client-1")
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	if diff := cmp.Diff(want, got, clientCmp); diff != "" {
		t.Errorf("Client round-trip (-want +got):\n%s", diff)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("CreatedAt = %v, want %v", got.CreatedAt, want.CreatedAt)
	}
	var a, b any
	_ = json.Unmarshal(want.JWKS, &a)
	_ = json.Unmarshal(got.JWKS, &b)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("JWKS (-want +got):\n%s", diff)
	}

	// What fosite sees.
	fc, err := db.GetClient(ctx, "client-1")
	if err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	oc, ok := fc.(fosite.OpenIDConnectClient)
	if !ok {
		t.Fatalf("GetClient returned %T, not a fosite.OpenIDConnectClient", fc)
	}
	if oc.GetTokenEndpointAuthMethod() != "private_key_jwt" || oc.GetTokenEndpointAuthSigningAlgorithm() != "ES256" {
		t.Errorf("auth method = %q / %q", oc.GetTokenEndpointAuthMethod(), oc.GetTokenEndpointAuthSigningAlgorithm())
	}
	if keys := oc.GetJSONWebKeys(); keys == nil || len(keys.Key("k1")) != 1 {
		t.Errorf("GetJSONWebKeys = %v, want the key k1", keys)
	}
	if fc.IsPublic() || string(fc.GetHashedSecret()) != string(want.SecretHash) {
		t.Errorf("IsPublic = %v, secret = %q", fc.IsPublic(), fc.GetHashedSecret())
	}
	if rc, ok := fc.(fosite.ClientWithSecretRotation); !ok || len(rc.GetRotatedHashes()) != 1 {
		t.Errorf("rotated hashes not exposed")
	}
	if !fc.GetAudience().Has("https://as.example/mcp") || !fc.GetScopes().Has("admin") {
		t.Errorf("audience %v, scopes %v", fc.GetAudience(), fc.GetScopes())
	}

	// Duplicate id.
	if err := db.CreateClient(ctx, fullClient("client-1")); !errors.Is(err, storage.ErrConflict) {
		t.Errorf("CreateClient(duplicate) = %v, want ErrConflict", err)
	}

	// Update.
	got.Scopes = []string{"mcp"}
	got.Metadata.ClientName = "Renamed"
	got.JWKS = nil
	got.TokenEndpointAuthMethod = storage.AuthMethodClientSecretBasic
	before := got.UpdatedAt
	time.Sleep(2 * time.Millisecond)
	if err := db.UpdateClient(ctx, got); err != nil {
		t.Fatalf("UpdateClient: %v", err)
	}
	if !got.UpdatedAt.After(before) {
		t.Errorf("UpdatedAt not advanced: %v → %v", before, got.UpdatedAt)
	}
	again, err := db.Client(ctx, "client-1")
	if err != nil {
		t.Fatalf("Client after update: %v", err)
	}
	if diff := cmp.Diff(got, again, clientCmp); diff != "" {
		t.Errorf("after UpdateClient (-want +got):\n%s", diff)
	}
	if again.GetJSONWebKeys() != nil || again.JWKS != nil {
		t.Errorf("JWKS not cleared: %s", again.JWKS)
	}
	if err := db.UpdateClient(ctx, fullClient("missing")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("UpdateClient(missing) = %v, want ErrNotFound", err)
	}

	// List.
	public := mustCreateClient(t, db, "client-2")
	list, err := db.ListClients(ctx)
	if err != nil {
		t.Fatalf("ListClients: %v", err)
	}
	if len(list) != 2 || list[0].ID != "client-1" || list[1].ID != "client-2" {
		t.Fatalf("ListClients = %v, want client-1, client-2", list)
	}
	if !list[1].IsPublic() || list[1].GetHashedSecret() != nil {
		t.Errorf("public client: IsPublic %v, secret %q", list[1].IsPublic(), list[1].GetHashedSecret())
	}

	// Delete cascades to the client's tokens.
	if err := db.CreateAccessTokenSession(ctx, "at", newRequest(public, "alice")); err != nil {
		t.Fatalf("CreateAccessTokenSession: %v", err)
	}
	if err := db.DeleteClient(ctx, "client-2"); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	if n := countRows(t, db, "oauth_access_tokens", ""); n != 0 {
		t.Errorf("access tokens after client delete = %d, want 0", n)
	}
	if err := db.DeleteClient(ctx, "client-2"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteClient(missing) = %v, want ErrNotFound", err)
	}
	if _, err := db.GetClient(ctx, "client-2"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("GetClient(deleted) = %v, want fosite.ErrNotFound", err)
	}
}

func TestClientDisabled(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	c := mustCreateClient(t, db, "client-d")
	req := newRequest(c, "alice")
	if err := db.CreateAccessTokenSession(ctx, "at", req); err != nil {
		t.Fatalf("CreateAccessTokenSession: %v", err)
	}
	if err := db.CreateRefreshTokenSession(ctx, "rt", "at", req); err != nil {
		t.Fatalf("CreateRefreshTokenSession: %v", err)
	}

	disabled := time.Now().UTC()
	c.DisabledAt = &disabled
	if err := db.UpdateClient(ctx, c); err != nil {
		t.Fatalf("UpdateClient: %v", err)
	}
	// fosite no longer finds the client or its tokens; the record is still there.
	if _, err := db.GetClient(ctx, "client-d"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("GetClient(disabled) = %v, want fosite.ErrNotFound", err)
	}
	if _, err := db.GetAccessTokenSession(ctx, "at", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("GetAccessTokenSession(disabled client) = %v, want ErrNotFound", err)
	}
	if _, err := db.GetRefreshTokenSession(ctx, "rt", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("GetRefreshTokenSession(disabled client) = %v, want ErrNotFound", err)
	}
	if got, err := db.Client(ctx, "client-d"); err != nil || got.DisabledAt == nil {
		t.Errorf("Client(disabled) = %v, %v; want the record with DisabledAt", got, err)
	}
}

func TestClientSecretExpired(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	c := fullClient("client-e")
	past := time.Now().Add(-time.Hour)
	c.SecretExpiresAt = &past
	if err := db.CreateClient(ctx, c); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	fc, err := db.GetClient(ctx, "client-e")
	if err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	// RFC 7591 §3.2.1 client_secret_expires_at: an expired secret no longer authenticates.
	if fc.GetHashedSecret() != nil || fc.(fosite.ClientWithSecretRotation).GetRotatedHashes() != nil {
		t.Errorf("expired secret still offered to fosite: %q", fc.GetHashedSecret())
	}
	if got, _ := db.Client(ctx, "client-e"); string(got.SecretHash) != string(c.SecretHash) {
		t.Errorf("the record lost its SecretHash")
	}
}

func TestClientValidation(t *testing.T) {
	db := storagetest.New(t)
	for name, mutate := range map[string]func(*storage.Client){
		"empty id":          func(c *storage.Client) { c.ID = "" },
		"bad auth method":   func(c *storage.Client) { c.TokenEndpointAuthMethod = "client_secret_jwt" },
		"none with secret":  func(c *storage.Client) { c.TokenEndpointAuthMethod = storage.AuthMethodNone },
		"bad source":        func(c *storage.Client) { c.Source = "" },
		"jwks not a JWKS":   func(c *storage.Client) { c.JWKS = json.RawMessage(`{"keys": 3}`) },
		"jwks invalid JSON": func(c *storage.Client) { c.JWKS = json.RawMessage(`{`) },
	} {
		t.Run(name, func(t *testing.T) {
			c := fullClient("client-v")
			mutate(c)
			if err := db.CreateClient(t.Context(), c); err == nil {
				t.Fatal("CreateClient = nil, want a validation error")
			}
		})
	}
}

func TestClientLogValue(t *testing.T) {
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "client", fullClient("client-log"))
	if strings.Contains(b.String(), "0123456789abcdef") || !strings.Contains(b.String(), "client-log") {
		t.Errorf("log line = %q: want the id and no secret hash", b.String())
	}
}
