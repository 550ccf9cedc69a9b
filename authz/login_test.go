package authz

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ulule/limiter/v3"
	"golang.org/x/crypto/argon2"

	"github.com/mcpauth/mcpauth/storage"
)

const loginPassword = "correct horse battery staple"

// loginEnv is a test server with users alice (admin), bob and dora
// (disabled), all with loginPassword.
type loginEnv struct {
	s  *Server
	hs *httptest.Server
}

func loginSetup(t *testing.T, tls bool, mod func(*Config)) *loginEnv {
	t.Helper()
	s, hs := testServer(t, tls, mod)
	for _, u := range []struct {
		name            string
		admin, disabled bool
	}{{"alice", true, false}, {"bob", false, false}, {"dora", false, true}} {
		loginUser(t, s, u.name, loginPassword, u.admin, u.disabled)
	}
	return &loginEnv{s: s, hs: hs}
}

func loginUser(t *testing.T, s *Server, name, password string, admin, disabled bool) *storage.User {
	t.Helper()
	h, err := HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	u := &storage.User{Username: name, PasswordHash: h, IsAdmin: admin}
	if disabled {
		now := time.Now()
		u.DisabledAt = &now
	}
	if err := s.db.CreateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

// client is a browser: a cookie jar, redirects not followed.
func (e *loginEnv) client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := e.hs.Client()
	return &http.Client{
		Transport:     c.Transport,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type loginResp struct {
	*http.Response
	body string
}

// do sends a request; hdr adds headers (Sec-Fetch-Site, Origin).
func (e *loginEnv) do(t *testing.T, c *http.Client, method, path string, form url.Values, hdr map[string]string) loginResp {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.hs.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return loginResp{resp, string(b)}
}

var loginCSRFRE = regexp.MustCompile(`name="csrf_token" value="([^"]*)"`)

// csrf is the csrf_token of the form in a page.
func loginCSRF(t *testing.T, page string) string {
	t.Helper()
	m := loginCSRFRE.FindStringSubmatch(page)
	if m == nil || m[1] == "" {
		t.Fatalf("no csrf_token in page:\n%s", page)
	}
	return m[1]
}

// sameOrigin are the headers a browser sends with a form posted from our page.
func (e *loginEnv) sameOrigin() map[string]string {
	return map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": e.hs.URL}
}

// login signs c in as user (after loading the form) and returns the answer.
func (e *loginEnv) login(t *testing.T, c *http.Client, user, password, returnTo string) loginResp {
	t.Helper()
	page := e.do(t, c, "GET", "/login?return_to="+url.QueryEscape(returnTo), nil, nil)
	if page.StatusCode != http.StatusOK {
		t.Fatalf("GET /login: %s\n%s", page.Status, page.body)
	}
	form := url.Values{"username": {user}, "password": {password}, "return_to": {returnTo}, csrfField: {loginCSRF(t, page.body)}}
	return e.do(t, c, "POST", "/login", form, e.sameOrigin())
}

func loginCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// signedIn reports who the server thinks c is, through GET /logout.
func (e *loginEnv) signedIn(t *testing.T, c *http.Client) string {
	t.Helper()
	r := e.do(t, c, "GET", "/logout", nil, nil)
	m := regexp.MustCompile(`signed in as <strong>([^<]*)</strong>`).FindStringSubmatch(r.body)
	if m == nil {
		return ""
	}
	return m[1]
}

func (e *loginEnv) sessionRows(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.s.db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM browser_sessions`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLoginSuccessSecureCookie(t *testing.T) {
	e := loginSetup(t, true, nil)
	c := e.client(t)

	// An attacker-chosen session id planted before sign-in is not adopted.
	planted := newSecret()
	u, _ := url.Parse(e.hs.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-mcpauth_session", Value: planted, Path: "/"}})

	returnTo := "/authorize?client_id=x&state=a%20b"
	r := e.login(t, c, "ALICE", loginPassword, returnTo) // names are case-insensitive
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != returnTo {
		t.Fatalf("login = %s, Location %q; want 303 to %q\n%s", r.Status, r.Header.Get("Location"), returnTo, r.body)
	}
	ck := loginCookie(r.Response, "__Host-mcpauth_session")
	if ck == nil {
		t.Fatalf("no __Host-mcpauth_session cookie in %v", r.Header["Set-Cookie"])
	}
	if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" {
		t.Errorf("session cookie = %+v; want Secure, HttpOnly, SameSite=Lax, Path=/, no Domain", ck)
	}
	if ck.MaxAge != int((12 * time.Hour).Seconds()) {
		t.Errorf("session cookie Max-Age = %d, want the default session TTL of 12h", ck.MaxAge)
	}
	if ck.Value == planted || !wellFormedSecret(ck.Value) {
		t.Errorf("session id %q: planted %q, or not 256 random bits", ck.Value, planted)
	}
	if pre := loginCookie(r.Response, "__Host-mcpauth_login"); pre == nil || pre.MaxAge >= 0 {
		t.Errorf("pre-session cookie not deleted: %+v", pre)
	}
	if got := e.signedIn(t, c); got != "alice" {
		t.Errorf("signed in as %q, want alice", got)
	}
	if n := e.sessionRows(t); n != 1 {
		t.Errorf("%d browser sessions, want 1", n)
	}

	// Signed in, GET /login goes straight on.
	r = e.do(t, c, "GET", "/login?return_to=%2Faccount", nil, nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/account" {
		t.Errorf("GET /login signed in = %s to %q, want 303 to /account", r.Status, r.Header.Get("Location"))
	}

	// The page headers of the login form.
	r = e.do(t, e.client(t), "GET", "/login", nil, nil)
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("login page CSP = %q", csp)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("login page Cache-Control = %q, want no-store", cc)
	}
	pre := loginCookie(r.Response, "__Host-mcpauth_login")
	if pre == nil || !pre.Secure || !pre.HttpOnly || pre.SameSite != http.SameSiteLaxMode || pre.Path != "/" {
		t.Errorf("pre-session cookie = %+v; want Secure, HttpOnly, SameSite=Lax, Path=/", pre)
	}
}

func TestLoginDevCookie(t *testing.T) {
	e := loginSetup(t, false, nil)
	c := e.client(t)
	r := e.login(t, c, "bob", loginPassword, "/")
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login = %s\n%s", r.Status, r.body)
	}
	ck := loginCookie(r.Response, "mcpauth_session")
	if ck == nil {
		t.Fatalf("no mcpauth_session cookie in %v", r.Header["Set-Cookie"])
	}
	if ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" {
		t.Errorf("dev session cookie = %+v; want not Secure, HttpOnly, SameSite=Lax, Path=/", ck)
	}
	if loginCookie(r.Response, "__Host-mcpauth_session") != nil {
		t.Error("__Host- cookie set over plain http")
	}
	if got := e.signedIn(t, c); got != "bob" {
		t.Errorf("signed in as %q, want bob", got)
	}
}

func TestLoginFailuresLookAlike(t *testing.T) {
	e := loginSetup(t, true, nil)
	type result struct {
		status int
		body   string
	}
	var first *result
	for _, tc := range []struct{ name, user, password string }{
		{"wrong password", "alice", "wrong password!"},
		{"unknown user", "mallory", loginPassword},
		{"disabled user", "dora", loginPassword},
		{"invalid user name", "al ice", loginPassword},
		{"empty password", "bob", ""},
		{"overlong password", "bob", strings.Repeat("p", MaxPasswordBytes+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.client(t)
			r := e.login(t, c, tc.user, tc.password, "/x")
			if loginCookie(r.Response, "__Host-mcpauth_session") != nil {
				t.Fatal("a session cookie was set")
			}
			if !strings.Contains(r.body, errLoginFailed) {
				t.Errorf("page does not say %q:\n%s", errLoginFailed, r.body)
			}
			// The page is the same but for the echoed user name and the
			// (per-browser) CSRF token.
			body := strings.ReplaceAll(r.body, `value="`+tc.user+`"`, `value="USER"`)
			body = strings.ReplaceAll(body, loginCSRF(t, r.body), "TOKEN")
			got := &result{r.StatusCode, body}
			if first == nil {
				first = got
				return
			}
			if got.status != first.status || got.body != first.body {
				t.Errorf("answer differs from the first case:\nstatus %d vs %d\n%s\n---\n%s", got.status, first.status, got.body, first.body)
			}
		})
	}
	if n := e.sessionRows(t); n != 0 {
		t.Errorf("%d browser sessions after failed logins, want 0", n)
	}
}

func TestLoginCSRF(t *testing.T) {
	e := loginSetup(t, true, nil)
	other := e.client(t)
	otherToken := loginCSRF(t, e.do(t, other, "GET", "/login", nil, nil).body)

	for _, tc := range []struct {
		name  string
		token func(good string) string
		hdr   map[string]string
	}{
		{"no token", func(string) string { return "" }, nil},
		{"wrong token", func(good string) string { return good[:len(good)-2] + "AA" }, nil},
		{"another browser's token", func(string) string { return otherToken }, nil},
		{"cross-site", func(good string) string { return good }, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"same-site", func(good string) string { return good }, map[string]string{"Sec-Fetch-Site": "same-site"}},
		{"foreign Origin", func(good string) string { return good }, map[string]string{"Origin": "https://evil.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.client(t)
			good := loginCSRF(t, e.do(t, c, "GET", "/login", nil, nil).body)
			form := url.Values{"username": {"alice"}, "password": {loginPassword}, "return_to": {"/"}}
			if tok := tc.token(good); tok != "" {
				form.Set(csrfField, tok)
			}
			r := e.do(t, c, "POST", "/login", form, tc.hdr)
			if r.StatusCode != http.StatusForbidden {
				t.Errorf("status = %s, want 403\n%s", r.Status, r.body)
			}
			if loginCookie(r.Response, "__Host-mcpauth_session") != nil {
				t.Error("signed in despite the failed CSRF check")
			}
			if !strings.Contains(r.body, "did not come from this site") {
				t.Errorf("page does not explain the refusal:\n%s", r.body)
			}
		})
	}
	t.Run("no pre-session cookie", func(t *testing.T) {
		// A token without its cookie (a forged form from a page that once
		// read a token) is refused.
		form := url.Values{"username": {"alice"}, "password": {loginPassword}, csrfField: {otherToken}}
		r := e.do(t, e.client(t), "POST", "/login", form, nil)
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("status = %s, want 403", r.Status)
		}
	})
	if n := e.sessionRows(t); n != 0 {
		t.Errorf("%d browser sessions, want 0", n)
	}

	// Two tabs of one browser share the token, so both forms work.
	c := e.client(t)
	t1 := loginCSRF(t, e.do(t, c, "GET", "/login", nil, nil).body)
	t2 := loginCSRF(t, e.do(t, c, "GET", "/login", nil, nil).body)
	if t1 != t2 {
		t.Errorf("two loads of the login page gave different tokens")
	}
}

// checkCSRF, the contract of signed-in forms (the consent page uses it),
// through POST /logout.
func TestSignedInCSRF(t *testing.T) {
	e := loginSetup(t, true, nil)
	c := e.client(t)
	if r := e.login(t, c, "alice", loginPassword, "/"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %s", r.Status)
	}
	good := loginCSRF(t, e.do(t, c, "GET", "/logout", nil, nil).body)

	// A login-form token is no signed-in token.
	loginTok := loginCSRF(t, e.do(t, e.client(t), "GET", "/login", nil, nil).body)

	for _, tc := range []struct {
		name  string
		token string
		hdr   map[string]string
	}{
		{"no token", "", nil},
		{"wrong token", strings.Repeat("A", len(good)), nil},
		{"login token", loginTok, nil},
		{"cross-site", good, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"foreign Origin", good, map[string]string{"Origin": "https://evil.example"}},
		{"null Origin", good, map[string]string{"Origin": "null"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{}
			if tc.token != "" {
				form.Set(csrfField, tc.token)
			}
			r := e.do(t, c, "POST", "/logout", form, tc.hdr)
			if r.StatusCode != http.StatusForbidden {
				t.Errorf("status = %s, want 403", r.Status)
			}
			if got := e.signedIn(t, c); got != "alice" {
				t.Errorf("after a refused logout, signed in as %q, want alice", got)
			}
		})
	}

	// The same checks called directly, as the consent page does.
	ck := &http.Cookie{Name: e.s.sessions.cookie, Value: ""}
	for _, hc := range c.Jar.Cookies(mustURL(t, e.hs.URL)) {
		if hc.Name == e.s.sessions.cookie {
			ck.Value = hc.Value
		}
	}
	post := func(token string, hdr map[string]string) *http.Request {
		req := httptest.NewRequestWithContext(t.Context(), "POST", e.hs.URL+"/consent", strings.NewReader(url.Values{csrfField: {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(ck)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return req
	}
	req := post("", nil)
	if tok := e.s.csrfToken(req); tok != good {
		t.Errorf("csrfToken = %q, want the token of the page %q", tok, good)
	}
	if err := e.s.checkCSRF(post(good, e.sameOrigin())); err != nil {
		t.Errorf("checkCSRF with the right token: %v", err)
	}
	for name, req := range map[string]*http.Request{
		"wrong":      post("x"+good[1:], nil),
		"cross-site": post(good, map[string]string{"Sec-Fetch-Site": "cross-site"}),
	} {
		err := e.s.checkCSRF(req)
		if status := statusOf(err); status != http.StatusForbidden {
			t.Errorf("checkCSRF %s: %v (status %d), want a 403 *oauth.Error", name, err, status)
		}
	}
	if u, err := e.s.currentUser(post("", nil)); err != nil || u == nil || u.Username != "alice" {
		t.Errorf("currentUser = %v, %v; want alice", u, err)
	}
	noCookie := httptest.NewRequestWithContext(t.Context(), "GET", e.hs.URL+"/consent", nil)
	if u, err := e.s.currentUser(noCookie); u != nil || err != nil {
		t.Errorf("currentUser without a cookie = %v, %v; want nil, nil", u, err)
	}
	if tok := e.s.csrfToken(noCookie); tok != "" {
		t.Errorf("csrfToken without a session = %q, want empty", tok)
	}

	// redirectToLogin comes back to the same request.
	w := httptest.NewRecorder()
	e.s.redirectToLogin(w, "/authorize?client_id=c&state=s%2Fx")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login?return_to=%2Fauthorize%3Fclient_id%3Dc%26state%3Ds%252Fx" {
		t.Errorf("redirectToLogin = %d %q", w.Code, w.Header().Get("Location"))
	}
}

func statusOf(err error) int {
	if oe, ok := err.(interface{ HTTPStatus() int }); ok {
		return oe.HTTPStatus()
	}
	return 0
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestLoginReturnTo(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/authorize?client_id=a&redirect_uri=https%3A%2F%2Fapp.example%2Fcb", "/authorize?client_id=a&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"},
		{"/account#apps", "/account#apps"},
		{"//evil.com", "/"},
		{"//evil.com/path", "/"},
		{"https://evil.com", "/"},
		{"http://evil.com/", "/"},
		{"/\\evil.com", "/"},
		{"\\\\evil.com", "/"},
		{"/\\/evil.com", "/"},
		{"/a\\b", "/"},
		{"/\t/evil.com", "/"},
		{"/\n/evil.com", "/"},
		{"javascript:alert(1)", "/"},
		{"evil.com", "/"},
		{" /x", "/"},
		{"/%zz", "/"},
		{"/" + strings.Repeat("a", maxReturnTo), "/"},
	} {
		if got := safeReturnTo(tc.in); got != tc.want {
			t.Errorf("safeReturnTo(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}

	// Through the pages: a successful login lands on "/" for every attempt.
	e := loginSetup(t, true, nil)
	for _, evil := range []string{"//evil.com", "https://evil.com", "/\\evil.com", "/\t/evil.com"} {
		t.Run(evil, func(t *testing.T) {
			c := e.client(t)
			page := e.do(t, c, "GET", "/login?return_to="+url.QueryEscape(evil), nil, nil)
			if strings.Contains(page.body, "evil.com") {
				t.Errorf("the login form carries %q on", evil)
			}
			form := url.Values{"username": {"bob"}, "password": {loginPassword}, "return_to": {evil}, csrfField: {loginCSRF(t, page.body)}}
			r := e.do(t, c, "POST", "/login", form, nil)
			if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/" {
				t.Errorf("login with return_to %q = %s to %q, want 303 to /", evil, r.Status, r.Header.Get("Location"))
			}
			// Already signed in: GET /login redirects, to "/" too.
			r = e.do(t, c, "GET", "/login?return_to="+url.QueryEscape(evil), nil, nil)
			if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/" {
				t.Errorf("signed-in GET /login = %s to %q, want 303 to /", r.Status, r.Header.Get("Location"))
			}
		})
	}
}

func TestLoginRateLimit(t *testing.T) {
	e := loginSetup(t, true, func(c *Config) {
		c.RateLimits.LoginPerIP = limiter.Rate{Period: time.Hour, Limit: 7}
		c.RateLimits.LoginPerUser = limiter.Rate{Period: time.Hour, Limit: 2}
	})
	c := e.client(t)
	// Per user, failures only: signing in spends nothing…
	for range 3 {
		if r := e.login(t, e.client(t), "alice", loginPassword, "/"); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("alice signing in: %s, want 303", r.Status)
		}
	}
	// …two failures at alice (any case) spend it, then 429 even with the
	// right password.
	for i, user := range []string{"alice", "ALICE"} {
		if r := e.login(t, c, user, "wrong password!", "/"); r.StatusCode != http.StatusOK {
			t.Fatalf("attempt %d: %s, want 200 (failed login)", i+1, r.Status)
		}
	}
	r := e.login(t, c, "Alice", loginPassword, "/")
	loginCheck429(t, r)
	// Other users are still served from this IP...
	if r := e.login(t, c, "bob", loginPassword, "/"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("bob: %s, want 303", r.Status)
	}
	// ...until the IP's budget of 7 is spent.
	loginCheck429(t, e.login(t, e.client(t), "bob", loginPassword, "/"))
}

func loginCheck429(t *testing.T, r loginResp) {
	t.Helper()
	if r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status = %s, want 429\n%s", r.Status, r.body)
	}
	if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 {
		t.Errorf("Retry-After = %q, want a number of seconds", r.Header.Get("Retry-After"))
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type = %q, want the login page", ct)
	}
	if !strings.Contains(r.body, "Too many sign-in attempts") || loginCSRFRE.FindString(r.body) == "" {
		t.Errorf("429 page lacks the message or the form:\n%s", r.body)
	}
	if loginCookie(r.Response, "__Host-mcpauth_session") != nil {
		t.Error("signed in over the rate limit")
	}
}

func TestLogout(t *testing.T) {
	e := loginSetup(t, true, nil)
	c := e.client(t)
	if r := e.login(t, c, "alice", loginPassword, "/"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %s", r.Status)
	}
	var stolen *http.Cookie
	for _, ck := range c.Jar.Cookies(mustURL(t, e.hs.URL)) {
		if ck.Name == "__Host-mcpauth_session" {
			stolen = ck
		}
	}
	token := loginCSRF(t, e.do(t, c, "GET", "/logout", nil, nil).body)
	r := e.do(t, c, "POST", "/logout", url.Values{csrfField: {token}}, e.sameOrigin())
	if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/login") {
		t.Fatalf("logout = %s to %q, want 303 to /login", r.Status, r.Header.Get("Location"))
	}
	if ck := loginCookie(r.Response, "__Host-mcpauth_session"); ck == nil || ck.MaxAge >= 0 {
		t.Errorf("session cookie not cleared: %+v", ck)
	}
	if n := e.sessionRows(t); n != 0 {
		t.Errorf("%d browser sessions after logout, want 0", n)
	}
	// The old cookie, replayed, signs nobody in: the session ended server-side.
	replay := e.client(t)
	replay.Jar.SetCookies(mustURL(t, e.hs.URL), []*http.Cookie{stolen})
	if got := e.signedIn(t, replay); got != "" {
		t.Errorf("replayed cookie is signed in as %q", got)
	}
	if r := e.do(t, replay, "GET", "/login", nil, nil); r.StatusCode != http.StatusOK {
		t.Errorf("GET /login with an ended session = %s, want the form", r.Status)
	}
	// Signing out again (another tab) is harmless.
	if r := e.do(t, c, "POST", "/logout", url.Values{}, nil); r.StatusCode != http.StatusSeeOther {
		t.Errorf("second logout = %s, want 303", r.Status)
	}
	if r := e.do(t, c, "GET", "/login?signed_out=1", nil, nil); !strings.Contains(r.body, "You are signed out") {
		t.Errorf("login page after sign-out does not say so")
	}
}

// Sessions end at SessionTTL, and when the user is disabled or the
// password changes.
func TestSessionEnds(t *testing.T) {
	var (
		mu  sync.Mutex
		now = time.Now()
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := loginSetup(t, true, func(c *Config) { c.SessionTTL = time.Hour; c.Now = clock })
	ctx := context.Background()

	c := e.client(t)
	if r := e.login(t, c, "alice", loginPassword, "/"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %s", r.Status)
	} else if ck := loginCookie(r.Response, "__Host-mcpauth_session"); ck == nil || ck.MaxAge != 3600 {
		t.Errorf("session cookie %+v, want Max-Age 3600", ck)
	}
	mu.Lock()
	now = now.Add(59 * time.Minute)
	mu.Unlock()
	if got := e.signedIn(t, c); got != "alice" {
		t.Fatalf("after 59 minutes signed in as %q, want alice", got)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if got := e.signedIn(t, c); got != "" {
		t.Errorf("after 61 minutes still signed in as %q", got)
	}
	mu.Lock()
	now = time.Now()
	mu.Unlock()

	for _, tc := range []struct {
		name string
		end  func(u *storage.User) error
	}{
		{"disabled", func(u *storage.User) error { return e.s.db.SetUserDisabled(ctx, u.ID, true) }},
		{"new password", func(u *storage.User) error {
			h, _ := HashPassword("another password")
			return e.s.db.SetUserPassword(ctx, u.ID, h)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := loginUser(t, e.s, "user-"+strings.ReplaceAll(tc.name, " ", "-"), loginPassword, false, false)
			c := e.client(t)
			if r := e.login(t, c, u.Username, loginPassword, "/"); r.StatusCode != http.StatusSeeOther {
				t.Fatalf("login: %s", r.Status)
			}
			if err := tc.end(u); err != nil {
				t.Fatal(err)
			}
			if got := e.signedIn(t, c); got != "" {
				t.Errorf("still signed in as %q", got)
			}
		})
	}
}

// A weaker stored hash is upgraded by a successful login.
func TestLoginRehash(t *testing.T) {
	e := loginSetup(t, true, nil)
	weak := "$argon2id$v=19$m=8192,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$" // + key of "weak password"
	key := loginArgonKey("weak password", "0123456789abcdef", 1, 8192, 1)
	u := &storage.User{Username: "walt", PasswordHash: weak + key}
	if err := e.s.db.CreateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	if r := e.login(t, e.client(t), "walt", "weak password", "/"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login with a weak hash: %s", r.Status)
	}
	got, err := e.s.db.UserByID(t.Context(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if passwordNeedsRehash(got.PasswordHash) {
		t.Errorf("hash not upgraded: %q", got.PasswordHash)
	}
	if ok, _ := verifyPassword(got.PasswordHash, "weak password"); !ok {
		t.Error("upgraded hash does not verify the password")
	}
}

func loginArgonKey(password, salt string, t, m uint32, p uint8) string {
	return base64.RawStdEncoding.EncodeToString(argon2.IDKey([]byte(password), []byte(salt), t, m, p, 32))
}

// FuzzSafeReturnTo checks that whatever return_to an attacker sends, the
// login page redirects to the input itself or to "/", and that the result,
// resolved against the login page as a browser would, stays on this host.
func FuzzSafeReturnTo(f *testing.F) {
	for _, s := range []string{"/", "/authorize?x=1", "//evil.com", "/\\evil.com", "https://evil.com", "/\t/x", "/%2F%2Fevil", "///x", "/.//evil"} {
		f.Add(s)
	}
	base := &url.URL{Scheme: "https", Host: "as.example", Path: "/login"}
	f.Fuzz(func(t *testing.T, in string) {
		out := safeReturnTo(in)
		if out != "/" && out != in {
			t.Fatalf("safeReturnTo(%q) = %q: neither the input nor /", in, out)
		}
		if strings.HasPrefix(out, "//") || strings.ContainsAny(out, "\\\t\n\r") {
			t.Fatalf("safeReturnTo(%q) = %q: a browser may read another host", in, out)
		}
		u, err := url.Parse(out)
		if err != nil {
			t.Fatalf("safeReturnTo(%q) = %q: does not parse: %v", in, out, err)
		}
		if got := base.ResolveReference(u); got.Host != "as.example" || got.Scheme != "https" || got.User != nil {
			t.Fatalf("safeReturnTo(%q) = %q resolves to %v", in, out, got)
		}
	})
}
