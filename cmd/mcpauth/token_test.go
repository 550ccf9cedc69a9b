package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcpauth/mcpauth/storage"
)

var cliTokenRE = regexp.MustCompile(`(?m)^token: (\S+)$`)

// tokenCLICall calls tool with token at srv's /mcp and returns the status,
// the WWW-Authenticate challenge and the body.
func tokenCLICall(t *testing.T, srv *server, token, tool string) (int, string, string) {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`
	req, _ := http.NewRequest(http.MethodPost, srv.base+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(b)
}

// tokenCLIRefused polls until srv refuses token at /mcp with 401, for at
// most a second.
func tokenCLIRefused(t *testing.T, srv *server, token string) {
	t.Helper()
	start := time.Now()
	for {
		status, challenge, _ := tokenCLICall(t, srv, token, "whoami")
		if status == http.StatusUnauthorized && strings.Contains(challenge, `error="invalid_token"`) {
			return
		}
		if time.Since(start) > time.Second {
			t.Fatalf("token still accepted 1 s after revocation (%d)", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPersonalAccessTokensEndToEnd: created by the CLI for a user, shown
// once, accepted at /mcp with exactly its scopes, listed, refused within a
// second of revocation.
func TestPersonalAccessTokensEndToEnd(t *testing.T) {
	srv := startServer(t)
	db := cliDB(t, srv)
	srv.addUser(t, "ops", "--admin")

	// A non-admin cannot get the admin scope.
	if _, _, err := cliRun(t, srv, "token", "create", "--user", "alice", "--name", "x", "--scope", "mcp admin", "--expires", "1h"); err == nil ||
		!strings.Contains(err.Error(), "only for administrators") {
		t.Errorf("admin scope for alice: %v", err)
	}
	out := cliMust(t, srv, "token", "create", "--user", "alice", "--name", "laptop", "--scope", "mcp", "--expires", "30d")
	m := cliTokenRE.FindStringSubmatch(out)
	if m == nil || !strings.HasPrefix(m[1], "mcpat_") || !strings.Contains(out, "shown only now") {
		t.Fatalf("token create printed %q", out)
	}
	pat := m[1]
	var n int
	if err := db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM personal_access_tokens p WHERE strpos(p::text, $1) > 0`, pat).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the token is stored in clear: %d %v", n, err)
	}

	// whoami shows exactly its scopes; an admin tool is insufficient_scope.
	status, _, body := tokenCLICall(t, srv, pat, "whoami")
	if status != http.StatusOK || !strings.Contains(body, `\"scopes\":[\"mcp\"]`) && !strings.Contains(body, `"scopes":["mcp"]`) {
		t.Fatalf("whoami with the token: %d %s", status, body)
	}
	status, challenge, body := tokenCLICall(t, srv, pat, "admin_list_grants")
	if status != http.StatusForbidden || !strings.Contains(challenge, `error="insufficient_scope"`) {
		t.Errorf("admin tool with an mcp token: %d %q %s", status, challenge, body)
	}

	// An administrator's token with the admin scope reaches the admin tools.
	out = cliMust(t, srv, "token", "create", "--user", "ops", "--name", "automation", "--scope", "mcp admin", "--expires", "2h")
	adminPAT := cliTokenRE.FindStringSubmatch(out)[1]
	if status, _, body := tokenCLICall(t, srv, adminPAT, "admin_list_grants"); status != http.StatusOK || strings.Contains(body, `"isError":true`) {
		t.Errorf("admin tool with an admin's admin token: %d %s", status, body)
	}
	// admin_revoke's audit event goes through the batching writer, with the
	// caller's IP.
	srv.addUser(t, "dave")
	if status, body := tokenAdminRevoke(t, srv, adminPAT, `{"user":"dave"}`); status != http.StatusOK || strings.Contains(body, `"isError":true`) {
		t.Errorf("admin_revoke: %d %s", status, body)
	}
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		evs, err := db.ListAuditEvents(t.Context(), storage.AuditFilter{Event: storage.EventGrantRevoked})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 1 {
			if ev := evs[0]; ev.Actor != "ops" || ev.Subject != "dave" || ev.ClientIP != "127.0.0.1" || ev.Details["via"] != "admin_revoke tool" {
				t.Errorf("admin_revoke's audit event = %+v; want actor ops, subject dave, client IP 127.0.0.1", ev)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin_revoke's audit event not written within 2 s: %+v", evs)
		}
	}

	// Listed with last use; never the token.
	// The last use is written in the background: poll for it.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		pats, err := db.ListPersonalAccessTokens(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(pats) == 2 && pats[0].LastUsedAt != nil && pats[1].LastUsedAt != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last use not recorded: %+v", pats)
		}
	}
	out = cliMust(t, srv, "token", "list", "--user", "alice")
	if !strings.Contains(out, "laptop") || strings.Contains(out, "automation") || strings.Contains(out, pat) {
		t.Errorf("token list --user alice:\n%s", out)
	}
	if out := cliMust(t, srv, "token", "list"); !strings.Contains(out, "automation") || !strings.Contains(out, "laptop") {
		t.Errorf("token list:\n%s", out)
	}
	cliAudited(t, db, storage.EventPATCreated)

	// Revoked by the token itself, read from standard input (--token -,
	// so that it is not in the process list): refused within a second.
	tokenCLIStdin(t, pat+"\n", func() { cliMust(t, srv, "token", "revoke", "--token", "-") })
	tokenCLIRefused(t, srv, pat)
	cliAudited(t, db, storage.EventPATRevoked)
	// The other token still works.
	if status, _, _ := tokenCLICall(t, srv, adminPAT, "whoami"); status != http.StatusOK {
		t.Errorf("another token after a revocation: %d", status)
	}
	// Disabling the user stops their tokens.
	cliMust(t, srv, "user", "disable", "ops")
	tokenCLIRefused(t, srv, adminPAT)
}

// TestTokenRevokeCommands: mcpauth token revoke by access token, refresh
// token, grant, client and user.
func TestTokenRevokeCommands(t *testing.T) {
	srv := startServer(t)
	db := cliDB(t, srv)
	callback := "http://127.0.0.1:" + strings.Split(freeAddr(t), ":")[1] + "/cb"
	client := srv.register(t, map[string]any{
		"redirect_uris": []string{callback}, "token_endpoint_auth_method": "none", "client_name": "Revoke test",
		"grant_types": []string{"authorization_code", "refresh_token"}, "application_type": "native",
	})
	conf := &oauth2.Config{
		ClientID: client["client_id"].(string), RedirectURL: callback, Scopes: []string{"mcp"},
		Endpoint: oauth2.Endpoint{AuthURL: srv.base + "/authorize", TokenURL: srv.base + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	b := newBrowser(t)
	grant := func() *oauth2.Token {
		t.Helper()
		verifier := oauth2.GenerateVerifier()
		back := b.authorize(conf.AuthCodeURL("state-123456789", oauth2.S256ChallengeOption(verifier)), srv.user, srv.password)
		tok, err := conf.Exchange(context.WithValue(t.Context(), oauth2.HTTPClient, http.DefaultClient), back.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		if status, _, _ := tokenCLICall(t, srv, tok.AccessToken, "whoami"); status != http.StatusOK {
			t.Fatalf("fresh token refused: %d", status)
		}
		return tok
	}
	refreshFails := func(tok *oauth2.Token) {
		t.Helper()
		status, body := postForm(t, srv.base+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken},
			"client_id": {conf.ClientID}}, "", "")
		if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("refresh after revocation: %d %v", status, body)
		}
	}

	// By access token (a JWT, verified with the key set).
	tok := grant()
	if out := cliMust(t, srv, "token", "revoke", "--token", tok.AccessToken); !strings.Contains(out, "revoked grant") {
		t.Errorf("revoke --token printed %q", out)
	}
	tokenCLIRefused(t, srv, tok.AccessToken)
	refreshFails(tok)
	ev := cliAudited(t, db, storage.EventGrantRevoked)
	raw, _ := json.Marshal(ev)
	if strings.Contains(string(raw), tok.AccessToken) || ev.Details["via"] != "access_token" {
		t.Errorf("audit event = %s", raw)
	}
	// One convention for a revoked grant: the user's name, the client, the grant id.
	if ev.Subject != srv.user || ev.ClientID != conf.ClientID || ev.Details["grant_id"] == nil {
		t.Errorf("grant.revoked = %+v; want subject %s, client %s, details.grant_id", ev, srv.user, conf.ClientID)
	}
	// Consent is asked again after a revocation.
	p := b.follow(b.get(conf.AuthCodeURL("state-123456789", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))))
	if !strings.Contains(p.body, `name="decision"`) {
		t.Errorf("no consent page after revocation: %d %s", p.status, p.url)
	}

	// By refresh token.
	tok = grant()
	cliMust(t, srv, "token", "revoke", "--token", tok.RefreshToken)
	tokenCLIRefused(t, srv, tok.AccessToken)
	refreshFails(tok)

	// By grant id.
	tok = grant()
	grantID, _ := jwtClaims(t, tok.AccessToken)["grant_id"].(string)
	cliMust(t, srv, "token", "revoke", "--grant", grantID)
	tokenCLIRefused(t, srv, tok.AccessToken)

	// By client, and by user.
	tok = grant()
	if out := cliMust(t, srv, "token", "revoke", "--client", conf.ClientID); !strings.Contains(out, "revoked 1 grant") {
		t.Errorf("revoke --client printed %q", out)
	}
	tokenCLIRefused(t, srv, tok.AccessToken)
	tok = grant()
	if out := cliMust(t, srv, "token", "revoke", "--user", srv.user); !strings.Contains(out, "revoked 1 grant") {
		t.Errorf("revoke --user printed %q", out)
	}
	tokenCLIRefused(t, srv, tok.AccessToken)
	refreshFails(tok)

	for _, args := range [][]string{
		{"token", "revoke"},
		{"token", "revoke", "--grant", grantID, "--user", srv.user},
		{"token", "revoke", "--token", "not-a-token"},
		{"token", "revoke", "--token", tok.AccessToken[:len(tok.AccessToken)-4] + "AAAA"},
		{"token", "revoke", "--grant", "00000000-0000-4000-8000-000000000000"},
		{"token", "revoke", "--user", "nobody"},
		{"token", "revoke", "--client", "nobody"},
		{"token", "create", "--user", srv.user, "--name", "x", "--scope", "mcp", "--expires", "soon"},
		{"token", "create", "--user", srv.user, "--name", "x", "--scope", "mcp", "--expires", "400d"},
		{"token", "create", "--user", srv.user},
		{"token", "frobnicate"},
	} {
		if out, _, err := cliRun(t, srv, args...); err == nil {
			t.Errorf("mcpauth %s succeeded: %q", strings.Join(args, " "), out)
		}
	}
}

// tokenCLIStdin runs f with stdin as standard input.
func tokenCLIStdin(t *testing.T, stdin string, f func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		w.WriteString(stdin)
		w.Close()
	}()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	f()
}

func TestTokenReadTokenLine(t *testing.T) {
	for in, want := range map[string]string{"mcpat_x\n": "mcpat_x", " a.b.c \r\nrest": "a.b.c", "tok": "tok"} {
		if got, err := readTokenLine(strings.NewReader(in)); err != nil || got != want {
			t.Errorf("readTokenLine(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "\n", "  \n", strings.Repeat("x", maxTokenLine+1)} {
		if got, err := readTokenLine(strings.NewReader(in)); err == nil {
			t.Errorf("readTokenLine(%d bytes) = %d bytes, want an error", len(in), len(got))
		}
	}
}

func TestTokenParseLifetimeBounded(t *testing.T) {
	for _, s := range []string{"0d", "-1d", "x d", "367d", "106752d", "9223372036854775807d"} {
		if d, err := parseLifetime(s); err == nil {
			t.Errorf("parseLifetime(%q) = %v, want an error", s, d)
		}
	}
	for s, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "366d": 366 * 24 * time.Hour, "2h": 2 * time.Hour} {
		if d, err := parseLifetime(s); err != nil || d != want {
			t.Errorf("parseLifetime(%q) = %v, %v; want %v", s, d, err, want)
		}
	}
}

func TestTokenOneLineStripsControls(t *testing.T) {
	in := "a\nb\x1b[31m\u009b31m\u0085c\u202edcba\u2066x\u2069\u200bz"
	want := "a b [31m 31m c dcba x \u200bz"
	if got := oneLine(in); got != want {
		t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
	}
}

// tokenAdminRevoke calls the admin_revoke tool with args (JSON) at srv.
func tokenAdminRevoke(t *testing.T, srv *server, token, args string) (int, string) {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_revoke","arguments":` + args + `}}`
	req, _ := http.NewRequest(http.MethodPost, srv.base+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
