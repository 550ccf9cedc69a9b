package authz

import (
	"fmt"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"

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
