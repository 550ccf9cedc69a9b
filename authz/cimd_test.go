package authz

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// cimdDocs is an HTTPS host of metadata documents for tests: path → body
// and headers, changeable while it runs, counting requests per path.
type cimdDocs struct {
	mu      sync.Mutex
	docs    map[string]cimdDoc
	hits    map[string]int
	delay   time.Duration
	hs      *httptest.Server
	cfg     CIMDConfig
	pending atomic.Int32
}

type cimdDoc struct {
	body        string
	contentType string // default application/json
	header      http.Header
}

func newCIMDDocs(t *testing.T) *cimdDocs {
	d := &cimdDocs{docs: map[string]cimdDoc{}, hits: map[string]int{}}
	d.hs, d.cfg = cimdHost(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		doc, ok := d.docs[r.URL.Path]
		d.hits[r.URL.Path]++
		delay := d.delay
		d.mu.Unlock()
		time.Sleep(delay)
		if !ok {
			http.NotFound(w, r)
			return
		}
		for k, v := range doc.header {
			w.Header()[k] = v
		}
		ct := doc.contentType
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.Write([]byte(doc.body))
	}))
	return d
}

// url is the client id of the document at path.
func (d *cimdDocs) url(path string) string { return d.hs.URL + path }

func (d *cimdDocs) set(path string, doc cimdDoc) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.docs[path] = doc
}

// setJSON serves fields (client_id filled in unless present) as JSON.
func (d *cimdDocs) setJSON(path string, fields map[string]any, header http.Header) {
	if _, ok := fields["client_id"]; !ok {
		fields["client_id"] = d.url(path)
	}
	b, err := json.Marshal(fields)
	if err != nil {
		panic(err)
	}
	d.set(path, cimdDoc{body: string(b), header: header})
}

func (d *cimdDocs) count(path string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hits[path]
}

// cimdClock is a test clock the server's Config.Now reads.
type cimdClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *cimdClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *cimdClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// cimdSetup is a server whose metadata document fetches reach docs (and
// nothing else on loopback), on a test clock.
func cimdSetup(t *testing.T, mod func(*CIMDConfig)) (*Server, *cimdDocs, *cimdClock) {
	t.Helper()
	docs := newCIMDDocs(t)
	clock := &cimdClock{now: time.Now()}
	s, _ := testServer(t, false, func(c *Config) {
		c.CIMD = docs.cfg
		c.CIMD.MinCacheAge = time.Minute
		c.CIMD.MaxCacheAge = time.Hour
		c.CIMD.NegativeCacheAge = 30 * time.Second
		if mod != nil {
			mod(&c.CIMD)
		}
		c.Now = clock.Now
	})
	return s, docs, clock
}

func cimdAppDoc() map[string]any {
	return map[string]any{
		"client_name":   "Doc App",
		"client_uri":    "https://app.example/",
		"logo_uri":      "javascript:alert(1)",
		"redirect_uris": []string{"http://127.0.0.1/callback", "https://app.example/callback"},
		"grant_types":   []string{"authorization_code", "refresh_token"},
		"scope":         "mcp unknown",
		"unknown_field": map[string]any{"ignored": true},
	}
}

// cimdWantError checks that err is an *oauth.Error with code and a
// description containing desc.
func cimdWantError(t *testing.T, err error, code, desc string) {
	t.Helper()
	var oe *oauth.Error
	if !errors.As(err, &oe) {
		t.Fatalf("err = %v, want an *oauth.Error %s", err, code)
	}
	if oe.Code != code || !strings.Contains(oe.Description, desc) {
		t.Fatalf("err = %s %q, want %s with %q", oe.Code, oe.Description, code, desc)
	}
}

func TestMetadataClientFetchCacheRefetch(t *testing.T) {
	s, docs, clock := cimdSetup(t, nil)
	ctx := t.Context()
	const path = "/clients/app.json"
	id := docs.url(path)
	docs.setJSON(path, cimdAppDoc(), http.Header{"Cache-Control": {"public, max-age=600"}})

	c, err := s.metadataClient(ctx, id)
	if err != nil {
		t.Fatalf("metadataClient: %v", err)
	}
	want := []string{"http://127.0.0.1/callback", "https://app.example/callback"}
	if c.ID != id || c.Source != storage.SourceCIMD || !slices.Equal(c.RedirectURIs, want) {
		t.Fatalf("client = %s %s %v, want %s cimd %v", c.ID, c.Source, c.RedirectURIs, id, want)
	}
	if c.TokenEndpointAuthMethod != storage.AuthMethodNone || !c.IsPublic() {
		t.Errorf("auth method = %q, want none", c.TokenEndpointAuthMethod)
	}
	if c.Metadata.ClientName != "Doc App" || c.Metadata.ClientURI != "https://app.example/" || c.Metadata.LogoURI != "" {
		t.Errorf("metadata = %+v, want the name, the https client_uri and no javascript: logo", c.Metadata)
	}
	if !slices.Equal(c.Scopes, []string{"mcp"}) || !slices.Equal(c.GrantTypes, []string{"authorization_code", "refresh_token"}) {
		t.Errorf("scopes %v grants %v", c.Scopes, c.GrantTypes)
	}
	if !slices.Equal(c.Audiences, []string{s.cfg.MCPResource}) {
		t.Errorf("audiences %v", c.Audiences)
	}
	// Stored as a client row, which fosite's storage sees (tokens reference it).
	if fc, err := s.db.GetClient(ctx, id); err != nil || !slices.Equal(fc.GetRedirectURIs(), want) {
		t.Fatalf("stored client: %v, %v", fc, err)
	}
	if n := docs.count(path); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}

	// Cache hit: within max-age, no second fetch.
	clock.advance(9 * time.Minute)
	if _, err := s.metadataClient(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n := docs.count(path); n != 1 {
		t.Fatalf("%d fetches after a cache hit, want 1", n)
	}
	// The cache is in PostgreSQL: another server (replica) on the same
	// database uses it too.
	s2 := &Server{cfg: s.cfg, db: s.db, log: s.log}
	if err := s2.initCIMD(); err != nil {
		t.Fatal(err)
	}
	if c2, err := s2.metadataClient(ctx, id); err != nil || !slices.Equal(c2.RedirectURIs, want) {
		t.Fatalf("replica: %v, %v", c2, err)
	}
	if n := docs.count(path); n != 1 {
		t.Fatalf("%d fetches after a replica's cache hit, want 1", n)
	}

	// The document drops a redirect URI; after expiry the refetch shrinks
	// the stored client.
	doc := cimdAppDoc()
	doc["redirect_uris"] = []string{"https://app.example/callback"}
	doc["client_name"] = "Doc App 2"
	docs.setJSON(path, doc, http.Header{"Cache-Control": {"max-age=5"}}) // clamped up to MinCacheAge
	clock.advance(2 * time.Minute)
	c, err = s.metadataClient(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.RedirectURIs, []string{"https://app.example/callback"}) || c.Metadata.ClientName != "Doc App 2" {
		t.Fatalf("after refetch: %v %q", c.RedirectURIs, c.Metadata.ClientName)
	}
	if stored, _ := s.db.Client(ctx, id); !slices.Equal(stored.RedirectURIs, []string{"https://app.example/callback"}) {
		t.Fatalf("stored after refetch: %v", stored.RedirectURIs)
	}
	if n := docs.count(path); n != 2 {
		t.Fatalf("%d fetches after expiry, want 2", n)
	}
	// max-age=5 was clamped to MinCacheAge (1m).
	clock.advance(30 * time.Second)
	s.metadataClient(ctx, id)
	if n := docs.count(path); n != 2 {
		t.Fatalf("%d fetches 30s later, want 2 (MinCacheAge)", n)
	}
	clock.advance(31 * time.Second)
	s.metadataClient(ctx, id)
	if n := docs.count(path); n != 3 {
		t.Fatalf("%d fetches after MinCacheAge, want 3", n)
	}
}

// TestMetadataClientRejections: every way a document or its host can be
// wrong gives invalid_client with a description a person can act on.
func TestMetadataClientRejections(t *testing.T) {
	s, docs, _ := cimdSetup(t, nil)
	with := func(mod func(map[string]any)) map[string]any {
		d := cimdAppDoc()
		mod(d)
		return d
	}
	privateKey := `{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}`
	for _, tc := range []struct {
		name string
		doc  any // map: JSON fields; string: raw body
		ct   string
		desc string
	}{
		{"client_id mismatch", with(func(d map[string]any) { d["client_id"] = docs.url("/other.json") }), "", "client_id does not equal"},
		{"client_id trailing slash", with(func(d map[string]any) { d["client_id"] = docs.url("/doc/") }), "", "client_id does not equal"},
		{"no client_name", with(func(d map[string]any) { delete(d, "client_name") }), "", "client_name is missing"},
		{"no redirect_uris", with(func(d map[string]any) { delete(d, "redirect_uris") }), "", "redirect_uris is missing"},
		{"http redirect off loopback", with(func(d map[string]any) { d["redirect_uris"] = []string{"http://app.example/cb"} }), "", "redirect URI"},
		{"javascript redirect", with(func(d map[string]any) { d["redirect_uris"] = []string{"javascript:alert(1)"} }), "", "redirect URI"},
		{"client_secret_basic", with(func(d map[string]any) { d["token_endpoint_auth_method"] = "client_secret_basic" }), "", "none or private_key_jwt"},
		{"private_key_jwt without keys", with(func(d map[string]any) { d["token_endpoint_auth_method"] = "private_key_jwt" }), "", "needs jwks"},
		{"private key in jwks", with(func(d map[string]any) {
			d["token_endpoint_auth_method"] = "private_key_jwt"
			d["jwks"] = json.RawMessage(`{"keys":[` + privateKey + `]}`)
		}), "", "public keys only"},
		{"jwks_uri over http", with(func(d map[string]any) {
			d["token_endpoint_auth_method"] = "private_key_jwt"
			d["jwks_uri"] = "http://app.example/jwks"
		}), "", "jwks_uri must be an https URL"},
		{"implicit grant", with(func(d map[string]any) { d["grant_types"] = []string{"implicit"} }), "", "grant type"},
		{"client_credentials", with(func(d map[string]any) { d["grant_types"] = []string{"authorization_code", "client_credentials"} }), "", "grant type"},
		{"token response type", with(func(d map[string]any) { d["response_types"] = []string{"token"} }), "", "response_types"},
		{"redirect_uris not a list", with(func(d map[string]any) { d["redirect_uris"] = "https://app.example/cb" }), "", "wrong type"},
		{"not JSON", "<html>hello</html>", "", "not valid JSON"},
		{"JSON array", `[1,2]`, "", "not a JSON object"},
		{"text/html", with(func(map[string]any) {}), "text/html", "not JSON"},
		{"oversize", with(func(d map[string]any) { d["padding"] = strings.Repeat("x", 6<<10) }), "", "too large"},
		{"control characters", with(func(d map[string]any) { d["client_name"] = "Doc\u0007App" }), "", "control characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/bad/" + strings.ReplaceAll(tc.name, " ", "-") + ".json"
			switch d := tc.doc.(type) {
			case string:
				docs.set(path, cimdDoc{body: d, contentType: tc.ct})
			case map[string]any:
				if _, ok := d["client_id"]; !ok {
					d["client_id"] = docs.url(path)
				}
				b, _ := json.Marshal(d)
				docs.set(path, cimdDoc{body: string(b), contentType: tc.ct})
			}
			_, err := s.metadataClient(t.Context(), docs.url(path))
			cimdWantError(t, err, oauth.InvalidClient, tc.desc)
			if _, err := s.db.Client(t.Context(), docs.url(path)); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("a refused document was stored: %v", err)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		_, err := s.metadataClient(t.Context(), docs.url("/nowhere.json"))
		cimdWantError(t, err, oauth.InvalidClient, "could not be fetched")
	})
	t.Run("not a URL client id", func(t *testing.T) {
		for _, id := range []string{"abc123", "https://app.example", "https://app.example/", "https://app.example/a#b",
			"https://u:p@app.example/a", "ftp://app.example/a", "http://app.example/a"} {
			_, err := s.metadataClient(t.Context(), id)
			cimdWantError(t, err, oauth.InvalidClient, "not a valid client ID metadata document URL")
		}
	})
}

func TestMetadataClientSlowHost(t *testing.T) {
	s, docs, _ := cimdSetup(t, nil)
	docs.setJSON("/slow.json", cimdAppDoc(), nil)
	docs.delay = fetchTimeout + time.Second
	start := time.Now()
	_, err := s.metadataClient(t.Context(), docs.url("/slow.json"))
	cimdWantError(t, err, oauth.InvalidClient, "timed out")
	if d := time.Since(start); d > fetchTimeout+time.Second {
		t.Fatalf("took %v, want about %v", d, fetchTimeout)
	}
}

// TestMetadataClientAddressGuard: the hostile cases end to end, through
// metadataClient: a name resolving to 127.0.0.1 or 10.x, an address literal,
// a redirect to a private address, http when not allowed.
func TestMetadataClientAddressGuard(t *testing.T) {
	s, docs, _ := cimdSetup(t, nil)
	docs.set("/to-private.json", cimdDoc{})
	docs.hs.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://10.0.0.1/client.json", http.StatusFound)
	})
	_, err := s.metadataClient(t.Context(), docs.url("/to-private.json"))
	cimdWantError(t, err, oauth.InvalidClient, "redirect not allowed")

	_, port, _ := strings.Cut(strings.TrimPrefix(docs.hs.URL, "https://"), ":")
	for _, target := range []string{"127.0.0.1", "10.1.2.3"} {
		t.Run("name resolves to "+target, func(t *testing.T) {
			s2, _ := testServer(t, false, func(c *Config) {
				c.CIMD.Transport = docs.cfg.Transport
				c.CIMD.Resolver = cimdDNS(t, mustAddr(target))
			})
			_, err := s2.metadataClient(t.Context(), "https://mcp-client.example:"+port+"/client.json")
			cimdWantError(t, err, oauth.InvalidClient, "address not allowed")
		})
	}
	t.Run("address literal", func(t *testing.T) {
		_, err := s.metadataClient(t.Context(), "https://169.254.169.254/latest/meta-data")
		cimdWantError(t, err, oauth.InvalidClient, "address not allowed")
	})
}

func TestMetadataClientHTTPLoopback(t *testing.T) {
	var hits atomic.Int32
	var hs *httptest.Server
	hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		d := cimdAppDoc()
		d["client_id"] = hs.URL + r.URL.Path
		json.NewEncoder(w).Encode(d)
	}))
	t.Cleanup(hs.Close)
	off, _ := testServer(t, false, nil)
	_, err := off.metadataClient(t.Context(), hs.URL+"/client.json")
	cimdWantError(t, err, oauth.InvalidClient, "https")
	if hits.Load() != 0 {
		t.Fatal("http document fetched while not allowed")
	}
	on, _ := testServer(t, false, func(c *Config) { c.CIMD.AllowHTTPLoopback = true })
	if _, err := on.metadataClient(t.Context(), hs.URL+"/client.json"); err != nil {
		t.Fatalf("with AllowHTTPLoopback: %v", err)
	}
}

func TestMetadataClientNegativeCache(t *testing.T) {
	s, docs, clock := cimdSetup(t, nil)
	const path = "/neg.json"
	doc := cimdAppDoc()
	doc["client_id"] = "https://elsewhere.example/client.json"
	docs.setJSON(path, doc, nil)
	_, err := s.metadataClient(t.Context(), docs.url(path))
	cimdWantError(t, err, oauth.InvalidClient, "client_id does not equal")

	// Fixed, but the failure is remembered: same answer, no fetch.
	docs.setJSON(path, cimdAppDoc(), nil)
	_, err = s.metadataClient(t.Context(), docs.url(path))
	cimdWantError(t, err, oauth.InvalidClient, "client_id does not equal")
	if n := docs.count(path); n != 1 {
		t.Fatalf("%d fetches, want 1 (negative cache)", n)
	}
	// Another URL's failure, once this one's has expired, cleans it up.
	clock.advance(31 * time.Second)
	_, err = s.metadataClient(t.Context(), docs.url("/missing.json"))
	cimdWantError(t, err, oauth.InvalidClient, "could not be fetched")
	var n int
	if err := s.db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM cimd_failures`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d negative cache entries (err %v), want 1: the expired one deleted", n, err)
	}
	if _, err := s.metadataClient(t.Context(), docs.url(path)); err != nil {
		t.Fatalf("after the negative cache expired: %v", err)
	}
	if n := docs.count(path); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

func TestMetadataClientAllowDeny(t *testing.T) {
	docsHost := func(d *cimdDocs) string { return strings.Split(strings.TrimPrefix(d.hs.URL, "https://"), ":")[0] }
	for _, tc := range []struct {
		name        string
		allow, deny func(d *cimdDocs) []string
		path        string
		ok          bool
	}{
		{"no lists", nil, nil, "/a/app.json", true},
		{"allowed prefix", func(d *cimdDocs) []string { return []string{d.url("/a/")} }, nil, "/a/app.json", true},
		{"outside the allowed prefix", func(d *cimdDocs) []string { return []string{d.url("/a/")} }, nil, "/b/app.json", false},
		{"allowed domain", func(d *cimdDocs) []string { return []string{docsHost(d)} }, nil, "/b/app.json", true},
		{"other allowed domain", func(*cimdDocs) []string { return []string{"example.com"} }, nil, "/a/app.json", false},
		{"denied domain", nil, func(d *cimdDocs) []string { return []string{docsHost(d)} }, "/a/app.json", false},
		{"denied prefix wins over allow", func(d *cimdDocs) []string { return []string{docsHost(d)} },
			func(d *cimdDocs) []string { return []string{d.url("/a/")} }, "/a/app.json", false},
		{"denied prefix elsewhere", nil, func(d *cimdDocs) []string { return []string{d.url("/b/")} }, "/a/app.json", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, docs, _ := cimdSetup(t, nil)
			if tc.allow != nil {
				s.cimd.cfg.Allow = tc.allow(docs)
			}
			if tc.deny != nil {
				s.cimd.cfg.Deny = tc.deny(docs)
			}
			docs.setJSON(tc.path, cimdAppDoc(), nil)
			_, err := s.metadataClient(t.Context(), docs.url(tc.path))
			if tc.ok {
				if err != nil {
					t.Fatalf("err %v, want allowed", err)
				}
				return
			}
			cimdWantError(t, err, oauth.InvalidClient, "blocked by the server's policy")
			if n := docs.count(tc.path); n != 0 {
				t.Fatalf("a blocked URL was fetched %d times", n)
			}
		})
	}
}

func TestDomainPolicyMatch(t *testing.T) {
	for _, tc := range []struct {
		entry, id string
		want      bool
	}{
		{"example.com", "https://example.com/c.json", true},
		{"example.com", "https://app.example.com/c.json", true},
		{"example.com", "https://badexample.com/c.json", false},
		{"example.com", "https://example.com.evil.net/c.json", false},
		{".Example.COM", "https://APP.example.com/c.json", true},
		{"https://example.com/clients/", "https://example.com/clients/a.json", true},
		{"https://example.com/clients/", "https://example.com/other/a.json", false},
	} {
		if got := policyMatch(tc.entry, tc.id); got != tc.want {
			t.Errorf("policyMatch(%q, %q) = %v, want %v", tc.entry, tc.id, got, tc.want)
		}
	}
}

func TestMetadataClientConcurrentFirstRequests(t *testing.T) {
	s, docs, _ := cimdSetup(t, nil)
	docs.setJSON("/popular.json", cimdAppDoc(), nil)
	docs.delay = 300 * time.Millisecond
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.metadataClient(t.Context(), docs.url("/popular.json"))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if n := docs.count("/popular.json"); n != 1 {
		t.Fatalf("%d fetches for 8 concurrent first requests, want 1", n)
	}
}

func TestMetadataClientPreregisteredAndDisabled(t *testing.T) {
	s, docs, _ := cimdSetup(t, nil)
	ctx := t.Context()
	// A client an administrator registered under a URL id is not fetched.
	pre := docs.url("/pre.json")
	if err := s.db.CreateClient(ctx, &storage.Client{ID: pre, Source: storage.SourceAdmin, TokenEndpointAuthMethod: storage.AuthMethodNone,
		RedirectURIs: []string{"https://admin.example/cb"}}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.metadataClient(ctx, pre); err != nil || c.Source != storage.SourceAdmin {
		t.Fatalf("pre-registered: %v, %v", c, err)
	}
	if docs.count("/pre.json") != 0 {
		t.Fatal("a pre-registered client id was fetched")
	}
	// Disabled by an administrator: refused, and a refetch keeps it so.
	id := docs.url("/app.json")
	docs.setJSON("/app.json", cimdAppDoc(), http.Header{"Cache-Control": {"no-store"}})
	c, err := s.metadataClient(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c.DisabledAt = &now
	if err := s.db.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	_, err = s.metadataClient(ctx, id)
	cimdWantError(t, err, oauth.InvalidClient, "blocked by the server's administrator")
	s.cfg.Now = func() time.Time { return now.Add(2 * time.Hour) }
	_, err = s.metadataClient(ctx, id)
	cimdWantError(t, err, oauth.InvalidClient, "blocked by the server's administrator")
	if n := docs.count("/app.json"); n != 2 {
		t.Fatalf("%d fetches, want 2 (the expired copy was refetched)", n)
	}

	// Disabled feature.
	s.cimd.cfg.Disabled = true
	_, err = s.metadataClient(ctx, docs.url("/other.json"))
	cimdWantError(t, err, oauth.InvalidClient, "does not accept")
}

func TestMetadataClientAuthMethods(t *testing.T) {
	s, docs, _ := cimdSetup(t, nil)
	publicJWKS := json.RawMessage(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`)
	for _, tc := range []struct {
		name   string
		fields map[string]any
		want   string
	}{
		{"default", map[string]any{}, storage.AuthMethodNone},
		// peer-lessons §3 item 11: ChatGPT offers both; a public client gets none (DR-2).
		{"both offered", map[string]any{"token_endpoint_auth_method": "private_key_jwt",
			"token_endpoint_auth_methods_supported": []string{"private_key_jwt", "none"}, "jwks": publicJWKS}, storage.AuthMethodNone},
		{"private_key_jwt with jwks", map[string]any{"token_endpoint_auth_method": "private_key_jwt", "jwks": publicJWKS,
			"token_endpoint_auth_signing_alg": "ES256"}, storage.AuthMethodPrivateKeyJWT},
		{"private_key_jwt with jwks_uri", map[string]any{"token_endpoint_auth_method": "private_key_jwt",
			"jwks_uri": "https://app.example/jwks.json"}, storage.AuthMethodPrivateKeyJWT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := cimdAppDoc()
			for k, v := range tc.fields {
				d[k] = v
			}
			path := "/auth/" + strings.ReplaceAll(tc.name, " ", "-") + ".json"
			docs.setJSON(path, d, nil)
			c, err := s.metadataClient(t.Context(), docs.url(path))
			if err != nil {
				t.Fatal(err)
			}
			if c.TokenEndpointAuthMethod != tc.want {
				t.Fatalf("method %q, want %q", c.TokenEndpointAuthMethod, tc.want)
			}
			if tc.want == storage.AuthMethodNone && (len(c.JWKS) > 0 || c.JWKSURI != "") {
				t.Errorf("a public client kept keys: %s %q", c.JWKS, c.JWKSURI)
			}
			if _, ok := tc.fields["jwks"]; ok && tc.want == storage.AuthMethodPrivateKeyJWT {
				if c.GetJSONWebKeys() == nil || len(c.GetJSONWebKeys().Keys) != 1 || c.GetTokenEndpointAuthSigningAlgorithm() != "ES256" {
					t.Errorf("keys %v alg %q", c.GetJSONWebKeys(), c.GetTokenEndpointAuthSigningAlgorithm())
				}
			}
			if u, ok := tc.fields["jwks_uri"]; ok && c.JWKSURI != u {
				t.Errorf("jwks_uri %q, want %q", c.JWKSURI, u)
			}
		})
	}
}

func TestCacheAge(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{}, 0},
		{http.Header{"Cache-Control": {"max-age=300"}}, 300 * time.Second},
		{http.Header{"Cache-Control": {"public, max-age=\"60\""}}, time.Minute},
		{http.Header{"Cache-Control": {"max-age=300, s-maxage=30"}}, 30 * time.Second},
		{http.Header{"Cache-Control": {"max-age=300", "no-store"}}, 0},
		{http.Header{"Cache-Control": {"no-cache"}}, 0},
		{http.Header{"Cache-Control": {"max-age=-1"}}, 0},
		{http.Header{"Cache-Control": {"max-age=99999999999999999999"}}, 0},
		{http.Header{"Expires": {now.Add(time.Hour).Format(http.TimeFormat)}}, time.Hour},
		{http.Header{"Expires": {now.Add(time.Hour).Format(http.TimeFormat)}, "Date": {now.Add(-time.Hour).Format(http.TimeFormat)}}, 2 * time.Hour},
		{http.Header{"Expires": {"0"}}, 0},
		{http.Header{"Expires": {now.Add(-time.Hour).Format(http.TimeFormat)}}, 0},
		{http.Header{"Expires": {now.Add(time.Hour).Format(http.TimeFormat)}, "Cache-Control": {"max-age=10"}}, 10 * time.Second},
	} {
		if got := cacheAge(tc.h, now); got != tc.want {
			t.Errorf("cacheAge(%v) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

func TestIsClientIDURL(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"https://app.example/client.json", true},
		{"https://app.example:8443/clients/a?v=1", true},
		{"http://127.0.0.1:8080/client.json", true},
		{"http://localhost/client.json", true},
		{"http://app.example/client.json", false},
		{"https://app.example", false},
		{"https://app.example/", false},
		{"https://app.example/a#frag", false},
		{"https://user@app.example/a", false},
		{"https://app.example/a/../b", false},
		{"https://app.example/a/%2E%2E/b", false},
		{"https://app.example/./b", false},
		{"https:///a", false},
		{"https://app.example:99999/a", false},
		{"https://app.example/a b", false},
		{"abcdef0123456789", false},
		{"urn:example:client", false},
		{"https://app.example/" + strings.Repeat("a", maxClientIDURLLen), false},
	} {
		if got := isClientIDURL(tc.id); got != tc.want {
			t.Errorf("isClientIDURL(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func FuzzIsClientIDURL(f *testing.F) {
	for _, s := range []string{"https://app.example/client.json", "http://127.0.0.1:1/c", "https://a/..", "https://a/%2e", "https://[::1]/x", "https://a:0/x", "abc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !isClientIDURL(id) {
			return
		}
		// Property: an accepted id is an absolute http(s) URL with a host
		// and a path, no user information or fragment, http only on loopback.
		u, err := neturlParse(id)
		if err != nil {
			t.Fatalf("accepted %q, which does not parse: %v", id, err)
		}
		if u.Hostname() == "" || u.User != nil || u.Fragment != "" || strings.Contains(id, "#") || len(u.EscapedPath()) < 2 {
			t.Fatalf("accepted %q: %+v", id, u)
		}
		if u.Scheme != "https" && !(u.Scheme == "http" && oauth.IsLoopbackHost(u.Hostname())) {
			t.Fatalf("accepted %q with scheme %q", id, u.Scheme)
		}
		if u.String() == "" || len(id) > maxClientIDURLLen {
			t.Fatalf("accepted %q", id)
		}
	})
}

func FuzzParseClientDocument(f *testing.F) {
	const id = "https://app.example/client.json"
	for _, s := range []string{
		`{"client_id":"https://app.example/client.json","client_name":"A","redirect_uris":["http://127.0.0.1/cb"]}`,
		`{"client_id":"https://app.example/client.json","client_name":"A","redirect_uris":["com.example.app:/cb"],"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_methods_supported":["private_key_jwt","none"]}`,
		`{"client_id":"https://app.example/client.json","client_name":"A","redirect_uris":["https://a/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://a/jwks"}`,
		`{"client_id":"https://app.example/client.json","client_name":"A","redirect_uris":["https://a/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}}`,
		`{"client_id":"https://app.example/other","client_name":"A","redirect_uris":["https://a/cb"]}`,
		`[]`, `null`, `{"client_id":1}`, `{"client_id":"https://app.example/client.json","client_id":"x"}`,
	} {
		f.Add(id, []byte(s))
	}
	f.Fuzz(func(t *testing.T, url string, body []byte) {
		d, err := parseClientDocument(url, body)
		if err != nil {
			if d != nil {
				t.Fatal("a document and an error")
			}
			return
		}
		// Properties of an accepted document.
		if d.ClientID != url {
			t.Fatalf("client_id %q accepted for URL %q", d.ClientID, url)
		}
		if strings.TrimSpace(d.ClientName) == "" || len(d.RedirectURIs) == 0 {
			t.Fatalf("accepted without client_name or redirect_uris: %+v", d)
		}
		for _, u := range d.RedirectURIs {
			if err := oauth.ValidateRedirectURI(u, true); err != nil {
				t.Fatalf("accepted redirect URI %q: %v", u, err)
			}
		}
		m, err := d.authMethod()
		if err != nil || (m != storage.AuthMethodNone && m != storage.AuthMethodPrivateKeyJWT) {
			t.Fatalf("auth method %q, %v", m, err)
		}
		// Round trip: what was accepted re-marshals to a document that
		// parses to the same thing.
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		d2, err := parseClientDocument(url, b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		b2, _ := json.Marshal(d2)
		if !reflect.DeepEqual(normalizeDoc(d), normalizeDoc(d2)) || string(b) != string(b2) {
			t.Fatalf("round trip differs:\n%s\n%s", b, b2)
		}
	})
}

// normalizeDoc compacts the raw jwks so that formatting differences do not
// count in the round-trip comparison.
func normalizeDoc(d *clientDocument) clientDocument {
	c := *d
	if len(c.JWKS) > 0 {
		var v any
		json.Unmarshal(c.JWKS, &v)
		c.JWKS, _ = json.Marshal(v)
	}
	return c
}

// TestParseClientDocumentStrictMembers: no parser differential on member
// names: duplicates are refused, and a differently-cased client_id is an
// unknown member, not the client_id.
func TestParseClientDocumentStrictMembers(t *testing.T) {
	const id = "https://app.example/client.json"
	for _, body := range []string{
		`{"client_id":"https://evil.example/c.json","client_name":"A","redirect_uris":["https://a/cb"],"CLIENT_ID":"` + id + `"}`,
		`{"client_id":"https://evil.example/c.json","client_name":"A","redirect_uris":["https://a/cb"],"client_id":"` + id + `"}`,
		`{"client_id":"` + id + `","client_name":"A","redirect_uris":["https://a/cb"],"redirect_uris":["https://evil/cb"]}`,
	} {
		if d, err := parseClientDocument(id, []byte(body)); err == nil {
			t.Errorf("parseClientDocument(%s) = %+v, want an error", body, d)
		}
	}
	// Unknown members, whatever their case, are ignored.
	body := `{"client_id":"` + id + `","client_name":"A","redirect_uris":["https://a/cb"],"Client_Name":"B","extra":[1]}`
	if d, err := parseClientDocument(id, []byte(body)); err != nil || d.ClientName != "A" {
		t.Errorf("parseClientDocument(%s) = %+v, %v", body, d, err)
	}
}
