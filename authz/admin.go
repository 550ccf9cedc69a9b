package authz

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// The administrator's console (/admin) and JSON API (/admin/api/v1/), issue 6.
//
// The console is server-rendered and works without JavaScript, under the
// rules of the login pages (pages.go, session.go): strict CSP, no framing,
// the session cookie, and on every state-changing POST both CSRF checks
// (http.CrossOriginProtection and the session-bound csrf_token). Only a
// signed-in, enabled administrator gets in: anyone else signed in sees a 403
// page, a browser without a session goes to the login page. Every change is
// a POST answered with 303 to a page that shows what happened (a flash
// message in a short-lived signed cookie), and is audited with the
// administrator as actor. The one-time password of a new or reset user is
// the exception: it is shown once on the answer to the POST, never stored.

// adminState is the console's own state.
type adminState struct {
	flashCookie string
	flashKey    []byte
}

func (s *Server) initAdmin() error {
	s.admin = &adminState{flashCookie: "mcpauth_flash", flashKey: s.subkey("flash", 32)}
	if s.sessions.secure {
		s.admin.flashCookie = "__Host-" + s.admin.flashCookie
	}
	return nil
}

// adminRoutes adds the console and the admin API.
func (s *Server) adminRoutes(r chi.Router) {
	r.Get("/admin", func(w http.ResponseWriter, r *http.Request) { seeOther(w, "/admin/clients") })
	r.Route("/admin/", func(r chi.Router) {
		s.consoleRoutes(r)
	})
	r.Route("/admin/api/v1", s.adminAPIRoutes)
}

// flash is a message shown once on the page after a change.
type flash struct {
	Error bool
	Text  string
}

// maxFlash caps a flash message (it travels in a cookie).
const maxFlash = 600

// setFlash sets the message the next page shows. The cookie is signed, so
// nobody but the server can make a page show a message.
func (s *Server) setFlash(w http.ResponseWriter, isError bool, text string) {
	if len(text) > maxFlash {
		text = text[:maxFlash]
	}
	kind := "n"
	if isError {
		kind = "e"
	}
	payload := base64.RawURLEncoding.EncodeToString([]byte(kind + text))
	s.sessions.setCookie(w, s.admin.flashCookie, payload+"."+s.flashMAC(payload), 60)
}

func (s *Server) flashMAC(payload string) string {
	m := hmac.New(sha256.New, s.admin.flashKey)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// takeFlash returns the flash message of the request, if any, and deletes it.
func (s *Server) takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	c, err := r.Cookie(s.admin.flashCookie)
	if err != nil {
		return nil
	}
	s.sessions.setCookie(w, s.admin.flashCookie, "", -1)
	payload, mac, ok := strings.Cut(c.Value, ".")
	if !ok || len(c.Value) > 2*maxFlash || !hmac.Equal([]byte(mac), []byte(s.flashMAC(payload))) {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || len(b) < 1 {
		return nil
	}
	return &flash{Error: b[0] == 'e', Text: string(b[1:])}
}

// adminView is the data of every console page.
type adminView struct {
	Section string // the navigation entry of the page
	Me      *storage.User
	CSRF    string
	Flash   *flash
	Here    string // this page's path and query, to come back to after a POST
	D       any    // the page's own data
}

// console wraps a console handler: it lets only a signed-in, enabled
// administrator through, checks CSRF on POST, and answers a failure with a
// page (never a stack trace or a database message).
func (s *Server) console(h func(http.ResponseWriter, *http.Request, *adminCaller) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		returnTo := r.URL.RequestURI()
		if r.Method != http.MethodGet {
			returnTo = "/admin"
		}
		user := s.signedInUser(w, r, "admin console", true, returnTo)
		if user == nil {
			return
		}
		ctx := r.Context()
		err := inputError(h(w, r, &adminCaller{user: user}))
		if err != nil {
			var oe *oauth.Error
			if errors.As(err, &oe) && oe.HTTPStatus() < 500 {
				s.consoleMessage(w, r, oe.HTTPStatus(), "Request refused", oe.Description)
				return
			}
			s.log.ErrorContext(ctx, "admin console failed", "path", r.URL.Path, "err", err)
			s.consoleMessage(w, r, http.StatusInternalServerError, "Something went wrong", "Something went wrong on our side. Please try again.")
		}
	}
}

// signedInUser is what the console and /account check before a handler: a
// signed-in user (else a redirect to the login page, back to returnTo), an
// administrator when admin, the CSRF checks on POST, and every query, path
// and form value valid (checkRequestInputs). It returns the user, or nil
// when it answered the request itself (a page, never a database message).
func (s *Server) signedInUser(w http.ResponseWriter, r *http.Request, area string, admin bool, returnTo string) *storage.User {
	ctx := r.Context()
	w.Header().Set("Cache-Control", "no-store")
	user, err := s.currentUser(r)
	if err != nil {
		s.log.ErrorContext(ctx, area+": session lookup", "err", err)
		s.consoleMessage(w, r, http.StatusInternalServerError, "Something went wrong", "Something went wrong on our side. Please try again.")
		return nil
	}
	if user == nil {
		s.redirectToLogin(w, returnTo)
		return nil
	}
	if admin && !user.IsAdmin {
		s.log.InfoContext(ctx, area+" refused: not an administrator", "user_id", user.ID)
		s.consoleMessage(w, r, http.StatusForbidden, "Administrators only", "You are signed in as "+user.Username+", who is not an administrator.")
		return nil
	}
	if r.Method == http.MethodPost {
		if err := s.checkCSRF(r); err != nil {
			s.log.InfoContext(ctx, area+": CSRF check failed", "err", err)
			s.consoleMessage(w, r, errStatus(err), "Request refused", "This form expired or did not come from this site. Go back, reload the page and try again.")
			return nil
		}
	}
	if err := checkRequestInputs(r); err != nil {
		msg := "The request has a value that is not valid."
		var oe *oauth.Error
		if errors.As(err, &oe) {
			msg = oe.Description
		}
		s.consoleMessage(w, r, http.StatusBadRequest, "Request refused", msg)
		return nil
	}
	return user
}

// errStatus is the HTTP status of an error: an *oauth.Error's, a body over
// the cap's 413, else 500.
func errStatus(err error) int {
	var oe *oauth.Error
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &oe):
		return oe.HTTPStatus()
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

func (s *Server) consoleMessage(w http.ResponseWriter, r *http.Request, status int, title, message string) {
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, status, "message", struct{ Title, Message string }{title, message})
}

// page renders a console page.
func (s *Server) page(w http.ResponseWriter, r *http.Request, c *adminCaller, section, name string, data any) {
	v := adminView{Section: section, Me: c.user, CSRF: s.csrfToken(r), Flash: s.takeFlash(w, r), Here: r.URL.RequestURI(), D: data}
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, http.StatusOK, name, v)
}

// done ends a console POST: the outcome as a flash message and a 303 to the
// page the form came from (its return_to, a path under /admin/) or fallback.
// A refusal (4xx) becomes an error message; anything else is returned.
func (s *Server) done(w http.ResponseWriter, r *http.Request, fallback, notice string, err error) error {
	var oe *oauth.Error
	switch {
	case err == nil:
		s.setFlash(w, false, notice)
	case errors.As(err, &oe) && oe.HTTPStatus() < 500:
		s.setFlash(w, true, oe.Description)
	default:
		return err
	}
	seeOther(w, adminReturnTo(r.PostForm.Get("return_to"), fallback))
	return nil
}

// adminReturnTo is raw if it is a console page, else fallback: no redirect
// leaves the console.
func adminReturnTo(raw, fallback string) string {
	if p := safeReturnTo(raw); strings.HasPrefix(p, "/admin/") && !strings.HasPrefix(p, "/admin/api/") {
		return p
	}
	return fallback
}

// formBool reads a checkbox or a "true"/"false" field.
func formBool(r *http.Request, name string) bool {
	switch r.PostForm.Get(name) {
	case "on", "true", "1", "yes":
		return true
	}
	return false
}

// queryValue returns a query parameter, capped to maxAdminArgLen.
func queryValue(q url.Values, name string) string {
	v := strings.TrimSpace(q.Get(name))
	if len(v) > maxAdminArgLen {
		v = v[:maxAdminArgLen]
	}
	return v
}

// consoleRoutes are the console's pages and forms, under /admin/.
func (s *Server) consoleRoutes(r chi.Router) {
	r.Get("/clients", s.console(s.handleConsoleClients))
	// A client id may be a URL (a metadata document's): it travels in the
	// query or the form, never in the path.
	r.Get("/client", s.console(s.handleConsoleClient))
	r.Post("/client/disable", s.console(s.handleConsoleClientDisable))
	r.Post("/client/enable", s.console(s.handleConsoleClientEnable))
	r.Get("/client/delete", s.console(s.handleConsoleClientDeletePage))
	r.Post("/client/delete", s.console(s.handleConsoleClientDelete))
	r.Get("/users", s.console(s.handleConsoleUsers))
	r.Post("/users", s.console(s.handleConsoleUserAdd))
	r.Post("/users/{id}/disable", s.console(s.handleConsoleUserDisable))
	r.Post("/users/{id}/enable", s.console(s.handleConsoleUserEnable))
	r.Post("/users/{id}/password", s.console(s.handleConsoleUserPassword))
	r.Post("/users/{id}/admin", s.console(s.handleConsoleUserAdmin))
	r.Get("/grants", s.console(s.handleConsoleGrants))
	r.Post("/grants/revoke", s.console(s.handleConsoleRevoke))
	r.Get("/tokens", s.console(s.handleConsoleTokens))
	r.Post("/tokens/{id}/revoke", s.console(s.handleConsoleTokenRevoke))
	r.Get("/keys", s.console(s.handleConsoleKeys))
	r.Get("/keys/rotate", s.console(s.handleConsoleRotatePage))
	r.Post("/keys/rotate", s.console(s.handleConsoleRotate))
	r.Get("/audit", s.console(s.handleConsoleAudit))
}

// ---- clients ----

// clientRow is a client in the console's list and on its own page.
type clientRow struct {
	ID         string
	Name       string
	Source     string // as people say it: "registered", "metadata document", "created by admin"
	LastUsed   *time.Time
	Disabled   bool
	LiveGrants int
}

// clientSources are the client sources, value and label as the console
// shows it: the list filter's choices, and the only values it accepts.
var clientSources = [][2]string{{storage.SourceDCR, "registered"}, {storage.SourceCIMD, "metadata document"}, {storage.SourceAdmin, "created by admin"}}

// sourceLabel names a client source as the console shows it.
func sourceLabel(src string) string {
	for _, s := range clientSources {
		if s[0] == src {
			return s[1]
		}
	}
	return src
}

// checkClientSource refuses a source filter that is not a client source.
func checkClientSource(src string) error {
	if src != "" && !slices.ContainsFunc(clientSources, func(s [2]string) bool { return s[0] == src }) {
		return badRequest("source must be dcr, cimd or admin")
	}
	return nil
}

// consoleClientPage is the number of clients on a page of the list.
const consoleClientPage = 50

func (s *Server) handleConsoleClients(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	q := r.URL.Query()
	f := storage.ClientFilter{Source: queryValue(q, "source"), Query: queryValue(q, "q"), After: queryValue(q, "after"), Limit: consoleClientPage + 1}
	if err := checkClientSource(f.Source); err != nil {
		return err
	}
	list, err := s.db.ListClientSummaries(r.Context(), f)
	if err != nil {
		return err
	}
	data := struct {
		Source, Query string
		Sources       [][2]string
		Clients       []clientRow
		NextURL       string // the next page, "" if none
	}{Source: f.Source, Query: f.Query, Sources: clientSources}
	if len(list) > consoleClientPage {
		list = list[:consoleClientPage]
		data.NextURL = "/admin/clients?" + url.Values{"source": {f.Source}, "q": {f.Query}, "after": {list[len(list)-1].Client.ID}}.Encode()
	}
	for _, cs := range list {
		data.Clients = append(data.Clients, clientRowOf(cs.Client, cs.LiveGrants))
	}
	s.page(w, r, c, "clients", "admin_clients", data)
	return nil
}

func clientRowOf(cl *storage.Client, live int) clientRow {
	return clientRow{ID: cl.ID, Name: cl.Metadata.ClientName, Source: sourceLabel(cl.Source), LastUsed: cl.LastUsedAt, Disabled: cl.DisabledAt != nil, LiveGrants: live}
}

func (s *Server) handleConsoleClient(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	cl, err := s.lookupClient(r.Context(), r.URL.Query().Get("id"))
	if err != nil {
		return err
	}
	grants, more, err := s.listGrants(r.Context(), "", cl.ID, adminGrantLimit)
	if err != nil {
		return err
	}
	live, err := s.db.CountLiveGrants(r.Context(), cl.ID)
	if err != nil {
		return err
	}
	s.page(w, r, c, "clients", "admin_client", struct {
		Client       *storage.Client
		Row          clientRow
		Grants       []grantView
		More         bool
		Confidential bool
	}{cl, clientRowOf(cl, live), grants, more, !cl.IsPublic()})
	return nil
}

func (s *Server) handleConsoleClientDisable(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	return s.consoleClientDisabled(w, r, c, true)
}

func (s *Server) handleConsoleClientEnable(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	return s.consoleClientDisabled(w, r, c, false)
}

func (s *Server) consoleClientDisabled(w http.ResponseWriter, r *http.Request, c *adminCaller, disabled bool) error {
	id := r.PostForm.Get("client_id")
	n, err := s.opSetClientDisabled(r, c, id, disabled)
	notice := "Client " + id + " enabled. Its users must authorize it again."
	if disabled {
		notice = fmt.Sprintf("Client %s disabled; %d grants revoked.", id, n)
	}
	return s.done(w, r, clientPage(id), notice, err)
}

func (s *Server) handleConsoleClientDeletePage(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	cl, err := s.lookupClient(r.Context(), r.URL.Query().Get("id"))
	if err != nil {
		return err
	}
	live, err := s.db.CountLiveGrants(r.Context(), cl.ID)
	if err != nil {
		return err
	}
	s.page(w, r, c, "clients", "admin_confirm", confirmView{
		Title:   "Delete client " + cl.ID + "?",
		Message: fmt.Sprintf("Deleting %q revokes its %d live grants at once, ends every token it holds, forgets every consent given to it, and removes it. An application that registered itself can register again; this cannot be undone.", clientName(cl), live),
		Action:  "/admin/client/delete",
		Button:  "Delete client",
		Cancel:  clientPage(cl.ID),
		Danger:  true,
		Fields:  []hiddenField{{"client_id", cl.ID}},
	})
	return nil
}

// clientPage is the console page of client id.
func clientPage(id string) string { return "/admin/client?" + url.Values{"id": {id}}.Encode() }

func clientName(cl *storage.Client) string {
	if cl.Metadata.ClientName != "" {
		return cl.Metadata.ClientName
	}
	return cl.ID
}

// confirmView is the data of admin_confirm.html: one question, one button.
type confirmView struct {
	Title, Message, Action, Button, Cancel string
	Danger                                 bool
	Fields                                 []hiddenField
}

func (s *Server) handleConsoleClientDelete(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	id := r.PostForm.Get("client_id")
	if r.PostForm.Get("confirm") != "yes" {
		// Only the confirmation page's form says yes.
		seeOther(w, "/admin/client/delete?"+url.Values{"id": {id}}.Encode())
		return nil
	}
	return s.done(w, r, "/admin/clients", "Client "+id+" deleted.", s.opDeleteClient(r, c, id))
}

// ---- users ----

func (s *Server) handleConsoleUsers(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	users, err := s.db.ListUsers(r.Context())
	if err != nil {
		return err
	}
	s.page(w, r, c, "users", "admin_users", struct{ Users []*storage.User }{users})
	return nil
}

// oneTimeView is the data of admin_password.html: a password shown once.
type oneTimeView struct {
	User     string
	Password string
	New      bool
}

func (s *Server) handleConsoleUserAdd(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	u, password, err := s.opCreateUser(r, c, r.PostForm.Get("username"), formBool(r, "admin"))
	if err != nil {
		return s.done(w, r, "/admin/users", "", err)
	}
	// Shown once, on the answer to this POST; never stored or sent again.
	s.page(w, r, c, "users", "admin_password", oneTimeView{User: u.Username, Password: password, New: true})
	return nil
}

// consoleUser is the user of the request's {id}.
func (s *Server) consoleUser(r *http.Request) (*storage.User, error) {
	id := chi.URLParam(r, "id")
	if _, err := uuid.Parse(id); err != nil {
		return nil, notFound("no such user")
	}
	return s.lookupUser(r.Context(), id)
}

func (s *Server) handleConsoleUserDisable(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	return s.consoleUserDisabled(w, r, c, true)
}

func (s *Server) handleConsoleUserEnable(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	return s.consoleUserDisabled(w, r, c, false)
}

func (s *Server) consoleUserDisabled(w http.ResponseWriter, r *http.Request, c *adminCaller, disabled bool) error {
	u, err := s.consoleUser(r)
	if err == nil {
		err = s.opSetUserDisabled(r, c, u, disabled)
	}
	notice := ""
	if u != nil {
		notice = "User " + u.Username + " enabled."
		if disabled {
			notice = "User " + u.Username + " disabled: signed out everywhere, every grant and token revoked."
		}
	}
	return s.done(w, r, "/admin/users", notice, err)
}

func (s *Server) handleConsoleUserPassword(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	u, err := s.consoleUser(r)
	if err != nil {
		return s.done(w, r, "/admin/users", "", err)
	}
	password, err := s.opResetPassword(r, c, u)
	if err != nil {
		return s.done(w, r, "/admin/users", "", err)
	}
	s.page(w, r, c, "users", "admin_password", oneTimeView{User: u.Username, Password: password})
	return nil
}

func (s *Server) handleConsoleUserAdmin(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	u, err := s.consoleUser(r)
	admin := formBool(r, "admin")
	if err == nil {
		err = s.opSetUserAdmin(r, c, u, admin)
	}
	notice := ""
	if u != nil {
		notice = u.Username + " is no longer an administrator."
		if admin {
			notice = u.Username + " is now an administrator."
		}
	}
	return s.done(w, r, "/admin/users", notice, err)
}

// ---- grants ----

func (s *Server) handleConsoleGrants(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	q := r.URL.Query()
	user, clientID := queryValue(q, "user"), queryValue(q, "client_id")
	grants, more, err := s.listGrants(r.Context(), user, clientID, adminGrantLimit)
	var oe *oauth.Error
	notice := ""
	if errors.As(err, &oe) && oe.HTTPStatus() < 500 {
		grants, more, notice, err = nil, false, oe.Description, nil
	}
	if err != nil {
		return err
	}
	s.page(w, r, c, "grants", "admin_grants", struct {
		User, ClientID, Problem string
		Grants                  []grantView
		More                    bool
	}{user, clientID, notice, grants, more})
	return nil
}

func (s *Server) handleConsoleRevoke(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	t := revokeTarget{GrantID: r.PostForm.Get("grant_id"), ClientID: r.PostForm.Get("client_id"), User: r.PostForm.Get("user"), Token: r.PostForm.Get("token")}
	n, err := s.opRevoke(r, c, t)
	notice := fmt.Sprintf("Revoked %d grants.", n)
	switch {
	case t.GrantID != "":
		notice = "Grant revoked: its tokens stop working within a second."
	case t.Token != "":
		notice = "Token revoked, with its grant: it stops working within a second."
	}
	return s.done(w, r, "/admin/grants", notice, err)
}

// ---- personal access tokens ----

func (s *Server) handleConsoleTokens(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	pats, err := s.db.ListPersonalAccessTokens(r.Context(), "")
	if err != nil {
		return err
	}
	s.page(w, r, c, "tokens", "admin_tokens", struct {
		Tokens []patView
	}{s.patViews(pats)})
	return nil
}

func (s *Server) handleConsoleTokenRevoke(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	err := s.opRevokePAT(r, c, chi.URLParam(r, "id"), "")
	return s.done(w, r, "/admin/tokens", "Token revoked: it stops working within a second.", err)
}

// ---- signing keys ----

func (s *Server) handleConsoleKeys(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	s.page(w, r, c, "keys", "admin_keys", struct{ Keys []keys.KeyInfo }{s.keys.List()})
	return nil
}

func (s *Server) handleConsoleRotatePage(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	immediate := r.URL.Query().Get("immediate") == "1"
	v := confirmView{
		Title:   "Rotate the signing key?",
		Message: "A new key is published now and signs new tokens once clients have had time to fetch it; the current key keeps verifying the tokens it signed until they expire. Nothing stops working.",
		Action:  "/admin/keys/rotate",
		Button:  "Rotate",
		Cancel:  "/admin/keys",
	}
	if immediate {
		v.Title = "Rotate the signing key now?"
		v.Message = "Only after a key compromise: the new key signs at once, and resource servers that cached the old key set refuse the new tokens until their cache expires."
		v.Button, v.Danger = "Rotate now", true
		v.Fields = []hiddenField{{"immediate", "true"}}
	}
	s.page(w, r, c, "keys", "admin_confirm", v)
	return nil
}

func (s *Server) handleConsoleRotate(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	if r.PostForm.Get("confirm") != "yes" {
		// Only the confirmation page's form says yes.
		seeOther(w, "/admin/keys/rotate")
		return nil
	}
	kid, err := s.opRotateKey(r, c, formBool(r, "immediate"))
	return s.done(w, r, "/admin/keys", "New signing key "+kid+" published.", err)
}

// ---- audit log ----

// consoleAuditPage is the number of events on a page of the audit log.
const consoleAuditPage = 50

func (s *Server) handleConsoleAudit(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	q := r.URL.Query()
	f, err := auditFilterOf(q)
	var problem string
	if err != nil {
		problem, f = err.Error(), storage.AuditFilter{}
	}
	f.Limit = consoleAuditPage + 1
	events, err := s.db.ListAuditEvents(r.Context(), f)
	if err != nil {
		return err
	}
	data := struct {
		User, ClientID, Event, Since, Until, Problem string
		Events                                       []auditView
		Names                                        []string
		NextURL                                      string // the older events, "" if none
	}{User: queryValue(q, "user"), ClientID: queryValue(q, "client_id"), Event: queryValue(q, "event"),
		Since: queryValue(q, "since"), Until: queryValue(q, "until"), Problem: problem, Names: storage.AuditEvents}
	if len(events) > consoleAuditPage {
		events = events[:consoleAuditPage]
		next := url.Values{}
		for _, k := range []string{"user", "client_id", "event", "since", "until"} {
			if v := queryValue(q, k); v != "" {
				next.Set(k, v)
			}
		}
		next.Set("before", strconv.FormatInt(events[len(events)-1].ID, 10))
		data.NextURL = "/admin/audit?" + next.Encode()
	}
	data.Events = auditViews(events)
	s.page(w, r, c, "audit", "admin_audit", data)
	return nil
}
