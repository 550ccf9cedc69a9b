package authz

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpauth/mcpauth/storage"
)

// TestIntrospect: RFC 7662 for authenticated confidential clients, about
// their own tokens (an administrator's client, a resource server, about
// any); everything else inactive.
func TestIntrospect(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "web", confidential: true})
	other := e.client(tokClient{id: "other", confidential: true})
	rs := e.client(tokClient{id: "rs", confidential: true, source: storage.SourceAdmin})
	e.client(tokClient{id: "public"})

	g := e.exchange("web", secret, e.authorize("web", []string{"mcp", "profile"}, nil), nil)
	if g.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", g.status, g.raw)
	}
	_, claims := e.jwt(g.str("access_token"), "at+jwt")

	r := e.post("/introspect", url.Values{"token": {g.str("access_token")}}, "web", secret)
	if r.status != http.StatusOK || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("introspect: %d %s (Cache-Control %q)", r.status, r.raw, r.header.Get("Cache-Control"))
	}
	want := map[string]any{
		"active": true, "scope": "mcp profile", "client_id": "web", "sub": e.user.ID, "username": "alice",
		"aud": []any{e.s.cfg.MCPResource}, "iss": e.s.cfg.Issuer, "token_type": "Bearer", "exp": claims["exp"],
	}
	for k, v := range want {
		if !cmp.Equal(r.body[k], v) {
			t.Errorf("%s = %v, want %v", k, r.body[k], v)
		}
	}
	if iat, _ := r.body["iat"].(float64); iat <= 0 || iat > claims["exp"].(float64) {
		t.Errorf("iat = %v", r.body["iat"])
	}

	r = e.post("/introspect", url.Values{"token": {g.str("refresh_token")}, "token_type_hint": {"refresh_token"}}, "web", secret)
	if r.body["active"] != true || r.body["token_type"] != tokenTypeRefresh || r.body["sub"] != e.user.ID {
		t.Errorf("refresh token introspection = %s", r.raw)
	}
	if exp, _ := r.body["exp"].(float64); exp <= claims["exp"].(float64) {
		t.Errorf("refresh token exp %v not after the access token's", r.body["exp"])
	}

	inactive := func(name, id, secret, tok string) {
		t.Helper()
		r := e.post("/introspect", url.Values{"token": {tok}}, id, secret)
		if r.status != http.StatusOK || len(r.body) != 1 || r.body["active"] != false {
			t.Errorf("%s: %d %s, want exactly {\"active\":false}", name, r.status, r.raw)
		}
	}
	inactive("another client's token", "other", other, g.str("access_token"))
	inactive("unknown token", "web", secret, "no-such-token")
	inactive("forged JWT", "web", secret, g.str("access_token")[:strings.LastIndexByte(g.str("access_token"), '.')]+".AAAA")
	if !e.active("rs", rs, g.str("access_token")) {
		t.Errorf("an administrator's client cannot introspect")
	}

	// Public clients, bearer tokens and bad secrets are turned away.
	r = e.post("/introspect", url.Values{"token": {g.str("access_token")}, "client_id": {"public"}}, "", "")
	wantError(t, r, http.StatusUnauthorized, "invalid_client")
	r = e.do("/introspect", "application/x-www-form-urlencoded", "token=x", func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+g.str("access_token"))
	})
	wantError(t, r, http.StatusUnauthorized, "invalid_client")
	r = e.post("/introspect", url.Values{"token": {"x"}}, "web", "wrong")
	wantError(t, r, http.StatusUnauthorized, "invalid_client")
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
	}
	wantError(t, e.post("/introspect", url.Values{"token_type_hint": {"access_token"}}, "web", secret), http.StatusBadRequest, "invalid_request")
}
