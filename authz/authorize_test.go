package authz

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth/storage"
)

// azEnv is a login test server (users alice the admin, bob, dora disabled)
// with one public client whose redirect URI is on loopback.
type azEnv struct {
	*loginEnv
	clientID string
	redirect string
	verifier string
}

func azSetup(t *testing.T) *azEnv {
	t.Helper()
	e := &azEnv{loginEnv: loginSetup(t, true, nil), clientID: "az-client", redirect: "http://127.0.0.1/cb",
		verifier: "verifier-0123456789-0123456789-0123456789-0123456789"}
	err := e.s.db.CreateClient(t.Context(), &storage.Client{
		ID:                      e.clientID,
		TokenEndpointAuthMethod: storage.AuthMethodNone,
		RedirectURIs:            []string{e.redirect, "http://localhost:3000/oauth/callback"},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		Scopes:                  []string{"mcp"},
		Audiences:               []string{e.s.cfg.MCPResource},
		Metadata:                storage.ClientMetadata{ClientName: "Az Test Client"},
		Source:                  storage.SourceDCR,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// params is a valid authorization request, with overrides (an empty value
// removes the parameter).
func (e *azEnv) params(over map[string]string) url.Values {
	sum := sha256.Sum256([]byte(e.verifier))
	v := url.Values{
		"response_type":         {"code"},
		"client_id":             {e.clientID},
		"redirect_uri":          {e.redirect},
		"scope":                 {"mcp"},
		"state":                 {"state-12345678"},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
		"resource":              {e.s.cfg.MCPResource},
	}
	for k, val := range over {
		if val == "" {
			v.Del(k)
		} else {
			v.Set(k, val)
		}
	}
	return v
}

func (e *azEnv) signedInClient(t *testing.T, user string) *http.Client {
	t.Helper()
	c := e.client(t)
	if r := e.login(t, c, user, loginPassword, "/"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login %s: %s\n%s", user, r.Status, r.body)
	}
	return c
}

// redirected checks that r sends the browser to the client's redirect URI
// and returns the query it carries.
func (e *azEnv) redirected(t *testing.T, r loginResp, redirect string) url.Values {
	t.Helper()
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("want a redirect to the client, got %s\n%s", r.Status, r.body)
	}
	loc, err := url.Parse(r.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirect {
		t.Fatalf("redirected to %s, want %s", got, redirect)
	}
	q := loc.Query()
	// RFC 9207: every authorization response, errors included, names the issuer.
	if q.Get("iss") != e.s.cfg.Issuer {
		t.Errorf("iss = %q, want %q", q.Get("iss"), e.s.cfg.Issuer)
	}
	return q
}

// consentForm returns the values the consent page would submit.
func azConsentForm(t *testing.T, page string) url.Values {
	t.Helper()
	v := url.Values{}
	for _, m := range azInputRE.FindAllStringSubmatch(page, -1) {
		v.Add(m[1], html.UnescapeString(m[2]))
	}
	for _, m := range azCheckedRE.FindAllStringSubmatch(page, -1) {
		v.Add("grant_scope", m[1])
	}
	if v.Get("csrf_token") == "" {
		t.Fatalf("no consent form in page:\n%s", page)
	}
	return v
}

func TestAuthorizeConsentAndRemember(t *testing.T) {
	e := azSetup(t)
	c := e.signedInClient(t, "bob")

	page := e.do(t, c, "GET", "/authorize?"+e.params(map[string]string{"scope": "mcp openid admin"}).Encode(), nil, nil)
	if page.StatusCode != http.StatusOK {
		t.Fatalf("consent page: %s\n%s", page.Status, page.body)
	}
	for _, want := range []string{"Az Test Client", "127.0.0.1", "runs on your computer", `value="mcp" checked`, `value="openid" checked`, "needs the administrator role"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if strings.Contains(page.body, `value="admin"`) {
		t.Error("a non-admin is offered the admin scope")
	}
	if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("consent page CSP = %q", csp)
	}

	// Narrow the grant to openid only.
	form := azConsentForm(t, page.body)
	form["grant_scope"] = []string{"openid"}
	form.Set("decision", "allow")
	q := e.redirected(t, e.do(t, c, "POST", "/authorize", form, e.sameOrigin()), e.redirect)
	if q.Get("code") == "" || q.Get("state") != "state-12345678" {
		t.Fatalf("authorization response = %v", q)
	}
	consent, err := e.s.db.Consent(t.Context(), azUserID(t, e, "bob"), e.clientID)
	if err != nil || !slices.Equal(consent.Scopes, []string{"openid"}) {
		t.Fatalf("remembered consent = %+v, %v", consent, err)
	}

	// What was approved is remembered: no page for openid alone …
	r := e.do(t, c, "GET", "/authorize?"+e.params(map[string]string{"scope": "openid"}).Encode(), nil, nil)
	if q := e.redirected(t, r, e.redirect); q.Get("code") == "" {
		t.Fatalf("remembered consent did not skip the page: %v", q)
	}
	// … but the page again for more than was approved, and for prompt=consent.
	for _, over := range []map[string]string{{"scope": "mcp openid"}, {"scope": "openid", "prompt": "consent"}} {
		r := e.do(t, c, "GET", "/authorize?"+e.params(over).Encode(), nil, nil)
		if r.StatusCode != http.StatusOK || !strings.Contains(r.body, `name="decision"`) {
			t.Errorf("%v: want the consent page, got %s", over, r.Status)
		}
	}
	// prompt=none cannot show a page.
	r = e.do(t, c, "GET", "/authorize?"+e.params(map[string]string{"scope": "mcp", "prompt": "none"}).Encode(), nil, nil)
	if q := e.redirected(t, r, e.redirect); q.Get("error") != "consent_required" {
		t.Errorf("prompt=none without consent: %v", q)
	}
}

func azUserID(t *testing.T, e *azEnv, name string) string {
	t.Helper()
	u, err := e.s.db.UserByName(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

func TestAuthorizeAdminScopeForAdmins(t *testing.T) {
	e := azSetup(t)
	c := e.signedInClient(t, "alice")
	page := e.do(t, c, "GET", "/authorize?"+e.params(map[string]string{"scope": "mcp admin"}).Encode(), nil, nil)
	if !strings.Contains(page.body, `value="admin" checked`) {
		t.Fatalf("the admin is not offered the admin scope:\n%s", page.body)
	}
	// A non-admin asking only for admin scopes cannot grant anything.
	b := e.signedInClient(t, "bob")
	r := e.do(t, b, "GET", "/authorize?"+e.params(map[string]string{"scope": "admin"}).Encode(), nil, nil)
	if q := e.redirected(t, r, e.redirect); q.Get("error") != "access_denied" {
		t.Errorf("non-admin asking for admin: %v", q)
	}
}

func TestAuthorizeSignInFirst(t *testing.T) {
	e := azSetup(t)
	c := e.client(t)
	path := "/authorize?" + e.params(nil).Encode()
	r := e.do(t, c, "GET", path, nil, nil)
	loc := r.Header.Get("Location")
	if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?") {
		t.Fatalf("not signed in: %s → %q", r.Status, loc)
	}
	if got := mustURL(t, loc).Query().Get("return_to"); got != path {
		t.Errorf("return_to = %q, want %q", got, path)
	}
	// After signing in, the browser comes back to the same request.
	if r := e.login(t, c, "bob", loginPassword, path); r.Header.Get("Location") != path {
		t.Errorf("after login: %s → %q", r.Status, r.Header.Get("Location"))
	}
	// prompt=none without a session is an error for the client, not a page.
	r = e.do(t, e.client(t), "GET", "/authorize?"+e.params(map[string]string{"prompt": "none"}).Encode(), nil, nil)
	if q := e.redirected(t, r, e.redirect); q.Get("error") != "login_required" || q.Get("state") != "state-12345678" {
		t.Errorf("prompt=none: %v", q)
	}
}

// TestAuthorizeNeverRedirectsToUnregisteredURIs: problems with client_id or
// redirect_uri are shown as a page; the browser is never sent anywhere.
func TestAuthorizeNeverRedirectsToUnregisteredURIs(t *testing.T) {
	e := azSetup(t)
	c := e.signedInClient(t, "bob")
	for name, over := range map[string]map[string]string{
		"unknown client":       {"client_id": "nope"},
		"no client":            {"client_id": ""},
		"other host":           {"redirect_uri": "https://evil.example/cb"},
		"suffix host":          {"redirect_uri": "http://127.0.0.1.evil.example/cb"},
		"userinfo":             {"redirect_uri": "http://evil.example@127.0.0.1/cb"},
		"path traversal":       {"redirect_uri": "http://127.0.0.1/cb/../evil"},
		"longer path":          {"redirect_uri": "http://127.0.0.1/cb/x"},
		"added query":          {"redirect_uri": "http://127.0.0.1/cb?next=https://evil.example"},
		"fragment":             {"redirect_uri": "http://127.0.0.1/cb#x"},
		"https instead":        {"redirect_uri": "https://127.0.0.1/cb"},
		"localhost for IP":     {"redirect_uri": "http://localhost/cb"},
		"encoded slash":        {"redirect_uri": "http://127.0.0.1/cb%2F..%2Fevil"},
		"javascript":           {"redirect_uri": "javascript:alert(1)"},
		"missing, two on file": {"redirect_uri": ""},
	} {
		r := e.do(t, c, "GET", "/authorize?"+e.params(over).Encode(), nil, nil)
		if r.StatusCode != http.StatusBadRequest || r.Header.Get("Location") != "" {
			t.Errorf("%s: %s Location %q", name, r.Status, r.Header.Get("Location"))
		}
		if !strings.Contains(r.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: not an error page: %s", name, r.Header.Get("Content-Type"))
		}
	}
	// Two redirect_uri parameters are ambiguous: a page too.
	v := e.params(nil)
	v.Add("redirect_uri", "https://evil.example/cb")
	if r := e.do(t, c, "GET", "/authorize?"+v.Encode(), nil, nil); r.StatusCode != http.StatusBadRequest || r.Header.Get("Location") != "" {
		t.Errorf("two redirect URIs: %s", r.Status)
	}
	// RFC 8252 §7.3: a loopback redirect URI matches on any port.
	for _, uri := range []string{"http://127.0.0.1:49152/cb", "http://localhost:6274/oauth/callback"} {
		r := e.do(t, c, "GET", "/authorize?"+e.params(map[string]string{"redirect_uri": uri}).Encode(), nil, nil)
		if r.StatusCode != http.StatusOK {
			t.Errorf("%s: %s\n%s", uri, r.Status, r.body)
		}
	}
}

// TestAuthorizeErrorsGoToTheClient: once the redirect URI is trusted, every
// error goes back to the client with error, state and iss.
func TestAuthorizeErrorsGoToTheClient(t *testing.T) {
	e := azSetup(t)
	c := e.signedInClient(t, "bob")
	for name, tc := range map[string]struct {
		over map[string]string
		want string
	}{
		"no PKCE":              {map[string]string{"code_challenge": "", "code_challenge_method": ""}, "invalid_request"},
		"plain PKCE":           {map[string]string{"code_challenge": "abcdefghijklmnopqrstuvwxyz0123456789abcdefg", "code_challenge_method": "plain"}, "invalid_request"},
		"no challenge method":  {map[string]string{"code_challenge_method": ""}, "invalid_request"},
		"foreign resource":     {map[string]string{"resource": "https://evil.example/mcp"}, "invalid_target"},
		"resource on our host": {map[string]string{"resource": e.s.cfg.Issuer + "/other"}, "invalid_target"},
		"resource fragment":    {map[string]string{"resource": e.s.cfg.MCPResource + "#x"}, "invalid_target"},
		"relative resource":    {map[string]string{"resource": "/mcp"}, "invalid_target"},
		"implicit":             {map[string]string{"response_type": "token"}, "unsupported_response_type"},
		"unknown scope":        {map[string]string{"scope": "mcp everything"}, "invalid_scope"},
		"request object":       {map[string]string{"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"},
	} {
		r := e.do(t, c, "GET", "/authorize?"+e.params(tc.over).Encode(), nil, nil)
		q := e.redirected(t, r, e.redirect)
		if q.Get("error") != tc.want || q.Get("code") != "" {
			t.Errorf("%s: error = %q (%s), want %q", name, q.Get("error"), q.Get("error_description"), tc.want)
		}
		if tc.over["state"] == "" && q.Get("state") != "state-12345678" {
			t.Errorf("%s: state = %q", name, q.Get("state"))
		}
	}
	// fosite requires a state of 8 characters or more; its invalid_state is
	// not a code clients know, so it goes out as invalid_request.
	for _, st := range []string{"", "abc"} {
		r := e.do(t, c, "GET", "/authorize?"+e.params(map[string]string{"state": st}).Encode(), nil, nil)
		if q := e.redirected(t, r, e.redirect); q.Get("error") != "invalid_request" || q.Get("state") != st {
			t.Errorf("state %q: %v", st, q)
		}
	}
	// The resource is compared in canonical form: a trailing slash is the same resource.
	r := e.do(t, c, "GET", "/authorize?"+e.params(map[string]string{"resource": e.s.cfg.MCPResource + "/"}).Encode(), nil, nil)
	if r.StatusCode != http.StatusOK {
		t.Errorf("resource with a trailing slash: %s", r.Status)
	}
}

// TestConsentPostNeedsCSRF: the decision is taken only from the consent
// page of the signed-in user's own session, posted from this origin.
func TestConsentPostNeedsCSRF(t *testing.T) {
	e := azSetup(t)
	c := e.signedInClient(t, "bob")
	page := e.do(t, c, "GET", "/authorize?"+e.params(nil).Encode(), nil, nil)
	form := azConsentForm(t, page.body)
	form.Set("decision", "allow")

	noToken := cloneForm(form)
	noToken.Del("csrf_token")
	wrong := cloneForm(form)
	wrong.Set("csrf_token", "AAAA"+form.Get("csrf_token")[4:])
	for name, tc := range map[string]struct {
		form url.Values
		hdr  map[string]string
	}{
		"no token":       {noToken, e.sameOrigin()},
		"wrong token":    {wrong, e.sameOrigin()},
		"cross-site":     {form, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
		"foreign origin": {form, map[string]string{"Origin": "https://evil.example"}},
	} {
		r := e.do(t, c, "POST", "/authorize", tc.form, tc.hdr)
		if r.StatusCode != http.StatusForbidden || strings.Contains(r.Header.Get("Location"), "code=") {
			t.Errorf("%s: %s Location %q", name, r.Status, r.Header.Get("Location"))
		}
	}
	// Another user's token does not work in this session.
	other := e.signedInClient(t, "alice")
	if r := e.do(t, other, "POST", "/authorize", form, e.sameOrigin()); r.StatusCode != http.StatusForbidden {
		t.Errorf("another session's token: %s", r.Status)
	}
	// Deny is answered to the client.
	deny := cloneForm(form)
	deny.Set("decision", "deny")
	if q := e.redirected(t, e.do(t, c, "POST", "/authorize", deny, e.sameOrigin()), e.redirect); q.Get("error") != "access_denied" {
		t.Errorf("deny: %v", q)
	}
	// A granted scope that was not requested is ignored, not granted.
	widen := cloneForm(form)
	widen["grant_scope"] = []string{"mcp", "openid", "admin"}
	q := e.redirected(t, e.do(t, c, "POST", "/authorize", widen, e.sameOrigin()), e.redirect)
	if q.Get("scope") != "mcp" {
		t.Errorf("widened consent granted %q", q.Get("scope"))
	}
}

func cloneForm(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// TestMalformedBodies: oversized and malformed bodies get a clean answer on
// every endpoint (OAuth error JSON where the endpoint speaks JSON, a page on
// the browser endpoint), never a 500.
func TestMalformedBodies(t *testing.T) {
	e := azSetup(t)
	big := strings.Repeat("a", maxFormBytes+1)
	for _, tc := range []struct {
		path, contentType, body string
		want                    int
	}{
		{"/token", "application/x-www-form-urlencoded", "grant_type=" + big, http.StatusRequestEntityTooLarge},
		{"/token", "application/x-www-form-urlencoded", "grant_type=%zz", http.StatusBadRequest},
		{"/token", "application/json", `{"grant_type":"client_credentials"}`, http.StatusBadRequest},
		{"/revoke", "application/x-www-form-urlencoded", "token=" + big, http.StatusRequestEntityTooLarge},
		{"/revoke", "application/x-www-form-urlencoded", "token=%zz", http.StatusBadRequest},
		{"/introspect", "application/x-www-form-urlencoded", "token=" + big, http.StatusRequestEntityTooLarge},
		{"/introspect", "application/x-www-form-urlencoded", "token=%zz", http.StatusBadRequest},
		{"/register", "application/json", `{"redirect_uris":["` + big + `"]}`, http.StatusRequestEntityTooLarge},
		{"/register", "application/json", `{"redirect_uris":`, http.StatusBadRequest},
		{"/register", "application/json", `[1,2,3]`, http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(http.MethodPost, e.hs.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.contentType)
		resp, err := e.hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error string }
		decodeErr := json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || decodeErr != nil || body.Error == "" {
			t.Errorf("POST %s (%.40s): %s, error %q (%v)", tc.path, tc.body, resp.Status, body.Error, decodeErr)
		}
	}
	c := e.signedInClient(t, "bob")
	for body, want := range map[string]int{"client_id=" + big: http.StatusRequestEntityTooLarge, "client_id=%zz": http.StatusBadRequest} {
		req, _ := http.NewRequest(http.MethodPost, e.hs.URL+"/authorize", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || resp.Header.Get("Location") != "" {
			t.Errorf("POST /authorize (%.30s): %s", body, resp.Status)
		}
	}
}

var (
	azInputRE   = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
	azCheckedRE = regexp.MustCompile(`<input type="checkbox" name="grant_scope" value="([^"]+)" checked>`)
)

// TestAuthorizeFreshLogin: prompt=login and an exceeded max_age end the
// session and send the user to sign in again, then back to the request.
func TestAuthorizeFreshLogin(t *testing.T) {
	e := azSetup(t)
	for name, over := range map[string]map[string]string{
		"prompt=login": {"prompt": "login"},
		"max_age=0":    {"max_age": "0"},
	} {
		c := e.signedInClient(t, "bob")
		r := e.do(t, c, "GET", "/authorize?"+e.params(over).Encode(), nil, nil)
		loc := r.Header.Get("Location")
		if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?") {
			t.Fatalf("%s: %s → %q", name, r.Status, loc)
		}
		if e.signedIn(t, c) != "" {
			t.Errorf("%s: the old session still works", name)
		}
		back := mustURL(t, loc).Query().Get("return_to")
		if q := mustURL(t, back).Query(); q.Has("prompt") || q.Has("max_age") || q.Get("client_id") != e.clientID {
			t.Errorf("%s: return_to = %q", name, back)
		}
		if r := e.login(t, c, "bob", loginPassword, back); r.Header.Get("Location") != back {
			t.Fatalf("%s: after login: %s → %q", name, r.Status, r.Header.Get("Location"))
		}
		if r := e.do(t, c, "GET", back, nil, nil); r.StatusCode != http.StatusOK || !strings.Contains(r.body, `name="decision"`) {
			t.Errorf("%s: after a fresh login: %s", name, r.Status)
		}
	}
	// Without a session, one sign-in satisfies prompt=login: the request
	// comes back without it.
	c0 := e.client(t)
	r := e.do(t, c0, "GET", "/authorize?"+e.params(map[string]string{"prompt": "login consent", "max_age": "0"}).Encode(), nil, nil)
	back := mustURL(t, r.Header.Get("Location")).Query().Get("return_to")
	if q := mustURL(t, back).Query(); q.Get("prompt") != "consent" || q.Has("max_age") {
		t.Errorf("signed out, prompt=login: return_to = %q", back)
	}
	e.login(t, c0, "bob", loginPassword, back)
	if r := e.do(t, c0, "GET", back, nil, nil); r.StatusCode != http.StatusOK || !strings.Contains(r.body, `name="decision"`) {
		t.Errorf("after one sign-in: %s → %q", r.Status, r.Header.Get("Location"))
	}
	// A recent enough sign-in satisfies max_age.
	c := e.signedInClient(t, "bob")
	if r := e.do(t, c, "GET", "/authorize?"+e.params(map[string]string{"max_age": "3600"}).Encode(), nil, nil); r.StatusCode != http.StatusOK {
		t.Errorf("max_age=3600 right after sign-in: %s", r.Status)
	}
	if q := e.redirected(t, e.do(t, c, "GET", "/authorize?"+e.params(map[string]string{"max_age": "soon"}).Encode(), nil, nil), e.redirect); q.Get("error") != "invalid_request" {
		t.Errorf("max_age=soon: %v", q)
	}
}
