package authz

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mcpauth/mcpauth/storage"
)

// adminEnv is a login test server (alice the admin, bob, dora disabled)
// with helpers that mint tokens and call the admin API and console.
type adminEnv struct {
	*loginEnv
	t *testing.T
}

func adminSetup(t *testing.T) *adminEnv {
	t.Helper()
	e := &adminEnv{loginEnv: loginSetup(t, true, nil), t: t}
	revocationRun(t, e.s)
	return e
}

func (e *adminEnv) user(name string) *storage.User {
	e.t.Helper()
	u, err := e.s.db.UserByName(e.t.Context(), name)
	if err != nil {
		e.t.Fatalf("user %s: %v", name, err)
	}
	return u
}

// tok is a token helper acting for the named user.
func (e *adminEnv) tok(name string) *tokEnv {
	return &tokEnv{t: e.t, s: e.s, hs: e.hs, user: e.user(name)}
}

// adminTokens is a user's grant: its access and refresh tokens.
type adminTokens struct{ access, refresh, client string }

// userTokens creates a public client (unless it exists; an administrator's
// when its id starts with "admin-", else a self-registered one) and gives it
// a grant of user for scopes, through the authorization code flow.
func (e *adminEnv) userTokens(user, clientID string, scopes ...string) adminTokens {
	e.t.Helper()
	te := e.tok(user)
	if _, err := e.s.db.Client(e.t.Context(), clientID); err != nil {
		src := storage.SourceDCR
		if strings.HasPrefix(clientID, "admin-") {
			src = storage.SourceAdmin
		}
		te.client(tokClient{id: clientID, scopes: []string{"mcp", "admin"}, source: src})
	}
	code := te.authorize(clientID, scopes, nil)
	r := te.exchange(clientID, "", code, url.Values{"resource": {e.s.cfg.MCPResource}})
	if r.status != http.StatusOK || r.str("access_token") == "" || r.str("refresh_token") == "" {
		e.t.Fatalf("exchange for %s: %d %s", user, r.status, r.raw)
	}
	return adminTokens{access: r.str("access_token"), refresh: r.str("refresh_token"), client: clientID}
}

// serviceToken creates a confidential client_credentials client (an
// administrator's when admin) and returns its token for scope.
func (e *adminEnv) serviceToken(id string, admin bool, scope string) string {
	e.t.Helper()
	te := e.tok("alice")
	src := storage.SourceDCR
	if admin {
		src = storage.SourceAdmin
	}
	secret := te.client(tokClient{id: id, confidential: true, grants: []string{"client_credentials"}, scopes: []string{"mcp", "admin"}, source: src})
	r := te.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}, id, secret)
	if r.status != http.StatusOK {
		e.t.Fatalf("client_credentials for %s: %d %s", id, r.status, r.raw)
	}
	return r.str("access_token")
}

// works reports whether an access token still passes VerifyAccessToken.
func (e *adminEnv) works(tok string) bool {
	_, err := e.s.VerifyAccessToken(e.t.Context(), tok)
	return err == nil
}

// refused reports whether an access token is refused by VerifyAccessToken
// within a second (revocation reaches the verifier through NOTIFY).
func (e *adminEnv) refused(tok string) bool {
	deadline := time.Now().Add(time.Second)
	for e.works(tok) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// refreshes reports whether a public client's refresh token still works.
func (e *adminEnv) refreshes(at adminTokens) bool {
	e.t.Helper()
	r := e.tok("alice").refresh(at.client, "", at.refresh, nil)
	return r.status == http.StatusOK
}

type apiResp struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r apiResp) str(k string) string { s, _ := r.body[k].(string); return s }

// api calls the admin API with a bearer token ("" for none) or through the
// browser c (nil for a plain client); body is JSON ("" for none).
func (e *adminEnv) api(c *http.Client, method, path, token, body string, hdr map[string]string) apiResp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.hs.URL+"/admin/api/v1"+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c == nil {
		c = e.hs.Client()
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := apiResp{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out.body); err != nil {
			e.t.Fatalf("%s %s: %d, body not JSON: %q", method, path, resp.StatusCode, b)
		}
	}
	return out
}

// wantAPI checks the status (and for an error, the error code) of r.
func wantAPI(t *testing.T, what string, r apiResp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.raw)
	}
	if code != "" && r.str("error") != code {
		t.Fatalf("%s: error %q, want %q: %s", what, r.str("error"), code, r.raw)
	}
	if status >= 400 && r.str("error") == "" {
		t.Fatalf("%s: an error without the OAuth error JSON: %s", what, r.raw)
	}
}

// auditHas reports whether the audit log holds an event of the kind by actor.
func (e *adminEnv) auditHas(event, actor string) bool {
	e.t.Helper()
	evs, err := e.s.db.ListAuditEvents(e.t.Context(), storage.AuditFilter{Event: event, User: actor})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Actor == actor {
			return true
		}
	}
	return false
}

// TestAdminAPIAuthentication: who may call the admin API. RFC 6750 §3.1
// challenges for no token and a bad one; 403 insufficient_scope naming the
// admin scope; a token with the scope but no administrator behind it is
// refused; an admin session must send the CSRF header on changes.
func TestAdminAPIAuthentication(t *testing.T) {
	e := adminSetup(t)

	r := e.api(nil, "GET", "/users", "", "", nil)
	wantAPI(t, "no token", r, http.StatusUnauthorized, "invalid_token")
	if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer ") || strings.Contains(h, "error=") {
		t.Errorf("no token: WWW-Authenticate %q, want a Bearer challenge without error (RFC 6750 §3.1)", h)
	}
	r = e.api(nil, "GET", "/users", "not.a.token", "", nil)
	wantAPI(t, "bad token", r, http.StatusUnauthorized, "invalid_token")
	if h := r.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
		t.Errorf("bad token: WWW-Authenticate %q", h)
	}

	bob := e.userTokens("bob", "app", "mcp")
	r = e.api(nil, "GET", "/users", bob.access, "", nil)
	wantAPI(t, "no admin scope", r, http.StatusForbidden, "insufficient_scope")
	if h := r.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) || !strings.Contains(h, `scope="admin"`) {
		t.Errorf("no admin scope: WWW-Authenticate %q", h)
	}
	r = e.api(nil, "POST", "/users", bob.access, `{"username":"mallory","admin":true}`, nil)
	wantAPI(t, "no admin scope, POST", r, http.StatusForbidden, "insufficient_scope")

	// A token with the admin scope whose user is not an administrator
	// (here minted directly; consent would never grant it).
	bobAdmin := e.userTokens("bob", "app", "mcp", "admin")
	wantAPI(t, "admin scope, non-admin user", e.api(nil, "GET", "/users", bobAdmin.access, "", nil), http.StatusForbidden, "access_denied")

	// H1: a self-registered client an administrator approved for admin
	// (consent shows only /mcp's admin tools) does not get the API.
	dcr := e.userTokens("alice", "app", "mcp", "admin")
	r = e.api(nil, "GET", "/users", dcr.access, "", nil)
	wantAPI(t, "admin's token held by a self-registered client", r, http.StatusForbidden, "access_denied")
	if !strings.Contains(r.str("error_description"), "an administrator created") {
		t.Errorf("self-registered client refused with %q", r.str("error_description"))
	}
	wantAPI(t, "self-registered client, POST", e.api(nil, "POST", "/users", dcr.access, `{"username":"mallory","admin":true}`, nil), http.StatusForbidden, "access_denied")
	if _, err := e.s.db.UserByName(t.Context(), "mallory"); err == nil {
		t.Errorf("a self-registered client's token created an administrator")
	}

	alice := e.userTokens("alice", "admin-app", "mcp", "admin")
	wantAPI(t, "admin token", e.api(nil, "GET", "/users", alice.access, "", nil), http.StatusOK, "")
	// The audit log records which client held the administrator's token.
	wantAPI(t, "admin token, POST", e.api(nil, "POST", "/users", alice.access, `{"username":"erin"}`, nil), http.StatusCreated, "")
	if ev := e.adminAPILastAudit(); ev.Actor != "alice" || ev.Details["via_client"] != "admin-app" {
		t.Errorf("audit of a token's call = %+v, want actor alice via_client admin-app", ev)
	}
	// Demoted, the same token no longer administers.
	if err := e.s.db.SetUserAdmin(t.Context(), e.user("alice").ID, false, nil); err != nil {
		t.Fatal(err)
	}
	wantAPI(t, "demoted admin", e.api(nil, "GET", "/users", alice.access, "", nil), http.StatusForbidden, "access_denied")
	if err := e.s.db.SetUserAdmin(t.Context(), e.user("alice").ID, true, nil); err != nil {
		t.Fatal(err)
	}

	// client_credentials: a client an administrator created.
	svc := e.serviceToken("automation", true, "admin")
	r = e.api(nil, "GET", "/users", svc, "", nil)
	wantAPI(t, "admin client", r, http.StatusOK, "")
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("the admin API answers with CORS headers")
	}
	svcMCP := e.serviceToken("automation-mcp", true, "mcp")
	wantAPI(t, "admin client without the scope", e.api(nil, "GET", "/users", svcMCP, "", nil), http.StatusForbidden, "insufficient_scope")

	// A personal access token with the admin scope, of an administrator.
	pat, _, err := e.s.CreatePersonalAccessToken(t.Context(), PATRequest{UserID: e.user("alice").ID, Name: "ops", Scopes: []string{"admin"}, TTL: time.Hour, CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	wantAPI(t, "admin PAT", e.api(nil, "GET", "/users", pat, "", nil), http.StatusOK, "")
	// A disabled admin-created client's user token is refused too.
	if _, err := e.s.db.SetClientDisabled(t.Context(), "admin-app", true); err != nil {
		t.Fatal(err)
	}
	// (Its tokens are revoked too; whichever check sees it first refuses.)
	if r := e.api(nil, "GET", "/users", alice.access, "", nil); r.status != http.StatusForbidden && r.status != http.StatusUnauthorized {
		t.Errorf("disabled admin client: %d %s, want 403 or 401", r.status, r.raw)
	}

	// Browser sessions.
	bobBrowser := e.client(t)
	e.login(t, bobBrowser, "bob", loginPassword, "/")
	wantAPI(t, "non-admin session", e.api(bobBrowser, "GET", "/users", "", "", nil), http.StatusForbidden, "access_denied")

	browser := e.client(t)
	e.login(t, browser, "alice", loginPassword, "/")
	wantAPI(t, "admin session GET", e.api(browser, "GET", "/users", "", "", nil), http.StatusOK, "")
	body := `{"username":"carol"}`
	wantAPI(t, "session POST without CSRF header", e.api(browser, "POST", "/users", "", body, e.sameOrigin()), http.StatusForbidden, "invalid_request")
	csrf := e.consoleCSRF(browser)
	wrong := map[string]string{"Sec-Fetch-Site": "same-origin", csrfHeader: "x" + csrf[1:]}
	wantAPI(t, "session POST with a wrong CSRF header", e.api(browser, "POST", "/users", "", body, wrong), http.StatusForbidden, "invalid_request")
	cross := map[string]string{"Sec-Fetch-Site": "cross-site", csrfHeader: csrf}
	wantAPI(t, "cross-site session POST", e.api(browser, "POST", "/users", "", body, cross), http.StatusForbidden, "invalid_request")
	ok := map[string]string{"Sec-Fetch-Site": "same-origin", csrfHeader: csrf}
	wantAPI(t, "session POST with CSRF header", e.api(browser, "POST", "/users", "", body, ok), http.StatusCreated, "")
}

// adminAPILastAudit is the newest audit event.
func (e *adminEnv) adminAPILastAudit() storage.AuditEvent {
	e.t.Helper()
	evs, err := e.s.db.ListAuditEvents(e.t.Context(), storage.AuditFilter{Limit: 1})
	if err != nil || len(evs) != 1 {
		e.t.Fatalf("audit events: %v %v", evs, err)
	}
	return evs[0]
}

var adminCSRFRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// consoleCSRF is the CSRF token of a console page of the browser c.
func (e *adminEnv) consoleCSRF(c *http.Client) string {
	e.t.Helper()
	p := e.do(e.t, c, "GET", "/admin/users", nil, nil)
	m := adminCSRFRE.FindStringSubmatch(p.body)
	if p.StatusCode != http.StatusOK || m == nil {
		e.t.Fatalf("GET /admin/users: %s\n%s", p.Status, p.body)
	}
	return m[1]
}

// TestAdminAPIUsers: list, create (the password once), disable, enable,
// reset the password, grant and remove the admin role; an administrator
// cannot disable or demote themselves; each change is audited.
func TestAdminAPIUsers(t *testing.T) {
	e := adminSetup(t)
	admin := e.userTokens("alice", "admin-app", "mcp", "admin").access

	r := e.api(nil, "GET", "/users", admin, "", nil)
	wantAPI(t, "list", r, http.StatusOK, "")
	if users, _ := r.body["users"].([]any); len(users) != 3 || strings.Contains(r.raw, "argon2") {
		t.Fatalf("list: %s", r.raw)
	}

	r = e.api(nil, "POST", "/users", admin, `{"username":"carol"}`, nil)
	wantAPI(t, "create", r, http.StatusCreated, "")
	password := r.str("password")
	if len(password) < 20 || r.str("username") != "carol" || r.body["admin"] != false {
		t.Fatalf("create: %s", r.raw)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("create: Cache-Control %q, want no-store (the answer holds a password)", r.header.Get("Cache-Control"))
	}
	if l := e.login(t, e.client(t), "carol", password, "/"); l.StatusCode != http.StatusSeeOther {
		t.Errorf("carol cannot sign in with the generated password: %s", l.Status)
	}
	wantAPI(t, "create again", e.api(nil, "POST", "/users", admin, `{"username":"CAROL"}`, nil), http.StatusConflict, "conflict")
	wantAPI(t, "bad name", e.api(nil, "POST", "/users", admin, `{"username":"carol smith"}`, nil), http.StatusBadRequest, "invalid_request")
	wantAPI(t, "unknown member", e.api(nil, "POST", "/users", admin, `{"username":"dave","role":"admin"}`, nil), http.StatusBadRequest, "invalid_request")
	wantAPI(t, "two values", e.api(nil, "POST", "/users", admin, `{"username":"dave"} {}`, nil), http.StatusBadRequest, "invalid_request")
	wantAPI(t, "get", e.api(nil, "GET", "/users/carol", admin, "", nil), http.StatusOK, "")
	wantAPI(t, "get unknown", e.api(nil, "GET", "/users/nobody", admin, "", nil), http.StatusNotFound, "not_found")
	wantAPI(t, "create a name with @", e.api(nil, "POST", "/users", admin, `{"username":"svc@ops"}`, nil), http.StatusCreated, "")
	wantAPI(t, "get a percent-encoded name", e.api(nil, "GET", "/users/svc%40ops", admin, "", nil), http.StatusOK, "")

	// Disabling ends carol's grants; enabling revives none.
	carol := e.userTokens("carol", "app", "mcp")
	wantAPI(t, "disable", e.api(nil, "POST", "/users/carol/disable", admin, "", nil), http.StatusOK, "")
	if !e.refused(carol.access) {
		t.Errorf("a disabled user's access token still works")
	}
	if !e.user("carol").DisabledAt.Before(time.Now().Add(time.Second)) {
		t.Errorf("carol not disabled")
	}
	wantAPI(t, "enable", e.api(nil, "POST", "/users/carol/enable", admin, "", nil), http.StatusOK, "")
	if e.user("carol").DisabledAt != nil || e.works(carol.access) {
		t.Errorf("enable: disabled_at %v, old token works %t", e.user("carol").DisabledAt, e.works(carol.access))
	}

	r = e.api(nil, "POST", "/users/carol/reset-password", admin, "", nil)
	wantAPI(t, "reset password", r, http.StatusOK, "")
	if np := r.str("password"); np == "" || np == password {
		t.Fatalf("reset password: %s", r.raw)
	}
	if l := e.login(t, e.client(t), "carol", password, "/"); l.StatusCode == http.StatusSeeOther {
		t.Errorf("the old password still signs in")
	}
	if l := e.login(t, e.client(t), "carol", r.str("password"), "/"); l.StatusCode != http.StatusSeeOther {
		t.Errorf("the new password does not sign in")
	}

	wantAPI(t, "make admin", e.api(nil, "POST", "/users/carol/admin", admin, `{"admin":true}`, nil), http.StatusOK, "")
	if !e.user("carol").IsAdmin {
		t.Errorf("carol is no admin")
	}
	wantAPI(t, "admin without a value", e.api(nil, "POST", "/users/carol/admin", admin, `{}`, nil), http.StatusBadRequest, "invalid_request")
	wantAPI(t, "unmake admin", e.api(nil, "POST", "/users/carol/admin", admin, `{"admin":false}`, nil), http.StatusOK, "")
	if e.user("carol").IsAdmin {
		t.Errorf("carol is still admin")
	}

	wantAPI(t, "disable yourself", e.api(nil, "POST", "/users/alice/disable", admin, "", nil), http.StatusBadRequest, "invalid_request")
	wantAPI(t, "demote yourself", e.api(nil, "POST", "/users/alice/admin", admin, `{"admin":false}`, nil), http.StatusBadRequest, "invalid_request")
	if u := e.user("alice"); !u.IsAdmin || u.DisabledAt != nil {
		t.Errorf("alice changed herself: %+v", u)
	}

	for _, ev := range []string{storage.EventUserCreated, storage.EventUserDisabled, storage.EventUserEnabled, storage.EventUserPasswordReset, storage.EventUserAdminChanged} {
		if !e.auditHas(ev, "alice") {
			t.Errorf("no audit event %s by alice", ev)
		}
	}
	evs, err := e.s.db.ListAuditEvents(t.Context(), storage.AuditFilter{Event: storage.EventUserPasswordReset})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if b, _ := json.Marshal(ev); strings.Contains(string(b), r.str("password")) {
			t.Errorf("the audit log holds the password: %s", b)
		}
	}
}

// TestAdminAPIGrantRevocation: revoking by user and by client ends exactly
// those grants (tokens refused, refresh invalid_grant), and leaves the other
// users' and clients' grants working, refresh included.
func TestAdminAPIGrantRevocation(t *testing.T) {
	e := adminSetup(t)
	loginUser(t, e.s, "carol", loginPassword, false, false)
	admin := e.serviceToken("automation", true, "admin")

	bobA := e.userTokens("bob", "app-a", "mcp")
	bobB := e.userTokens("bob", "app-b", "mcp")
	carolA := e.userTokens("carol", "app-a", "mcp")
	carolB := e.userTokens("carol", "app-b", "mcp")

	r := e.api(nil, "GET", "/grants?user=bob", admin, "", nil)
	wantAPI(t, "list by user", r, http.StatusOK, "")
	if gs, _ := r.body["grants"].([]any); len(gs) != 2 {
		t.Fatalf("bob's grants: %s", r.raw)
	}
	r = e.api(nil, "GET", "/grants?client_id=app-a&limit=1", admin, "", nil)
	wantAPI(t, "list by client", r, http.StatusOK, "")
	if gs, _ := r.body["grants"].([]any); len(gs) != 1 || r.body["more"] != true {
		t.Fatalf("app-a's grants, limit 1: %s", r.raw)
	}
	wantAPI(t, "bad limit", e.api(nil, "GET", "/grants?limit=0", admin, "", nil), http.StatusBadRequest, "invalid_request")

	// By user: bob's grants end, carol's go on.
	r = e.api(nil, "POST", "/grants/revoke", admin, `{"user":"bob"}`, nil)
	wantAPI(t, "revoke by user", r, http.StatusOK, "")
	if r.body["revoked"] != float64(2) {
		t.Errorf("revoked %v, want 2", r.body["revoked"])
	}
	for _, g := range []adminTokens{bobA, bobB} {
		if !e.refused(g.access) || e.refreshes(g) {
			t.Errorf("bob's grant with %s still works", g.client)
		}
	}
	for _, g := range []adminTokens{carolA, carolB} {
		if !e.works(g.access) {
			t.Errorf("carol's token of %s stopped working", g.client)
		}
	}
	// Carol's refresh still works (and rotates the refresh token).
	carolA.refresh = e.refreshed(carolA)

	// By client: app-b's grants end, app-a's go on.
	r = e.api(nil, "POST", "/grants/revoke", admin, `{"client_id":"app-b"}`, nil)
	wantAPI(t, "revoke by client", r, http.StatusOK, "")
	if !e.refused(carolB.access) || e.refreshes(carolB) {
		t.Errorf("carol's app-b grant still works")
	}
	if !e.works(carolA.access) {
		t.Errorf("carol's app-a token stopped working")
	}
	carolA.refresh = e.refreshed(carolA)

	// One grant.
	r = e.api(nil, "GET", "/grants?user=carol", admin, "", nil)
	gs, _ := r.body["grants"].([]any)
	if len(gs) != 1 {
		t.Fatalf("carol's grants: %s", r.raw)
	}
	id, _ := gs[0].(map[string]any)["grant_id"].(string)
	dave := e.userTokens("bob", "app-a", "mcp")
	wantAPI(t, "revoke one", e.api(nil, "POST", "/grants/revoke", admin, `{"grant_id":"`+id+`"}`, nil), http.StatusOK, "")
	if !e.refused(carolA.access) || e.refreshes(carolA) {
		t.Errorf("the revoked grant still works")
	}
	if !e.works(dave.access) {
		t.Errorf("another grant of the same client stopped working")
	}
	// One convention for a revoked grant: the user's name, the client, the grant id.
	if evs, err := e.s.db.ListAuditEvents(t.Context(), storage.AuditFilter{Event: storage.EventGrantRevoked}); err != nil || len(evs) == 0 ||
		evs[0].Subject != "carol" || evs[0].ClientID != "app-a" || evs[0].Details["grant_id"] != id {
		t.Errorf("grant.revoked by grant id = %+v, %v; want subject carol, client app-a, details.grant_id %s", evs, err, id)
	}

	wantAPI(t, "two targets", e.api(nil, "POST", "/grants/revoke", admin, `{"user":"bob","client_id":"app-a"}`, nil), http.StatusBadRequest, "invalid_request")
	wantAPI(t, "no target", e.api(nil, "POST", "/grants/revoke", admin, `{}`, nil), http.StatusBadRequest, "invalid_request")
	wantAPI(t, "unknown grant", e.api(nil, "POST", "/grants/revoke", admin, `{"grant_id":"no-such-grant"}`, nil), http.StatusNotFound, "not_found")
	wantAPI(t, "unknown user", e.api(nil, "POST", "/grants/revoke", admin, `{"user":"nobody"}`, nil), http.StatusNotFound, "not_found")
	if !e.auditHas(storage.EventGrantRevoked, "client:automation") {
		t.Errorf("no grant.revoked event by client:automation")
	}
}

// refreshed refreshes a grant's tokens, failing the test if it cannot, and
// returns the new refresh token.
func (e *adminEnv) refreshed(at adminTokens) string {
	e.t.Helper()
	r := e.tok("alice").refresh(at.client, "", at.refresh, nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("refresh of %s: %d %s", at.client, r.status, r.raw)
	}
	return r.str("refresh_token")
}

// TestAdminAPIClients: list (filter, paging), inspect, disable (its grants
// end, it cannot get tokens), enable (nothing revived), delete.
func TestAdminAPIClients(t *testing.T) {
	e := adminSetup(t)
	admin := e.userTokens("alice", "admin-console", "mcp", "admin").access
	te := e.tok("bob")
	bobA := e.userTokens("bob", "app-a", "mcp")
	e.userTokens("bob", "app-b", "mcp")
	cimdID := "https://tools.example/client.json"
	te.client(tokClient{id: cimdID, source: storage.SourceCIMD})
	svcSecret := te.client(tokClient{id: "svc", confidential: true, grants: []string{"client_credentials"}, source: storage.SourceAdmin})

	r := e.api(nil, "GET", "/clients", admin, "", nil)
	wantAPI(t, "list", r, http.StatusOK, "")
	if cs, _ := r.body["clients"].([]any); len(cs) != 5 || strings.Contains(r.raw, "hash") {
		t.Fatalf("list: %s", r.raw)
	}
	r = e.api(nil, "GET", "/clients?source=cimd", admin, "", nil)
	if cs, _ := r.body["clients"].([]any); len(cs) != 1 {
		t.Fatalf("cimd clients: %s", r.raw)
	}
	r = e.api(nil, "GET", "/clients?q=app-&limit=1", admin, "", nil)
	cs, _ := r.body["clients"].([]any)
	if len(cs) != 1 || r.str("next") != "app-a" {
		t.Fatalf("page 1: %s", r.raw)
	}
	r = e.api(nil, "GET", "/clients?q=app-&limit=1&after=app-a", admin, "", nil)
	if cs, _ := r.body["clients"].([]any); len(cs) != 1 || cs[0].(map[string]any)["client_id"] != "app-b" || r.str("next") != "" {
		t.Fatalf("page 2: %s", r.raw)
	}
	wantAPI(t, "bad source", e.api(nil, "GET", "/clients?source=x", admin, "", nil), http.StatusBadRequest, "invalid_request")

	r = e.api(nil, "GET", "/clients/app-a", admin, "", nil)
	wantAPI(t, "get", r, http.StatusOK, "")
	if gs, _ := r.body["grants"].([]any); len(gs) != 1 || r.body["live_grants"] != float64(1) || r.str("source") != "dcr" {
		t.Fatalf("get: %s", r.raw)
	}
	wantAPI(t, "get a URL client id", e.api(nil, "GET", "/clients/"+url.PathEscape(cimdID), admin, "", nil), http.StatusOK, "")
	wantAPI(t, "get unknown", e.api(nil, "GET", "/clients/nope", admin, "", nil), http.StatusNotFound, "not_found")

	r = e.api(nil, "POST", "/clients/app-a/disable", admin, "", nil)
	wantAPI(t, "disable", r, http.StatusOK, "")
	if r.body["revoked"] != float64(1) || !e.refused(bobA.access) || e.refreshes(bobA) {
		t.Fatalf("disable: %s; token works %t", r.raw, e.works(bobA.access))
	}
	wantAPI(t, "enable", e.api(nil, "POST", "/clients/app-a/enable", admin, "", nil), http.StatusOK, "")
	if e.works(bobA.access) {
		t.Errorf("enabling revived a token")
	}

	// A disabled client_credentials client cannot get a token.
	wantAPI(t, "disable svc", e.api(nil, "POST", "/clients/svc/disable", admin, "", nil), http.StatusOK, "")
	if r := te.post("/token", url.Values{"grant_type": {"client_credentials"}}, "svc", svcSecret); r.status == http.StatusOK {
		t.Errorf("a disabled client got a token")
	}

	wantAPI(t, "delete", e.api(nil, "DELETE", "/clients/"+url.PathEscape(cimdID), admin, "", nil), http.StatusNoContent, "")
	wantAPI(t, "delete again", e.api(nil, "DELETE", "/clients/"+url.PathEscape(cimdID), admin, "", nil), http.StatusNotFound, "not_found")
	for _, ev := range []string{storage.EventClientDisabled, storage.EventClientEnabled, storage.EventClientDeleted} {
		if !e.auditHas(ev, "alice") {
			t.Errorf("no audit event %s by alice", ev)
		}
	}
}

// TestAdminAPITokens: an administrator creates a personal access token for
// a service account (shown once), lists it (without the token) and revokes
// it; it is refused within a second.
func TestAdminAPITokens(t *testing.T) {
	e := adminSetup(t)
	admin := e.userTokens("alice", "admin-console", "mcp", "admin").access

	r := e.api(nil, "POST", "/tokens", admin, `{"user":"bob","name":"ci","scopes":["mcp"],"expires_in":3600}`, nil)
	wantAPI(t, "create", r, http.StatusCreated, "")
	token, id := r.str("token"), r.str("id")
	ti, err := e.s.VerifyAccessToken(t.Context(), token)
	if err != nil || ti.Subject != e.user("bob").ID || strings.Join(ti.Scopes, " ") != "mcp" {
		t.Fatalf("the new token: %+v, %v", ti, err)
	}
	wantAPI(t, "admin scope for a non-admin", e.api(nil, "POST", "/tokens", admin, `{"user":"bob","name":"x","scopes":["admin"],"expires_in":3600}`, nil), http.StatusBadRequest, "invalid_request")
	wantAPI(t, "no expiry", e.api(nil, "POST", "/tokens", admin, `{"user":"bob","name":"x","scopes":["mcp"]}`, nil), http.StatusBadRequest, "invalid_request")
	wantAPI(t, "unknown user", e.api(nil, "POST", "/tokens", admin, `{"user":"nobody","name":"x","scopes":["mcp"],"expires_in":60}`, nil), http.StatusNotFound, "not_found")

	r = e.api(nil, "GET", "/tokens?user=bob", admin, "", nil)
	wantAPI(t, "list", r, http.StatusOK, "")
	if ts, _ := r.body["tokens"].([]any); len(ts) != 1 || strings.Contains(r.raw, token) || !strings.Contains(r.raw, `"state":"active"`) {
		t.Fatalf("list: %s", r.raw)
	}

	wantAPI(t, "revoke", e.api(nil, "POST", "/tokens/"+id+"/revoke", admin, "", nil), http.StatusOK, "")
	if !e.refused(token) {
		t.Fatalf("the revoked token still works after 1 s")
	}
	wantAPI(t, "revoke unknown", e.api(nil, "POST", "/tokens/00000000-0000-0000-0000-000000000000/revoke", admin, "", nil), http.StatusNotFound, "not_found")
	if !e.auditHas(storage.EventPATRevoked, "alice") || !e.auditHas(storage.EventPATCreated, "alice") {
		t.Errorf("pat.created or pat.revoked not audited with alice as actor")
	}
}

// TestAdminAPIKeysAndAudit: list and rotate the signing keys; the audit log
// filters by event and user and pages with next_before.
func TestAdminAPIKeysAndAudit(t *testing.T) {
	e := adminSetup(t)
	admin := e.userTokens("alice", "admin-console", "mcp", "admin").access

	r := e.api(nil, "GET", "/keys", admin, "", nil)
	wantAPI(t, "keys", r, http.StatusOK, "")
	before, _ := r.body["keys"].([]any)
	if len(before) != 1 {
		t.Fatalf("keys: %s", r.raw)
	}
	r = e.api(nil, "POST", "/keys/rotate", admin, `{"immediate":false}`, nil)
	wantAPI(t, "rotate", r, http.StatusOK, "")
	if after, _ := r.body["keys"].([]any); len(after) != 2 || r.str("kid") == "" || !strings.Contains(string(e.s.keys.JWKS()), r.str("kid")) {
		t.Fatalf("rotate: %s", r.raw)
	}
	if !e.auditHas(storage.EventKeyRotated, "alice") {
		t.Errorf("no key.rotated event by alice")
	}
	wantAPI(t, "rotate with a string", e.api(nil, "POST", "/keys/rotate", admin, `{"immediate":"yes"}`, nil), http.StatusBadRequest, "invalid_request")

	for _, name := range []string{"u1", "u2", "u3"} {
		wantAPI(t, "create "+name, e.api(nil, "POST", "/users", admin, `{"username":"`+name+`"}`, nil), http.StatusCreated, "")
	}
	r = e.api(nil, "GET", "/audit?event=user.created&limit=2", admin, "", nil)
	wantAPI(t, "audit page 1", r, http.StatusOK, "")
	evs, _ := r.body["events"].([]any)
	next, _ := r.body["next_before"].(float64)
	if len(evs) != 2 || next == 0 || evs[0].(map[string]any)["subject"] != "u3" {
		t.Fatalf("audit page 1: %s", r.raw)
	}
	r = e.api(nil, "GET", "/audit?event=user.created&limit=2&before="+strconv.FormatInt(int64(next), 10), admin, "", nil)
	evs, _ = r.body["events"].([]any)
	if len(evs) != 1 || evs[0].(map[string]any)["subject"] != "u1" || r.body["next_before"] != nil {
		t.Fatalf("audit page 2: %s", r.raw)
	}
	r = e.api(nil, "GET", "/audit?user=u2", admin, "", nil)
	if evs, _ := r.body["events"].([]any); len(evs) != 1 {
		t.Fatalf("audit by user: %s", r.raw)
	}
	since := url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	r = e.api(nil, "GET", "/audit?since="+since, admin, "", nil)
	if evs, _ := r.body["events"].([]any); len(evs) != 0 {
		t.Fatalf("audit since an hour ahead: %s", r.raw)
	}
	wantAPI(t, "bad since", e.api(nil, "GET", "/audit?since=yesterday", admin, "", nil), http.StatusBadRequest, "invalid_request")
	wantAPI(t, "unknown event", e.api(nil, "GET", "/audit?event=nope", admin, "", nil), http.StatusBadRequest, "invalid_request")
}

// TestAdminAPIBodies: bodies are JSON, capped, and unknown operations 404.
func TestAdminAPIBodies(t *testing.T) {
	e := adminSetup(t)
	admin := e.userTokens("alice", "admin-console", "mcp", "admin").access

	big := `{"username":"` + strings.Repeat("a", maxFormBytes) + `"}`
	wantAPI(t, "too big", e.api(nil, "POST", "/users", admin, big, nil), http.StatusRequestEntityTooLarge, "invalid_request")
	r := e.api(nil, "POST", "/users", admin, `username=x`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	wantAPI(t, "form body", r, http.StatusUnsupportedMediaType, "invalid_request")
	wantAPI(t, "not JSON", e.api(nil, "POST", "/users", admin, `{"username":`, nil), http.StatusBadRequest, "invalid_request")
	wantAPI(t, "unknown path", e.api(nil, "GET", "/nothing", admin, "", nil), http.StatusNotFound, "not_found")
	wantAPI(t, "wrong method", e.api(nil, "PUT", "/users", admin, "", nil), http.StatusMethodNotAllowed, "invalid_request")
}

// TestAdminAPIRevokeToken: one token is revoked by itself: an access or a
// refresh token ends its grant (not the user's others); a personal access
// token ends only itself. The token never reaches the audit log.
func TestAdminAPIRevokeToken(t *testing.T) {
	e := adminSetup(t)
	admin := e.serviceToken("automation", true, "admin")
	byAccess := e.userTokens("bob", "app", "mcp")
	byRefresh := e.userTokens("bob", "app", "mcp")
	kept := e.userTokens("bob", "app", "mcp")
	pat, _, err := e.s.CreatePersonalAccessToken(t.Context(), PATRequest{UserID: e.user("bob").ID, Name: "ci", Scopes: []string{"mcp"}, TTL: time.Hour, CreatedBy: "bob"})
	if err != nil {
		t.Fatal(err)
	}

	body := func(tok string) string { b, _ := json.Marshal(map[string]string{"token": tok}); return string(b) }
	wantAPI(t, "by access token", e.api(nil, "POST", "/grants/revoke", admin, body(byAccess.access), nil), http.StatusOK, "")
	if !e.refused(byAccess.access) || e.refreshes(byAccess) {
		t.Errorf("the grant of the access token still works")
	}
	wantAPI(t, "by refresh token", e.api(nil, "POST", "/grants/revoke", admin, body(byRefresh.refresh), nil), http.StatusOK, "")
	if !e.refused(byRefresh.access) || e.refreshes(byRefresh) {
		t.Errorf("the grant of the refresh token still works")
	}
	wantAPI(t, "by personal access token", e.api(nil, "POST", "/grants/revoke", admin, body(pat), nil), http.StatusOK, "")
	if !e.refused(pat) {
		t.Errorf("the personal access token still works")
	}
	if !e.works(kept.access) || !e.refreshes(kept) {
		t.Errorf("another grant of the same user and client stopped working")
	}
	wantAPI(t, "unknown refresh token", e.api(nil, "POST", "/grants/revoke", admin, body("ory_rt_x.y"), nil), http.StatusNotFound, "not_found")
	wantAPI(t, "forged JWT", e.api(nil, "POST", "/grants/revoke", admin, body("a.b.c"), nil), http.StatusNotFound, "not_found")
	wantAPI(t, "unknown PAT", e.api(nil, "POST", "/grants/revoke", admin, body(PATPrefix+"nope"), nil), http.StatusNotFound, "not_found")

	evs, err := e.s.db.ListAuditEvents(t.Context(), storage.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		for _, tok := range []string{byAccess.access, byRefresh.refresh, pat} {
			if strings.Contains(string(b), tok) {
				t.Errorf("the audit log holds a token: %s", b)
			}
		}
	}
}

// TestAdminAPIDocumented: docs/admin-api.md and docs/admin-api.yaml name
// every operation of the admin API (path parameters compared by position).
func TestAdminAPIDocumented(t *testing.T) {
	md, err := os.ReadFile("../docs/admin-api.md")
	if err != nil {
		t.Fatal(err)
	}
	yml, err := os.ReadFile("../docs/admin-api.yaml")
	if err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`\{[a-z_]+\}`)
	norm := func(s string) string { return param.ReplaceAllString(s, "{}") }
	mdText, ymlText := norm(string(md)), norm(string(yml))
	r := chi.NewRouter()
	(&Server{}).adminAPIRoutes(r)
	err = chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		op := method + " " + norm(route)
		if !strings.Contains(mdText, "`"+op) {
			t.Errorf("docs/admin-api.md does not document %s", op)
		}
		if !strings.Contains(ymlText, "\n  "+norm(route)+":") {
			t.Errorf("docs/admin-api.yaml does not document %s", route)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
