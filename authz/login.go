package authz

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mcpauth/mcpauth/storage"
)

// The sign-in and sign-out pages. Sessions, cookies and the CSRF design are
// in session.go; password hashing in password.go.

func (s *Server) sessionRoutes(r chi.Router) {
	r.Get("/login", s.handleLoginPage)
	r.Post("/login", s.handleLogin)
	r.Get("/logout", s.handleLogoutPage)
	r.Post("/logout", s.handleLogout)
}

// loginPage is the data of web/templates/login.html.
type loginPage struct {
	ReturnTo string
	CSRF     string
	Username string
	Error    string
	Notice   string
}

// logoutPage is the data of web/templates/logout.html.
type logoutPage struct {
	User  string // "" when nobody is signed in
	CSRF  string
	Error string
}

// maxReturnTo caps return_to: long enough for an /authorize request.
const maxReturnTo = 8 << 10

// safeReturnTo returns raw if it is a path on this server, else "/", so that
// the login page is no open redirect (RFC 9700 §4.11; OWASP unvalidated
// redirects). It must start with exactly one "/" (not "//" or "/\", which
// browsers read as another host), hold no backslash or control character
// (browsers turn "\" into "/" and drop tabs and newlines, so "/\tevil"
// could become "//evil"), and parse as a URL with no scheme, host or user.
func safeReturnTo(raw string) string {
	if raw == "" || len(raw) > maxReturnTo || raw[0] != '/' {
		return "/"
	}
	if len(raw) > 1 && (raw[1] == '/' || raw[1] == '\\') {
		return "/"
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	return raw
}

// seeOther redirects to a local path that safeReturnTo accepted.
func seeOther(w http.ResponseWriter, path string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", path)
	w.WriteHeader(http.StatusSeeOther)
}

// renderLogin renders the login form with a CSRF token.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, p loginPage) {
	p.CSRF = s.loginCSRFToken(w, r)
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, status, "login", p)
}

// handleLoginPage shows the login form; a signed-in browser goes straight
// on to return_to.
func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	returnTo := safeReturnTo(r.URL.Query().Get("return_to"))
	user, err := s.currentUser(r)
	if err != nil {
		s.log.ErrorContext(r.Context(), "login page: session lookup", "err", err)
	} else if user != nil {
		seeOther(w, returnTo)
		return
	}
	p := loginPage{ReturnTo: returnTo}
	if r.URL.Query().Get("signed_out") != "" {
		p.Notice = "You are signed out."
	}
	s.renderLogin(w, r, http.StatusOK, p)
}

// errLoginFailed is the one answer to an unknown user, a wrong password and
// a disabled user alike, so that the page does not tell which names exist.
const errLoginFailed = "Incorrect username or password."

// handleLogin signs a user in.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		status := http.StatusBadRequest
		if errors.As(err, &tooBig) {
			status = http.StatusRequestEntityTooLarge
		}
		s.renderLogin(w, r, status, loginPage{ReturnTo: "/", Error: "The form could not be read. Please try again."})
		return
	}
	p := loginPage{
		ReturnTo: safeReturnTo(r.PostForm.Get("return_to")),
		Username: strings.TrimSpace(r.PostForm.Get("username")),
	}
	if len(p.Username) > 256 {
		p.Username = p.Username[:256]
	}
	password := r.PostForm.Get("password")

	if err := s.checkFormCSRF(r, "login", s.sessions.preCookie); err != nil {
		s.log.InfoContext(ctx, "login refused: CSRF check failed", "err", err)
		p.Error = "This form expired or did not come from this site. Please sign in again."
		s.renderLogin(w, r, http.StatusForbidden, p)
		return
	}

	// Rate limits, per client IP (every attempt) and per user name
	// (lower-cased, as the names are unique regardless of case; failures
	// only, so that signing in does not spend the budget an attacker would
	// need to lock the user out): OWASP authentication cheat sheet,
	// "Protect Against Automated Attacks".
	if err := s.allow(ctx, w, s.limits.loginIP, "login-ip", clientIP(r)); err != nil {
		s.loginRateLimited(w, r, p, err)
		return
	}
	userKey := "login-user:" + strings.ToLower(p.Username)
	if err := s.spent(ctx, w, s.limits.loginUser, userKey); err != nil {
		s.loginRateLimited(w, r, p, err)
		return
	}

	user, ok, err := s.authenticate(r, p.Username, password)
	if err == nil && !ok {
		if _, err := s.limits.loginUser.Increment(ctx, userKey, 1); err != nil {
			s.log.WarnContext(ctx, "rate limiter unavailable", "err", err)
		}
	}
	if err != nil {
		s.log.ErrorContext(ctx, "login failed: server error", "err", err)
		status, msg := serverErrorPage(w, err)
		p.Error = msg
		s.renderLogin(w, r, status, p)
		return
	}
	if !ok {
		p.Error = errLoginFailed
		s.renderLogin(w, r, http.StatusOK, p)
		return
	}
	if err := s.startSession(w, r, user); err != nil {
		s.log.ErrorContext(ctx, "login: create session", "err", err)
		status, msg := serverErrorPage(w, err)
		p.Error = msg
		s.renderLogin(w, r, status, p)
		return
	}
	s.log.InfoContext(ctx, "user signed in", "user_id", user.ID, "client_ip", clientIP(r))
	s.audit(r, storage.AuditEvent{Event: storage.EventLoginSuccess, Actor: user.Username, Subject: user.Username,
		Details: map[string]any{"user_id": user.ID}})
	seeOther(w, p.ReturnTo)
}

// authenticate checks a username and password. An unknown name, a disabled
// user and a wrong password all give ok false after one argon2id
// computation each, so the time taken does not tell them apart (OWASP
// authentication cheat sheet, "Authentication Responses"). A stored hash
// weaker than today's parameters is replaced after a successful check.
func (s *Server) authenticate(r *http.Request, username, password string) (*storage.User, bool, error) {
	ctx := r.Context()
	var user *storage.User
	if ValidateUsername(username) == nil {
		u, err := s.db.UserByName(ctx, username)
		switch {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			return nil, false, err
		default:
			user = u
		}
	}
	hash := dummyHash()
	if user != nil {
		hash = user.PasswordHash
	}
	match, err := verifyPassword(hash, password)
	switch {
	case err != nil:
		// A corrupt stored hash: nobody can sign in as this user.
		s.log.ErrorContext(ctx, "login: stored password hash unusable", "user", user, "err", err)
		return nil, false, nil
	case user == nil:
		s.log.InfoContext(ctx, "login failed", "reason", "unknown user", "client_ip", clientIP(r))
		s.auditLoginFailure(r, username, nil, "unknown user")
		return nil, false, nil
	case !match:
		s.log.InfoContext(ctx, "login failed", "reason", "wrong password", "user_id", user.ID, "client_ip", clientIP(r))
		s.auditLoginFailure(r, username, user, "wrong password")
		return nil, false, nil
	case user.DisabledAt != nil:
		s.log.InfoContext(ctx, "login failed", "reason", "user disabled", "user_id", user.ID, "client_ip", clientIP(r))
		s.auditLoginFailure(r, username, user, "user disabled")
		return nil, false, nil
	}
	if passwordNeedsRehash(user.PasswordHash) {
		if _, err := s.db.RehashUserPassword(ctx, user.ID, user.PasswordHash, hashPassword(password)); err != nil {
			s.log.WarnContext(ctx, "login: rehash password", "user_id", user.ID, "err", err)
		}
	}
	return user, true, nil
}

// loginRateLimited answers an attempt over a login budget: the login page
// again, status 429, Retry-After already set by s.allow.
func (s *Server) loginRateLimited(w http.ResponseWriter, r *http.Request, p loginPage, err error) {
	if !errors.Is(err, errRateLimited) {
		// allow returns nothing else today; keep the answer a page anyway.
		s.log.ErrorContext(r.Context(), "login rate limit", "err", err)
	}
	wait := "a minute"
	if secs, _ := strconv.Atoi(w.Header().Get("Retry-After")); secs > 90 {
		wait = strconv.Itoa((secs+59)/60) + " minutes"
	} else if secs > 0 && secs < 60 {
		wait = strconv.Itoa(secs) + " seconds"
	}
	s.log.InfoContext(r.Context(), "login refused: rate limited", "client_ip", clientIP(r))
	p.Error = "Too many sign-in attempts. Please wait " + wait + " and try again."
	s.renderLogin(w, r, http.StatusTooManyRequests, p)
}

// handleLogoutPage shows the sign-out button (signing out is a POST with a
// CSRF token, so a link or image elsewhere cannot sign anyone out).
func (s *Server) handleLogoutPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	user, err := s.currentUser(r)
	if err != nil {
		s.log.ErrorContext(r.Context(), "logout page: session lookup", "err", err)
	}
	p := logoutPage{}
	if user != nil {
		p.User, p.CSRF = user.Username, s.csrfToken(r)
	}
	s.render(w, r, http.StatusOK, "logout", p)
}

// handleLogout signs the browser out: the session is deleted server-side
// and the cookie cleared.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	w.Header().Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if cookieValue(r, s.sessions.cookie) == "" {
		// Nobody to sign out (e.g. already signed out in another tab).
		seeOther(w, "/login?signed_out=1")
		return
	}
	if err := s.checkCSRF(r); err != nil {
		s.log.InfoContext(ctx, "logout refused: CSRF check failed", "err", err)
		p := logoutPage{Error: "This request did not come from this site, or the page expired. Press Sign out again."}
		if user, _ := s.currentUser(r); user != nil {
			p.User, p.CSRF = user.Username, s.csrfToken(r)
		}
		s.render(w, r, http.StatusForbidden, "logout", p)
		return
	}
	if err := s.endSession(ctx, w, r); err != nil {
		s.log.ErrorContext(ctx, "logout: delete session", "err", err)
		status, msg := serverErrorPage(w, err)
		s.render(w, r, status, "logout", logoutPage{Error: msg})
		return
	}
	seeOther(w, "/login?signed_out=1")
}

// auditLoginFailure records a failed sign-in; never the password. For a
// known user the subject is their name; for an unknown one it is
// unknownLoginSubject(typed), never the name typed: people type passwords
// into the name field, and most passwords are valid user names.
func (s *Server) auditLoginFailure(r *http.Request, typed string, user *storage.User, reason string) {
	e := storage.AuditEvent{Event: storage.EventLoginFailure, Details: map[string]any{"reason": reason}}
	if user != nil {
		e.Subject = user.Username
		e.Details["user_id"] = user.ID
	} else {
		e.Subject = s.unknownLoginSubject(typed)
	}
	s.audit(r, e)
}

// unknownLoginSubject is the audit subject of a sign-in with a name that is
// no user: "unknown:" and 16 hex digits of HMAC-SHA-256, under a key
// derived from the server secret, of the name in lower case (names are
// case-insensitive). Attempts with the same name can be correlated (a
// brute force shows as one subject) without the name, which may be a
// password, being readable: without the secret it cannot be guessed
// offline either.
func (s *Server) unknownLoginSubject(typed string) string {
	m := hmac.New(sha256.New, s.subkey("audit unknown login name", 32))
	m.Write([]byte(strings.ToLower(typed)))
	return "unknown:" + hex.EncodeToString(m.Sum(nil)[:8])
}
