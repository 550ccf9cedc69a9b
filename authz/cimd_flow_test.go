package authz

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
)

// cimdFHost is a client's HTTPS site (its own test CA) publishing files: a
// metadata document, a JWKS. Requests are counted per path.
type cimdFHost struct {
	hs *httptest.Server

	mu    sync.Mutex
	files map[string]string // path → JSON body
	hits  map[string]int
}

func cimdFNewHost(t *testing.T) *cimdFHost {
	t.Helper()
	h := &cimdFHost{files: map[string]string{}, hits: map[string]int{}}
	h.hs = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		body, ok := h.files[r.URL.Path]
		h.hits[r.URL.Path]++
		h.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}))
	t.Cleanup(h.hs.Close)
	return h
}

func (h *cimdFHost) put(path string, v any) string {
	var body string
	if s, ok := v.(string); ok {
		body = s
	} else {
		b, _ := json.Marshal(v)
		body = string(b)
	}
	h.mu.Lock()
	h.files[path] = body
	h.mu.Unlock()
	return h.hs.URL + path
}

func (h *cimdFHost) count(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits[path]
}

// cimdFTrust lets the server fetch from hosts, and only from them: their
// test CA is trusted, and the SSRF guard lets exactly their addresses
// through (every other loopback or private address stays blocked).
func cimdFTrust(hosts ...*cimdFHost) func(*Config) {
	return func(c *Config) {
		pool := hosts[0].hs.Client().Transport.(*http.Transport).Clone()
		for _, h := range hosts[1:] {
			pool.TLSClientConfig.RootCAs.AddCert(h.hs.Certificate())
		}
		c.CIMD.Transport = pool
		c.CIMD.MinCacheAge = time.Second
		for _, h := range hosts {
			c.CIMD.allowAddrs = append(c.CIMD.allowAddrs, netip.MustParseAddrPort(h.hs.Listener.Addr().String()))
		}
	}
}

// cimdFDoc is a public client's metadata document for id, returning to
// redirects.
func cimdFDoc(id string, redirects ...string) map[string]any {
	return map[string]any{
		"client_id":      id,
		"client_name":    "CIMD Flow Client",
		"redirect_uris":  redirects,
		"grant_types":    []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"},
	}
}

// cimdFKey is a client's ES256 key pair and its public JWK; the JWK has no
// "use", which RFC 7517 allows and real documents omit.
type cimdFKey struct {
	priv *ecdsa.PrivateKey
	kid  string
}

func cimdFNewKey(t *testing.T, kid string) cimdFKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return cimdFKey{priv: k, kid: kid}
}

func (k cimdFKey) jwks() map[string]any {
	jwk := jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: "ES256"}
	b, _ := jwk.MarshalJSON()
	var m map[string]any
	json.Unmarshal(b, &m)
	return map[string]any{"keys": []any{m}}
}

// assertion is an RFC 7523 client assertion for clientID, to aud, with jti.
func (k cimdFKey) assertion(t *testing.T, clientID, aud, jti string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := josejwt.Signed(signer).Claims(map[string]any{
		"iss": clientID, "sub": clientID, "aud": aud, "jti": jti,
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
	}).CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func cimdFAssertionForm(a string) url.Values {
	return url.Values{
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {a},
	}
}

// TestCIMDPublicClientTokens: a public metadata-document client (none)
// exchanges its code, refreshes and revokes with its URL as client_id; the
// token's client_id is the URL.
func TestCIMDPublicClientTokens(t *testing.T) {
	host := cimdFNewHost(t)
	var skew atomic.Int64 // the server's clock runs this far ahead
	e := newTokEnv(t, func(c *Config) {
		cimdFTrust(host)(c)
		// Fresh for an hour on the server's clock, whatever the load on the
		// machine makes the steps below take; the skew then expires it.
		c.CIMD.MinCacheAge = time.Hour
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	id := host.hs.URL + "/client.json"
	host.put("/client.json", cimdFDoc(id, tokRedirect))

	code := e.authorize(id, []string{"mcp"}, nil)
	r := e.exchange(id, "", code, nil)
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.status, r.raw)
	}
	if _, claims := e.jwt(r.str("access_token"), typAccessToken); claims["client_id"] != id {
		t.Errorf("access token client_id = %v, want %s", claims["client_id"], id)
	}
	rr := e.refresh(id, "", r.str("refresh_token"), nil)
	if rr.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", rr.status, rr.raw)
	}
	if rv := e.post("/revoke", url.Values{"token": {rr.str("refresh_token")}, "client_id": {id}}, "", ""); rv.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", rv.status, rv.raw)
	}
	wantError(t, e.refresh(id, "", rr.str("refresh_token"), nil), http.StatusBadRequest, "invalid_grant")
	// Everything above used the cached document.
	if n := host.count("/client.json"); n != 1 {
		t.Errorf("document fetched %d times, want 1 (cached)", n)
	}
	// Another client cannot use the code of this one, nor this one
	// authenticate with a secret it does not have.
	code = e.authorize(id, []string{"mcp"}, nil)
	wantError(t, e.exchange(id, "guess", code, nil), http.StatusUnauthorized, "invalid_client")

	// The document goes bad. While the cached copy is fresh, nothing
	// changes; once it has expired (the minimum cache age, an hour here, on
	// the server's clock) the client cannot use its code any more.
	host.put("/client.json", cimdFDoc(host.hs.URL+"/someone-else.json", tokRedirect))
	fresh := e.authorize(id, []string{"mcp"}, nil)
	if r := e.exchange(id, "", fresh, nil); r.status != http.StatusOK {
		t.Fatalf("exchange with the cached document: %d %s", r.status, r.raw)
	}
	skew.Store(int64(2 * time.Hour))
	r = e.exchange(id, "", code, nil)
	wantError(t, r, http.StatusUnauthorized, "invalid_client")
	if !strings.Contains(r.str("error_description"), "client_id") {
		t.Errorf("error_description = %q, want the document's problem", r.str("error_description"))
	}
	if n := host.count("/client.json"); n != 2 {
		t.Errorf("document fetched %d times, want 2 (again after it expired)", n)
	}
}

// TestCIMDPrivateKeyJWT: a document with private_key_jwt and its keys
// inline (jwks) or by reference (jwks_uri, fetched through the guard):
// the code exchange and the refresh authenticate with signed assertions
// whose aud is the token endpoint; a replayed jti, a wrong audience, a
// foreign key and no assertion at all are invalid_client.
func TestCIMDPrivateKeyJWT(t *testing.T) {
	for _, tc := range []struct {
		name         string
		byRef, noAlg bool
	}{{"jwks", false, false}, {"jwks_uri", true, false}, {"jwks whose keys name the alg", false, true}} {
		byRef := tc.byRef
		t.Run(tc.name, func(t *testing.T) {
			host := cimdFNewHost(t)
			e := newTokEnv(t, cimdFTrust(host))
			id := host.hs.URL + "/clients/agent.json"
			key := cimdFNewKey(t, "k1")
			doc := cimdFDoc(id, tokRedirect)
			doc["token_endpoint_auth_method"] = "private_key_jwt"
			if !tc.noAlg {
				doc["token_endpoint_auth_signing_alg"] = "ES256"
			}
			if byRef {
				doc["jwks_uri"] = host.put("/clients/jwks.json", key.jwks())
			} else {
				doc["jwks"] = key.jwks()
			}
			host.put("/clients/agent.json", doc)
			aud := e.s.cfg.Issuer + "/token"

			code := e.authorize(id, []string{"mcp"}, nil)
			// Without an assertion this client cannot authenticate.
			wantError(t, e.exchange(id, "", code, nil), http.StatusUnauthorized, "invalid_client")

			code = e.authorize(id, []string{"mcp"}, nil)
			first := key.assertion(t, id, aud, "jti-1")
			r := e.exchange(id, "", code, cimdFAssertionForm(first))
			if r.status != http.StatusOK {
				t.Fatalf("exchange with a client assertion: %d %s", r.status, r.raw)
			}
			// RFC 7523 §3: a jti is used once.
			wantError(t, e.refresh(id, "", r.str("refresh_token"), cimdFAssertionForm(first)), http.StatusUnauthorized, "invalid_client")
			// The audience is the token endpoint, nothing else.
			wantError(t, e.refresh(id, "", r.str("refresh_token"), cimdFAssertionForm(key.assertion(t, id, e.s.cfg.Issuer, "jti-2"))), http.StatusUnauthorized, "invalid_client")
			// A key that is not the client's.
			other := cimdFNewKey(t, "k1")
			wantError(t, e.refresh(id, "", r.str("refresh_token"), cimdFAssertionForm(other.assertion(t, id, aud, "jti-3"))), http.StatusUnauthorized, "invalid_client")

			rr := e.refresh(id, "", r.str("refresh_token"), cimdFAssertionForm(key.assertion(t, id, aud, "jti-4")))
			if rr.status != http.StatusOK {
				t.Fatalf("refresh with a fresh assertion: %d %s", rr.status, rr.raw)
			}
			// RFC 7523 §3: the assertion alone names the client (sub).
			form := cimdFAssertionForm(key.assertion(t, id, aud, "jti-5"))
			form.Set("grant_type", "refresh_token")
			form.Set("refresh_token", rr.str("refresh_token"))
			if r3 := e.post("/token", form, "", ""); r3.status != http.StatusOK {
				t.Fatalf("refresh with only a client assertion: %d %s", r3.status, r3.raw)
			}
			if byRef {
				if n := host.count("/clients/jwks.json"); n < 1 || n > 2 {
					t.Errorf("jwks_uri fetched %d times, want once (cached; a second time at most for the foreign key's forced refresh)", n)
				}
			}
		})
	}
}

// TestCIMDJWKSURIGuarded: a jwks_uri on an address the guard does not
// allow (another loopback server, as an attacker would point at an
// internal service) is never requested, and the client cannot authenticate.
func TestCIMDJWKSURIGuarded(t *testing.T) {
	host, internal := cimdFNewHost(t), cimdFNewHost(t)
	trust := cimdFTrust(host, internal)
	e := newTokEnv(t, func(c *Config) {
		trust(c)
		c.CIMD.allowAddrs = c.CIMD.allowAddrs[:1] // the CA of both, the address of host only
	})
	id := host.hs.URL + "/client.json"
	key := cimdFNewKey(t, "k1")
	doc := cimdFDoc(id, tokRedirect)
	doc["token_endpoint_auth_method"] = "private_key_jwt"
	doc["token_endpoint_auth_signing_alg"] = "ES256"
	doc["jwks_uri"] = internal.put("/jwks.json", key.jwks())
	host.put("/client.json", doc)

	code := e.authorize(id, []string{"mcp"}, nil)
	r := e.exchange(id, "", code, cimdFAssertionForm(key.assertion(t, id, e.s.cfg.Issuer+"/token", "jti-1")))
	wantError(t, r, http.StatusUnauthorized, "invalid_client")
	if n := internal.count("/jwks.json"); n != 0 {
		t.Errorf("the internal jwks_uri was requested %d times", n)
	}
}

// TestCIMDAuthorizeRefusals: whatever is wrong with a client's metadata
// document, /authorize shows a page (400) naming the OAuth error, and never
// redirects to the requested redirect URI, which nothing vouches for.
func TestCIMDAuthorizeRefusals(t *testing.T) {
	host := cimdFNewHost(t)
	e := &azEnv{loginEnv: loginSetup(t, true, cimdFTrust(host)), redirect: "http://127.0.0.1/cb",
		verifier: "verifier-0123456789-0123456789-0123456789-0123456789"}
	c := e.signedInClient(t, "bob")
	good := host.hs.URL + "/good.json"
	host.put("/good.json", cimdFDoc(good, "http://127.0.0.1/cb"))
	mismatch := host.hs.URL + "/mismatch.json"
	host.put("/mismatch.json", cimdFDoc(host.hs.URL+"/other.json", "http://127.0.0.1/cb"))
	notJSON := host.put("/not-json.json", "<html>hello</html>")
	noName := host.hs.URL + "/noname.json"
	d := cimdFDoc(noName, "http://127.0.0.1/cb")
	delete(d, "client_name")
	host.put("/noname.json", d)

	for _, tc := range []struct {
		name, clientID, redirect, want string
	}{
		{"redirect URI not in the document", good, "https://evil.example/cb", "did not register"},
		{"client_id differs from the URL", mismatch, "http://127.0.0.1/cb", "invalid_client"},
		{"not JSON", notJSON, "http://127.0.0.1/cb", "invalid_client"},
		{"no client_name", noName, "http://127.0.0.1/cb", "invalid_client"},
		{"no document", host.hs.URL + "/missing.json", "http://127.0.0.1/cb", "invalid_client"},
		{"http when not allowed", "http://127.0.0.1:1/client.json", "http://127.0.0.1/cb", "invalid_client"},
		{"URL without a path", host.hs.URL, "http://127.0.0.1/cb", "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.clientID = tc.clientID
			q := e.params(map[string]string{"redirect_uri": tc.redirect})
			r := e.do(t, c, "GET", "/authorize?"+q.Encode(), nil, nil)
			if r.StatusCode != http.StatusBadRequest || r.Header.Get("Location") != "" {
				t.Fatalf("got %s Location=%q, want a 400 page\n%s", r.Status, r.Header.Get("Location"), r.body)
			}
			if !strings.Contains(r.body, tc.want) {
				t.Errorf("page does not say %q:\n%s", tc.want, r.body)
			}
		})
	}
}

// TestCIMDConsentPage: the consent page for a metadata-document client
// shows the document's name, the host of its client_id URL and of the
// redirect URI, warns when they differ, marks the source, and does not
// load the document's logo_uri.
func TestCIMDConsentPage(t *testing.T) {
	host := cimdFNewHost(t)
	e := &azEnv{loginEnv: loginSetup(t, true, cimdFTrust(host)), verifier: "verifier-0123456789-0123456789-0123456789-0123456789"}
	c := e.signedInClient(t, "bob")
	e.clientID = host.hs.URL + "/client.json"
	doc := cimdFDoc(e.clientID, "https://elsewhere.example/cb", "http://127.0.0.1/cb")
	doc["client_name"] = "Docs <Agent>"
	doc["logo_uri"] = "https://tracker.example/logo.png"
	host.put("/client.json", doc)
	clientHost := strings.TrimPrefix(host.hs.URL, "https://")

	for _, tc := range []struct {
		redirect string
		want     []string
		not      []string
	}{
		{"https://elsewhere.example/cb",
			[]string{"Docs &lt;Agent&gt;", "Identified by", clientHost, "(metadata document)", "elsewhere.example", "a different host"},
			[]string{"tracker.example", "registered itself", "any program on this computer"}},
		{"http://127.0.0.1/cb",
			[]string{"Identified by", clientHost, "any program on this computer"},
			[]string{"tracker.example", "a different host"}},
	} {
		e.redirect = tc.redirect
		r := e.do(t, c, "GET", "/authorize?"+e.params(nil).Encode(), nil, nil)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s\n%s", tc.redirect, r.Status, r.body)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.body, w) {
				t.Errorf("%s: consent page lacks %q", tc.redirect, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(r.body, n) {
				t.Errorf("%s: consent page shows %q", tc.redirect, n)
			}
		}
	}
}

// TestCIMDClientJWKS: the jwks_uri key set keeps public signing keys only.
func TestCIMDClientJWKS(t *testing.T) {
	k := cimdFNewKey(t, "a")
	pub, _ := json.Marshal(k.jwks())
	set, err := parseClientJWKS(pub)
	if err != nil || len(set.Keys) != 1 || set.Keys[0].Use != "sig" {
		t.Fatalf("public key without use: %v %+v", err, set)
	}
	priv := jose.JSONWebKey{Key: k.priv, KeyID: "a", Algorithm: "ES256"}
	b, _ := priv.MarshalJSON()
	if _, err := parseClientJWKS([]byte(`{"keys":[` + string(b) + `]}`)); err == nil {
		t.Errorf("a private key was accepted")
	}
	enc := jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: "e", Use: "enc"}
	b, _ = enc.MarshalJSON()
	if set, err := parseClientJWKS([]byte(`{"keys":[` + string(b) + `]}`)); err != nil || len(set.Keys) != 0 {
		t.Errorf("an encryption key was kept: %v %+v", err, set)
	}
	for _, bad := range []string{`not json`, `{"keys":[]}`, `{}`} {
		if _, err := parseClientJWKS([]byte(bad)); err == nil {
			t.Errorf("parseClientJWKS(%s) accepted", bad)
		}
	}
}
