package authz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ulule/limiter/v3"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// regResponse is an HTTP response of the registration endpoints.
type regResponse struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any // nil unless the body is a JSON object
}

// regDo sends a request to the test server. An empty contentType sends none;
// an empty token sends no Authorization header.
func regDo(t *testing.T, hs *httptest.Server, method, path, token, contentType, body string) regResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, hs.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := regResponse{status: res.StatusCode, header: res.Header, raw: raw}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &out.body)
	}
	return out
}

// regInitialToken is the initial access token of the test servers that
// allow client_credentials clients (regWithInitialToken); regPost always
// presents it, and open registration ignores it.
const regInitialToken = "reg-initial-access-token-0123456789"

func regWithInitialToken(c *Config) { c.RegistrationToken = regInitialToken }

// regPost registers a client with the given JSON metadata.
func regPost(t *testing.T, hs *httptest.Server, body string) regResponse {
	t.Helper()
	return regDo(t, hs, http.MethodPost, "/register", regInitialToken, "application/json", body)
}

// regMustRegister registers a client and returns the response body.
func regMustRegister(t *testing.T, hs *httptest.Server, body string) map[string]any {
	t.Helper()
	r := regPost(t, hs, body)
	if r.status != http.StatusCreated {
		t.Fatalf("POST /register = %d %s, want 201", r.status, r.raw)
	}
	return r.body
}

// regString returns body[key] as a string, or fails.
func regString(t *testing.T, body map[string]any, key string) string {
	t.Helper()
	v, ok := body[key].(string)
	if !ok || v == "" {
		t.Fatalf("%s = %#v, want a non-empty string", key, body[key])
	}
	return v
}

// regCheckSDKShape checks a client information response the way the MCP
// TypeScript SDK parses it (OAuthClientInformationFullSchema; reference doc
// §D row 34): client_id a string, redirect_uris an array of URL strings,
// client_id_issued_at and client_secret_expires_at numbers, every optional
// field either absent or of its type, and no "" / null / [] anywhere except
// redirect_uris, which the SDK requires even when empty.
func regCheckSDKShape(t *testing.T, body map[string]any) {
	t.Helper()
	if body == nil {
		t.Fatal("response is not a JSON object")
	}
	for k, v := range body {
		switch v := v.(type) {
		case nil:
			t.Errorf("%s is null; leave absent fields out", k)
		case string:
			if v == "" {
				t.Errorf(`%s is ""; leave absent fields out`, k)
			}
		case []any:
			if len(v) == 0 && k != "redirect_uris" {
				t.Errorf("%s is []; leave absent fields out", k)
			}
			for _, e := range v {
				if s, ok := e.(string); !ok || s == "" {
					t.Errorf("%s has element %#v, want non-empty strings", k, e)
				}
			}
		case map[string]any:
			t.Errorf("%s is an object", k)
		}
	}
	if _, ok := body["client_id"].(string); !ok {
		t.Errorf("client_id = %#v, want a string", body["client_id"])
	}
	uris, ok := body["redirect_uris"].([]any)
	if !ok {
		t.Errorf("redirect_uris = %#v, want an array (required by the TypeScript SDK)", body["redirect_uris"])
	}
	for _, u := range uris {
		if pu, err := url.Parse(fmt.Sprint(u)); err != nil || pu.Scheme == "" {
			t.Errorf("redirect URI %v does not parse as an absolute URL", u)
		}
	}
	for _, k := range []string{"client_id_issued_at", "client_secret_expires_at"} {
		if v, present := body[k]; present {
			if _, ok := v.(float64); !ok {
				t.Errorf("%s = %#v, want a number", k, v)
			}
		}
	}
	if _, secret := body["client_secret"]; secret {
		if _, ok := body["client_secret_expires_at"]; !ok {
			t.Error("client_secret without client_secret_expires_at (RFC 7591 §3.2.1: REQUIRED)")
		}
	}
	for _, k := range []string{"scope", "token_endpoint_auth_method", "client_name", "client_uri", "logo_uri", "tos_uri",
		"policy_uri", "software_id", "software_version", "registration_access_token", "registration_client_uri"} {
		if v, present := body[k]; present {
			if _, ok := v.(string); !ok {
				t.Errorf("%s = %#v, want a string", k, v)
			}
		}
	}
}

// regCheckError checks an OAuth error response.
func regCheckError(t *testing.T, r regResponse, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status = %d, want %d (body %s)", r.status, status, r.raw)
	}
	if got := r.body["error"]; got != code {
		t.Errorf("error = %v, want %s (body %s)", got, code, r.raw)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	// RFC 6749 §5.2: error_description characters.
	if d, _ := r.body["error_description"].(string); d != "" {
		for _, c := range []byte(d) {
			if c < 0x20 || c == '"' || c == '\\' || c > 0x7e {
				t.Errorf("error_description %q has a character RFC 6749 §5.2 forbids: %q", d, c)
				break
			}
		}
	}
}

func TestRegisterPublicNativeClient(t *testing.T) {
	s, hs := testServer(t, false, nil)
	redirects := []string{"http://127.0.0.1/callback", "http://localhost:33418/cb", "http://[::1]/cb", "com.example.app:/oauth2redirect"}
	rb, _ := json.Marshal(redirects)
	r := regPost(t, hs, `{
		"redirect_uris": `+string(rb)+`,
		"application_type": "native",
		"token_endpoint_auth_method": "none",
		"grant_types": ["authorization_code", "refresh_token"],
		"response_types": ["code"],
		"client_name": "Test CLI ✓",
		"scope": "mcp admin unknown:scope"
	}`)
	if r.status != http.StatusCreated {
		t.Fatalf("status = %d %s, want 201", r.status, r.raw)
	}
	for k, want := range map[string]string{
		"Content-Type":                "application/json",
		"Cache-Control":               "no-store",
		"Access-Control-Allow-Origin": "*",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	regCheckSDKShape(t, r.body)
	id := regString(t, r.body, "client_id")
	if len(id) < 26 {
		t.Errorf("client_id %q is shorter than 128 bits of base32", id)
	}
	regToken := regString(t, r.body, "registration_access_token")
	want := map[string]any{
		"client_id":                  id,
		"client_id_issued_at":        r.body["client_id_issued_at"],
		"registration_access_token":  regToken,
		"registration_client_uri":    hs.URL + "/register/" + id,
		"redirect_uris":              []any{redirects[0], redirects[1], redirects[2], redirects[3]},
		"token_endpoint_auth_method": "none",
		"grant_types":                []any{"authorization_code", "refresh_token"},
		"response_types":             []any{"code"},
		"application_type":           "native",
		"client_name":                "Test CLI ✓",
		"scope":                      "mcp admin",
	}
	if diff := cmp.Diff(want, r.body); diff != "" {
		t.Errorf("response (-want +got):\n%s", diff)
	}
	issued, _ := r.body["client_id_issued_at"].(float64)
	if d := time.Since(time.Unix(int64(issued), 0)); d < -time.Minute || d > time.Minute {
		t.Errorf("client_id_issued_at = %v, want about now", issued)
	}

	c, err := s.db.Client(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != storage.SourceDCR || c.SecretHash != nil || !slices.Equal(c.Audiences, []string{s.cfg.MCPResource}) ||
		string(c.RegistrationTokenHash) != string(regTokenHash(regToken)) || !c.IsPublic() {
		t.Errorf("stored client = %+v", c)
	}
}

func TestRegisterConfidentialClient(t *testing.T) {
	s, hs := testServer(t, false, regWithInitialToken)
	body := regMustRegister(t, hs, `{
		"redirect_uris": ["https://app.example/callback"],
		"client_name": "Web App",
		"client_uri": "https://app.example",
		"logo_uri": "https://app.example/logo.png",
		"tos_uri": "https://app.example/tos",
		"policy_uri": "https://app.example/privacy",
		"contacts": ["ops@app.example", "ops@app.example", "security@app.example"],
		"software_id": "4f1c-app",
		"software_version": "2.1.0",
		"grant_types": ["authorization_code", "refresh_token", "client_credentials"]
	}`)
	regCheckSDKShape(t, body)
	// RFC 7591 §2: the default method is client_secret_basic.
	if got := body["token_endpoint_auth_method"]; got != "client_secret_basic" {
		t.Errorf("token_endpoint_auth_method = %v, want client_secret_basic", got)
	}
	secret := regString(t, body, "client_secret")
	if len(secret) != 43 {
		t.Errorf("client_secret has %d characters, want 43 (256 bits, base64url)", len(secret))
	}
	if got := body["client_secret_expires_at"]; got != float64(0) {
		t.Errorf("client_secret_expires_at = %v, want 0", got)
	}
	if got := body["contacts"]; !cmp.Equal(got, []any{"ops@app.example", "security@app.example"}) {
		t.Errorf("contacts = %v", got)
	}
	if got := body["scope"]; got != "mcp" {
		t.Errorf("scope = %v, want the default, mcp", got)
	}
	for k, want := range map[string]string{"client_uri": "https://app.example", "logo_uri": "https://app.example/logo.png",
		"tos_uri": "https://app.example/tos", "policy_uri": "https://app.example/privacy", "software_id": "4f1c-app",
		"software_version": "2.1.0", "application_type": "web", "client_name": "Web App"} {
		if body[k] != want {
			t.Errorf("%s = %v, want %s", k, body[k], want)
		}
	}

	c, err := s.db.Client(t.Context(), regString(t, body, "client_id"))
	if err != nil {
		t.Fatal(err)
	}
	// The secret is stored only as the hash fosite's hasher (provider.go) checks.
	if strings.Contains(string(c.SecretHash), secret) || c.SecretHashAlg != "sha256" {
		t.Errorf("stored secret hash %x (alg %q)", c.SecretHash, c.SecretHashAlg)
	}
	h := clientSecretHasher{}
	if err := h.Compare(t.Context(), c.GetHashedSecret(), []byte(secret)); err != nil {
		t.Errorf("the issued secret does not verify against the stored hash: %v", err)
	}
	if err := h.Compare(t.Context(), c.GetHashedSecret(), []byte(secret+"x")); err == nil {
		t.Error("a wrong secret verifies")
	}
	// A second registration gets a different id and secret.
	other := regMustRegister(t, hs, `{"redirect_uris": ["https://app.example/callback"]}`)
	if other["client_id"] == body["client_id"] || other["client_secret"] == secret {
		t.Error("two registrations share an id or a secret")
	}
}

func TestRegisterClientCredentialsOnly(t *testing.T) {
	_, hs := testServer(t, false, regWithInitialToken)
	body := regMustRegister(t, hs, `{"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "scope": "admin"}`)
	regCheckSDKShape(t, body)
	if got := body["redirect_uris"]; !cmp.Equal(got, []any{}) {
		t.Errorf("redirect_uris = %#v, want [] (the TypeScript SDK requires the field)", got)
	}
	if _, ok := body["response_types"]; ok {
		t.Errorf("response_types = %v for a client without the authorization_code grant", body["response_types"])
	}
	if body["scope"] != "admin" || body["token_endpoint_auth_method"] != "client_secret_post" {
		t.Errorf("body = %v", body)
	}
}

func TestRegisterIgnoresUnknownMetadata(t *testing.T) {
	_, hs := testServer(t, false, nil)
	body := regMustRegister(t, hs, `{
		"redirect_uris": ["http://127.0.0.1:9999/cb"],
		"token_endpoint_auth_method": "none",
		"client_name#ja-Jpan-JP": "クライアント名",
		"software_statement": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
		"id_token_signed_response_alg": "RS256",
		"extension": {"nested": [1, 2, {"x": null}]},
		"client_uri": null,
		"contacts": null,
		"client_id": "chosen-by-the-client",
		"client_secret": "chosen-by-the-client"
	}`)
	regCheckSDKShape(t, body)
	for _, k := range []string{"client_name#ja-Jpan-JP", "software_statement", "id_token_signed_response_alg", "extension",
		"client_uri", "contacts", "client_secret"} {
		if _, ok := body[k]; ok {
			t.Errorf("response has %s", k)
		}
	}
	if body["client_id"] == "chosen-by-the-client" {
		t.Error("the client chose its own client_id")
	}
}

func TestRegisterScopes(t *testing.T) {
	_, hs := testServer(t, false, nil)
	for _, tc := range []struct{ scope, want string }{
		{`"mcp admin"`, "mcp admin"},
		{`"admin  other:scope mcp admin"`, "admin mcp"}, // unsupported dropped, duplicates once
		{`"unknown"`, "mcp"},                            // nothing supported left: the default
		{`""`, "mcp"},
		{`null`, "mcp"},
		{`"offline_access openid"`, "offline_access openid"},
	} {
		t.Run(tc.scope, func(t *testing.T) {
			body := regMustRegister(t, hs, `{"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none", "scope": `+tc.scope+`}`)
			if body["scope"] != tc.want {
				t.Errorf("scope = %v, want %q", body["scope"], tc.want)
			}
		})
	}
}

func TestRegisterValidation(t *testing.T) {
	_, hs := testServer(t, false, nil)
	const ok = `"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none"`
	big := `{"redirect_uris": ["https://app.example/cb"], "client_name": "` + strings.Repeat("x", maxFormBytes) + `"}`
	for _, tc := range []struct {
		name        string
		contentType string
		body        string
		status      int
		code        string
		mention     string // the error description names it
	}{
		{"http non-loopback redirect", "", `{"redirect_uris": ["http://app.example/cb"]}`, 400, oauth.InvalidRedirectURI, "http://app.example/cb"},
		{"redirect with fragment", "", `{"redirect_uris": ["https://app.example/cb#frag"]}`, 400, oauth.InvalidRedirectURI, "fragment"},
		{"javascript redirect", "", `{"redirect_uris": ["javascript:alert(1)"], "application_type": "native"}`, 400, oauth.InvalidRedirectURI, "javascript"},
		{"data redirect", "", `{"redirect_uris": ["data:text/html,hi"], "application_type": "native"}`, 400, oauth.InvalidRedirectURI, "data"},
		{"private scheme for web", "", `{"redirect_uris": ["com.example.app:/cb"]}`, 400, oauth.InvalidRedirectURI, "com.example.app:/cb"},
		{"private scheme, no application_type", "", `{"redirect_uris": ["myapp://cb"], "application_type": "web"}`, 400, oauth.InvalidRedirectURI, "native"},
		{"relative redirect", "", `{"redirect_uris": ["/cb"]}`, 400, oauth.InvalidRedirectURI, "/cb"},
		{"empty redirect", "", `{"redirect_uris": [""]}`, 400, oauth.InvalidRedirectURI, "empty"},
		{"redirect with user info", "", `{"redirect_uris": ["https://user:pw@app.example/cb"]}`, 400, oauth.InvalidRedirectURI, "user"},
		{"no redirect_uris", "", `{"token_endpoint_auth_method": "none"}`, 400, oauth.InvalidRedirectURI, "redirect_uris"},
		{"empty redirect_uris", "", `{"redirect_uris": []}`, 400, oauth.InvalidRedirectURI, "redirect_uris"},
		{"too many redirect_uris", "", `{"redirect_uris": [` + strings.Repeat(`"https://a.example/cb",`, maxRedirectURIs) + `"https://a.example/cb"]}`, 400, oauth.InvalidRedirectURI, "redirect_uris"},
		{"auth method client_secret_jwt", "", `{` + ok + `, "token_endpoint_auth_method": "client_secret_jwt"}`, 400, oauth.InvalidClientMetadata, "client_secret_jwt"},
		{"auth method private_key_jwt", "", `{"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}`, 400, oauth.InvalidClientMetadata, "private_key_jwt"},
		{"jwks", "", `{` + ok + `, "jwks": {"keys": []}}`, 400, oauth.InvalidClientMetadata, "jwks"},
		{"jwks_uri", "", `{` + ok + `, "jwks_uri": "https://a.example/jwks.json"}`, 400, oauth.InvalidClientMetadata, "jwks_uri"},
		{"grant type password", "", `{` + ok + `, "grant_types": ["authorization_code", "password"]}`, 400, oauth.InvalidClientMetadata, "password"},
		{"grant type implicit", "", `{` + ok + `, "grant_types": ["implicit"]}`, 400, oauth.InvalidClientMetadata, "implicit"},
		{"refresh_token alone", "", `{` + ok + `, "grant_types": ["refresh_token"]}`, 400, oauth.InvalidClientMetadata, "refresh_token"},
		{"client_credentials with none", "", `{` + ok + `, "grant_types": ["client_credentials"]}`, 400, oauth.InvalidClientMetadata, "client_credentials"},
		{"response type token", "", `{` + ok + `, "response_types": ["token"]}`, 400, oauth.InvalidClientMetadata, "token"},
		{"response type code without the grant", "", `{"grant_types": ["client_credentials"], "response_types": ["code"]}`, 400, oauth.InvalidClientMetadata, "authorization_code"},
		{"client_credentials with open registration", "", `{"grant_types": ["client_credentials"], "response_types": []}`, 400, oauth.InvalidClientMetadata, "initial access token"},
		{"application_type desktop", "", `{` + ok + `, "application_type": "desktop"}`, 400, oauth.InvalidClientMetadata, "application_type"},
		{"bad scope character", "", `{` + ok + `, "scope": "mcp\\\\admin"}`, 400, oauth.InvalidClientMetadata, "scope"},
		{"client_uri http", "", `{` + ok + `, "client_uri": "http://app.example"}`, 400, oauth.InvalidClientMetadata, "client_uri"},
		{"logo_uri javascript", "", `{` + ok + `, "logo_uri": "javascript:alert(1)"}`, 400, oauth.InvalidClientMetadata, "logo_uri"},
		{"tos_uri relative", "", `{` + ok + `, "tos_uri": "/tos"}`, 400, oauth.InvalidClientMetadata, "tos_uri"},
		{"policy_uri with space", "", `{` + ok + `, "policy_uri": "https://a.example/p q"}`, 400, oauth.InvalidClientMetadata, "policy_uri"},
		{"client_name too long", "", `{` + ok + `, "client_name": "` + strings.Repeat("n", maxMetadataText+1) + `"}`, 400, oauth.InvalidClientMetadata, "client_name"},
		{"client_name with bidi override", "", `{` + ok + `, "client_name": "Good\u202eevil"}`, 400, oauth.InvalidClientMetadata, "client_name"},
		{"client_name with newline", "", `{` + ok + `, "client_name": "a\nb"}`, 400, oauth.InvalidClientMetadata, "client_name"},
		{"too many contacts", "", `{` + ok + `, "contacts": ["a","b","c","d","e","f","g","h","i","j","k"]}`, 400, oauth.InvalidClientMetadata, "contacts"},
		{"empty contact", "", `{` + ok + `, "contacts": [""]}`, 400, oauth.InvalidClientMetadata, "contacts"},
		{"redirect_uris a string", "", `{"redirect_uris": "https://a.example/cb"}`, 400, oauth.InvalidClientMetadata, "redirect_uris"},
		{"redirect URI a number", "", `{"redirect_uris": [42]}`, 400, oauth.InvalidClientMetadata, "redirect_uris"},
		{"client_name a number", "", `{` + ok + `, "client_name": 5}`, 400, oauth.InvalidClientMetadata, "client_name"},
		{"contacts an object", "", `{` + ok + `, "contacts": {"a": 1}}`, 400, oauth.InvalidClientMetadata, "contacts"},
		{"scope an array", "", `{` + ok + `, "scope": ["mcp"]}`, 400, oauth.InvalidClientMetadata, "scope"},
		{"body an array", "", `[{"redirect_uris": ["https://a.example/cb"]}]`, 400, oauth.InvalidClientMetadata, "JSON object"},
		{"body a string", "", `"hello"`, 400, oauth.InvalidClientMetadata, "JSON object"},
		{"malformed JSON", "", `{"redirect_uris": [`, 400, oauth.InvalidClientMetadata, "JSON"},
		{"not JSON", "", `redirect_uris=https://a.example/cb`, 400, oauth.InvalidClientMetadata, "JSON"},
		{"trailing data", "", `{` + ok + `} {}`, 400, oauth.InvalidClientMetadata, "JSON"},
		{"empty body", "", ``, 400, oauth.InvalidClientMetadata, "empty"},
		{"form content type", "application/x-www-form-urlencoded", `{` + ok + `}`, 400, oauth.InvalidClientMetadata, "application/json"},
		{"no content type", "-", `{` + ok + `}`, 400, oauth.InvalidClientMetadata, "application/json"},
		{"oversize body", "", big, 413, oauth.InvalidRequest, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := "application/json"
			switch tc.contentType {
			case "-":
				ct = ""
			case "":
			default:
				ct = tc.contentType
			}
			r := regDo(t, hs, http.MethodPost, "/register", "", ct, tc.body)
			regCheckError(t, r, tc.status, tc.code)
			if d, _ := r.body["error_description"].(string); !strings.Contains(d, tc.mention) {
				t.Errorf("error_description %q does not mention %q", d, tc.mention)
			}
		})
	}
	// A charset parameter is fine.
	if r := regDo(t, hs, http.MethodPost, "/register", "", "application/json; charset=utf-8", `{`+ok+`}`); r.status != http.StatusCreated {
		t.Errorf("application/json; charset=utf-8: %d %s", r.status, r.raw)
	}
}

func TestRegisterCORSPreflight(t *testing.T) {
	_, hs := testServer(t, false, nil)
	for _, path := range []string{"/register", "/register/SOMECLIENT"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodOptions, hs.URL+path, nil)
		req.Header.Set("Origin", "http://localhost:6274")
		req.Header.Set("Access-Control-Request-Method", http.MethodPost)
		req.Header.Set("Access-Control-Request-Headers", "content-type, authorization")
		res, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Errorf("OPTIONS %s = %d %v", path, res.StatusCode, res.Header)
		}
	}
}

func TestRegistrationManagement(t *testing.T) {
	s, hs := testServer(t, false, regWithInitialToken)
	a := regMustRegister(t, hs, `{"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none",
		"grant_types": ["authorization_code", "refresh_token"], "client_name": "A", "scope": "mcp admin"}`)
	b := regMustRegister(t, hs, `{"redirect_uris": ["https://b.example/cb"], "client_name": "B"}`)
	aID, aTok := regString(t, a, "client_id"), regString(t, a, "registration_access_token")
	bID, bTok := regString(t, b, "client_id"), regString(t, b, "registration_access_token")
	aPath := "/register/" + aID

	// Every failed authentication looks the same.
	var unauthorized []byte
	for _, tc := range []struct {
		name, method, path, token, auth string
	}{
		{"no token", http.MethodGet, aPath, "", ""},
		{"another client's token", http.MethodGet, aPath, bTok, ""},
		{"wrong token", http.MethodGet, aPath, aTok + "x", ""},
		{"token for an unknown client", http.MethodGet, "/register/NOSUCHCLIENT", aTok, ""},
		{"the registration_client_uri of b with a's token", http.MethodGet, "/register/" + bID, aTok, ""},
		{"invalid UTF-8 id", http.MethodGet, "/register/%FF%FE", aTok, ""},
		{"very long id", http.MethodGet, "/register/" + strings.Repeat("A", 4000), aTok, ""},
		{"basic auth", http.MethodGet, aPath, "", "Basic " + aTok},
		{"bearer without token", http.MethodGet, aPath, "", "Bearer "},
		{"token with a quote", http.MethodGet, aPath, "", `Bearer "` + aTok + `"`},
		{"update with b's token", http.MethodPut, aPath, bTok, ""},
		{"delete with b's token", http.MethodDelete, aPath, bTok, ""},
		{"delete without token", http.MethodDelete, aPath, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, hs.URL+tc.path, strings.NewReader(`{"client_id": "`+aID+`"}`))
			req.Header.Set("Content-Type", "application/json")
			switch {
			case tc.token != "":
				req.Header.Set("Authorization", "Bearer "+tc.token)
			case tc.auth != "":
				req.Header.Set("Authorization", tc.auth)
			}
			res, err := hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
				t.Errorf("%s %s = %d, WWW-Authenticate %q; want 401 Bearer error=\"invalid_token\"", tc.method, tc.path, res.StatusCode, res.Header.Get("WWW-Authenticate"))
			}
			if unauthorized == nil {
				unauthorized = raw
			} else if string(raw) != string(unauthorized) {
				t.Errorf("body %s differs from %s", raw, unauthorized)
			}
		})
	}

	// Read: the registration, without secret or registration token.
	r := regDo(t, hs, http.MethodGet, aPath, aTok, "", "")
	if r.status != http.StatusOK || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET = %d %s", r.status, r.raw)
	}
	regCheckSDKShape(t, r.body)
	wantRead := maps.Clone(a)
	delete(wantRead, "registration_access_token")
	if diff := cmp.Diff(wantRead, r.body); diff != "" {
		t.Errorf("GET (-want +got):\n%s", diff)
	}
	// The scheme name is case-insensitive (RFC 7235 §2.1).
	if r := regDo(t, hs, http.MethodGet, aPath, "", "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("GET without token = %d", r.status)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, hs.URL+aPath, nil)
	req.Header.Set("Authorization", "bearer "+aTok)
	if res, err := hs.Client().Do(req); err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("GET with lower-case bearer = %v, %v", res.StatusCode, err)
	} else {
		res.Body.Close()
	}
	// b's confidential registration reads back with client_secret_expires_at but no secret.
	if r := regDo(t, hs, http.MethodGet, "/register/"+bID, bTok, "", ""); r.status != 200 ||
		r.body["client_secret"] != nil || r.body["client_secret_expires_at"] != float64(0) {
		t.Errorf("GET b = %d %s", r.status, r.raw)
	}

	// Update: replaces the metadata and rotates the registration token.
	update := func(token, body string) regResponse {
		return regDo(t, hs, http.MethodPut, aPath, token, "application/json", body)
	}
	for _, tc := range []struct{ name, body, code string }{
		{"no client_id", `{"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}`, oauth.InvalidClientMetadata},
		{"other client_id", `{"client_id": "` + bID + `", "redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}`, oauth.InvalidClientMetadata},
		{"a secret for a public client", `{"client_id": "` + aID + `", "client_secret": "mine", "redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}`, oauth.InvalidClientMetadata},
		{"bad redirect", `{"client_id": "` + aID + `", "redirect_uris": ["http://evil.example/cb"], "token_endpoint_auth_method": "none"}`, oauth.InvalidRedirectURI},
	} {
		t.Run("update "+tc.name, func(t *testing.T) {
			regCheckError(t, update(aTok, tc.body), http.StatusBadRequest, tc.code)
		})
	}
	r = update(aTok, `{"client_id": "`+aID+`", "redirect_uris": ["http://127.0.0.1/cb", "https://a.example/cb"],
		"token_endpoint_auth_method": "none", "client_name": "A2", "registration_access_token": "ignored",
		"client_id_issued_at": 1, "registration_client_uri": "https://ignored.example"}`)
	if r.status != http.StatusOK {
		t.Fatalf("PUT = %d %s", r.status, r.raw)
	}
	regCheckSDKShape(t, r.body)
	aTok2 := regString(t, r.body, "registration_access_token")
	if aTok2 == aTok {
		t.Error("PUT did not rotate the registration access token")
	}
	wantUpdate := map[string]any{
		"client_id":                  aID,
		"client_id_issued_at":        a["client_id_issued_at"],
		"registration_access_token":  aTok2,
		"registration_client_uri":    hs.URL + aPath,
		"redirect_uris":              []any{"http://127.0.0.1/cb", "https://a.example/cb"},
		"token_endpoint_auth_method": "none",
		"grant_types":                []any{"authorization_code"}, // left out: the default
		"response_types":             []any{"code"},
		"application_type":           "web",
		"client_name":                "A2",
		"scope":                      "mcp", // left out: the default
	}
	if diff := cmp.Diff(wantUpdate, r.body); diff != "" {
		t.Errorf("PUT (-want +got):\n%s", diff)
	}
	if r := regDo(t, hs, http.MethodGet, aPath, aTok, "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("GET with the rotated-out token = %d, want 401", r.status)
	}
	if r := regDo(t, hs, http.MethodGet, aPath, aTok2, "", ""); r.status != http.StatusOK || r.body["client_name"] != "A2" {
		t.Errorf("GET with the new token = %d %s", r.status, r.raw)
	}

	// Public → confidential: the first secret is issued, once.
	r = update(aTok2, `{"client_id": "`+aID+`", "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_post"}`)
	if r.status != http.StatusOK {
		t.Fatalf("PUT to confidential = %d %s", r.status, r.raw)
	}
	secret, aTok3 := regString(t, r.body, "client_secret"), regString(t, r.body, "registration_access_token")
	if r.body["client_secret_expires_at"] != float64(0) {
		t.Errorf("client_secret_expires_at = %v", r.body["client_secret_expires_at"])
	}
	// Confidential → confidential: the secret stays and is not shown; a sent
	// client_secret must be the current one.
	regCheckError(t, update(aTok3, `{"client_id": "`+aID+`", "client_secret": "`+secret+`x", "redirect_uris": ["https://a.example/cb"]}`),
		http.StatusBadRequest, oauth.InvalidClientMetadata)
	r = update(aTok3, `{"client_id": "`+aID+`", "client_secret": "`+secret+`", "redirect_uris": ["https://a.example/cb"],
		"grant_types": ["authorization_code", "client_credentials"]}`)
	if r.status != http.StatusOK || r.body["client_secret"] != nil || r.body["token_endpoint_auth_method"] != "client_secret_basic" {
		t.Fatalf("PUT confidential = %d %s", r.status, r.raw)
	}
	aTok4 := regString(t, r.body, "registration_access_token")
	c, err := s.db.Client(t.Context(), aID)
	if err != nil {
		t.Fatal(err)
	}
	if err := (clientSecretHasher{}).Compare(t.Context(), c.SecretHash, []byte(secret)); err != nil {
		t.Errorf("the secret changed on an update: %v", err)
	}

	// Delete: 204, and the client's tokens go with it.
	if _, err := s.db.Pool().Exec(t.Context(), `INSERT INTO oauth_access_tokens (sig_hash, request_id, client_id, subject,
		requested_at, expires_at, requested_scopes, granted_scopes, requested_aud, granted_aud, session)
		VALUES (sha256('regtest'), gen_random_uuid(), $1, '', now(), now() + interval '1 hour', '{}', '{}', '{}', '{}', '{}')`, aID); err != nil {
		t.Fatal(err)
	}
	r = regDo(t, hs, http.MethodDelete, aPath, aTok4, "", "")
	if r.status != http.StatusNoContent || len(r.raw) != 0 {
		t.Fatalf("DELETE = %d %s, want 204", r.status, r.raw)
	}
	if _, err := s.db.Client(t.Context(), aID); err == nil {
		t.Error("the client is still there")
	}
	var n int
	if err := s.db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM oauth_access_tokens WHERE client_id = $1`, aID).Scan(&n); err != nil || n != 0 {
		t.Errorf("tokens of the deleted client: %d, %v", n, err)
	}
	if r := regDo(t, hs, http.MethodGet, aPath, aTok4, "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("GET after DELETE = %d, want 401", r.status)
	}
	if r := regDo(t, hs, http.MethodDelete, aPath, aTok4, "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("second DELETE = %d, want 401", r.status)
	}
	// b is untouched.
	if r := regDo(t, hs, http.MethodGet, "/register/"+bID, bTok, "", ""); r.status != http.StatusOK {
		t.Errorf("GET b after deleting a = %d", r.status)
	}
}

// An administrator's client (no registration access token) and a disabled
// one cannot be managed through RFC 7592.
func TestRegistrationManagementRefusesOtherClients(t *testing.T) {
	s, hs := testServer(t, false, nil)
	admin := &storage.Client{ID: "admin-client", TokenEndpointAuthMethod: storage.AuthMethodNone, Source: storage.SourceAdmin,
		RedirectURIs: []string{"https://a.example/cb"}}
	if err := s.db.CreateClient(t.Context(), admin); err != nil {
		t.Fatal(err)
	}
	if r := regDo(t, hs, http.MethodGet, "/register/admin-client", "anything", "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("GET admin client = %d", r.status)
	}
	body := regMustRegister(t, hs, `{"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"}`)
	id, tok := regString(t, body, "client_id"), regString(t, body, "registration_access_token")
	c, err := s.db.Client(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c.DisabledAt = &now
	if err := s.db.UpdateClient(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		if r := regDo(t, hs, m, "/register/"+id, tok, "", ""); r.status != http.StatusUnauthorized {
			t.Errorf("%s disabled client = %d", m, r.status)
		}
	}
}

// Two updates with the same registration access token: one wins, the other
// is refused, and only the winner's new token works.
func TestRegistrationConcurrentUpdates(t *testing.T) {
	_, hs := testServer(t, false, nil)
	body := regMustRegister(t, hs, `{"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"}`)
	id, tok := regString(t, body, "client_id"), regString(t, body, "registration_access_token")
	const n = 8
	results := make(chan regResponse, n)
	for i := range n {
		go func() {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, hs.URL+"/register/"+id,
				strings.NewReader(fmt.Sprintf(`{"client_id": %q, "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none", "client_name": "n%d"}`, id, i)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+tok)
			res, err := hs.Client().Do(req)
			if err != nil {
				results <- regResponse{}
				return
			}
			defer res.Body.Close()
			raw, _ := io.ReadAll(res.Body)
			out := regResponse{status: res.StatusCode, raw: raw}
			_ = json.Unmarshal(raw, &out.body)
			results <- out
		}()
	}
	var winners []string
	for range n {
		r := <-results
		switch r.status {
		case http.StatusOK:
			winners = append(winners, r.body["registration_access_token"].(string))
		case http.StatusUnauthorized:
		default:
			t.Errorf("concurrent PUT = %d %s", r.status, r.raw)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d updates succeeded with the same token, want 1", len(winners))
	}
	if r := regDo(t, hs, http.MethodGet, "/register/"+id, winners[0], "", ""); r.status != http.StatusOK {
		t.Errorf("GET with the winner's token = %d", r.status)
	}
}

func TestRegisterInitialAccessToken(t *testing.T) {
	const initial = "initial-access-token-0123456789"
	_, hs := testServer(t, false, func(c *Config) { c.RegistrationToken = initial })
	const body = `{"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"}`
	for _, tok := range []string{"", "wrong", initial + "x", initial[:len(initial)-1]} {
		r := regDo(t, hs, http.MethodPost, "/register", tok, "application/json", body)
		regCheckError(t, r, http.StatusUnauthorized, oauth.InvalidToken)
		if got := r.header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
			t.Errorf("token %q: WWW-Authenticate = %q", tok, got)
		}
	}
	if r := regDo(t, hs, http.MethodPost, "/register", initial, "application/json", body); r.status != http.StatusCreated {
		t.Errorf("with the initial access token: %d %s", r.status, r.raw)
	}
}

func TestRegisterRateLimit(t *testing.T) {
	_, hs := testServer(t, false, func(c *Config) {
		c.RateLimits.Register = limiter.Rate{Period: time.Hour, Limit: 2}
	})
	const body = `{"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"}`
	for i := range 2 {
		if r := regPost(t, hs, body); r.status != http.StatusCreated {
			t.Fatalf("registration %d = %d %s", i, r.status, r.raw)
		}
	}
	// Spent budget: 429 before the body is even read, bad bodies included.
	for _, b := range []string{body, `not json`} {
		r := regPost(t, hs, b)
		regCheckError(t, r, http.StatusTooManyRequests, oauth.TemporarilyUnavailable)
		if r.header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
}

func TestRunClientSweeper(t *testing.T) {
	s, hs := testServer(t, false, nil)
	ctx := t.Context()
	register := func() string {
		return regString(t, regMustRegister(t, hs, `{"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"}`), "client_id")
	}
	oldUnused, young, oldWithToken, oldUsed := register(), register(), register(), register()
	if _, err := s.db.Pool().Exec(ctx, `UPDATE oauth_clients SET created_at = now() - interval '8 days' WHERE id = ANY($1)`,
		[]string{oldUnused, oldWithToken, oldUsed}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Pool().Exec(ctx, `INSERT INTO oauth_refresh_tokens (sig_hash, request_id, client_id, subject,
		requested_at, expires_at, requested_scopes, granted_scopes, requested_aud, granted_aud, session)
		VALUES (sha256('sweeptest'), gen_random_uuid(), $1, 'alice', now(), now() + interval '30 days', '{}', '{}', '{}', '{}', '{}')`, oldWithToken); err != nil {
		t.Fatal(err)
	}
	if err := s.db.TouchClient(ctx, oldUsed); err != nil {
		t.Fatal(err)
	}

	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.RunClientSweeper(sctx, time.Hour) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := s.db.Client(ctx, oldUnused); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not delete the old unused client")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	for _, id := range []string{young, oldWithToken, oldUsed} {
		if _, err := s.db.Client(ctx, id); err != nil {
			t.Errorf("client %s was swept: %v", id, err)
		}
	}

	// A negative UnusedClientTTL turns the sweeper off: it returns at once.
	off, _ := testServer(t, false, func(c *Config) { c.UnusedClientTTL = -1 })
	returned := make(chan struct{})
	go func() { defer close(returned); off.RunClientSweeper(ctx, time.Hour) }()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Error("RunClientSweeper with a negative TTL did not return")
	}
}

func TestRegisterDefaultScopesMustBeSupported(t *testing.T) {
	_, err := New(Config{Issuer: "http://127.0.0.1:1", MCPResource: "http://127.0.0.1:1/mcp", Secret: make([]byte, 32),
		Scopes: testScopes, DefaultScopes: []string{"mcp", "nope"}}, nil, fakeKeys{}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("New with an unsupported default scope = %v, want an error naming it", err)
	}
}

// A registered confidential client authenticates at the token endpoint with
// the secret it was given (fosite checks it through clientSecretHasher), with
// the method it registered and no other; a registered public client cannot
// use client_credentials; a successful grant marks the client used, so the
// sweeper keeps it.
func TestRegisteredClientAtTokenEndpoint(t *testing.T) {
	s, hs := testServer(t, false, regWithInitialToken)
	body := regMustRegister(t, hs, `{"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic", "scope": "mcp"}`)
	id, secret := regString(t, body, "client_id"), regString(t, body, "client_secret")
	token := func(user, pass string, form url.Values) regResponse {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, hs.URL+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if user != "" {
			req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
		}
		res, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		out := regResponse{status: res.StatusCode, header: res.Header, raw: raw}
		_ = json.Unmarshal(raw, &out.body)
		return out
	}
	cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"mcp"}}
	if r := token(id, secret+"x", cc); r.status != http.StatusUnauthorized || r.body["error"] != oauth.InvalidClient {
		t.Errorf("wrong secret: %d %s, want 401 invalid_client", r.status, r.raw)
	}
	// Registered for client_secret_basic: the secret in the body is refused.
	post := url.Values{"grant_type": {"client_credentials"}, "scope": {"mcp"}, "client_id": {id}, "client_secret": {secret}}
	if r := token("", "", post); r.status == http.StatusOK {
		t.Errorf("client_secret_post accepted for a client_secret_basic client: %s", r.raw)
	}
	if c, _ := s.db.Client(t.Context(), id); c == nil || c.LastUsedAt != nil {
		t.Fatalf("client used before any grant: %+v", c)
	}
	r := token(id, secret, cc)
	if r.status != http.StatusOK {
		t.Fatalf("client_credentials with the registered secret: %d %s", r.status, r.raw)
	}
	if _, ok := r.body["access_token"].(string); !ok {
		t.Errorf("no access_token in %s", r.raw)
	}
	if c, _ := s.db.Client(t.Context(), id); c == nil || c.LastUsedAt == nil {
		t.Error("a successful grant did not mark the client used")
	}
	// Touched more than a minute ago: the next grant touches it again
	// (the token endpoint skips the write only within the minute).
	if _, err := s.db.Pool().Exec(t.Context(), `UPDATE oauth_clients SET last_used_at = now() - interval '2 minutes' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if r := token(id, secret, cc); r.status != http.StatusOK {
		t.Fatalf("client_credentials again: %d %s", r.status, r.raw)
	}
	if c, _ := s.db.Client(t.Context(), id); c == nil || c.LastUsedAt == nil || time.Since(*c.LastUsedAt) > time.Minute {
		t.Errorf("a grant a minute after the last did not touch the client: %+v", c.LastUsedAt)
	}

	pub := regMustRegister(t, hs, `{"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}`)
	r = token("", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {regString(t, pub, "client_id")}})
	if r.status == http.StatusOK {
		t.Errorf("public client obtained client_credentials: %s", r.raw)
	}
}
