package storage_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

func TestAuthorizeCode(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "client-code")
	req := newRequest(client, "alice")

	if err := db.CreateAuthorizeCodeSession(ctx, "code-sig", req); err != nil {
		t.Fatalf("CreateAuthorizeCodeSession: %v", err)
	}
	// Only the hash of the signature is stored.
	if n := countRows(t, db, "oauth_codes", "sig_hash = sha256('code-sig'::bytea)"); n != 1 {
		t.Fatalf("rows keyed by sha256(signature) = %d, want 1", n)
	}

	got, err := db.GetAuthorizeCodeSession(ctx, "code-sig", &fosite.DefaultSession{})
	if err != nil {
		t.Fatalf("GetAuthorizeCodeSession: %v", err)
	}
	// Of the form, only redirect_uri is kept for codes.
	checkRequest(t, got, req, url.Values{"redirect_uri": {"http://127.0.0.1/callback"}})

	if _, err := db.GetAuthorizeCodeSession(ctx, "unknown", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("GetAuthorizeCodeSession(unknown) error = %v, want fosite.ErrNotFound", err)
	}

	if err := db.InvalidateAuthorizeCodeSession(ctx, "code-sig"); err != nil {
		t.Fatalf("InvalidateAuthorizeCodeSession: %v", err)
	}
	// A used code still returns its request, with ErrInvalidatedAuthorizeCode, so
	// fosite can revoke what it issued.
	got, err = db.GetAuthorizeCodeSession(ctx, "code-sig", &fosite.DefaultSession{})
	if !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		t.Fatalf("GetAuthorizeCodeSession(used) error = %v, want ErrInvalidatedAuthorizeCode", err)
	}
	checkRequest(t, got, req, url.Values{"redirect_uri": {"http://127.0.0.1/callback"}})

	if err := db.InvalidateAuthorizeCodeSession(ctx, "code-sig"); !errors.Is(err, storage.ErrCodeUsed) {
		t.Errorf("second InvalidateAuthorizeCodeSession = %v, want ErrCodeUsed", err)
	}
	if err := db.InvalidateAuthorizeCodeSession(ctx, "unknown"); !errors.Is(err, storage.ErrCodeUsed) {
		t.Errorf("InvalidateAuthorizeCodeSession(unknown) = %v, want ErrCodeUsed", err)
	}

	// A request id that is not a UUID is refused rather than stored.
	bad := newRequest(client, "alice")
	bad.ID = "not-a-uuid"
	if err := db.CreateAuthorizeCodeSession(ctx, "code-sig-2", bad); err == nil {
		t.Error("CreateAuthorizeCodeSession with a non-UUID request id = nil, want an error")
	}
}

// TestInvalidateAuthorizeCodeConcurrent: of 20 concurrent invalidations of one
// code exactly one wins (the ory/fosite#778 race).
func TestInvalidateAuthorizeCodeConcurrent(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "client-race")
	if err := db.CreateAuthorizeCodeSession(ctx, "race", newRequest(client, "alice")); err != nil {
		t.Fatalf("CreateAuthorizeCodeSession: %v", err)
	}
	const n = 20
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// Each in its own transaction, as fosite's token handler does.
			txCtx, err := db.BeginTX(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			if errs[i] = db.InvalidateAuthorizeCodeSession(txCtx, "race"); errs[i] != nil {
				_ = db.Rollback(txCtx)
				return
			}
			errs[i] = db.Commit(txCtx)
		}()
	}
	close(start)
	wg.Wait()
	var ok, used int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, storage.ErrCodeUsed):
			used++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || used != n-1 {
		t.Fatalf("successes = %d, ErrCodeUsed = %d; want 1 and %d", ok, used, n-1)
	}
}

func TestPKCE(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "client-pkce")
	req := newRequest(client, "alice")
	if err := db.CreateAuthorizeCodeSession(ctx, "code", req); err != nil {
		t.Fatalf("CreateAuthorizeCodeSession: %v", err)
	}
	if _, err := db.GetPKCERequestSession(ctx, "code", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) {
		t.Fatalf("GetPKCERequestSession before Create = %v, want ErrNotFound", err)
	}

	pkceReq := newRequest(client, "alice")
	pkceReq.ID = req.ID
	pkceReq.Form = url.Values{"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	if err := db.CreatePKCERequestSession(ctx, "code", pkceReq); err != nil {
		t.Fatalf("CreatePKCERequestSession: %v", err)
	}
	got, err := db.GetPKCERequestSession(ctx, "code", &fosite.DefaultSession{})
	if err != nil {
		t.Fatalf("GetPKCERequestSession: %v", err)
	}
	checkRequest(t, got, req, pkceReq.Form)

	if err := db.DeletePKCERequestSession(ctx, "code"); err != nil {
		t.Fatalf("DeletePKCERequestSession: %v", err)
	}
	if _, err := db.GetPKCERequestSession(ctx, "code", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("GetPKCERequestSession after Delete = %v, want ErrNotFound", err)
	}
	// The code itself is untouched.
	if _, err := db.GetAuthorizeCodeSession(ctx, "code", &fosite.DefaultSession{}); err != nil {
		t.Errorf("GetAuthorizeCodeSession after PKCE delete: %v", err)
	}
	if err := db.CreatePKCERequestSession(ctx, "no-such-code", pkceReq); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CreatePKCERequestSession(unknown code) = %v, want ErrNotFound", err)
	}
}

func TestAccessToken(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "client-at")
	req := newRequest(client, "alice")
	req.Form = url.Values{}
	other := newRequest(client, "bob")

	for sig, r := range map[string]*fosite.Request{"at-1": req, "at-2": req, "at-other": other} {
		if err := db.CreateAccessTokenSession(ctx, sig, r); err != nil {
			t.Fatalf("CreateAccessTokenSession(%s): %v", sig, err)
		}
	}
	got, err := db.GetAccessTokenSession(ctx, "at-1", &fosite.DefaultSession{})
	if err != nil {
		t.Fatalf("GetAccessTokenSession: %v", err)
	}
	checkRequest(t, got, req, url.Values{})

	if err := db.DeleteAccessTokenSession(ctx, "at-1"); err != nil {
		t.Fatalf("DeleteAccessTokenSession: %v", err)
	}
	if _, err := db.GetAccessTokenSession(ctx, "at-1", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("GetAccessTokenSession after delete = %v, want ErrNotFound", err)
	}
	if err := db.DeleteAccessTokenSession(ctx, "at-1"); err != nil {
		t.Errorf("DeleteAccessTokenSession twice = %v, want nil", err)
	}

	if err := db.RevokeAccessToken(ctx, req.ID); err != nil {
		t.Fatalf("RevokeAccessToken: %v", err)
	}
	if _, err := db.GetAccessTokenSession(ctx, "at-2", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("GetAccessTokenSession after revoke = %v, want ErrNotFound", err)
	}
	if _, err := db.GetAccessTokenSession(ctx, "at-other", &fosite.DefaultSession{}); err != nil {
		t.Errorf("another grant's token was revoked too: %v", err)
	}
	if err := db.RevokeAccessToken(ctx, "not-a-uuid"); err != nil {
		t.Errorf("RevokeAccessToken(not a UUID) = %v, want nil", err)
	}

	// No expiry in the session (lifespan -1) is stored as 'infinity'.
	forever := newRequest(client, "carol")
	forever.Session.(*fosite.DefaultSession).ExpiresAt = nil
	if err := db.CreateAccessTokenSession(ctx, "at-forever", forever); err != nil {
		t.Fatalf("CreateAccessTokenSession without expiry: %v", err)
	}
	if n := countRows(t, db, "oauth_access_tokens", "expires_at = 'infinity'"); n != 1 {
		t.Errorf("rows with infinite expiry = %d, want 1", n)
	}
}

func TestRefreshToken(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "client-rt")
	req := newRequest(client, "alice")
	req.Form = url.Values{}

	if err := db.CreateAccessTokenSession(ctx, "at-1", req); err != nil {
		t.Fatalf("CreateAccessTokenSession: %v", err)
	}
	if err := db.CreateRefreshTokenSession(ctx, "rt-1", "at-1", req); err != nil {
		t.Fatalf("CreateRefreshTokenSession: %v", err)
	}
	got, err := db.GetRefreshTokenSession(ctx, "rt-1", &fosite.DefaultSession{})
	if err != nil {
		t.Fatalf("GetRefreshTokenSession: %v", err)
	}
	checkRequest(t, got, req, url.Values{})

	// Rotation marks rt-1 used and keeps its paired access token, which
	// lives until it expires.
	if err := db.RotateRefreshToken(ctx, req.ID, "rt-1"); err != nil {
		t.Fatalf("RotateRefreshToken: %v", err)
	}
	if _, err := db.GetAccessTokenSession(ctx, "at-1", &fosite.DefaultSession{}); err != nil {
		t.Errorf("paired access token after rotation: %v, want it kept", err)
	}
	// The rotated token stays, inactive: a reuse returns its request with ErrInactiveToken.
	got, err = db.GetRefreshTokenSession(ctx, "rt-1", &fosite.DefaultSession{})
	if !errors.Is(err, fosite.ErrInactiveToken) || !errors.Is(err, storage.ErrRefreshTokenReused) {
		t.Fatalf("GetRefreshTokenSession(rotated) = %v, want ErrInactiveToken and ErrRefreshTokenReused", err)
	}
	checkRequest(t, got, req, url.Values{})
	// A second rotation of the same token loses: ErrSerializationFailure.
	if err := db.RotateRefreshToken(ctx, req.ID, "rt-1"); !errors.Is(err, fosite.ErrSerializationFailure) {
		t.Errorf("second RotateRefreshToken = %v, want ErrSerializationFailure", err)
	}

	if err := db.CreateAccessTokenSession(ctx, "at-2", req); err != nil {
		t.Fatalf("CreateAccessTokenSession: %v", err)
	}
	if err := db.CreateRefreshTokenSession(ctx, "rt-2", "at-2", req); err != nil {
		t.Fatalf("CreateRefreshTokenSession: %v", err)
	}
	// Rotation with another grant's request id does nothing.
	if err := db.RotateRefreshToken(ctx, newRequest(client, "x").ID, "rt-2"); !errors.Is(err, fosite.ErrSerializationFailure) {
		t.Errorf("RotateRefreshToken with a foreign request id = %v, want ErrSerializationFailure", err)
	}
	if _, err := db.GetRefreshTokenSession(ctx, "rt-2", &fosite.DefaultSession{}); err != nil {
		t.Errorf("rt-2 after foreign rotation: %v, want active", err)
	}

	// Revocation by request id marks the family inactive but keeps the rows.
	if err := db.RevokeRefreshToken(ctx, req.ID); err != nil {
		t.Fatalf("RevokeRefreshToken: %v", err)
	}
	if _, err := db.GetRefreshTokenSession(ctx, "rt-2", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrInactiveToken) || errors.Is(err, storage.ErrRefreshTokenReused) {
		t.Errorf("GetRefreshTokenSession after revoke = %v, want ErrInactiveToken, not reuse", err)
	}
	if n := countRows(t, db, "oauth_refresh_tokens", "request_id = $1", req.ID); n != 2 {
		t.Errorf("refresh rows of the grant after revoke = %d, want 2 (kept for reuse detection)", n)
	}
	if err := db.RevokeRefreshToken(ctx, "not-a-uuid"); err != nil {
		t.Errorf("RevokeRefreshToken(not a UUID) = %v, want nil", err)
	}

	if err := db.DeleteRefreshTokenSession(ctx, "rt-2"); err != nil {
		t.Fatalf("DeleteRefreshTokenSession: %v", err)
	}
	if _, err := db.GetRefreshTokenSession(ctx, "rt-2", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("GetRefreshTokenSession after delete = %v, want ErrNotFound", err)
	}

	// A refresh token without a paired access token (accessSignature "").
	if err := db.CreateRefreshTokenSession(ctx, "rt-3", "", newRequest(client, "dave")); err != nil {
		t.Fatalf("CreateRefreshTokenSession without access token: %v", err)
	}
}

func TestTransactional(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "client-tx")

	t.Run("commit", func(t *testing.T) {
		txCtx, err := db.BeginTX(ctx)
		if err != nil {
			t.Fatalf("BeginTX: %v", err)
		}
		if err := db.CreateAccessTokenSession(txCtx, "tx-commit", newRequest(client, "alice")); err != nil {
			t.Fatalf("CreateAccessTokenSession in tx: %v", err)
		}
		// Inside the transaction the row is visible, outside not yet.
		if _, err := db.GetAccessTokenSession(txCtx, "tx-commit", &fosite.DefaultSession{}); err != nil {
			t.Errorf("read inside tx: %v", err)
		}
		if _, err := db.GetAccessTokenSession(ctx, "tx-commit", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("read outside tx before commit = %v, want ErrNotFound", err)
		}
		if err := db.Commit(txCtx); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if _, err := db.GetAccessTokenSession(ctx, "tx-commit", &fosite.DefaultSession{}); err != nil {
			t.Errorf("read after commit: %v", err)
		}
		// fosite rolls back after a failed commit; after a commit that is a no-op.
		if err := db.Rollback(txCtx); err != nil {
			t.Errorf("Rollback after Commit = %v, want nil", err)
		}
	})

	t.Run("rollback", func(t *testing.T) {
		txCtx, err := db.BeginTX(ctx)
		if err != nil {
			t.Fatalf("BeginTX: %v", err)
		}
		if err := db.CreateAccessTokenSession(txCtx, "tx-rollback", newRequest(client, "alice")); err != nil {
			t.Fatalf("CreateAccessTokenSession in tx: %v", err)
		}
		if err := db.Rollback(txCtx); err != nil {
			t.Fatalf("Rollback: %v", err)
		}
		if _, err := db.GetAccessTokenSession(ctx, "tx-rollback", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("read after rollback = %v, want ErrNotFound", err)
		}
	})

	t.Run("nested", func(t *testing.T) {
		outer, err := db.BeginTX(ctx)
		if err != nil {
			t.Fatalf("BeginTX: %v", err)
		}
		if err := db.CreateAccessTokenSession(outer, "tx-outer", newRequest(client, "alice")); err != nil {
			t.Fatalf("create in outer: %v", err)
		}
		inner, err := db.BeginTX(outer)
		if err != nil {
			t.Fatalf("nested BeginTX: %v", err)
		}
		if err := db.CreateAccessTokenSession(inner, "tx-inner", newRequest(client, "alice")); err != nil {
			t.Fatalf("create in inner: %v", err)
		}
		if err := db.Rollback(inner); err != nil {
			t.Fatalf("inner Rollback: %v", err)
		}
		if err := db.Commit(outer); err != nil {
			t.Fatalf("outer Commit: %v", err)
		}
		if _, err := db.GetAccessTokenSession(ctx, "tx-outer", &fosite.DefaultSession{}); err != nil {
			t.Errorf("outer row after commit: %v", err)
		}
		if _, err := db.GetAccessTokenSession(ctx, "tx-inner", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("inner row after its rollback = %v, want ErrNotFound", err)
		}
	})

	t.Run("InTx", func(t *testing.T) {
		boom := errors.New("boom")
		err := db.InTx(ctx, func(ctx context.Context) error {
			if err := db.CreateAccessTokenSession(ctx, "intx", newRequest(client, "alice")); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("InTx = %v, want boom", err)
		}
		if _, err := db.GetAccessTokenSession(ctx, "intx", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("row written in a failed InTx: %v, want ErrNotFound", err)
		}
	})

	t.Run("no transaction", func(t *testing.T) {
		if err := db.Commit(ctx); err == nil {
			t.Error("Commit without a transaction = nil, want an error")
		}
		if err := db.Rollback(ctx); err == nil {
			t.Error("Rollback without a transaction = nil, want an error")
		}
	})
}

func TestClientAssertionJWT(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()

	if err := db.ClientAssertionJWTValid(ctx, "jti-1"); err != nil {
		t.Fatalf("ClientAssertionJWTValid(unknown) = %v, want nil", err)
	}
	if err := db.SetClientAssertionJWT(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("SetClientAssertionJWT: %v", err)
	}
	if err := db.ClientAssertionJWTValid(ctx, "jti-1"); !errors.Is(err, fosite.ErrJTIKnown) {
		t.Errorf("ClientAssertionJWTValid(known) = %v, want ErrJTIKnown", err)
	}
	if err := db.SetClientAssertionJWT(ctx, "jti-1", time.Now().Add(time.Hour)); !errors.Is(err, fosite.ErrJTIKnown) {
		t.Errorf("SetClientAssertionJWT(replay) = %v, want ErrJTIKnown", err)
	}
	if n := countRows(t, db, "oauth_jti", "jti_hash = sha256('jti-1'::bytea)"); n != 1 {
		t.Errorf("jti rows keyed by sha256 = %d, want 1", n)
	}

	// An expired jti may be recorded again.
	if err := db.SetClientAssertionJWT(ctx, "jti-2", time.Now().Add(-time.Minute)); err != nil {
		t.Fatalf("SetClientAssertionJWT(expired): %v", err)
	}
	if err := db.ClientAssertionJWTValid(ctx, "jti-2"); err != nil {
		t.Errorf("ClientAssertionJWTValid(expired) = %v, want nil", err)
	}
	if err := db.SetClientAssertionJWT(ctx, "jti-2", time.Now().Add(time.Hour)); err != nil {
		t.Errorf("SetClientAssertionJWT over an expired one = %v, want nil", err)
	}
}
