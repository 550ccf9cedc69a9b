package authz

import (
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/storage"
)

// fix6wNextRE finds a console page's "next page" link.
var fix6wNextRE = regexp.MustCompile(`<a href="([^"]+)">(?:Next page|Older events) →</a>`)

// fix6wFollowNext GETs the next-page link of a console page and returns
// the page it leads to.
func (e *adminEnv) fix6wFollowNext(c *http.Client, page loginResp) loginResp {
	e.t.Helper()
	m := fix6wNextRE.FindStringSubmatch(page.body)
	if m == nil {
		e.t.Fatalf("no next-page link on the page:\n%s", page.body)
	}
	r := e.do(e.t, c, "GET", html.UnescapeString(m[1]), nil, nil)
	if r.StatusCode != http.StatusOK {
		e.t.Fatalf("next page %s: %s\n%s", m[1], r.Status, r.body)
	}
	return r
}

// TestAdminConsolePaging: the console's "next page" links lead to the next
// page, not back to the first (M1: the query was escaped twice).
func TestAdminConsolePaging(t *testing.T) {
	e := adminSetup(t)
	te := e.tok("alice")
	for i := range consoleClientPage + 5 {
		te.client(tokClient{id: fmt.Sprintf("paging-%03d", i)})
	}
	var events []storage.AuditEvent
	for i := range consoleAuditPage + 5 {
		events = append(events, storage.AuditEvent{Event: storage.AuditEvents[0], Actor: "pager", Subject: fmt.Sprintf("subject-%03d", i)})
	}
	if err := e.s.db.InsertAuditEvents(t.Context(), events); err != nil {
		t.Fatal(err)
	}
	admin := e.signedIn("alice")

	first := e.do(t, admin, "GET", "/admin/clients?q=paging-", nil, nil)
	if !strings.Contains(first.body, "paging-000") || strings.Contains(first.body, fmt.Sprintf("paging-%03d", consoleClientPage)) {
		t.Fatalf("first page of clients:\n%s", first.body)
	}
	second := e.fix6wFollowNext(admin, first)
	if strings.Contains(second.body, "paging-000") || !strings.Contains(second.body, fmt.Sprintf("paging-%03d", consoleClientPage+4)) {
		t.Errorf("the next-page link of the clients did not lead to the second page:\n%s", second.body)
	}

	first = e.do(t, admin, "GET", "/admin/audit?user=pager", nil, nil)
	last := fmt.Sprintf("subject-%03d", consoleAuditPage+4)
	if !strings.Contains(first.body, last) || strings.Contains(first.body, "subject-000") {
		t.Fatalf("first page of the audit log:\n%s", first.body)
	}
	second = e.fix6wFollowNext(admin, first)
	if strings.Contains(second.body, last) || !strings.Contains(second.body, "subject-000") {
		t.Errorf("the older-events link of the audit log did not lead to the older events:\n%s", second.body)
	}
}

// TestAdminBadInput: a value PostgreSQL cannot take as text (invalid UTF-8,
// NUL) in a filter or id is the caller's error, 400, never a 500 (M2).
func TestAdminBadInput(t *testing.T) {
	e := adminSetup(t)
	token := e.userTokens("alice", "admin-app", "mcp", "admin").access
	for _, path := range []string{
		"/audit?user=%ff", "/audit?client_id=%00", "/clients?q=%ff", "/clients?after=%ff",
		"/grants?client_id=%ff", "/clients/%ff", "/users/%ff", "/tokens?user=%ff",
		"/grants?user=%00", "/audit?event=%c3%28", "/clients?q=" + strings.Repeat("a", maxInputLen+1),
	} {
		wantAPI(t, "API GET "+path, e.api(nil, "GET", path, token, "", nil), http.StatusBadRequest, "invalid_request")
	}
	// A JSON member reaches the database unchecked: the storage backstop.
	r := e.api(nil, "POST", "/grants/revoke", token, `{"client_id":"a\u0000b"}`, nil)
	if r.status >= 500 {
		t.Errorf("API POST a NUL in JSON: %d %s", r.status, r.raw)
	}

	admin := e.signedIn("alice")
	for _, path := range []string{"/admin/client?id=%ff", "/admin/audit?user=%ff", "/admin/clients?q=%ff", "/admin/grants?client_id=%ff", "/admin/tokens?user=%00"} {
		if r := e.do(t, admin, "GET", path, nil, nil); r.StatusCode != http.StatusBadRequest {
			t.Errorf("console GET %s: %s\n%s", path, r.Status, r.body)
		}
	}
	bob := e.signedIn("bob")
	form := url.Values{"client_id": {"\xff"}, csrfField: {e.fix6wAccountCSRF(bob)}}
	if r := e.do(t, bob, "POST", "/account/apps/revoke", form, e.sameOrigin()); r.StatusCode != http.StatusBadRequest {
		t.Errorf("POST /account/apps/revoke client_id=%%ff: %s\n%s", r.Status, r.body)
	}
}

// fix6wAccountCSRF is the CSRF token of the /account page of the browser c.
func (e *adminEnv) fix6wAccountCSRF(c *http.Client) string {
	e.t.Helper()
	r := e.do(e.t, c, "GET", "/account", nil, nil)
	m := adminCSRFRE.FindStringSubmatch(r.body)
	if m == nil {
		e.t.Fatalf("no CSRF token on /account: %s\n%s", r.Status, r.body)
	}
	return m[1]
}

// TestAdminAPIHeaders: a 405 names the allowed methods (RFC 9110 §15.5.6,
// L2); JSON answers, errors included, carry nosniff (L3).
func TestAdminAPIHeaders(t *testing.T) {
	e := adminSetup(t)
	token := e.userTokens("alice", "admin-app", "mcp", "admin").access
	for path, want := range map[string]string{"/users": "GET, POST", "/clients/x": "GET, DELETE", "/keys/rotate": "POST"} {
		r := e.api(nil, "PUT", path, token, "", nil)
		wantAPI(t, "PUT "+path, r, http.StatusMethodNotAllowed, "invalid_request")
		if got := r.header.Get("Allow"); got != want {
			t.Errorf("PUT %s: Allow %q, want %q", path, got, want)
		}
	}
	for _, r := range []apiResp{e.api(nil, "GET", "/users", token, "", nil), e.api(nil, "GET", "/users/nobody", token, "", nil), e.api(nil, "GET", "/users", "", "", nil)} {
		if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%d answer: X-Content-Type-Options %q, want nosniff", r.status, got)
		}
	}
}

// TestAdminPATLimit: a user holds at most MaxLivePATsPerUser live personal
// access tokens; a revoked or expired one does not count (M3).
func TestAdminPATLimit(t *testing.T) {
	e := adminSetup(t)
	bob := e.user("bob")
	req := PATRequest{UserID: bob.ID, Name: "t", Scopes: []string{"mcp"}, TTL: time.Hour, CreatedBy: "bob"}
	var first *storage.PersonalAccessToken
	for i := range MaxLivePATsPerUser {
		_, p, err := e.s.CreatePersonalAccessToken(t.Context(), req)
		if err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		if first == nil {
			first = p
		}
	}
	_, _, err := e.s.CreatePersonalAccessToken(t.Context(), req)
	if !errors.Is(err, ErrPATRequest) {
		t.Fatalf("token %d: %v, want ErrPATRequest", MaxLivePATsPerUser+1, err)
	}
	// Another user is not affected.
	if _, _, err := e.s.CreatePersonalAccessToken(t.Context(), PATRequest{UserID: e.user("alice").ID, Name: "t", Scopes: []string{"mcp"}, TTL: time.Hour, CreatedBy: "alice"}); err != nil {
		t.Fatalf("alice: %v", err)
	}
	if err := e.s.db.RevokePersonalAccessToken(t.Context(), first.ID, bob.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.s.CreatePersonalAccessToken(t.Context(), req); err != nil {
		t.Fatalf("after revoking one: %v", err)
	}
}

// TestAdminConsoleClientGrantCount: the client page and the delete
// confirmation count a client's live grants in the database, not the
// grants of a capped list (L5).
func TestAdminConsoleClientGrantCount(t *testing.T) {
	e := adminSetup(t)
	for range 3 {
		e.userTokens("bob", "counted", "mcp")
	}
	e.userTokens("alice", "counted", "mcp")
	e.userTokens("bob", "other", "mcp")
	n, err := e.s.db.CountLiveGrants(t.Context(), "counted")
	if err != nil || n != 4 {
		t.Fatalf("CountLiveGrants = %d, %v; want 4", n, err)
	}
	if _, err := e.s.db.CountLiveGrants(t.Context(), "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CountLiveGrants(no such client) = %v, want ErrNotFound", err)
	}
	admin := e.signedIn("alice")
	if r := e.do(t, admin, "GET", "/admin/client?id=counted", nil, nil); !strings.Contains(r.body, "Live grants (4)") {
		t.Errorf("client page: %s\n%s", r.Status, r.body)
	}
	if r := e.do(t, admin, "GET", "/admin/client/delete?id=counted", nil, nil); !strings.Contains(r.body, "revokes its 4 live grants") {
		t.Errorf("delete confirmation: %s\n%s", r.Status, r.body)
	}
}
