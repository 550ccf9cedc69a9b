package authz

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth/storage"
)

// accountPost posts an /account form from the browser c with the page's
// CSRF token.
func (e *adminEnv) accountPost(c *http.Client, path string, form url.Values) loginResp {
	e.t.Helper()
	p := e.do(e.t, c, "GET", "/account", nil, nil)
	m := adminCSRFRE.FindStringSubmatch(p.body)
	if p.StatusCode != http.StatusOK || m == nil {
		e.t.Fatalf("GET /account: %s\n%s", p.Status, p.body)
	}
	if form == nil {
		form = url.Values{}
	}
	form.Set(csrfField, m[1])
	return e.do(e.t, c, "POST", path, form, e.sameOrigin())
}

// TestAccountConnectedApps: /account lists the applications the user
// allowed; Revoke ends their grants and forgets the consent, and leaves the
// other applications and users alone.
func TestAccountConnectedApps(t *testing.T) {
	e := adminSetup(t)
	if r := e.do(t, e.client(t), "GET", "/account", nil, nil); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login?return_to=%2Faccount" {
		t.Fatalf("anonymous: %s %q", r.Status, r.Header.Get("Location"))
	}

	bob := e.user("bob")
	app := e.userTokens("bob", "app", "mcp")
	other := e.userTokens("bob", "other", "mcp")
	alice := e.userTokens("alice", "app", "mcp")
	for _, c := range []string{"app", "other"} {
		if err := e.s.db.SaveConsent(t.Context(), storage.Consent{UserID: bob.ID, ClientID: c, Scopes: []string{"mcp"}}); err != nil {
			t.Fatal(err)
		}
	}

	browser := e.signedIn("bob")
	page := e.do(t, browser, "GET", "/account", nil, nil)
	if page.StatusCode != http.StatusOK || !strings.Contains(page.body, "<strong>app</strong>") || !strings.Contains(page.body, "<strong>other</strong>") ||
		page.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("account page: %s\n%s", page.Status, page.body)
	}

	// Without the CSRF token: refused.
	if r := e.do(t, browser, "POST", "/account/apps/revoke", url.Values{"client_id": {"app"}}, e.sameOrigin()); r.StatusCode != http.StatusForbidden {
		t.Errorf("revoke without CSRF token: %s", r.Status)
	}
	if !e.works(app.access) {
		t.Fatalf("a refused POST revoked the grant")
	}

	r := e.accountPost(browser, "/account/apps/revoke", url.Values{"client_id": {"app"}})
	page = e.follow(browser, r)
	if !strings.Contains(page.body, "Disconnected app") || strings.Contains(page.body, "<strong>app</strong>") || !strings.Contains(page.body, "<strong>other</strong>") {
		t.Errorf("after revoke:\n%s", page.body)
	}
	if !e.refused(app.access) || e.refreshes(app) {
		t.Errorf("the disconnected app's tokens still work")
	}
	if _, err := e.s.db.Consent(t.Context(), bob.ID, "app"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the consent is still remembered: %v", err)
	}
	if !e.works(other.access) || !e.works(alice.access) {
		t.Errorf("another app's or another user's token stopped working")
	}
	if _, err := e.s.db.Consent(t.Context(), bob.ID, "other"); err != nil {
		t.Errorf("the other app's consent is gone: %v", err)
	}
	if !e.auditHas(storage.EventConsentRevoked, "bob") {
		t.Errorf("no consent.revoked event by bob")
	}
}

var accountTokenRE = regexp.MustCompile(`<p class="secret"><code>(mcpat_[^<]+)</code>`)

// TestAccountTokens: a user creates a personal access token (shown once,
// never cached), sees it listed without the token, and revokes it; scopes
// are the user's to give.
func TestAccountTokens(t *testing.T) {
	e := adminSetup(t)
	browser := e.signedIn("bob")

	r := e.accountPost(browser, "/account/tokens", url.Values{"name": {"laptop"}, "scope": {"mcp"}, "expires_days": {"30"}})
	m := accountTokenRE.FindStringSubmatch(r.body)
	if r.StatusCode != http.StatusOK || m == nil || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create: %s %q\n%s", r.Status, r.Header.Get("Cache-Control"), r.body)
	}
	token := m[1]
	ti, err := e.s.VerifyAccessToken(t.Context(), token)
	if err != nil || ti.Subject != e.user("bob").ID || strings.Join(ti.Scopes, " ") != "mcp" {
		t.Fatalf("the token: %+v, %v", ti, err)
	}
	page := e.do(t, browser, "GET", "/account", nil, nil)
	if !strings.Contains(page.body, "laptop") || strings.Contains(page.body, token) {
		t.Errorf("the list:\n%s", page.body)
	}
	// bob is no administrator: the form does not offer admin, and the
	// server refuses it.
	if strings.Contains(page.body, `value="admin"`) {
		t.Errorf("the admin scope is offered to a non-admin")
	}
	page = e.follow(browser, e.accountPost(browser, "/account/tokens", url.Values{"name": {"root"}, "scope": {"admin"}, "expires_days": {"30"}}))
	if !strings.Contains(page.body, "only for administrators") {
		t.Errorf("admin scope for a non-admin:\n%s", page.body)
	}
	page = e.follow(browser, e.accountPost(browser, "/account/tokens", url.Values{"name": {"x"}, "scope": {"mcp"}, "expires_days": {"9999"}}))
	if !strings.Contains(page.body, "choose an expiry") {
		t.Errorf("an expiry off the list:\n%s", page.body)
	}
	if p := e.do(t, e.signedIn("alice"), "GET", "/account", nil, nil); !strings.Contains(p.body, `value="admin"`) {
		t.Errorf("the admin scope is not offered to an admin")
	}

	pats, err := e.s.db.ListPersonalAccessTokens(t.Context(), e.user("bob").ID)
	if err != nil || len(pats) != 1 {
		t.Fatalf("bob's tokens: %v %v", pats, err)
	}
	// Another user cannot revoke it.
	loginUser(t, e.s, "carol", loginPassword, false, false)
	carolBrowser := e.signedIn("carol")
	page = e.follow(carolBrowser, e.accountPost(carolBrowser, "/account/tokens/"+pats[0].ID+"/revoke", nil))
	if !strings.Contains(page.body, "no personal access token") || !e.works(token) {
		t.Fatalf("carol revoked bob's token")
	}
	page = e.follow(browser, e.accountPost(browser, "/account/tokens/"+pats[0].ID+"/revoke", nil))
	if !strings.Contains(page.body, "Token revoked") {
		t.Errorf("revoke:\n%s", page.body)
	}
	if !e.refused(token) {
		t.Errorf("the revoked token still works after 1 s")
	}
	created, err := e.s.db.ListAuditEvents(t.Context(), storage.AuditFilter{Event: storage.EventPATCreated, User: "bob"})
	if err != nil || len(created) == 0 || created[0].ClientIP != "127.0.0.1" {
		t.Errorf("pat.created events: %+v, %v; want one from 127.0.0.1", created, err)
	}
	if !e.auditHas(storage.EventPATRevoked, "bob") || !e.auditHas(storage.EventPATCreated, "bob") {
		t.Errorf("pat.created or pat.revoked not audited with bob as actor")
	}
}
