package authz

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/authz/keys"
)

// revocationRun runs s.RunRevocations until the end of the test and waits
// until its listener is connected.
func revocationRun(t *testing.T, s *Server) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.RunRevocations(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	revocationConnected(t, s, 0)
}

// revocationConnected waits (up to 10 s) until s listens on a connection
// other than the one with pid not.
func revocationConnected(t *testing.T, s *Server, not uint32) uint32 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pid := s.oauth.revoked.pid.Load(); pid != 0 && pid != not {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatal("revocation listener did not connect")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// revocationReplica is a second Server on e's database, as another replica
// of the same deployment would be: same issuer and secret, its own key set
// loaded from the database.
func revocationReplica(t *testing.T, e *tokEnv) *Server {
	t.Helper()
	ks, err := keys.New(t.Context(), e.s.db, e.s.cfg.Secret, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(e.s.cfg, e.s.db, ks, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// revocationGrant obtains tokens for e.user through client web.
func revocationGrant(t *testing.T, e *tokEnv, secret string) tokResponse {
	t.Helper()
	r := e.exchange("web", secret, e.authorize("web", []string{"mcp"}, nil), nil)
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.status, r.raw)
	}
	return r
}

// revocationAccepts checks that s accepts tok and returns its grant id.
func revocationAccepts(t *testing.T, s *Server, tok string) string {
	t.Helper()
	info, err := s.VerifyAccessToken(t.Context(), tok)
	if err != nil {
		t.Fatalf("VerifyAccessToken: %v, want accepted", err)
	}
	return info.GrantID
}

// TestRevocationAcrossReplicas: two servers on one database; a revocation
// through one is refused by the other within 1 s: over LISTEN/NOTIFY, again
// after the other's LISTEN connection was killed and came back, and, for a
// revocation made while it was disconnected, by the reload on reconnect.
func TestRevocationAcrossReplicas(t *testing.T) {
	e := newTokEnv(t, nil)
	ctx := t.Context()
	secret := e.client(tokClient{id: "web", confidential: true})
	b := revocationReplica(t, e)
	gate := make(chan chan struct{}, 1) // a channel here holds B's next connection attempt
	b.oauth.revoked.beforeListen = func(ctx context.Context) {
		select {
		case wait := <-gate:
			select {
			case <-wait:
			case <-ctx.Done():
			}
		default:
		}
	}
	revocationRun(t, e.s)
	revocationRun(t, b)

	t.Run("revoke over HTTP on A", func(t *testing.T) {
		g := revocationGrant(t, e, secret)
		revocationAccepts(t, b, g.str("access_token")) // now cached on B
		r := e.post("/revoke", url.Values{"token": {g.str("refresh_token")}}, "web", secret)
		if r.status != http.StatusOK {
			t.Fatalf("revoke: %d %s", r.status, r.raw)
		}
		verifyRefusedWithin(t, b, g.str("access_token"), time.Second)
		verifyRefusedWithin(t, e.s, g.str("access_token"), time.Second)
	})

	t.Run("after B's listener was killed", func(t *testing.T) {
		old := b.oauth.revoked.pid.Load()
		if _, err := e.s.db.Pool().Exec(ctx, `SELECT pg_terminate_backend($1)`, int32(old)); err != nil {
			t.Fatal(err)
		}
		revocationConnected(t, b, old)
		g := revocationGrant(t, e, secret)
		grant := revocationAccepts(t, b, g.str("access_token"))
		if err := e.s.db.RevokeGrant(ctx, grant); err != nil {
			t.Fatal(err)
		}
		verifyRefusedWithin(t, b, g.str("access_token"), time.Second)
	})

	t.Run("revoked while B was disconnected", func(t *testing.T) {
		g := revocationGrant(t, e, secret)
		grant := revocationAccepts(t, b, g.str("access_token"))
		release := make(chan struct{})
		gate <- release
		old := b.oauth.revoked.pid.Load()
		if _, err := e.s.db.Pool().Exec(ctx, `SELECT pg_terminate_backend($1)`, int32(old)); err != nil {
			t.Fatal(err)
		}
		for b.oauth.revoked.pid.Load() != 0 { // B noticed, and waits at the gate
			time.Sleep(5 * time.Millisecond)
		}
		if err := e.s.db.RevokeGrant(ctx, grant); err != nil {
			t.Fatal(err)
		}
		verifyRefusedWithin(t, e.s, g.str("access_token"), time.Second) // A heard it
		// B missed the notification: it still accepts the token.
		time.Sleep(100 * time.Millisecond)
		revocationAccepts(t, b, g.str("access_token"))
		close(release)
		verifyRefusedWithin(t, b, g.str("access_token"), time.Second)
	})
}

// TestRevocationLoadedByNew: a server that starts after a revocation
// refuses the grant's tokens before RunRevocations runs.
func TestRevocationLoadedByNew(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "web", confidential: true})
	g := revocationGrant(t, e, secret)
	grant := revocationAccepts(t, e.s, g.str("access_token"))
	if err := e.s.db.RevokeGrant(t.Context(), grant); err != nil {
		t.Fatal(err)
	}
	_, err := revocationReplica(t, e).VerifyAccessToken(t.Context(), g.str("access_token"))
	wantInvalid(t, "fresh server", nil, err, "revoked")
}

// TestRevocationOnReuse: a reused authorization code and a reused refresh
// token revoke their grant (RFC 6749 §4.1.2, OAuth 2.1 §4.3.1), and the
// grant's access tokens are refused at once.
func TestRevocationOnReuse(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "web", confidential: true})
	revocationRun(t, e.s)
	size := func() int {
		n := 0
		e.s.oauth.revoked.grants.Load().Range(func(any, any) bool { n++; return true })
		return n
	}

	t.Run("code reuse", func(t *testing.T) {
		code := e.authorize("web", []string{"mcp"}, nil)
		r := e.exchange("web", secret, code, nil)
		if r.status != http.StatusOK {
			t.Fatalf("exchange: %d %s", r.status, r.raw)
		}
		grant := revocationAccepts(t, e.s, r.str("access_token"))
		before := size()
		wantError(t, e.exchange("web", secret, code, nil), http.StatusBadRequest, "invalid_grant")
		verifyRefusedWithin(t, e.s, r.str("access_token"), time.Second)
		if !e.s.oauth.revoked.revoked(grant) || size() != before+1 {
			t.Errorf("revoked set: grant in it %t, size %d → %d; want the grant added", e.s.oauth.revoked.revoked(grant), before, size())
		}
	})

	t.Run("refresh reuse", func(t *testing.T) {
		r := revocationGrant(t, e, secret)
		rt1 := r.str("refresh_token")
		r2 := e.refresh("web", secret, rt1, nil)
		r3 := e.refresh("web", secret, r2.str("refresh_token"), nil)
		if r2.status != http.StatusOK || r3.status != http.StatusOK {
			t.Fatalf("refresh: %d %s; %d %s", r2.status, r2.raw, r3.status, r3.raw)
		}
		grant := revocationAccepts(t, e.s, r3.str("access_token"))
		before := size()
		// rt1 is no longer the immediately previous token: reuse.
		wantError(t, e.refresh("web", secret, rt1, nil), http.StatusBadRequest, "invalid_grant")
		verifyRefusedWithin(t, e.s, r3.str("access_token"), time.Second)
		if !e.s.oauth.revoked.revoked(grant) || size() != before+1 {
			t.Errorf("revoked set: grant in it %t, size %d → %d; want the grant added", e.s.oauth.revoked.revoked(grant), before, size())
		}
	})
}

// TestRevocationReconcile: a revocation whose notification never arrived (a
// row written without NOTIFY) is picked up by the periodic reconciliation,
// and expired rows leave the set with it.
func TestRevocationReconcile(t *testing.T) {
	e := newTokEnv(t, nil)
	ctx := t.Context()
	secret := e.client(tokClient{id: "web", confidential: true})
	e.s.oauth.revoked.reconcileEvery = 50 * time.Millisecond
	revocationRun(t, e.s)
	g := revocationGrant(t, e, secret)
	grant := revocationAccepts(t, e.s, g.str("access_token"))
	gone := "6f1c2d4e-0000-4000-8000-0000000000ee"
	e.s.oauth.revoked.add(gone) // as if notified; its row has since been cleaned up

	if _, err := e.s.db.Pool().Exec(ctx,
		`INSERT INTO revoked_grants (grant_id, expires_at) VALUES ($1, now() + interval '10 minutes')`, grant); err != nil {
		t.Fatal(err)
	}
	verifyRefusedWithin(t, e.s, g.str("access_token"), time.Second)
	if e.s.oauth.revoked.revoked(gone) {
		t.Errorf("a grant with no row left is still in the set after a reload")
	}
}

// TestEmergencyRotationReachesReplicas: after `mcpauth keys rotate --now`
// on one replica, another accepts tokens signed with the new key at once:
// an unknown kid makes it reload its keys (at most every keyReloadEvery).
func TestEmergencyRotationReachesReplicas(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "web", confidential: true})
	b := revocationReplica(t, e)
	ks := e.s.keys.(*keys.Set)
	if _, err := ks.Rotate(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	tok := revocationGrant(t, e, secret).str("access_token")
	revocationAccepts(t, b, tok)

	// Right after a reload, another unknown kid is refused without one.
	if _, err := ks.Rotate(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	b.oauth.verify.lastKeyReload.Store(time.Now().UnixNano())
	tok = revocationGrant(t, e, secret).str("access_token")
	if _, err := b.VerifyAccessToken(t.Context(), tok); err == nil {
		t.Error("an unknown kid reloaded the keys right after a reload")
	}
}
