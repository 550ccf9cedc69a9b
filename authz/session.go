package authz

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// Browser sessions and CSRF protection.
//
// Session. Signing in creates a random 256-bit session id, sent to the
// browser in a cookie and stored in PostgreSQL only as its sha256 (any
// replica can serve any request). The cookie is HttpOnly, SameSite=Lax
// (the /authorize navigation from a client is a cross-site top-level GET and
// must carry it) and Path=/; with an https issuer it is
// __Host-mcpauth_session and Secure (the __Host- prefix also forbids a
// Domain, so a sibling subdomain cannot plant or shadow it). With a plain
// http issuer on loopback (mcpauth dev) neither is possible, and it is
// mcpauth_session. A session expires SessionTTL after sign-in, whatever its
// use; signing in always makes a new id (no fixation), and disabling a user
// or changing the password ends every session of the user.
//
// CSRF, two independent checks on every state-changing POST of a page:
//  1. http.CrossOriginProtection: a browser request whose Sec-Fetch-Site is
//     not same-origin (or, from browsers older than 2023, whose Origin is
//     another host) is refused.
//  2. A token in the form field csrf_token. Signed in, it is
//     HMAC-SHA256(csrf key, "session" ‖ session id): bound to the session,
//     stable for its life (two tabs, a reload or a double-loaded page all
//     share it), and unknown to anyone who cannot read the HttpOnly cookie.
//     Before sign-in (the login form) there is no session, so the login
//     page sets a pre-session cookie (__Host-mcpauth_login, random 256
//     bits, same attributes, no Max-Age) and the token is
//     HMAC-SHA256(csrf key, "login" ‖ that value) — a signed double-submit
//     cookie. Signing in deletes it.
//
// The csrf key is HKDF-derived from the server secret ("csrf"), so every
// replica agrees on tokens and no other mechanism shares the key.

const (
	// csrfField is the name of the hidden form field with the CSRF token.
	csrfField = "csrf_token"
	// sessionTouchEvery is how stale a session's last_seen_at may get before
	// a request records it again.
	sessionTouchEvery = time.Minute
	// secretLen is the length of the random session and pre-session ids,
	// in bytes (256 bits).
	secretLen = 32
)

// sessions is the state of users' browser sign-in.
type sessions struct {
	cookie    string // session cookie name
	preCookie string // pre-session (login form) cookie name
	secure    bool   // https issuer: Secure cookies with the __Host- prefix
	ttl       time.Duration
	csrfKey   []byte
	origin    *http.CrossOriginProtection
}

func (s *Server) initSessions() error {
	u, err := url.Parse(s.cfg.Issuer)
	if err != nil {
		return fmt.Errorf("authz: issuer: %w", err)
	}
	ss := &sessions{
		cookie:    "mcpauth_session",
		preCookie: "mcpauth_login",
		ttl:       s.cfg.SessionTTL,
		csrfKey:   s.subkey("csrf", 32),
		origin:    http.NewCrossOriginProtection(),
	}
	switch {
	case u.Scheme == "https":
		ss.secure = true
		ss.cookie, ss.preCookie = "__Host-"+ss.cookie, "__Host-"+ss.preCookie
	case u.Scheme == "http" && oauth.IsLoopbackHost(u.Hostname()):
		// mcpauth dev: __Host- cookies need https.
	default:
		return fmt.Errorf("authz: issuer %q: browser sessions need https (or http on a loopback host)", s.cfg.Issuer)
	}
	if ss.ttl <= 0 {
		ss.ttl = 12 * time.Hour
	}
	// Behind a proxy that rewrites Host, an Origin equal to the issuer is
	// still same-origin.
	if err := ss.origin.AddTrustedOrigin(u.Scheme + "://" + u.Host); err != nil {
		return fmt.Errorf("authz: issuer as trusted origin: %w", err)
	}
	s.sessions = ss
	// Compute the dummy hash now, not during the first login that names an
	// unknown user (which would then take twice as long as any other).
	go dummyHash()
	return nil
}

// newSecret returns 256 random bits, base64url: a session or pre-session id.
func newSecret() string { return randomSecret256() }

// wellFormedSecret reports whether v could be a value newSecret made, so
// that junk cookies cost no database round trip.
func wellFormedSecret(v string) bool {
	if len(v) != base64.RawURLEncoding.EncodedLen(secretLen) {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(v)
	return err == nil
}

// cookieValue returns the value of the named cookie if it is well formed.
func cookieValue(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil || !wellFormedSecret(c.Value) {
		return ""
	}
	return c.Value
}

// setCookie sets (maxAge > 0: persistent; 0: for the browser session) or
// deletes (maxAge < 0) one of our cookies, always with the same attributes.
func (ss *sessions) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		Secure:   ss.secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// csrfMAC is the CSRF token bound to value (a session or pre-session id)
// under a purpose ("session" or "login"), so that one can never stand in
// for the other.
func (ss *sessions) csrfMAC(purpose, value string) string {
	m := hmac.New(sha256.New, ss.csrfKey)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// currentSession returns the browser session of the request's cookie and
// its id, or nil when there is none or it is unknown, expired or of a
// disabled user. It records the use at most once a minute.
func (s *Server) currentSession(r *http.Request) (*storage.BrowserSession, string, error) {
	id := cookieValue(r, s.sessions.cookie)
	if id == "" {
		return nil, "", nil
	}
	ctx := r.Context()
	bs, err := s.db.BrowserSession(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	now := s.cfg.Now()
	if !now.Before(bs.ExpiresAt) {
		return nil, "", nil
	}
	if now.Sub(bs.LastSeenAt) >= sessionTouchEvery {
		if _, err := s.db.TouchBrowserSession(ctx, id, sessionTouchEvery); err != nil {
			s.log.WarnContext(ctx, "record browser session use", "err", err)
		}
	}
	return bs, id, nil
}

// currentUser returns the signed-in user of the request, or nil, nil when
// nobody is signed in (no cookie; unknown, expired or ended session;
// disabled user). An error is a database failure.
func (s *Server) currentUser(r *http.Request) (*storage.User, error) {
	bs, _, err := s.currentSession(r)
	if bs == nil || err != nil {
		return nil, err
	}
	return bs.User, nil
}

// redirectToLogin sends the browser to the login page, which brings it back
// to returnTo (a local URI) after sign-in (303, so a POST comes back as a GET).
func (s *Server) redirectToLogin(w http.ResponseWriter, returnTo string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", "/login?"+url.Values{"return_to": {returnTo}}.Encode())
	w.WriteHeader(http.StatusSeeOther)
}

// csrfToken is the value of the hidden form field csrf_token of a form that
// a signed-in user posts (checkCSRF checks it). It is "" when the request
// has no session cookie: call it after currentUser found a user.
func (s *Server) csrfToken(r *http.Request) string {
	id := cookieValue(r, s.sessions.cookie)
	if id == "" {
		return ""
	}
	return s.sessions.csrfMAC("session", id)
}

// errCSRF refuses a state-changing request that fails the CSRF checks.
func errCSRF(cause error) error {
	return &oauth.Error{Code: oauth.InvalidRequest, Status: http.StatusForbidden,
		Description: "the form could not be verified (CSRF check); reload the page and try again", Err: cause}
}

// checkCSRF checks a state-changing POST of a page posted by a signed-in
// user: it must come from our own origin and carry the session's
// csrf_token (see the comment at the top of this file). It returns an
// *oauth.Error with status 403 on failure. It parses the form, capped at
// maxFormBytes, unless the caller already has.
func (s *Server) checkCSRF(r *http.Request) error {
	return s.checkFormCSRF(r, "session", s.sessions.cookie)
}

// checkFormCSRF checks the origin of r and that its csrf_token is the MAC
// under purpose of the value of the named cookie.
func (s *Server) checkFormCSRF(r *http.Request, purpose, cookie string) error {
	// Fetch Metadata / Origin check (OWASP CSRF cheat sheet, "Fetch
	// Metadata headers"; Go's http.CrossOriginProtection).
	if err := s.sessions.origin.Check(r); err != nil {
		return errCSRF(err)
	}
	if r.PostForm == nil {
		r.Body = http.MaxBytesReader(nil, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return err // 413 in s.handle
			}
			return &oauth.Error{Code: oauth.InvalidRequest, Description: "malformed form", Err: err}
		}
	}
	return s.checkCSRFToken(r, r.PostForm.Get(csrfField), purpose, cookie)
}

// checkCSRFToken checks that got (a form field's or a header's) is the MAC
// under purpose of the value of the named cookie of r.
func (s *Server) checkCSRFToken(r *http.Request, got, purpose, cookie string) error {
	value := cookieValue(r, cookie)
	if got == "" || value == "" {
		return errCSRF(errors.New("no CSRF token or no cookie"))
	}
	// The token is a secret: compare in constant time.
	if !hmac.Equal([]byte(got), []byte(s.sessions.csrfMAC(purpose, value))) {
		return errCSRF(errors.New("wrong CSRF token"))
	}
	return nil
}

// loginCSRFToken returns the CSRF token of the login form, setting the
// pre-session cookie it is bound to when the request has none. An existing
// cookie is kept, so two tabs with the login page both work.
func (s *Server) loginCSRFToken(w http.ResponseWriter, r *http.Request) string {
	v := cookieValue(r, s.sessions.preCookie)
	if v == "" {
		v = newSecret()
		s.sessions.setCookie(w, s.sessions.preCookie, v, 0)
	}
	return s.sessions.csrfMAC("login", v)
}

// startSession signs user in: it ends the request's old session if any,
// creates a new one with a new id (no session fixation: OWASP session
// management cheat sheet, "Renew the Session ID After Any Privilege Level
// Change"), sets its cookie and removes the pre-session cookie.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, user *storage.User) error {
	ctx := r.Context()
	if old := cookieValue(r, s.sessions.cookie); old != "" {
		if err := s.db.DeleteBrowserSession(ctx, old); err != nil {
			return err
		}
	}
	id := newSecret()
	bs := &storage.BrowserSession{
		UserID:    user.ID,
		ExpiresAt: s.cfg.Now().Add(s.sessions.ttl),
		IP:        clientIP(r),
		UserAgent: r.UserAgent(),
	}
	if err := s.db.CreateBrowserSession(ctx, id, bs); err != nil {
		return err
	}
	s.sessions.setCookie(w, s.sessions.cookie, id, int(s.sessions.ttl/time.Second))
	s.sessions.setCookie(w, s.sessions.preCookie, "", -1)
	return nil
}

// endSession signs the request's browser out: the session is deleted
// server-side (a copied cookie is worthless afterwards) and the cookie
// cleared.
func (s *Server) endSession(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	if id := cookieValue(r, s.sessions.cookie); id != "" {
		if err := s.db.DeleteBrowserSession(ctx, id); err != nil {
			return err
		}
	}
	s.sessions.setCookie(w, s.sessions.cookie, "", -1)
	return nil
}
