package authz

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

func (s *Server) authorizeRoutes(r chi.Router) {
	// GET is the authorization request (OAuth 2.1 §4.1.1); POST carries the
	// same parameters as a form (OIDC Core §3.1.2.1) and the consent
	// decision. No CORS: it is a navigation, never a fetch.
	r.Get("/authorize", s.handleAuthorize)
	r.Post("/authorize", s.handleAuthorize)
}

// authorizeParams are the request parameters carried through login and
// consent. Anything else a client sends is dropped there.
var authorizeParams = []string{
	"response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
	"code_challenge_method", "resource", "nonce", "prompt", "response_mode", "max_age",
}

// handleAuthorize is the authorization endpoint. Errors about client_id and
// redirect_uri are shown as a page and never redirected (RFC 6749
// §4.1.2.1): the redirect URI is not trusted until it matches. Every other
// answer goes to the client's redirect URI with state and iss (RFC 9207).
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if err := s.allow(r.Context(), w, s.limits.authorize, "authorize", clientIP(r)); err != nil {
		s.authorizePage(w, r, http.StatusTooManyRequests, "Too many requests", "Too many sign-in attempts from your network. Wait a minute and try again.")
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	}
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.authorizePage(w, r, http.StatusRequestEntityTooLarge, "Request too large", "The authorization request is larger than this server accepts.")
			return
		}
		s.authorizePage(w, r, http.StatusBadRequest, "Bad request", "The authorization request could not be read.")
		return
	}

	client, redirectURI, problem := s.checkClientAndRedirect(r)
	if problem == problemUnavailable {
		s.unavailablePage(w, r)
		return
	}
	if problem != "" {
		s.authorizePage(w, r, http.StatusBadRequest, "This link cannot be used", problem)
		return
	}
	// From here on the redirect URI is trusted: errors go back to the client.
	fail := func(err error) { s.authorizeRedirectError(w, r, redirectURI, err) }

	for _, p := range []string{"request", "request_uri"} {
		if r.Form.Has(p) {
			fail(&oauth.Error{Code: p + "_not_supported", Description: "the " + p + " parameter is not supported"})
			return
		}
	}
	aud, err := s.audience(r.Form["resource"])
	if err != nil {
		fail(err)
		return
	}
	// fosite knows no RFC 8707: it reads the audience parameter, which only
	// we may set (fosite-notes §7).
	r.Form["audience"] = aud
	if r.PostForm != nil {
		delete(r.PostForm, "audience")
	}

	ctx := withRedirectURI(r.Context(), redirectURI)
	ar, err := s.oauth.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		fail(err)
		return
	}
	// fosite checks PKCE only when it issues the code; check it now, so that
	// nobody is asked to approve a request that cannot succeed.
	if err := checkPKCE(r.Form); err != nil {
		fail(err)
		return
	}
	if len(ar.GetRequestedScopes()) == 0 {
		ar.SetRequestedScopes(s.cfg.DefaultScopes)
	}

	bs, sid, err := s.currentSession(r)
	if err != nil {
		fail(&oauth.Error{Code: oauth.ServerError, Description: "internal error", Status: http.StatusInternalServerError, Err: err})
		return
	}
	prompt := strings.Fields(r.Form.Get("prompt"))
	fresh, err := s.freshLoginNeeded(bs, prompt, r.Form.Get("max_age"))
	if err != nil {
		fail(err)
		return
	}
	if bs == nil || fresh {
		if slices.Contains(prompt, "none") {
			fail(&oauth.Error{Code: "login_required", Description: "the user must sign in"})
			return
		}
		if fresh {
			// OIDC Core §3.1.2.1: prompt=login and an exceeded max_age
			// require the user to authenticate again: the session ends.
			if err := s.db.DeleteBrowserSession(ctx, sid); err != nil {
				fail(err)
				return
			}
		}
		// The request comes back after the sign-in without prompt=login and
		// max_age: the sign-in they ask for will just have happened (else
		// the user would be sent to sign in twice).
		back := carried(r.Form)
		back.Del("max_age")
		if rest := slices.DeleteFunc(prompt, func(p string) bool { return p == "login" }); len(rest) > 0 {
			back.Set("prompt", strings.Join(rest, " "))
		} else {
			back.Del("prompt")
		}
		s.redirectToLogin(w, "/authorize?"+back.Encode())
		return
	}
	user := bs.User

	grantable, unavailable := s.grantableScopes(ar.GetRequestedScopes(), user)
	if len(grantable) == 0 {
		fail(&oauth.Error{Code: oauth.AccessDenied, Description: "the signed-in user may not grant any of the requested scopes"})
		return
	}

	if decision := r.PostForm.Get("decision"); decision != "" {
		if err := s.checkCSRF(r); err != nil {
			s.authorizePage(w, r, http.StatusForbidden, "Request refused", "The approval did not come from this server's consent page. Start again from the application.")
			return
		}
		if decision != "allow" {
			fail(&oauth.Error{Code: oauth.AccessDenied, Description: "the user denied the request"})
			return
		}
		// The user may narrow the grant by unticking scopes, never widen it.
		var granted []string
		for _, sc := range r.PostForm["grant_scope"] {
			if slices.Contains(grantable, sc) && !slices.Contains(granted, sc) {
				granted = append(granted, sc)
			}
		}
		if len(granted) == 0 {
			fail(&oauth.Error{Code: oauth.AccessDenied, Description: "the user granted no scope"})
			return
		}
		if err := s.db.SaveConsent(ctx, storage.Consent{UserID: user.ID, ClientID: client.ID, Scopes: granted, Audiences: aud}); err != nil {
			fail(err)
			return
		}
		s.audit(r, storage.AuditEvent{Event: storage.EventConsentGranted, Actor: user.Username, Subject: user.Username,
			ClientID: client.ID, Details: map[string]any{"scopes": granted, "client_name": client.Metadata.ClientName}})
		s.grant(w, r, ctx, ar, user, bs.CreatedAt, granted, aud)
		return
	}

	// A remembered consent that covers this request needs no page again,
	// unless the client forces one (OIDC Core §3.1.2.1 prompt=consent).
	if !slices.Contains(prompt, "consent") {
		c, err := s.db.Consent(ctx, user.ID, client.ID)
		switch {
		case err == nil && subset(grantable, c.Scopes) && subset(aud, c.Audiences):
			s.grant(w, r, ctx, ar, user, bs.CreatedAt, grantable, aud)
			return
		case err != nil && !errors.Is(err, storage.ErrNotFound):
			fail(err)
			return
		}
	}
	if slices.Contains(prompt, "none") {
		fail(&oauth.Error{Code: "consent_required", Description: "the user has not approved this client"})
		return
	}
	s.renderConsent(w, r, client, redirectURI, user, grantable, unavailable)
}

// freshLoginNeeded reports whether the signed-in session bs is not enough:
// the client asked for prompt=login, or the sign-in is older than max_age
// seconds (OIDC Core §3.1.2.1).
func (s *Server) freshLoginNeeded(bs *storage.BrowserSession, prompt []string, maxAge string) (bool, error) {
	var limit time.Duration = -1
	if maxAge != "" {
		n, err := strconv.ParseUint(maxAge, 10, 31)
		if err != nil {
			return false, &oauth.Error{Code: oauth.InvalidRequest, Description: "max_age must be a number of seconds"}
		}
		limit = time.Duration(n) * time.Second
	}
	if bs == nil {
		return false, nil
	}
	if slices.Contains(prompt, "login") {
		return true, nil
	}
	return limit >= 0 && s.cfg.Now().Sub(bs.CreatedAt) > limit, nil
}

// checkPKCE requires an S256 code challenge (OAuth 2.1 §4.1.1, RFC 7636
// §4.2: 43 characters of base64url for a SHA-256 hash); plain and an
// omitted method are refused (OAuth 2.1 §7.5.2).
func checkPKCE(form url.Values) error {
	challenge, method := form.Get("code_challenge"), form.Get("code_challenge_method")
	switch {
	case challenge == "":
		return &oauth.Error{Code: oauth.InvalidRequest, Description: "code_challenge is required (PKCE with S256)"}
	case method != "S256":
		return &oauth.Error{Code: oauth.InvalidRequest, Description: "code_challenge_method must be S256"}
	case len(challenge) != 43 || strings.Trim(challenge, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "":
		return &oauth.Error{Code: oauth.InvalidRequest, Description: "code_challenge must be the base64url SHA-256 of the code verifier"}
	}
	return nil
}

// checkClientAndRedirect finds the client and the redirect URI to answer
// to, or says what is wrong for the user to read.
func (s *Server) checkClientAndRedirect(r *http.Request) (client *storage.Client, redirectURI, problem string) {
	id := r.Form.Get("client_id")
	if id == "" {
		return nil, "", "The application did not say who it is (no client_id)."
	}
	if s.metadataDocumentClientID(id) {
		// A Client ID Metadata Document client: the document, fetched and
		// checked (or cached), is the registration. Whatever is wrong with
		// it is shown here, never sent to a redirect URI nobody verified
		// (MCP 2025-11-25: invalid_client or invalid_request).
		c, err := s.metadataClient(r.Context(), id)
		if storage.IsUnavailable(err) {
			return nil, "", problemUnavailable
		}
		if err != nil {
			return nil, "", s.metadataProblem(r.Context(), id, err)
		}
		client = c
	} else {
		c, err := s.db.Client(r.Context(), id)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			s.log.ErrorContext(r.Context(), "authorize: load client", "err", err)
		}
		switch {
		case storage.IsUnavailable(err):
			return nil, "", problemUnavailable
		case err != nil && looksLikeURL(id) && s.cfg.CIMD.Disabled:
			return nil, "", "The application identifies itself by a URL (a client metadata document), which this server does not accept (invalid_client). It must be registered instead."
		case err != nil && looksLikeURL(id):
			return nil, "", "The application identifies itself by a URL this server does not accept (invalid_client): a client_id URL must use https and have a path."
		}
		client = c
	}
	if client == nil || client.DisabledAt != nil {
		return nil, "", "The application is not registered with this server, or was disabled. Reconnect it from the application."
	}
	redirectURI = r.Form.Get("redirect_uri")
	if redirectURI == "" {
		// OAuth 2.1 §4.1.1: optional only when the client has exactly one.
		if len(client.RedirectURIs) != 1 {
			return nil, "", "The application did not say where to return (no redirect_uri)."
		}
		// fosite falls back to the same single URI; the request keeps its
		// omission, so the token request need not name it (OAuth 2.1 §4.1.3).
		redirectURI = client.RedirectURIs[0]
	}
	if len(r.Form["redirect_uri"]) > 1 || !oauth.MatchRedirectURI(client.RedirectURIs, redirectURI) {
		return nil, "", "The application asked to return to an address it did not register. For your safety the request was stopped."
	}
	return client, redirectURI, ""
}

// metadataProblem says, for the user to read, why the metadata document of
// client id could not be used: the OAuth error code and its description
// (which the resolver makes safe to show); anything else is logged.
func (s *Server) metadataProblem(ctx context.Context, id string, err error) string {
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Code == oauth.ServerError {
		s.log.ErrorContext(ctx, "authorize: resolve client metadata document", "client_id", id, "err", err)
		return "The application's metadata document could not be checked just now. Try again in a minute."
	}
	msg := "The application identifies itself with a metadata document at " + hostOf(id) + " that this server cannot use"
	if oe.Description != "" {
		msg += ": " + oe.Description
	}
	return msg + " (" + oe.Code + "). For your safety the request was stopped."
}

// looksLikeURL reports whether a client_id is meant as a URL.
func looksLikeURL(id string) bool {
	l := strings.ToLower(id)
	return strings.HasPrefix(l, "https://") || strings.HasPrefix(l, "http://")
}

// grantableScopes splits the requested scopes into those the user may grant
// and those reserved for administrators.
func (s *Server) grantableScopes(requested []string, user *storage.User) (grantable, unavailable []string) {
	for _, name := range requested {
		sc, ok := s.scope(name)
		if !ok {
			continue // fosite's scope strategy already refused unknown scopes
		}
		if sc.AdminOnly && !user.IsAdmin {
			unavailable = append(unavailable, name)
			continue
		}
		grantable = append(grantable, name)
	}
	return grantable, unavailable
}

// AdminOnlyScopes returns the names of the supported scopes only
// administrators may hold: what a demotion revokes (storage.SetUserAdmin).
func (s *Server) AdminOnlyScopes() []string {
	var out []string
	for _, sc := range s.cfg.Scopes {
		if sc.AdminOnly {
			out = append(out, sc.Name)
		}
	}
	return out
}

func (s *Server) scope(name string) (Scope, bool) {
	for _, sc := range s.cfg.Scopes {
		if sc.Name == name {
			return sc, true
		}
	}
	return Scope{}, false
}

// grant issues the authorization code for scopes and audience and sends
// the browser back to the client with code, state and iss.
func (s *Server) grant(w http.ResponseWriter, r *http.Request, ctx context.Context, ar fosite.AuthorizeRequester, user *storage.User, authTime time.Time, scopes, aud []string) {
	for _, sc := range scopes {
		ar.GrantScope(sc)
	}
	for _, a := range aud {
		ar.GrantAudience(a)
	}
	resp, err := s.oauth.provider.NewAuthorizeResponse(ctx, ar, s.newSession(user, ar.GetClient().GetID(), authTime))
	if err != nil {
		s.authorizeRedirectError(w, r, ar.GetRedirectURI().String(), err)
		return
	}
	resp.AddParameter("iss", s.cfg.Issuer) // RFC 9207 §2
	s.oauth.provider.WriteAuthorizeResponse(ctx, w, ar, resp)
}

// authorizeErrorCodes are the errors an authorization response may carry:
// RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6, RFC 8707 §2.
var authorizeErrorCodes = map[string]bool{
	oauth.InvalidRequest: true, oauth.UnauthorizedClient: true, oauth.AccessDenied: true,
	oauth.UnsupportedResponseType: true, oauth.InvalidScope: true, oauth.ServerError: true,
	oauth.TemporarilyUnavailable: true, oauth.InvalidTarget: true,
	"interaction_required": true, "login_required": true, "account_selection_required": true,
	"consent_required": true, "invalid_request_uri": true, "invalid_request_object": true,
	"request_not_supported": true, "request_uri_not_supported": true, "registration_not_supported": true,
}

// authorizeRedirectError sends err to the client's (already matched)
// redirect URI with state and iss (RFC 6749 §4.1.2.1, RFC 9207 §2). fosite
// would send no iss, so the redirect is built here.
func (s *Server) authorizeRedirectError(w http.ResponseWriter, r *http.Request, redirectURI string, err error) {
	if storage.IsUnavailable(err) {
		// A page, not a redirect with temporarily_unavailable (RFC 6749
		// §4.1.2.1): the user can reload it once the database is back,
		// where the redirect would end the client's flow.
		s.unavailablePage(w, r)
		return
	}
	code, desc := oauth.ServerError, "internal error"
	var oe *oauth.Error
	var fe *fosite.RFC6749Error
	switch {
	case errors.As(err, &oe):
		code, desc = oe.Code, oe.Description
	case errors.As(err, &fe) && fe.CodeField < 500:
		code, desc = fe.ErrorField, fe.GetDescription()
	}
	if !authorizeErrorCodes[code] {
		code = oauth.InvalidRequest // fosite has codes no client knows (invalid_state, …)
	}
	if code == oauth.ServerError {
		s.log.ErrorContext(r.Context(), "authorize failed", "err", err)
	}
	u, perr := url.Parse(redirectURI)
	if perr != nil { // cannot happen: the URI matched a validated registration
		s.authorizePage(w, r, http.StatusBadRequest, "This link cannot be used", "The application's return address is invalid.")
		return
	}
	q := u.Query()
	q.Set("error", code)
	if desc != "" {
		q.Set("error_description", desc)
	}
	if st := r.Form.Get("state"); st != "" {
		q.Set("state", st)
	}
	q.Set("iss", s.cfg.Issuer)
	u.RawQuery = q.Encode()
	u.Fragment = ""
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// carried is the part of form that login and consent carry along.
func carried(form url.Values) url.Values {
	out := url.Values{}
	for _, p := range authorizeParams {
		if v, ok := form[p]; ok {
			out[p] = v
		}
	}
	return out
}

// subset reports whether every element of a is in b.
func subset(a, b []string) bool {
	for _, v := range a {
		if !slices.Contains(b, v) {
			return false
		}
	}
	return true
}
