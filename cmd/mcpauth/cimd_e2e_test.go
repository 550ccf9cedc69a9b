package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// cimdDocHost is a client's web site publishing its Client ID Metadata
// Document over HTTPS, with its own test CA. The document can change while
// the test runs; fetches are counted.
type cimdDocHost struct {
	hs      *httptest.Server
	url     string // the client_id: the document's URL
	fetches atomic.Int32

	mu  sync.Mutex
	doc map[string]any
}

func cimdNewDocHost(t *testing.T) *cimdDocHost {
	t.Helper()
	h := &cimdDocHost{}
	h.hs = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/oauth/client-metadata.json" {
			http.NotFound(w, r)
			return
		}
		h.fetches.Add(1)
		h.mu.Lock()
		body, _ := json.Marshal(h.doc)
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		// Cacheable for a second: the test waits that long for a change.
		w.Header().Set("Cache-Control", "max-age=1")
		w.Write(body)
	}))
	t.Cleanup(h.hs.Close)
	h.url = h.hs.URL + "/oauth/client-metadata.json"
	return h
}

// publish replaces the document: a public client named name with these
// redirect URIs.
func (h *cimdDocHost) publish(name string, redirects ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.doc = map[string]any{
		"client_id":                  h.url,
		"client_name":                name,
		"client_uri":                 h.hs.URL,
		"logo_uri":                   h.hs.URL + "/logo.png",
		"redirect_uris":              redirects,
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
	}
}

// cimdStartServer is startServer for metadata-document clients: `mcpauth
// serve` trusting the document host's test CA (through the package's test
// hook: no variable can change production trust), allowed to fetch from
// loopback (MCPAUTH_CIMD_ALLOW_PRIVATE), caching documents for as little as
// a second.
func cimdStartServer(t *testing.T, docs *cimdDocHost, extra map[string]string) *server {
	t.Helper()
	cimdTestTransport = docs.hs.Client().Transport.(*http.Transport)
	t.Cleanup(func() { cimdTestTransport = nil }) // after the server stopped
	addr := freeAddr(t)
	srv := &server{issuer: "http://" + addr, user: "alice"}
	srv.env = map[string]string{
		"MCPAUTH_ISSUER":             srv.issuer,
		"MCPAUTH_ADDR":               addr,
		"MCPAUTH_DATABASE_URL":       storagetest.URL(t),
		"MCPAUTH_SECRET":             goodSecret,
		"MCPAUTH_LOG_LEVEL":          "warn",
		"MCPAUTH_CIMD_ALLOW_PRIVATE": "true",
		"MCPAUTH_CIMD_CACHE_MIN_AGE": "1s",
	}
	for k, v := range extra {
		srv.env[k] = v
	}
	srv.instance = startRun(t, []string{"serve"}, srv.env)
	srv.password = srv.addUser(t, srv.user)
	getJSON(t, srv.base+"/.well-known/oauth-authorization-server", &srv.metadata)
	return srv
}

// TestCIMDEndToEnd: a client identified by its metadata document (served
// over HTTPS by the test) is authorized with no registration: sign-in,
// consent naming it and its host, code exchange, an MCP tools/call with
// the token, a refresh. Then the client's site drops the redirect URI from
// the document; once the document's cache lifetime has passed, the old
// redirect URI is refused with a page (never a redirect), and the new one
// works.
func TestCIMDEndToEnd(t *testing.T) {
	docs := cimdNewDocHost(t)
	callback := "http://127.0.0.1:" + strings.Split(freeAddr(t), ":")[1] + "/callback"
	docs.publish("Metadata Document Client", callback)
	srv := cimdStartServer(t, docs, nil)

	if srv.metadata["client_id_metadata_document_supported"] != true {
		t.Fatalf("metadata: client_id_metadata_document_supported = %v", srv.metadata["client_id_metadata_document_supported"])
	}
	methods, _ := json.Marshal(srv.metadata["token_endpoint_auth_methods_supported"])
	if !strings.Contains(string(methods), `"none"`) || !strings.Contains(string(methods), `"private_key_jwt"`) {
		t.Errorf("token_endpoint_auth_methods_supported = %s", methods)
	}

	conf := &oauth2.Config{
		ClientID: docs.url, RedirectURL: callback, Scopes: []string{"mcp"},
		Endpoint: oauth2.Endpoint{AuthURL: srv.issuer + "/authorize", TokenURL: srv.issuer + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("state-123456789", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", srv.issuer+"/mcp"))

	b := newBrowser(t)
	p := b.follow(b.get(authURL))
	p = b.follow(b.signIn(p, srv.user, srv.password))
	if p.status != http.StatusOK || !strings.Contains(p.body, `name="decision"`) {
		t.Fatalf("want the consent page, got %d:\n%s", p.status, p.body)
	}
	docHost := strings.TrimPrefix(docs.hs.URL, "https://")
	for _, want := range []string{"Metadata Document Client", "Identified by", docHost, "metadata document", "127.0.0.1:"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("consent page does not show %q:\n%s", want, p.body)
		}
	}
	if strings.Contains(p.body, "logo.png") {
		t.Errorf("consent page hot-links the document's logo_uri:\n%s", p.body)
	}
	back := b.location(b.approve(p))
	if got := back.Scheme + "://" + back.Host + back.Path; got != callback || back.Query().Get("code") == "" {
		t.Fatalf("approval went to %s", back)
	}

	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, http.DefaultClient)
	tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", srv.issuer+"/mcp"))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if status, challenge := mcpCall(t, srv.base, tok.AccessToken); status != http.StatusOK {
		t.Fatalf("tools/call with the metadata-document client's token: %d %s", status, challenge)
	}
	status, out := postForm(t, srv.issuer+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {docs.url}}, "", "")
	if status != http.StatusOK || out["access_token"] == nil {
		t.Fatalf("refresh: %d %v", status, out)
	}

	// The site drops the callback. Within the cache lifetime the server may
	// still use the old document; after it, the old callback is refused.
	moved := "http://127.0.0.1:" + strings.Split(freeAddr(t), ":")[1] + "/new-callback"
	docs.publish("Metadata Document Client", moved)
	before := docs.fetches.Load()
	changed := time.Now()
	for {
		p := b.get(conf.AuthCodeURL("state-123456789", oauth2.S256ChallengeOption(verifier)))
		if p.status == http.StatusBadRequest {
			if p.header.Get("Location") != "" || !strings.Contains(p.body, "did not register") {
				t.Fatalf("refusal of the dropped redirect URI: %d %v\n%s", p.status, p.header, p.body)
			}
			t.Logf("dropped redirect URI refused %s after the change", time.Since(changed).Round(time.Millisecond))
			break
		}
		if p.status != http.StatusSeeOther || time.Since(changed) > 10*time.Second {
			t.Fatalf("old redirect URI still answered %d %s after %s", p.status, p.header.Get("Location"), time.Since(changed))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if docs.fetches.Load() == before {
		t.Errorf("the document was not fetched again after its cache expired")
	}
	// The new callback is the client's now; the consent is remembered.
	conf.RedirectURL = moved
	p = b.get(conf.AuthCodeURL("state-123456789", oauth2.S256ChallengeOption(verifier)))
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), moved+"?") || !strings.Contains(p.header.Get("Location"), "code=") {
		t.Errorf("new redirect URI: %d %s\n%s", p.status, p.header.Get("Location"), p.body)
	}
}

// TestCIMDGoSDKClient: the official Go SDK's MCP client, configured with
// only its metadata document URL (auth.ClientIDMetadataDocumentConfig),
// connects to /mcp, is challenged, sees client_id_metadata_document_supported
// in the metadata, authorizes with its URL as client_id (no registration),
// and calls a tool.
func TestCIMDGoSDKClient(t *testing.T) {
	docs := cimdNewDocHost(t)
	callback := "http://127.0.0.1:" + strings.Split(freeAddr(t), ":")[1] + "/callback"
	docs.publish("go-sdk metadata document client", callback)
	srv := cimdStartServer(t, docs, nil)

	var clientIDs []string
	session := sdkSession(t, srv, &auth.AuthorizationCodeHandlerConfig{
		ClientIDMetadataDocumentConfig: &auth.ClientIDMetadataDocumentConfig{URL: docs.url},
		RedirectURL:                    callback,
	}, srv.user, srv.password, func(authURL string) {
		clientIDs = append(clientIDs, urlQuery(t, authURL, "client_id"))
	})
	ctx := t.Context()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil || res.IsError {
		t.Fatalf("whoami: %v %+v", err, res)
	}
	if len(clientIDs) != 1 || clientIDs[0] != docs.url {
		t.Errorf("the SDK authorized as %q, want its document URL %q", clientIDs, docs.url)
	}
	if docs.fetches.Load() == 0 {
		t.Errorf("the server never fetched the document")
	}
}

// TestCIMDDisabled: with MCPAUTH_CIMD=off the metadata does not offer
// metadata documents and a URL client_id is not resolved (a page, no fetch).
func TestCIMDDisabled(t *testing.T) {
	docs := cimdNewDocHost(t)
	docs.publish("Unwanted", "http://127.0.0.1:9/cb")
	srv := cimdStartServer(t, docs, map[string]string{"MCPAUTH_CIMD": "off"})
	if v, ok := srv.metadata["client_id_metadata_document_supported"]; ok && v != false {
		t.Errorf("client_id_metadata_document_supported = %v with MCPAUTH_CIMD=off", v)
	}
	q := url.Values{"response_type": {"code"}, "client_id": {docs.url}, "redirect_uri": {"http://127.0.0.1:9/cb"},
		"code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"}, "state": {"state-123456789"}}
	p := newBrowser(t).get(srv.issuer + "/authorize?" + q.Encode())
	if p.status != http.StatusBadRequest || p.header.Get("Location") != "" || !strings.Contains(p.body, "does not accept") {
		t.Errorf("authorize with a URL client_id while disabled: %d %v\n%s", p.status, p.header, p.body)
	}
	if n := docs.fetches.Load(); n != 0 {
		t.Errorf("the document was fetched %d times while disabled", n)
	}
}
