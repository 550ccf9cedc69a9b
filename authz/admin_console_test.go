package authz

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth/storage"
)

// consolePost posts a console form from the browser c, as the page would
// (same origin, with the page's CSRF token unless form has one).
func (e *adminEnv) consolePost(c *http.Client, path string, form url.Values) loginResp {
	e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form[csrfField]; !ok {
		form.Set(csrfField, e.consoleCSRF(c))
	}
	return e.do(e.t, c, "POST", path, form, e.sameOrigin())
}

// follow GETs where a 303 points.
func (e *adminEnv) follow(c *http.Client, r loginResp) loginResp {
	e.t.Helper()
	if r.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("want 303, got %s\n%s", r.Status, r.body)
	}
	return e.do(e.t, c, "GET", r.Header.Get("Location"), nil, nil)
}

// TestAdminConsoleAccess: only a signed-in administrator gets in; pages
// carry the login pages' headers; a POST without the CSRF token, or from
// another site, changes nothing.
func TestAdminConsoleAccess(t *testing.T) {
	e := adminSetup(t)
	bob := e.userTokens("bob", "app", "mcp")

	anon := e.client(t)
	r := e.do(t, anon, "GET", "/admin/users?x=1", nil, nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login?return_to=%2Fadmin%2Fusers%3Fx%3D1" {
		t.Fatalf("anonymous: %s, Location %q", r.Status, r.Header.Get("Location"))
	}
	if r := e.do(t, anon, "POST", "/admin/grants/revoke", url.Values{"user": {"bob"}}, e.sameOrigin()); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("anonymous POST: %s", r.Status)
	}

	nonAdmin := e.signedIn("bob")
	if r := e.do(t, nonAdmin, "GET", "/admin/clients", nil, nil); r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "not an administrator") {
		t.Fatalf("bob: %s\n%s", r.Status, r.body)
	}

	admin := e.signedIn("alice")
	if r := e.do(t, admin, "GET", "/admin", nil, nil); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/admin/clients" {
		t.Fatalf("/admin: %s %q", r.Status, r.Header.Get("Location"))
	}
	for path, want := range map[string]string{
		"/admin/clients":                 "app",
		"/admin/client?id=app":           "Live grants",
		"/admin/client/delete?id=app":    "Delete client app?",
		"/admin/users":                   "dora",
		"/admin/grants?user=bob":         "Revoke everything of bob",
		"/admin/tokens":                  "Personal access tokens",
		"/admin/keys":                    "current",
		"/admin/keys/rotate":             "Rotate the signing key?",
		"/admin/keys/rotate?immediate=1": "key compromise",
		"/admin/audit":                   "Audit log",
		"/admin/audit?event=nope":        "unknown event",
	} {
		r := e.do(t, admin, "GET", path, nil, nil)
		if r.StatusCode != http.StatusOK || !strings.Contains(r.body, want) {
			t.Errorf("GET %s: %s; want %q in\n%s", path, r.Status, want, r.body)
			continue
		}
		h := r.Header
		if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: headers %v", path, h)
		}
		if strings.Contains(r.body, "<script") {
			t.Errorf("GET %s: the page has a script", path)
		}
	}
	if r := e.do(t, admin, "GET", "/admin/client?id=nope", nil, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown client: %s", r.Status)
	}

	// CSRF: no token, a wrong token, another site: refused, nothing revoked.
	revoke := url.Values{"user": {"bob"}}
	for name, tc := range map[string]struct {
		form url.Values
		hdr  map[string]string
	}{
		"no token":    {revoke, e.sameOrigin()},
		"wrong token": {url.Values{"user": {"bob"}, csrfField: {"AAAA"}}, e.sameOrigin()},
		"cross-site":  {url.Values{"user": {"bob"}, csrfField: {e.consoleCSRF(admin)}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
	} {
		r := e.do(t, admin, "POST", "/admin/grants/revoke", tc.form, tc.hdr)
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %s", name, r.Status)
		}
	}
	if !e.works(bob.access) {
		t.Fatalf("a refused POST revoked bob's grant")
	}
	// A session's CSRF token is no other session's.
	if r := e.do(t, nonAdmin, "POST", "/admin/grants/revoke", url.Values{"user": {"bob"}, csrfField: {e.consoleCSRF(admin)}}, e.sameOrigin()); r.StatusCode != http.StatusForbidden {
		t.Errorf("bob posting alice's token: %s", r.Status)
	}
}

var consolePasswordRE = regexp.MustCompile(`<p class="secret"><code>([^<]+)</code>`)

// TestAdminConsoleActions: each change is a POST answered with 303 and a
// flash message on the next page, audited with the administrator as actor.
func TestAdminConsoleActions(t *testing.T) {
	e := adminSetup(t)
	admin := e.signedIn("alice")
	bob := e.userTokens("bob", "app", "mcp")
	bobOther := e.userTokens("bob", "other", "mcp")

	// Revoke one grant from the client's page: back there, with a message.
	grants, err := e.s.db.ListGrants(t.Context(), storage.GrantFilter{ClientID: "app"})
	if err != nil || len(grants) != 1 {
		t.Fatalf("grants of app: %v %v", grants, err)
	}
	r := e.consolePost(admin, "/admin/grants/revoke", url.Values{"grant_id": {grants[0].ID}, "return_to": {"/admin/client?id=app"}})
	if loc := r.Header.Get("Location"); loc != "/admin/client?id=app" {
		t.Fatalf("revoke: %s, Location %q", r.Status, loc)
	}
	page := e.follow(admin, r)
	if !strings.Contains(page.body, "Grant revoked") || !strings.Contains(page.body, "No live grants") {
		t.Errorf("after revoke:\n%s", page.body)
	}
	if e.do(t, admin, "GET", "/admin/client?id=app", nil, nil).body == page.body {
		t.Errorf("the flash message is shown twice")
	}
	if !e.refused(bob.access) || !e.works(bobOther.access) {
		t.Errorf("revoking one grant: its token refused %t, the other still works %t", !e.works(bob.access), e.works(bobOther.access))
	}
	// return_to never leaves the console.
	r = e.consolePost(admin, "/admin/grants/revoke", url.Values{"client_id": {"other"}, "return_to": {"https://evil.example/"}})
	if loc := r.Header.Get("Location"); loc != "/admin/grants" {
		t.Errorf("return_to off the console: Location %q", loc)
	}

	// Add a user: the password is on the answer, once.
	r = e.consolePost(admin, "/admin/users", url.Values{"username": {"carol"}})
	m := consolePasswordRE.FindStringSubmatch(r.body)
	if r.StatusCode != http.StatusOK || m == nil || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("add user: %s\n%s", r.Status, r.body)
	}
	if l := e.login(t, e.client(t), "carol", m[1], "/"); l.StatusCode != http.StatusSeeOther {
		t.Errorf("carol cannot sign in with the password shown")
	}
	if p := e.do(t, admin, "GET", "/admin/users", nil, nil); strings.Contains(p.body, m[1]) {
		t.Errorf("the password is shown again")
	}
	carol := e.user("carol")
	r = e.consolePost(admin, "/admin/users/"+carol.ID+"/password", nil)
	if m2 := consolePasswordRE.FindStringSubmatch(r.body); m2 == nil || m2[1] == m[1] {
		t.Fatalf("reset password: %s\n%s", r.Status, r.body)
	}
	page = e.follow(admin, e.consolePost(admin, "/admin/users/"+carol.ID+"/admin", url.Values{"admin": {"true"}}))
	if !strings.Contains(page.body, "carol is now an administrator") || !e.user("carol").IsAdmin {
		t.Errorf("make admin:\n%s", page.body)
	}
	page = e.follow(admin, e.consolePost(admin, "/admin/users/"+carol.ID+"/disable", nil))
	if !strings.Contains(page.body, "User carol disabled") || e.user("carol").DisabledAt == nil {
		t.Errorf("disable:\n%s", page.body)
	}
	e.follow(admin, e.consolePost(admin, "/admin/users/"+carol.ID+"/enable", nil))
	if e.user("carol").DisabledAt != nil {
		t.Errorf("carol still disabled")
	}
	alice := e.user("alice")
	page = e.follow(admin, e.consolePost(admin, "/admin/users/"+alice.ID+"/disable", nil))
	if !strings.Contains(page.body, "you cannot disable yourself") || e.user("alice").DisabledAt != nil {
		t.Errorf("self-disable:\n%s", page.body)
	}
	page = e.follow(admin, e.consolePost(admin, "/admin/users/"+alice.ID+"/admin", url.Values{"admin": {"false"}}))
	if !strings.Contains(page.body, "you cannot remove your own admin role") || !e.user("alice").IsAdmin {
		t.Errorf("self-demotion:\n%s", page.body)
	}

	// Disable, enable, and delete a client (only after the confirmation).
	page = e.follow(admin, e.consolePost(admin, "/admin/client/disable", url.Values{"client_id": {"other"}}))
	if !strings.Contains(page.body, "Client other disabled") {
		t.Errorf("disable client:\n%s", page.body)
	}
	e.follow(admin, e.consolePost(admin, "/admin/client/enable", url.Values{"client_id": {"other"}}))
	r = e.consolePost(admin, "/admin/client/delete", url.Values{"client_id": {"other"}})
	if loc := r.Header.Get("Location"); loc != "/admin/client/delete?id=other" {
		t.Fatalf("delete without confirm: Location %q", loc)
	}
	if _, err := e.s.db.Client(t.Context(), "other"); err != nil {
		t.Fatalf("deleted without confirmation: %v", err)
	}
	page = e.follow(admin, e.consolePost(admin, "/admin/client/delete", url.Values{"client_id": {"other"}, "confirm": {"yes"}}))
	if !strings.Contains(page.body, "Client other deleted") {
		t.Errorf("delete:\n%s", page.body)
	}
	if _, err := e.s.db.Client(t.Context(), "other"); err == nil {
		t.Errorf("client other not deleted")
	}

	// Rotate the signing key, after the confirmation.
	if r := e.consolePost(admin, "/admin/keys/rotate", nil); r.Header.Get("Location") != "/admin/keys/rotate" || len(e.s.keys.List()) != 1 {
		t.Errorf("rotate without confirmation: %s %q, %d keys", r.Status, r.Header.Get("Location"), len(e.s.keys.List()))
	}
	page = e.follow(admin, e.consolePost(admin, "/admin/keys/rotate", url.Values{"confirm": {"yes"}}))
	if !strings.Contains(page.body, "New signing key") || len(e.s.keys.List()) != 2 {
		t.Errorf("rotate:\n%s", page.body)
	}

	// A personal access token revoked by the administrator.
	tok, pat, err := e.s.CreatePersonalAccessToken(t.Context(), PATRequest{UserID: e.user("bob").ID, Name: "laptop", Scopes: []string{"mcp"}, TTL: 3600e9, CreatedBy: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if p := e.do(t, admin, "GET", "/admin/tokens", nil, nil); !strings.Contains(p.body, "laptop") || strings.Contains(p.body, tok) {
		t.Errorf("tokens page:\n%s", p.body)
	}
	e.follow(admin, e.consolePost(admin, "/admin/tokens/"+pat.ID+"/revoke", nil))
	if !e.refused(tok) {
		t.Errorf("the revoked personal access token still works")
	}

	// Everything above is in the audit log, by alice, filterable.
	page = e.do(t, admin, "GET", "/admin/audit?user=alice&event="+storage.EventClientDeleted, nil, nil)
	if !strings.Contains(page.body, "client.deleted") || strings.Contains(page.body, "<code>user.created</code>") {
		t.Errorf("audit filtered by event:\n%s", page.body)
	}
	for _, ev := range []string{storage.EventGrantRevoked, storage.EventUserCreated, storage.EventUserPasswordReset, storage.EventUserAdminChanged,
		storage.EventUserDisabled, storage.EventUserEnabled, storage.EventClientDisabled, storage.EventClientEnabled, storage.EventClientDeleted,
		storage.EventKeyRotated, storage.EventPATRevoked} {
		if !e.auditHas(ev, "alice") {
			t.Errorf("no audit event %s by alice", ev)
		}
	}
}

// TestAdminConsoleFlashIsSigned: a flash cookie the server did not sign is
// not shown.
func TestAdminConsoleFlashIsSigned(t *testing.T) {
	e := adminSetup(t)
	admin := e.signedIn("alice")
	u, _ := url.Parse(e.hs.URL)
	admin.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-mcpauth_flash", Value: "bkhhY2tlZA.AAAA", Path: "/", Secure: true}})
	if p := e.do(t, admin, "GET", "/admin/users", nil, nil); strings.Contains(p.body, "Hacked") || strings.Contains(p.body, `class="notice"`) {
		t.Errorf("a forged flash message is shown:\n%s", p.body)
	}
}

// signedIn is a browser signed in as user.
func (e *adminEnv) signedIn(user string) *http.Client {
	e.t.Helper()
	c := e.client(e.t)
	if r := e.login(e.t, c, user, loginPassword, "/"); r.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("login %s: %s\n%s", user, r.Status, r.body)
	}
	return c
}

// TestAdminReturnTo: a console form comes back only to a console page.
func TestAdminReturnTo(t *testing.T) {
	for raw, want := range map[string]string{
		"/admin/client?id=a":    "/admin/client?id=a",
		"/admin/grants?user=b":  "/admin/grants?user=b",
		"":                      "/fb",
		"/account":              "/fb",
		"/admin":                "/fb",
		"/admin/api/v1/users":   "/fb",
		"//evil.example/admin/": "/fb",
		"/\\evil.example":       "/fb",
		"https://evil/admin/x":  "/fb",
		"/admin/\tx":            "/fb",
	} {
		if got := adminReturnTo(raw, "/fb"); got != want {
			t.Errorf("adminReturnTo(%q) = %q, want %q", raw, got, want)
		}
	}
}

// FuzzFlash: a flash message survives its cookie unchanged, and a cookie
// value the server did not make never shows a message.
func FuzzFlash(f *testing.F) {
	s := &Server{sessions: &sessions{}, admin: &adminState{flashCookie: "mcpauth_flash", flashKey: []byte("0123456789abcdef0123456789abcdef")}}
	f.Add("Grant revoked.", "bkhhY2tlZA.AAAA")
	f.Add("", "")
	f.Add("<b>x</b>\x00é", "x.y.z")
	f.Fuzz(func(t *testing.T, text, forged string) {
		rec := httptest.NewRecorder()
		s.setFlash(rec, true, text)
		r := httptest.NewRequest("GET", "/admin/users", nil)
		for _, c := range rec.Result().Cookies() {
			r.AddCookie(c)
		}
		got := s.takeFlash(httptest.NewRecorder(), r)
		want := text
		if len(want) > maxFlash {
			want = want[:maxFlash]
		}
		if got == nil || !got.Error || got.Text != want {
			t.Fatalf("round trip of %q: %+v", text, got)
		}
		r = httptest.NewRequest("GET", "/admin/users", nil)
		r.AddCookie(&http.Cookie{Name: "mcpauth_flash", Value: forged})
		if got := s.takeFlash(httptest.NewRecorder(), r); got != nil {
			t.Fatalf("forged cookie %q shows %+v", forged, got)
		}
	})
}
