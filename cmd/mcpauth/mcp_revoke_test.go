package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// mcpCall posts a tools/call of whoami to base/mcp with token and returns
// the status and WWW-Authenticate of the answer.
func mcpCall(t *testing.T, base, token string) (int, string) {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// TestRevocationReachesEveryReplica: two replicas on one database; a token
// works at both; revoked through one, the other refuses it within a second
// (DESIGN §4, through LISTEN/NOTIFY), with the invalid_token challenge.
func TestRevocationReachesEveryReplica(t *testing.T) {
	dbURL := storagetest.URL(t)
	issuer := "http://127.0.0.1:9" // one issuer for both replicas, as behind a load balancer
	var replicas []*instance
	for range 2 {
		replicas = append(replicas, startRun(t, []string{"serve"}, map[string]string{
			"MCPAUTH_ISSUER":       issuer,
			"MCPAUTH_ADDR":         freeAddr(t),
			"MCPAUTH_DATABASE_URL": dbURL,
			"MCPAUTH_SECRET":       goodSecret,
			"MCPAUTH_LOG_LEVEL":    "warn",
		}))
	}
	a, b := replicas[0], replicas[1]
	srv := &server{instance: a, issuer: issuer, env: map[string]string{"MCPAUTH_DATABASE_URL": dbURL, "MCPAUTH_SECRET": goodSecret}}
	password := srv.addUser(t, "erin")

	// A grant through replica A (its own URLs: the issuer is not reachable).
	callback := "http://127.0.0.1:" + strings.Split(freeAddr(t), ":")[1] + "/cb"
	srv.metadata = map[string]any{"registration_endpoint": a.base + "/register"}
	srv.issuer = a.base
	client := srv.register(t, map[string]any{
		"redirect_uris": []string{callback}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "application_type": "native",
	})
	conf := &oauth2.Config{
		ClientID: client["client_id"].(string), RedirectURL: callback, Scopes: []string{"mcp"},
		Endpoint: oauth2.Endpoint{AuthURL: a.base + "/authorize", TokenURL: a.base + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	back := newBrowser(t).authorize(conf.AuthCodeURL("state-123456789", oauth2.S256ChallengeOption(verifier)), "erin", password)
	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, http.DefaultClient)
	tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v (%v)", err, back)
	}
	for _, r := range replicas {
		if status, _ := mcpCall(t, r.base, tok.AccessToken); status != http.StatusOK {
			t.Fatalf("before revocation, %s answers %d", r.base, status)
		}
	}

	status, out := postForm(t, a.base+"/revoke", url.Values{"token": {tok.RefreshToken}, "client_id": {conf.ClientID}}, "", "")
	if status != http.StatusOK {
		t.Fatalf("revoke: %d %v", status, out)
	}
	revoked := time.Now()
	for {
		status, challenge := mcpCall(t, b.base, tok.AccessToken)
		if status == http.StatusUnauthorized {
			if !strings.Contains(challenge, `error="invalid_token"`) || !strings.Contains(challenge, `resource_metadata="`+issuer+`/.well-known/oauth-protected-resource/mcp"`) {
				t.Errorf("challenge = %q", challenge)
			}
			t.Logf("replica B refused the revoked token after %s", time.Since(revoked).Round(time.Millisecond))
			break
		}
		if time.Since(revoked) > time.Second {
			t.Fatalf("replica B still accepts the revoked token after 1s (status %d)", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Replica A learns of its own revocation by the same notification:
	// also within a second.
	for {
		status, _ := mcpCall(t, a.base, tok.AccessToken)
		if status == http.StatusUnauthorized {
			break
		}
		if time.Since(revoked) > time.Second {
			t.Fatalf("replica A after revocation: %d after 1s", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A tampered token and no token are refused with the right challenges.
	if status, challenge := mcpCall(t, b.base, tok.AccessToken[:len(tok.AccessToken)-4]+"AAAA"); status != http.StatusUnauthorized || !strings.Contains(challenge, `error="invalid_token"`) {
		t.Errorf("tampered token: %d %q", status, challenge)
	}
	if status, challenge := mcpCall(t, b.base, ""); status != http.StatusUnauthorized || strings.Contains(challenge, "error=") || !strings.Contains(challenge, `scope="mcp"`) {
		t.Errorf("no token: %d %q", status, challenge)
	}
}
