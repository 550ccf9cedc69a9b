package authz

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestUserinfo: OIDC Core §5.3 with RFC 6750 errors.
func TestUserinfo(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "rp", confidential: true})
	ccSecret := e.client(tokClient{id: "svc", confidential: true, grants: []string{"client_credentials"}})

	grant := func(scopes ...string) tokResponse {
		t.Helper()
		r := e.exchange("rp", secret, e.authorize("rp", scopes, nil), nil)
		if r.status != http.StatusOK {
			t.Fatalf("exchange: %d %s", r.status, r.raw)
		}
		return r
	}
	get := func(method, auth string) (int, http.Header, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, e.hs.URL+"/userinfo", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := e.hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("userinfo body %q: %v", b, err)
		}
		return resp.StatusCode, resp.Header, body
	}

	full := grant("openid", "profile")
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		status, _, body := get(method, "Bearer "+full.str("access_token"))
		if status != http.StatusOK || body["sub"] != e.user.ID || body["preferred_username"] != "alice" || len(body) != 2 {
			t.Errorf("%s: %d %v, want sub and preferred_username", method, status, body)
		}
	}
	status, _, body := get(http.MethodGet, "bearer "+grant("openid").str("access_token"))
	if status != http.StatusOK || body["sub"] != e.user.ID || body["preferred_username"] != nil {
		t.Errorf("openid only: %d %v, want sub alone", status, body)
	}

	cc := e.post("/token", url.Values{"grant_type": {"client_credentials"}}, "svc", ccSecret)
	for _, tc := range []struct {
		name, auth string
		status     int
		wwwAuth    string
	}{
		{"no token", "", 401, `Bearer realm="` + e.s.cfg.Issuer + `"`},
		{"basic", "Basic cnA6c2VjcmV0", 401, `Bearer realm="` + e.s.cfg.Issuer + `"`},
		{"garbage", "Bearer garbage", 401, `error="invalid_token"`},
		{"refresh token", "Bearer " + full.str("refresh_token"), 401, `error="invalid_token"`},
		{"without openid", "Bearer " + grant("mcp").str("access_token"), 403, `error="insufficient_scope"`},
		{"client credentials", "Bearer " + cc.str("access_token"), 403, `error="insufficient_scope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := get(http.MethodGet, tc.auth)
			if status != tc.status || !strings.Contains(h.Get("WWW-Authenticate"), tc.wwwAuth) {
				t.Errorf("%d, WWW-Authenticate %q, body %v; want %d and %q", status, h.Get("WWW-Authenticate"), body, tc.status, tc.wwwAuth)
			}
		})
	}

	// A revoked token no longer reads the user.
	if r := e.post("/revoke", url.Values{"token": {full.str("access_token")}}, "rp", secret); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	if status, _, _ := get(http.MethodGet, "Bearer "+full.str("access_token")); status != http.StatusUnauthorized {
		t.Errorf("revoked token: %d, want 401", status)
	}
}
