package authz

import (
	"net/http"
	"net/url"
	"testing"
)

// TestRevoke: revoking a refresh token or an access token ends the whole
// grant (RFC 7009 §2.1); unknown tokens and other clients' tokens get 200
// and change nothing (§2.2).
func TestRevoke(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "web", confidential: true})
	other := e.client(tokClient{id: "other", confidential: true})
	e.client(tokClient{id: "public"})

	grant := func() tokResponse {
		t.Helper()
		r := e.exchange("web", secret, e.authorize("web", []string{"mcp"}, nil), nil)
		if r.status != http.StatusOK {
			t.Fatalf("exchange: %d %s", r.status, r.raw)
		}
		return r
	}
	revoke := func(form url.Values, id, secret string) tokResponse {
		t.Helper()
		r := e.post("/revoke", form, id, secret)
		if r.status != http.StatusOK {
			t.Fatalf("revoke: %d %s, want 200", r.status, r.raw)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("revoke: Cache-Control %q", r.header.Get("Cache-Control"))
		}
		return r
	}

	t.Run("refresh token revokes the grant", func(t *testing.T) {
		g := grant()
		revoke(url.Values{"token": {g.str("refresh_token")}, "token_type_hint": {"refresh_token"}}, "web", secret)
		if e.active("web", secret, g.str("access_token")) || e.active("web", secret, g.str("refresh_token")) {
			t.Errorf("tokens still active after revoking the refresh token")
		}
		wantError(t, e.refresh("web", secret, g.str("refresh_token"), nil), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("access token revokes the grant", func(t *testing.T) {
		g := grant()
		revoke(url.Values{"token": {g.str("access_token")}}, "web", secret)
		if e.active("web", secret, g.str("access_token")) || e.active("web", secret, g.str("refresh_token")) {
			t.Errorf("tokens still active after revoking the access token")
		}
	})
	t.Run("a superseded access token revokes the grant", func(t *testing.T) {
		g := grant()
		fresh := e.refresh("web", secret, g.str("refresh_token"), nil)
		if fresh.status != http.StatusOK {
			t.Fatalf("refresh: %d %s", fresh.status, fresh.raw)
		}
		// The first access token still works until it expires, so revoking
		// it must end the grant, not answer 200 and do nothing.
		revoke(url.Values{"token": {g.str("access_token")}}, "web", secret)
		if err := e.s.oauth.revoked.reload(t.Context()); err != nil { // what RunRevocations does on NOTIFY
			t.Fatal(err)
		}
		if _, err := e.s.VerifyAccessToken(t.Context(), g.str("access_token")); err == nil {
			t.Error("the revoked superseded access token still verifies")
		}
		if e.active("web", secret, fresh.str("access_token")) || e.active("web", secret, fresh.str("refresh_token")) {
			t.Errorf("the grant's current tokens are still active")
		}
	})
	t.Run("wrong hint still revokes", func(t *testing.T) {
		g := grant()
		revoke(url.Values{"token": {g.str("refresh_token")}, "token_type_hint": {"access_token"}}, "web", secret)
		if e.active("web", secret, g.str("refresh_token")) {
			t.Errorf("refresh token still active")
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		revoke(url.Values{"token": {"no-such-token"}}, "web", secret)
		revoke(url.Values{"token": {"ory_rt_AAAA.BBBB"}}, "web", secret)
	})
	t.Run("another client's token", func(t *testing.T) {
		g := grant()
		revoke(url.Values{"token": {g.str("refresh_token")}}, "other", other)
		if !e.active("web", secret, g.str("refresh_token")) {
			t.Errorf("another client revoked web's refresh token")
		}
	})
	t.Run("public client", func(t *testing.T) {
		r := e.exchange("public", "", e.authorize("public", []string{"mcp"}, nil), nil)
		revoke(url.Values{"token": {r.str("refresh_token")}, "client_id": {"public"}}, "", "")
		if e.refresh("public", "", r.str("refresh_token"), nil).status == http.StatusOK {
			t.Errorf("refresh token of a public client survived revocation")
		}
	})
	t.Run("errors", func(t *testing.T) {
		wantError(t, e.post("/revoke", url.Values{"token": {"x"}}, "web", "wrong"), http.StatusUnauthorized, "invalid_client")
		wantError(t, e.post("/revoke", url.Values{"token": {"x"}}, "", ""), http.StatusUnauthorized, "invalid_client")
		wantError(t, e.post("/revoke", url.Values{"token_type_hint": {"access_token"}}, "web", secret), http.StatusBadRequest, "invalid_request")
	})
}
