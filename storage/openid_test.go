package storage_test

import (
	"errors"
	"net/url"
	"testing"

	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// TestOIDCSession: the OpenID Connect parameters ride on the code's row,
// outlive the code's use (fosite issues the id_token after invalidating
// it), and go away with DeleteOIDCSession or with the code.
func TestOIDCSession(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "rp")
	req := newRequest(client, "alice")
	if err := db.CreateAuthorizeCodeSession(ctx, "code-sig", req); err != nil {
		t.Fatalf("CreateAuthorizeCodeSession: %v", err)
	}

	if _, err := db.GetOIDCSession(ctx, "code-sig", &fosite.DefaultSession{}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetOIDCSession before Create = %v, want ErrNotFound", err)
	}

	oidc := newRequest(client, "alice")
	oidc.ID = req.ID
	// fosite hands over the request sanitised to its OIDC parameters; only
	// those are kept even if more is passed.
	oidc.Form = url.Values{"nonce": {"n-0123456789"}, "max_age": {"60"}, "prompt": {"login"}, "code": {"secret-code"}}
	if err := db.CreateOIDCSession(ctx, "code-sig", oidc); err != nil {
		t.Fatalf("CreateOIDCSession: %v", err)
	}
	if err := db.CreateOIDCSession(ctx, "no-such-code", oidc); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CreateOIDCSession for a missing code = %v, want ErrNotFound", err)
	}
	if n := countRows(t, db, "oauth_codes", "oidc_params::text LIKE '%secret-code%'"); n != 0 {
		t.Errorf("the code was stored with the OIDC parameters")
	}

	wantForm := url.Values{"nonce": {"n-0123456789"}, "max_age": {"60"}, "prompt": {"login"}}
	got, err := db.GetOIDCSession(ctx, "code-sig", &fosite.DefaultSession{})
	if err != nil {
		t.Fatalf("GetOIDCSession: %v", err)
	}
	checkRequest(t, got, req, wantForm)

	// Still there once the code is used.
	if err := db.InvalidateAuthorizeCodeSession(ctx, "code-sig"); err != nil {
		t.Fatalf("InvalidateAuthorizeCodeSession: %v", err)
	}
	got, err = db.GetOIDCSession(ctx, "code-sig", &fosite.DefaultSession{})
	if err != nil {
		t.Fatalf("GetOIDCSession after the code was used: %v", err)
	}
	checkRequest(t, got, req, wantForm)

	if err := db.DeleteOIDCSession(ctx, "code-sig"); err != nil {
		t.Fatalf("DeleteOIDCSession: %v", err)
	}
	if _, err := db.GetOIDCSession(ctx, "code-sig", &fosite.DefaultSession{}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetOIDCSession after Delete = %v, want ErrNotFound", err)
	}
	if err := db.DeleteOIDCSession(ctx, "code-sig"); err != nil {
		t.Errorf("second DeleteOIDCSession = %v, want nil", err)
	}
	// The code itself is untouched.
	if _, err := db.GetAuthorizeCodeSession(ctx, "code-sig", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		t.Errorf("GetAuthorizeCodeSession = %v, want the used code", err)
	}
}
