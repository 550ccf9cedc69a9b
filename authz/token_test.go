package authz

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"
	"github.com/ulule/limiter/v3"
	"golang.org/x/oauth2"

	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

const (
	tokRedirect = "http://127.0.0.1:9999/callback"
	// tokVerifier is a PKCE code verifier (RFC 7636 §4.1: 43 to 128 characters).
	tokVerifier = "tok-verifier-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFG"
	tokState    = "state-12345678"
)

// tokEnv is a test server with a user and helpers for the token endpoints.
type tokEnv struct {
	t    *testing.T
	s    *Server
	hs   *httptest.Server
	user *storage.User
}

func newTokEnv(t *testing.T, mod func(*Config)) *tokEnv {
	t.Helper()
	s, hs := testServer(t, false, mod)
	u := &storage.User{Username: "alice", PasswordHash: "$argon2id$unused"}
	if err := s.db.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	return &tokEnv{t: t, s: s, hs: hs, user: u}
}

// tokClient is a client to create: confidential ones authenticate with HTTP
// Basic and the returned secret.
type tokClient struct {
	id           string
	confidential bool
	grants       []string
	scopes       []string
	source       string
	redirects    []string
}

func (e *tokEnv) client(c tokClient) (secret string) {
	e.t.Helper()
	if c.grants == nil {
		c.grants = []string{"authorization_code", "refresh_token"}
	}
	if c.scopes == nil {
		c.scopes = []string{"mcp"}
	}
	if c.source == "" {
		c.source = storage.SourceDCR
	}
	if c.redirects == nil {
		c.redirects = []string{tokRedirect}
	}
	sc := &storage.Client{
		ID: c.id, TokenEndpointAuthMethod: storage.AuthMethodNone, Source: c.source,
		RedirectURIs: c.redirects, GrantTypes: c.grants, ResponseTypes: []string{"code"}, Scopes: c.scopes,
	}
	if c.confidential {
		secret = "secret-of-" + c.id
		h, _ := clientSecretHasher{}.Hash(e.t.Context(), []byte(secret))
		sc.SecretHash, sc.SecretHashAlg, sc.TokenEndpointAuthMethod = h, clientSecretHashAlg, storage.AuthMethodClientSecretBasic
	}
	if err := e.s.db.CreateClient(e.t.Context(), sc); err != nil {
		e.t.Fatalf("CreateClient: %v", err)
	}
	return secret
}

// authorize mints an authorization code for e.user as /authorize would after
// consent: PKCE S256 with tokVerifier, scopes granted, audience the MCP
// resource. extra adds or replaces request parameters.
func (e *tokEnv) authorize(clientID string, scopes []string, extra url.Values) string {
	e.t.Helper()
	code, err := e.tryAuthorize(clientID, scopes, extra)
	if err != nil {
		e.t.Fatalf("authorize: %s", tokDescribe(err))
	}
	return code
}

func (e *tokEnv) tryAuthorize(clientID string, scopes []string, extra url.Values) (string, error) {
	ctx := e.t.Context()
	sum := sha256.Sum256([]byte(tokVerifier))
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {tokRedirect},
		"scope":                 {strings.Join(scopes, " ")},
		"state":                 {tokState},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
		"audience":              {e.s.cfg.MCPResource},
	}
	for k, v := range extra {
		if v == nil {
			delete(q, k)
		} else {
			q[k] = v
		}
	}
	ctx = withRedirectURI(ctx, q.Get("redirect_uri"))
	r := httptest.NewRequest(http.MethodGet, "/authorize?"+q.Encode(), nil).WithContext(ctx)
	ar, err := e.s.oauth.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		return "", err
	}
	for _, sc := range scopes {
		ar.GrantScope(sc)
	}
	for _, a := range ar.GetRequestedAudience() {
		ar.GrantAudience(a)
	}
	resp, err := e.s.oauth.provider.NewAuthorizeResponse(ctx, ar, e.s.newSession(e.user, clientID, time.Now()))
	if err != nil {
		return "", err
	}
	return resp.GetCode(), nil
}

func tokDescribe(err error) string {
	fe := fosite.ErrorToRFC6749Error(err)
	return fe.ErrorField + ": " + fe.WithExposeDebug(true).GetDescription()
}

// tokResponse is a decoded response of the token endpoints.
type tokResponse struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r tokResponse) str(k string) string { s, _ := r.body[k].(string); return s }

// post sends form to path, with HTTP Basic credentials when user is set.
func (e *tokEnv) post(path string, form url.Values, user, pass string) tokResponse {
	e.t.Helper()
	return e.do(path, "application/x-www-form-urlencoded", form.Encode(), func(r *http.Request) {
		if user != "" {
			r.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
		}
	})
}

func (e *tokEnv) do(path, contentType, body string, mod func(*http.Request)) tokResponse {
	e.t.Helper()
	r, err := http.NewRequestWithContext(e.t.Context(), http.MethodPost, e.hs.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if mod != nil {
		mod(r)
	}
	resp, err := e.hs.Client().Do(r)
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := tokResponse{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out.body); err != nil {
			e.t.Fatalf("POST %s: %d, body not JSON: %q", path, resp.StatusCode, b)
		}
	}
	return out
}

// exchange redeems code with tokVerifier (or verifier, when not empty).
func (e *tokEnv) exchange(clientID, secret, code string, extra url.Values) tokResponse {
	e.t.Helper()
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {tokRedirect},
		"code_verifier": {tokVerifier},
	}
	for k, v := range extra {
		if v == nil {
			delete(form, k)
		} else {
			form[k] = v
		}
	}
	if secret == "" {
		form.Set("client_id", clientID)
		return e.post("/token", form, "", "")
	}
	return e.post("/token", form, clientID, secret)
}

func (e *tokEnv) refresh(clientID, secret, rt string, extra url.Values) tokResponse {
	e.t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	for k, v := range extra {
		form[k] = v
	}
	if secret == "" {
		form.Set("client_id", clientID)
		return e.post("/token", form, "", "")
	}
	return e.post("/token", form, clientID, secret)
}

// active asks /introspect, as the confidential client id, whether tok is active.
func (e *tokEnv) active(id, secret, tok string) bool {
	e.t.Helper()
	r := e.post("/introspect", url.Values{"token": {tok}}, id, secret)
	if r.status != http.StatusOK {
		e.t.Fatalf("introspect: %d %s", r.status, r.raw)
	}
	return r.body["active"] == true
}

// wantError checks an OAuth error response.
func wantError(t *testing.T, r tokResponse, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("got %d %s, want %d with error %q", r.status, r.raw, status, code)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want JSON", ct)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
}

// tokJWT splits a compact JWS into its decoded header and the payload as
// verified by the key set.
func (e *tokEnv) jwt(tok, typ string) (header, claims map[string]any) {
	e.t.Helper()
	payload, err := e.s.keys.Verify(tok, typ)
	if err != nil {
		e.t.Fatalf("Verify(%s): %v", typ, err)
	}
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		e.t.Fatal(err)
	}
	if err := json.Unmarshal(h, &header); err != nil {
		e.t.Fatal(err)
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		e.t.Fatal(err)
	}
	return header, claims
}

// TestTokenCodeExchange runs the code + PKCE exchange with golang.org/x/oauth2
// and checks the RFC 9068 access token.
func TestTokenCodeExchange(t *testing.T) {
	e := newTokEnv(t, nil)
	e.client(tokClient{id: "public-app"})
	code := e.authorize("public-app", []string{"mcp"}, nil)

	cfg := &oauth2.Config{
		ClientID:    "public-app",
		Endpoint:    oauth2.Endpoint{TokenURL: e.hs.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: tokRedirect,
	}
	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, e.hs.Client())
	before := time.Now().Add(-time.Second).Unix()
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(tokVerifier), oauth2.SetAuthURLParam("resource", e.s.cfg.MCPResource))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if tok.RefreshToken == "" || !strings.EqualFold(tok.TokenType, "bearer") {
		t.Fatalf("token = type %q, refresh token %t; want bearer with a refresh token", tok.TokenType, tok.RefreshToken != "")
	}
	if got := tok.Extra("scope"); got != "mcp" {
		t.Errorf("scope = %v, want mcp", got)
	}
	if tok.Extra("id_token") != nil {
		t.Errorf("id_token issued without openid")
	}

	header, claims := e.jwt(tok.AccessToken, "at+jwt")
	if header["typ"] != "at+jwt" || header["alg"] != "ES256" || header["kid"] == nil || header["kid"] == "" {
		t.Errorf("header = %v, want typ at+jwt, alg ES256 and a kid", header)
	}
	want := map[string]any{
		"iss": e.s.cfg.Issuer, "sub": e.user.ID, "aud": []any{e.s.cfg.MCPResource},
		"client_id": "public-app", "scope": "mcp",
	}
	for k, v := range want {
		if !cmp.Equal(claims[k], v) {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}
	iat, _ := claims["iat"].(float64)
	exp, _ := claims["exp"].(float64)
	if int64(iat) < before || int64(exp)-int64(iat) < 590 || int64(exp)-int64(iat) > 610 {
		t.Errorf("iat %v, exp %v: want now and now + 10 min", iat, exp)
	}
	if jti, _ := claims["jti"].(string); jti == "" {
		t.Errorf("no jti")
	}
	// An access token is no id_token, and the other way round (RFC 8725 §3.11).
	if _, err := e.s.keys.Verify(tok.AccessToken, "JWT"); err == nil {
		t.Errorf("access token verified as typ JWT")
	}

	// The code is single-use; its reuse revokes what it issued.
	r := e.exchange("public-app", "", code, nil)
	wantError(t, r, http.StatusBadRequest, "invalid_grant")
	_, _, err = e.s.oauth.provider.IntrospectToken(t.Context(), tok.AccessToken, fosite.AccessToken, &grantSession{})
	if err == nil {
		t.Errorf("access token still active after the code was reused")
	}
	wantError(t, e.refresh("public-app", "", tok.RefreshToken, nil), http.StatusBadRequest, "invalid_grant")
}

// TestTokenCodeMismatch: a code is redeemed only by its client, with its
// redirect URI (RFC 6749 §4.1.3), and a failed attempt burns nothing.
func TestTokenCodeMismatch(t *testing.T) {
	e := newTokEnv(t, nil)
	e.client(tokClient{id: "app"})
	e.client(tokClient{id: "thief"})
	code := e.authorize("app", []string{"mcp"}, nil)
	wantError(t, e.exchange("thief", "", code, nil), http.StatusBadRequest, "invalid_grant")
	wantError(t, e.exchange("app", "", code, url.Values{"redirect_uri": {"http://127.0.0.1:9999/other"}}), http.StatusBadRequest, "invalid_grant")
	wantError(t, e.exchange("app", "", code, url.Values{"resource": {"https://elsewhere.example/mcp"}}), http.StatusBadRequest, "invalid_target")
	if r := e.exchange("app", "", code, url.Values{"resource": {e.s.cfg.MCPResource}}); r.status != http.StatusOK {
		t.Errorf("the rightful exchange after failed ones: %d %s", r.status, r.raw)
	}
}

// TestTokenLoopbackAnyPort: withRedirectURI lets fosite accept a localhost
// redirect URI on another port than the registered one (RFC 8252 §7.3),
// which fosite alone refuses.
func TestTokenLoopbackAnyPort(t *testing.T) {
	e := newTokEnv(t, nil)
	e.client(tokClient{id: "native", redirects: []string{"http://localhost:4444/cb"}})
	other := url.Values{"redirect_uri": {"http://localhost:5555/cb"}}
	code := e.authorize("native", []string{"mcp"}, other)
	r := e.exchange("native", "", code, url.Values{"redirect_uri": {"http://localhost:5555/cb"}})
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.status, r.raw)
	}

	// Without the view, fosite refuses the other port.
	q := url.Values{
		"response_type": {"code"}, "client_id": {"native"}, "redirect_uri": {"http://localhost:5555/cb"},
		"scope": {"mcp"}, "state": {tokState}, "code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"},
	}
	req := httptest.NewRequest(http.MethodGet, "/authorize?"+q.Encode(), nil).WithContext(t.Context())
	if _, err := e.s.oauth.provider.NewAuthorizeRequest(t.Context(), req); err == nil {
		t.Errorf("fosite accepted an unregistered redirect URI without withRedirectURI")
	}
}

// TestTokenPKCE: PKCE S256 is required of every client, plain is refused,
// and a wrong verifier followed by none does not get a token
// (fosite-notes §4).
func TestTokenPKCE(t *testing.T) {
	e := newTokEnv(t, nil)
	e.client(tokClient{id: "app"})

	for _, tc := range []struct {
		name  string
		extra url.Values
	}{
		{"no challenge", url.Values{"code_challenge": nil, "code_challenge_method": nil}},
		{"no method", url.Values{"code_challenge_method": nil}},
		{"plain", url.Values{"code_challenge": {tokVerifier}, "code_challenge_method": {"plain"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.tryAuthorize("app", []string{"mcp"}, tc.extra); err == nil {
				t.Fatalf("authorization request accepted")
			}
		})
	}

	t.Run("wrong then none", func(t *testing.T) {
		code := e.authorize("app", []string{"mcp"}, nil)
		wrong := strings.Repeat("x", 43)
		wantError(t, e.exchange("app", "", code, url.Values{"code_verifier": {wrong}}), http.StatusBadRequest, "invalid_grant")
		wantError(t, e.exchange("app", "", code, url.Values{"code_verifier": nil}), http.StatusBadRequest, "invalid_grant")
		wantError(t, e.exchange("app", "", code, url.Values{"code_verifier": {"short"}}), http.StatusBadRequest, "invalid_grant")
	})
}

// TestTokenCodeConcurrent: of 20 parallel exchanges of one code exactly
// one succeeds, and its tokens are revoked by the others (RFC 6749 §4.1.2).
func TestTokenCodeConcurrent(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "web", confidential: true})
	code := e.authorize("web", []string{"mcp"}, nil)

	const n = 20
	results := make([]tokResponse, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			results[i] = e.exchange("web", secret, code, nil)
		})
	}
	close(start)
	wg.Wait()

	var ok []tokResponse
	for _, r := range results {
		switch {
		case r.status == http.StatusOK:
			ok = append(ok, r)
		case r.status == http.StatusBadRequest && r.str("error") == "invalid_grant":
		default:
			t.Errorf("exchange: %d %s, want 200 or invalid_grant", r.status, r.raw)
		}
	}
	if len(ok) != 1 {
		t.Fatalf("%d exchanges succeeded, want exactly 1", len(ok))
	}
	if e.active("web", secret, ok[0].str("access_token")) {
		t.Errorf("the winner's access token is still active")
	}
	if e.active("web", secret, ok[0].str("refresh_token")) {
		t.Errorf("the winner's refresh token is still active")
	}
}

// TestTokenRefresh: refresh tokens rotate on every use; a rotated one used
// again (other than the immediately previous one within its grace window)
// revokes the whole grant (OAuth 2.1 §4.3.1).
func TestTokenRefresh(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "web", confidential: true})
	first := e.exchange("web", secret, e.authorize("web", []string{"mcp"}, nil), nil)
	if first.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", first.status, first.raw)
	}
	_, firstClaims := e.jwt(first.str("access_token"), "at+jwt")

	time.Sleep(1100 * time.Millisecond) // so the new token's iat differs
	second := e.refresh("web", secret, first.str("refresh_token"), url.Values{"resource": {e.s.cfg.MCPResource}})
	if second.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", second.status, second.raw)
	}
	if second.str("refresh_token") == "" || second.str("refresh_token") == first.str("refresh_token") {
		t.Fatalf("refresh token not rotated")
	}
	_, claims := e.jwt(second.str("access_token"), "at+jwt")
	if claims["iat"] == firstClaims["iat"] || claims["jti"] == firstClaims["jti"] {
		t.Errorf("refreshed token has the first token's iat or jti: %v", claims)
	}
	if claims["sub"] != e.user.ID || claims["scope"] != "mcp" || claims["client_id"] != "web" {
		t.Errorf("refreshed claims = %v", claims)
	}
	// The first access token is a JWT that /mcp accepts until it expires:
	// introspection says so too, rather than pretend it is gone.
	if !e.active("web", secret, first.str("access_token")) {
		t.Errorf("the first access token is reported inactive although it has not expired")
	}
	third := e.refresh("web", secret, second.str("refresh_token"), nil)
	if third.status != http.StatusOK {
		t.Fatalf("second refresh: %d %s", third.status, third.raw)
	}
	if !e.active("web", secret, third.str("access_token")) {
		t.Fatalf("the new access token is not active")
	}

	// Reuse of a rotated refresh token that is not the previous one:
	// invalid_grant, and the grant is gone.
	wantError(t, e.refresh("web", secret, first.str("refresh_token"), nil), http.StatusBadRequest, "invalid_grant")
	if e.active("web", secret, third.str("access_token")) {
		t.Errorf("access token still active after refresh token reuse")
	}
	wantError(t, e.refresh("web", secret, third.str("refresh_token"), nil), http.StatusBadRequest, "invalid_grant")
	wantError(t, e.refresh("web", secret, second.str("refresh_token"), nil), http.StatusBadRequest, "invalid_grant")

	// Another client cannot use the refresh token.
	other := e.client(tokClient{id: "other", confidential: true})
	fourth := e.exchange("web", secret, e.authorize("web", []string{"mcp"}, nil), nil)
	wantError(t, e.refresh("other", other, fourth.str("refresh_token"), nil), http.StatusBadRequest, "invalid_grant")
}

// TestTokenRefreshGrace: a client that lost a refresh response may retry
// with the previous refresh token for a few seconds; the token it lost then
// counts as reused. After the window the retry is reuse.
func TestTokenRefreshGrace(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "web", confidential: true})
	grant := func() tokResponse {
		t.Helper()
		r := e.exchange("web", secret, e.authorize("web", []string{"mcp"}, nil), nil)
		if r.status != http.StatusOK {
			t.Fatalf("exchange: %d %s", r.status, r.raw)
		}
		return r
	}

	first := grant()
	lost := e.refresh("web", secret, first.str("refresh_token"), nil)
	if lost.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", lost.status, lost.raw)
	}
	retry := e.refresh("web", secret, first.str("refresh_token"), nil)
	if retry.status != http.StatusOK {
		t.Fatalf("retry within the grace window: %d %s", retry.status, retry.raw)
	}
	if !e.active("web", secret, retry.str("access_token")) {
		t.Errorf("after the retry: the retry's access token is not active")
	}
	// The lost refresh token is dead, and presenting it is reuse.
	wantError(t, e.refresh("web", secret, lost.str("refresh_token"), nil), http.StatusBadRequest, "invalid_grant")
	if e.active("web", secret, retry.str("refresh_token")) {
		t.Errorf("grant not revoked after the lost refresh token was presented")
	}

	// After the window, the previous token is reuse.
	first = grant()
	next := e.refresh("web", secret, first.str("refresh_token"), nil)
	if _, err := e.s.db.Pool().Exec(t.Context(),
		`UPDATE oauth_refresh_tokens SET used_at = used_at - interval '1 minute' WHERE used_at IS NOT NULL`); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.refresh("web", secret, first.str("refresh_token"), nil), http.StatusBadRequest, "invalid_grant")
	if e.active("web", secret, next.str("refresh_token")) {
		t.Errorf("grant not revoked after a retry past the window")
	}
}

// TestTokenRefreshConcurrent: parallel refreshes with one refresh token
// (tabs of one client) never fail with a server error and leave exactly one
// live refresh token.
func TestTokenRefreshConcurrent(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "web", confidential: true})
	g := e.exchange("web", secret, e.authorize("web", []string{"mcp"}, nil), nil)
	const n = 10
	results := make([]tokResponse, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			results[i] = e.refresh("web", secret, g.str("refresh_token"), nil)
		})
	}
	close(start)
	wg.Wait()
	live := 0
	for _, r := range results {
		switch {
		case r.status == http.StatusOK:
			if e.active("web", secret, r.str("refresh_token")) {
				live++
			}
		case r.status == http.StatusBadRequest && (r.str("error") == "invalid_request" || r.str("error") == "invalid_grant"):
		default:
			t.Errorf("refresh: %d %s", r.status, r.raw)
		}
	}
	if live != 1 {
		t.Errorf("%d live refresh tokens after parallel refreshes, want 1", live)
	}
}

// TestTokenRefreshResource: a resource on refresh must be part of the
// grant's audience (RFC 8707 §2.2: narrow, never widen).
func TestTokenRefreshResource(t *testing.T) {
	e := newTokEnv(t, nil)
	e.client(tokClient{id: "app"})
	// A grant without any audience (as no code from /authorize is).
	code := e.authorize("app", []string{"mcp"}, url.Values{"audience": nil})
	r := e.exchange("app", "", code, nil)
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.status, r.raw)
	}
	wantError(t, e.refresh("app", "", r.str("refresh_token"), url.Values{"resource": {e.s.cfg.MCPResource}}), http.StatusBadRequest, "invalid_target")
	wantError(t, e.refresh("app", "", r.str("refresh_token"), url.Values{"resource": {"https://elsewhere.example/mcp"}}), http.StatusBadRequest, "invalid_target")
	if r := e.refresh("app", "", r.str("refresh_token"), nil); r.status != http.StatusOK {
		t.Errorf("refresh without resource: %d %s", r.status, r.raw)
	}
}

// TestTokenClientCredentials: confidential clients only, scopes within
// what they registered, admin scopes only for administrators' clients.
func TestTokenClientCredentials(t *testing.T) {
	e := newTokEnv(t, nil)
	cc := []string{"client_credentials"}
	secret := e.client(tokClient{id: "svc", confidential: true, grants: cc})
	adminSecret := e.client(tokClient{id: "admin-svc", confidential: true, grants: cc, scopes: []string{"mcp", "admin"}, source: storage.SourceAdmin})
	dcrAdmin := e.client(tokClient{id: "dcr-admin", confidential: true, grants: cc, scopes: []string{"mcp", "admin"}})
	e.client(tokClient{id: "public", grants: cc})
	codeOnly := e.client(tokClient{id: "code-only", confidential: true})

	form := func(extra ...string) url.Values {
		f := url.Values{"grant_type": {"client_credentials"}}
		for i := 0; i+1 < len(extra); i += 2 {
			f.Set(extra[i], extra[i+1])
		}
		return f
	}

	r := e.post("/token", form(), "svc", secret)
	if r.status != http.StatusOK {
		t.Fatalf("client_credentials: %d %s", r.status, r.raw)
	}
	if r.str("refresh_token") != "" {
		t.Errorf("client_credentials issued a refresh token")
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
		t.Errorf("Cache-Control %q, Pragma %q; want no-store, no-cache (RFC 6749 §5.1)", r.header.Get("Cache-Control"), r.header.Get("Pragma"))
	}
	_, claims := e.jwt(r.str("access_token"), "at+jwt")
	want := map[string]any{"sub": "svc", "client_id": "svc", "scope": "mcp", "aud": []any{e.s.cfg.MCPResource}, "iss": e.s.cfg.Issuer}
	for k, v := range want {
		if !cmp.Equal(claims[k], v) {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}
	if !e.active("svc", secret, r.str("access_token")) {
		t.Errorf("client_credentials token not active")
	}

	for _, tc := range []struct {
		name   string
		id     string
		secret string
		form   url.Values
		status int
		code   string
	}{
		{"admin client gets admin", "admin-svc", adminSecret, form("scope", "mcp admin"), 200, ""},
		{"resource", "svc", secret, form("resource", e.s.cfg.MCPResource+"/"), 200, ""},
		{"dcr client denied admin", "dcr-admin", dcrAdmin, form("scope", "admin"), 400, "invalid_scope"},
		{"unregistered scope", "svc", secret, form("scope", "profile"), 400, "invalid_scope"},
		{"openid", "admin-svc", adminSecret, form("scope", "openid"), 400, "invalid_scope"},
		{"unknown scope", "svc", secret, form("scope", "nope"), 400, "invalid_scope"},
		{"unknown resource", "svc", secret, form("resource", "https://elsewhere.example/mcp"), 400, "invalid_target"},
		{"bad resource", "svc", secret, form("resource", "not a uri#frag"), 400, "invalid_target"},
		{"wrong secret", "svc", "wrong", form(), 401, "invalid_client"},
		{"unknown client", "nobody", "x", form(), 401, "invalid_client"},
		{"public client", "public", "", form("client_id", "public"), 400, "invalid_grant"},
		{"grant not registered", "code-only", codeOnly, form(), 400, "unauthorized_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post("/token", tc.form, tc.id, tc.secret)
			if tc.secret == "" {
				r = e.post("/token", tc.form, "", "")
			}
			if tc.status == 200 {
				if r.status != 200 {
					t.Fatalf("got %d %s, want 200", r.status, r.raw)
				}
				return
			}
			wantError(t, r, tc.status, tc.code)
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("WWW-Authenticate = %q, want Basic", r.header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestTokenBadRequests: malformed, oversized and unsupported requests get
// the OAuth error JSON, never a 500, on every endpoint of this file.
func TestTokenBadRequests(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "web", confidential: true, grants: []string{"authorization_code", "refresh_token", "client_credentials"}})
	const form = "application/x-www-form-urlencoded"
	big := "token=" + strings.Repeat("a", maxFormBytes+1)
	basic := func(r *http.Request) { r.SetBasicAuth("web", secret) }

	for _, path := range []string{"/token", "/revoke", "/introspect"} {
		for _, tc := range []struct {
			name        string
			contentType string
			body        string
			status      int
			code        string
		}{
			{"oversized", form, big, 413, "invalid_request"},
			{"bad percent encoding", form, "grant_type=%zz&token=%zz", 400, "invalid_request"},
			{"json body", "application/json", `{"grant_type":"client_credentials"}`, 400, "invalid_request"},
			{"no content type", "", "grant_type=client_credentials", 400, "invalid_request"},
			{"empty", form, "", 400, "invalid_request"},
			{"repeated", form, "grant_type=client_credentials&grant_type=client_credentials&token=a&token=b", 400, "invalid_request"},
		} {
			t.Run(path+" "+tc.name, func(t *testing.T) {
				wantError(t, e.do(path, tc.contentType, tc.body, basic), tc.status, tc.code)
			})
		}
	}

	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"unknown grant", "grant_type=password&username=a&password=b", 400, "unsupported_grant_type"},
		{"implicit", "grant_type=implicit", 400, "unsupported_grant_type"},
		{"no grant", "scope=mcp", 400, "invalid_request"},
		{"garbage code", "grant_type=authorization_code&code=garbage&code_verifier=" + tokVerifier + "&redirect_uri=" + url.QueryEscape(tokRedirect), 400, "invalid_grant"},
		{"well-formed unknown code", "grant_type=authorization_code&code=ory_ac_AAAA.BBBB&code_verifier=" + tokVerifier, 400, "invalid_grant"},
		{"no code", "grant_type=authorization_code", 400, "invalid_grant"},
		{"garbage refresh", "grant_type=refresh_token&refresh_token=ory_rt_xx.yy", 400, "invalid_grant"},
		{"no refresh token", "grant_type=refresh_token", 400, "invalid_grant"},
		{"audience smuggled", "grant_type=client_credentials&audience=https://elsewhere.example", 200, ""},
	} {
		t.Run("token "+tc.name, func(t *testing.T) {
			r := e.do("/token", form, tc.body, basic)
			if tc.status == 200 {
				if r.status != 200 {
					t.Fatalf("got %d %s", r.status, r.raw)
				}
				_, claims := e.jwt(r.str("access_token"), "at+jwt")
				if !cmp.Equal(claims["aud"], []any{e.s.cfg.MCPResource}) {
					t.Errorf("aud = %v: the audience parameter reached fosite", claims["aud"])
				}
				return
			}
			wantError(t, r, tc.status, tc.code)
		})
	}

	t.Run("no client", func(t *testing.T) {
		r := e.post("/token", url.Values{"grant_type": {"client_credentials"}}, "", "")
		wantError(t, r, http.StatusUnauthorized, "invalid_client")
	})
	t.Run("GET token", func(t *testing.T) {
		resp, err := e.hs.Client().Get(e.hs.URL + "/token")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET /token: %d, want 405", resp.StatusCode)
		}
	})
	t.Run("CORS preflight", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodOptions, e.hs.URL+"/token", nil)
		req.Header.Set("Origin", "https://inspector.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := e.hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("preflight: %d, Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	})
}

// TestTokenRateLimit: the token endpoint answers 429 with Retry-After once
// a client's budget is spent, and other clients are not affected.
func TestTokenRateLimit(t *testing.T) {
	e := newTokEnv(t, func(c *Config) { c.RateLimits.Token = limiter.Rate{Period: time.Minute, Limit: 2} })
	secret := e.client(tokClient{id: "svc", confidential: true, grants: []string{"client_credentials"}})
	other := e.client(tokClient{id: "other", confidential: true, grants: []string{"client_credentials"}})
	form := url.Values{"grant_type": {"client_credentials"}}
	for range 2 {
		if r := e.post("/token", form, "svc", secret); r.status != 200 {
			t.Fatalf("within budget: %d %s", r.status, r.raw)
		}
	}
	r := e.post("/token", form, "svc", secret)
	wantError(t, r, http.StatusTooManyRequests, "temporarily_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("no Retry-After")
	}
	if r := e.post("/token", form, "other", other); r.status != 200 {
		t.Errorf("another client: %d %s", r.status, r.raw)
	}
}

// TestIDToken: openid in the grant gives an id_token for the client, with
// the nonce of the authorization request.
func TestIDToken(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "rp", confidential: true})
	const nonce = "nonce-0123456789"
	before := time.Now().Add(-time.Second).Unix()
	code := e.authorize("rp", []string{"openid", "profile", "mcp"}, url.Values{"nonce": {nonce}})
	r := e.exchange("rp", secret, code, nil)
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.status, r.raw)
	}
	idt := r.str("id_token")
	if idt == "" {
		t.Fatalf("no id_token in %s", r.raw)
	}
	header, claims := e.jwt(idt, "JWT")
	if header["kid"] == nil || header["typ"] != "JWT" {
		t.Errorf("id_token header = %v", header)
	}
	for k, v := range map[string]any{"iss": e.s.cfg.Issuer, "sub": e.user.ID, "aud": []any{"rp"}, "nonce": nonce} {
		if !cmp.Equal(claims[k], v) {
			t.Errorf("id_token %s = %v, want %v", k, claims[k], v)
		}
	}
	authTime, _ := claims["auth_time"].(float64)
	exp, _ := claims["exp"].(float64)
	if int64(authTime) < before || int64(exp) <= time.Now().Unix() {
		t.Errorf("auth_time %v, exp %v", authTime, exp)
	}
	// at_hash (OIDC Core §3.1.3.6): left half of SHA-256 of the access token.
	sum := sha256.Sum256([]byte(r.str("access_token")))
	if claims["at_hash"] != base64.RawURLEncoding.EncodeToString(sum[:16]) {
		t.Errorf("at_hash = %v", claims["at_hash"])
	}
	if _, err := e.s.keys.Verify(idt, "at+jwt"); err == nil {
		t.Errorf("id_token accepted as an access token")
	}

	// The OIDC parameters are gone once the id_token was issued.
	sig := e.s.oauth.codeSignature(t.Context(), code)
	if _, err := e.s.db.GetOIDCSession(t.Context(), sig, &grantSession{}); err == nil {
		t.Errorf("OIDC session still stored after the id_token was issued")
	}

	// Without a nonce there is none in the id_token; a refresh issues none.
	r = e.exchange("rp", secret, e.authorize("rp", []string{"openid"}, nil), nil)
	if _, claims := e.jwt(r.str("id_token"), "JWT"); claims["nonce"] != nil {
		t.Errorf("nonce %v without one requested", claims["nonce"])
	}
	if rr := e.refresh("rp", secret, r.str("refresh_token"), nil); rr.status != 200 || rr.str("id_token") != "" {
		t.Errorf("refresh: %d, id_token %t", rr.status, rr.str("id_token") != "")
	}
}

// TestJWTSigner: Decode refuses what is not ours and reports expiry the way
// fosite expects.
func TestJWTSigner(t *testing.T) {
	e := newTokEnv(t, nil)
	at := &jwtSigner{keys: e.s.keys, typ: typAccessToken}
	id := &jwtSigner{keys: e.s.keys, typ: typIDToken}
	ctx := t.Context()
	now := time.Now().Unix()

	tok, sig, err := at.Generate(ctx, map[string]any{"sub": "x", "iat": int64(1), "exp": now + 60}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(tok, "."+sig) {
		t.Errorf("signature %q is not the token's last segment", sig)
	}
	got, err := at.Decode(ctx, tok)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if iat, _ := got.Claims["iat"].(int64); iat < now {
		t.Errorf("iat = %v, want now (Generate sets it)", got.Claims["iat"])
	}
	if got.Header["typ"] != "at+jwt" || got.Header["kid"] == nil {
		t.Errorf("header = %v", got.Header)
	}
	if _, err := id.Decode(ctx, tok); err == nil {
		t.Errorf("access token decoded as an id_token")
	}
	tampered := tok[:len(tok)-4] + "AAAA"
	if _, err := at.Validate(ctx, tampered); err == nil {
		t.Errorf("tampered token validated")
	}

	old, _, err := id.Generate(ctx, map[string]any{"sub": "x", "exp": now - 60}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tokOld, err := id.Decode(ctx, old)
	var ve *jwt.ValidationError
	if !errors.As(err, &ve) || !ve.Has(jwt.ValidationErrorExpired) {
		t.Errorf("expired token error = %v, want ValidationErrorExpired", err)
	}
	if tokOld == nil || tokOld.Claims["sub"] != "x" {
		t.Errorf("expired token not returned with its error: %v", tokOld)
	}
}

// BenchmarkTokenClientCredentials measures the client_credentials grant
// through HTTP, the database and ES256 signing (DESIGN §7's first target).
func BenchmarkTokenClientCredentials(b *testing.B) {
	hs := httptest.NewUnstartedServer(nil)
	issuer := "http://" + hs.Listener.Addr().String()
	db := storagetest.New(b)
	secret := []byte("test secret: 0123456789abcdef0123456789abcdef")
	ks, err := keys.New(b.Context(), db, secret, keys.Options{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{
		Issuer: issuer, MCPResource: issuer + "/mcp", Secret: secret, Scopes: testScopes, DefaultScopes: []string{"mcp"},
		RateLimits: RateLimits{Token: limiter.Rate{Period: time.Second, Limit: 1 << 40}},
	}, db, ks, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	hs.Config.Handler = s.Routes()
	hs.Start()
	defer hs.Close()
	h, _ := clientSecretHasher{}.Hash(b.Context(), []byte("bench-secret"))
	if err := db.CreateClient(b.Context(), &storage.Client{
		ID: "bench", SecretHash: h, SecretHashAlg: clientSecretHashAlg, TokenEndpointAuthMethod: storage.AuthMethodClientSecretBasic,
		GrantTypes: []string{"client_credentials"}, Scopes: []string{"mcp"}, Source: storage.SourceAdmin,
	}); err != nil {
		b.Fatal(err)
	}
	body := url.Values{"grant_type": {"client_credentials"}, "scope": {"mcp"}}.Encode()
	client := hs.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 64

	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, hs.URL+"/token", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("bench", "bench-secret")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
