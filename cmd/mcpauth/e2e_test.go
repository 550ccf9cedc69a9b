package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// server is a running mcpauth for end-to-end tests: `mcpauth serve` through
// run on a loopback port, on a fresh database, with a user who can sign in.
type server struct {
	*instance
	issuer   string
	env      map[string]string
	user     string
	password string
	metadata map[string]any
}

func startServer(t *testing.T) *server {
	t.Helper()
	addr := freeAddr(t)
	srv := &server{issuer: "http://" + addr, user: "alice"}
	srv.env = map[string]string{
		"MCPAUTH_ISSUER":       srv.issuer,
		"MCPAUTH_ADDR":         addr,
		"MCPAUTH_DATABASE_URL": storagetest.URL(t),
		"MCPAUTH_SECRET":       goodSecret,
		"MCPAUTH_LOG_LEVEL":    "warn",
	}
	srv.instance = startRun(t, []string{"serve"}, srv.env)
	srv.password = srv.addUser(t, srv.user)
	getJSON(t, srv.base+"/.well-known/oauth-authorization-server", &srv.metadata)
	return srv
}

// addUser creates a user with `mcpauth user add` and returns the password
// it printed.
func (srv *server) addUser(t *testing.T, name string, flags ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(t.Context(), append([]string{"user", "add", name}, flags...), envOf(srv.env), &out, &errOut); err != nil {
		t.Fatalf("user add: %v\n%s", err, errOut.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if pw, ok := strings.CutPrefix(line, "password: "); ok {
			return pw
		}
	}
	t.Fatalf("user add printed no password: %q", out.String())
	return ""
}

func (srv *server) endpoint(t *testing.T, name string) string {
	t.Helper()
	u, _ := srv.metadata[name].(string)
	if !strings.HasPrefix(u, srv.issuer+"/") {
		t.Fatalf("metadata %s = %q", name, u)
	}
	return u
}

// register registers a client by RFC 7591 and returns the response.
func (srv *server) register(t *testing.T, md map[string]any) map[string]any {
	t.Helper()
	body, _ := json.Marshal(md)
	resp, err := http.Post(srv.endpoint(t, "registration_endpoint"), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %s %v", resp.Status, out)
	}
	return out
}

// adminClient stores a confidential client as an administrator would and
// returns its id and secret.
func (srv *server) adminClient(t *testing.T) (id, secret string) {
	t.Helper()
	db, err := storage.Open(t.Context(), srv.env["MCPAUTH_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id, secret = "resource-server", oauth2.GenerateVerifier()
	hash := sha256.Sum256([]byte(secret))
	err = db.CreateClient(t.Context(), &storage.Client{
		ID:                      id,
		SecretHash:              hash[:],
		SecretHashAlg:           "sha256",
		TokenEndpointAuthMethod: storage.AuthMethodClientSecretBasic,
		GrantTypes:              []string{"client_credentials"},
		Scopes:                  []string{"mcp"},
		Audiences:               []string{srv.issuer + "/mcp"},
		Source:                  storage.SourceAdmin,
	})
	if err != nil {
		t.Fatal(err)
	}
	return id, secret
}

// postForm posts form to url, with HTTP Basic client credentials when id is set.
func postForm(t *testing.T, u string, form url.Values, id, secret string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// jwtClaims decodes the payload of a compact JWS without checking it (the
// authz tests check signatures; here the shape of the token matters).
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// TestEndToEnd is the whole life of a grant through the real router, as an
// MCP client and its user would live it: discovery → dynamic registration →
// authorize → sign-in and consent posted as a browser would → code → token
// (golang.org/x/oauth2 with PKCE and resource) → refresh → revoke →
// introspection says inactive.
func TestEndToEnd(t *testing.T) {
	srv := startServer(t)
	mcpURL := srv.issuer + "/mcp"
	callback := "http://127.0.0.1:" + strings.Split(freeAddr(t), ":")[1] + "/callback"

	pub := srv.register(t, map[string]any{
		"client_name":                "End-to-end client",
		"redirect_uris":              []string{callback},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      "mcp",
		"application_type":           "native",
	})
	clientID := pub["client_id"].(string)

	conf := &oauth2.Config{
		ClientID:    clientID,
		RedirectURL: callback,
		Scopes:      []string{"mcp"},
		Endpoint: oauth2.Endpoint{
			AuthURL:   srv.endpoint(t, "authorization_endpoint"),
			TokenURL:  srv.endpoint(t, "token_endpoint"),
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}
	verifier := oauth2.GenerateVerifier()
	state := "state-" + oauth2.GenerateVerifier()[:16]
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpURL))

	b := newBrowser(t)
	back := b.authorize(authURL, srv.user, srv.password)
	q := back.Query()
	if got := back.Scheme + "://" + back.Host + back.Path; got != callback {
		t.Fatalf("sent back to %s, want %s", got, callback)
	}
	if q.Get("error") != "" {
		t.Fatalf("authorization failed: %s: %s", q.Get("error"), q.Get("error_description"))
	}
	if q.Get("state") != state || q.Get("iss") != srv.issuer || q.Get("code") == "" {
		t.Fatalf("authorization response = %v", q)
	}

	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, http.DefaultClient)
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", mcpURL))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	claims := jwtClaims(t, tok.AccessToken)
	if claims["iss"] != srv.issuer || claims["client_id"] != clientID || claims["scope"] != "mcp" {
		t.Errorf("access token claims = %v", claims)
	}
	if aud, _ := json.Marshal(claims["aud"]); string(aud) != `"`+mcpURL+`"` && string(aud) != `["`+mcpURL+`"]` {
		t.Errorf("aud = %s, want %s", aud, mcpURL)
	}

	// The same consent is remembered: a second authorization skips the page.
	again := b.authorize(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), srv.user, srv.password)
	if again.Query().Get("code") == "" {
		t.Errorf("second authorization: %v", again.Query())
	}

	// Refresh rotates the refresh token.
	tok.Expiry = time.Now().Add(-time.Minute)
	fresh, err := conf.TokenSource(ctx, tok).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if fresh.AccessToken == tok.AccessToken || fresh.RefreshToken == "" || fresh.RefreshToken == tok.RefreshToken {
		t.Fatal("refresh did not issue a new access token and a new refresh token")
	}

	// A resource server that an administrator set up may introspect any
	// token (a registered client only its own: RFC 7662 §4).
	rsID, rsSecret := srv.adminClient(t)
	introspect := func(token string) map[string]any {
		status, out := postForm(t, srv.endpoint(t, "introspection_endpoint"), url.Values{"token": {token}}, rsID, rsSecret)
		if status != http.StatusOK {
			t.Fatalf("introspect: %d %v", status, out)
		}
		return out
	}
	if got := introspect(fresh.AccessToken); got["active"] != true || got["client_id"] != clientID {
		t.Fatalf("introspection of a live token = %v", got)
	}

	// Revoking the refresh token revokes the whole grant.
	status, out := postForm(t, srv.endpoint(t, "revocation_endpoint"), url.Values{"token": {fresh.RefreshToken}, "client_id": {clientID}}, "", "")
	if status != http.StatusOK {
		t.Fatalf("revoke: %d %v", status, out)
	}
	if got := introspect(fresh.AccessToken); got["active"] != false {
		t.Errorf("introspection after revocation = %v", got)
	}
	if got := introspect(fresh.RefreshToken); got["active"] != false {
		t.Errorf("introspection of the revoked refresh token = %v", got)
	}
	if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: fresh.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token(); err == nil {
		t.Error("a revoked refresh token still works")
	}
}
