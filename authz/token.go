package authz

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// tokenRoutes mounts the token endpoint and its companions: revocation,
// introspection and userinfo. Browser-based clients (the MCP Inspector, web
// agents) call /token and /revoke from other origins, so those two answer
// CORS; introspection is for resource servers and userinfo for OIDC
// relying parties' back ends, so they do not.
func (s *Server) tokenRoutes(r chi.Router) {
	r.With(openCORS).Post("/token", s.handle(s.handleToken))
	r.With(openCORS).Options("/token", func(http.ResponseWriter, *http.Request) {})
	r.With(openCORS).Post("/revoke", s.handle(s.handleRevoke))
	r.With(openCORS).Options("/revoke", func(http.ResponseWriter, *http.Request) {})
	r.Post("/introspect", s.handle(s.handleIntrospect))
	r.Get("/userinfo", s.handle(s.handleUserinfo))
	r.Post("/userinfo", s.handle(s.handleUserinfo))
}

// The grant types the token endpoint serves (OAuth 2.1 §4).
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
	grantClientCredentials = "client_credentials"
)

// singleParams may appear at most once in a token request (RFC 6749 §3.2:
// "parameters MUST NOT be included more than once"); resource may repeat
// (RFC 8707 §2).
var singleParams = []string{
	"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token",
	"client_id", "client_secret", "scope", "client_assertion", "client_assertion_type",
}

// handleToken is the token endpoint (OAuth 2.1 §3.2): authorization_code
// with PKCE, refresh_token (rotated on every use) and client_credentials,
// with RFC 8707 resource indicators, answering JWT access tokens (RFC 9068).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	if err := parseOAuthForm(w, r); err != nil {
		return err
	}
	ctx := r.Context()
	if err := s.allow(ctx, w, s.limits.token, "token", rateKey(r)); err != nil {
		return err
	}
	form := r.PostForm
	for _, p := range singleParams {
		if len(form[p]) > 1 {
			return &oauth.Error{Code: oauth.InvalidRequest, Description: "parameter " + p + " is repeated"}
		}
	}
	grant := form.Get("grant_type")
	switch grant {
	case grantAuthorizationCode, grantRefreshToken, grantClientCredentials:
	case "":
		return &oauth.Error{Code: oauth.InvalidRequest, Description: "grant_type is missing"}
	default:
		return &oauth.Error{Code: oauth.UnsupportedGrantType, Description: "this server supports authorization_code, refresh_token and client_credentials"}
	}

	// RFC 8707: resource names the token's audience. fosite knows only its
	// own audience parameter (fosite-notes §7), which only we may set.
	resources := form["resource"]
	aud, err := s.audience(resources)
	if err != nil {
		return err
	}
	delete(r.PostForm, "audience")
	delete(r.Form, "audience")
	if grant == grantClientCredentials {
		r.PostForm["audience"] = aud // the code and refresh grants carry their own
	}

	if !clientNamed(r) {
		return errNoClient
	}

	sess := &grantSession{}
	ar, err := s.oauth.provider.NewAccessRequest(ctx, r, sess)
	if err != nil {
		return s.tokenError(ctx, w, r, ar, err)
	}
	client := storedClient(ar.GetClient())
	if client == nil {
		return fmt.Errorf("token: unexpected client type %T", ar.GetClient())
	}

	switch grant {
	case grantClientCredentials:
		// The client itself is the grant: no user, no consent.
		sess.ClientID = client.ID
		scopes := ar.GetRequestedScopes()
		if len(scopes) == 0 {
			scopes = s.cfg.DefaultScopes
		}
		for _, sc := range scopes {
			if !s.clientCredentialsScope(client, sc) {
				return &oauth.Error{Code: oauth.InvalidScope, Description: "this client may not obtain scope " + sc + " with client_credentials"}
			}
			ar.GrantScope(sc)
		}
		for _, a := range aud {
			ar.GrantAudience(a)
		}
	case grantAuthorizationCode:
		// RFC 8707 §2.2: at the token endpoint a resource can only
		// repeat (or narrow to) what the authorization request asked for.
		if err := withinAudience(resources, aud, ar.GetRequestedAudience()); err != nil {
			return err
		}
	case grantRefreshToken:
		// fosite re-grants the original audience; a resource may narrow
		// it, never widen it.
		if err := withinAudience(resources, aud, ar.GetGrantedAudience()); err != nil {
			return err
		}
	}

	resp, err := s.oauth.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		return s.tokenError(ctx, w, r, ar, err)
	}
	event := storage.EventTokenIssued
	if grant == grantRefreshToken {
		event = storage.EventTokenRefreshed
	}
	subject := sess.Username
	if gs, ok := ar.GetSession().(*grantSession); ok {
		subject = gs.Username
	}
	s.audit(r, storage.AuditEvent{Event: event, Actor: "client:" + client.ID, Subject: subject, ClientID: client.ID,
		Details: map[string]any{"grant_type": grant, "grant_id": ar.GetID(), "scopes": []string(ar.GetGrantedScopes())}})
	s.oauth.provider.WriteAccessResponse(ctx, w, ar, resp)
	// The client record fosite just read says when it was last touched:
	// within the minute TouchClient would not write anyway, so the round
	// trip is skipped (docs/benchmarks.md).
	if client.LastUsedAt != nil && s.cfg.Now().Sub(*client.LastUsedAt) < time.Minute {
		return nil
	}
	// The tokens are stored: they reach the client before anything else
	// touches the database, or a hung last-used update would lose a rotated
	// refresh token (the client would retry with the old one: reuse).
	_ = http.NewResponseController(w).Flush()
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), touchTimeout)
	defer cancel()
	if err := s.db.TouchClient(tctx, client.ID); err != nil {
		s.log.WarnContext(ctx, "token: touch client", "client_id", client.ID, "err", err)
	}
	return nil
}

// clientCredentialsScope reports whether client may obtain scope sc through
// client_credentials. Without a user there is no consent, so the client's
// registered scope (or the default scopes) is the limit, openid (which
// names a user) is never granted, and an administrator-only scope only to a
// client an administrator created.
func (s *Server) clientCredentialsScope(client *storage.Client, sc string) bool {
	def, ok := s.scope(sc)
	switch {
	case !ok, sc == "openid":
		return false
	case def.AdminOnly && client.Source != storage.SourceAdmin:
		return false
	}
	return slices.Contains(client.Scopes, sc) || slices.Contains(s.cfg.DefaultScopes, sc)
}

// withinAudience checks that the audience a token request named with
// resource (none: nothing to check) is part of the grant's.
func withinAudience(resources, aud, grant []string) error {
	if len(resources) == 0 {
		return nil
	}
	for _, a := range aud {
		if !slices.Contains(grant, a) {
			return &oauth.Error{Code: oauth.InvalidTarget, Description: "the resource was not part of this grant"}
		}
	}
	return nil
}

// tokenError turns an error from fosite's token flow into the OAuth error
// the client gets. A code that lost the race for its single use is
// invalid_grant, and everything that was issued with that code is revoked
// (RFC 6749 §4.1.2). fosite does this only for a code it sees as used when
// it first reads it; a concurrent exchange finds out later, either from
// storage's conditional invalidation (ErrCodeUsed) or when fosite reads the
// code again to issue the tokens (ErrInvalidatedAuthorizeCode), and fosite
// calls both a server error. Either way the winner has committed by then, so
// its tokens are there to revoke.
func (s *Server) tokenError(ctx context.Context, w http.ResponseWriter, r *http.Request, ar fosite.AccessRequester, err error) error {
	if errors.Is(err, storage.ErrRefreshTokenReused) {
		// fosite has revoked the grant (RFC 9700 §4.14.2); say so in the audit log.
		e := storage.AuditEvent{Event: storage.EventTokenReuseDetected, Details: map[string]any{"token": "refresh_token"}}
		if ar != nil && ar.GetClient() != nil {
			e.ClientID = ar.GetClient().GetID()
			e.Actor = "client:" + e.ClientID
		}
		s.audit(r, e)
	}
	if errors.Is(err, storage.ErrCodeUsed) || errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		if ar != nil && ar.GetID() != "" {
			s.revokeGrant(ctx, ar.GetID())
			if !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
				// Lost the conditional invalidation; a reread of the
				// invalidated code is recorded by GetAuthorizeCodeSession.
				s.auditCodeReuse(ctx, ar)
			}
		}
		return &oauth.Error{Code: oauth.InvalidGrant, Description: "the authorization code has already been used", Err: err}
	}
	return s.fositeError(w, r, err)
}

// revokeGrant revokes every token of the grant requestID and publishes the
// revocation, on a context that outlives the request (the client may hang
// up; the revocation must happen).
func (s *Server) revokeGrant(ctx context.Context, requestID string) {
	ctx = context.WithoutCancel(ctx)
	if err := s.db.RevokeGrant(ctx, requestID); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.log.ErrorContext(ctx, "revoke grant after code reuse", "request_id", requestID, "err", err)
	}
}

// oauthErrorCodes are the error codes of RFC 6749 §5.2 (plus RFC 7009's and
// temporarily_unavailable) that fosite's own codes are passed through as.
var oauthErrorCodes = []string{
	oauth.InvalidRequest, oauth.InvalidClient, oauth.InvalidGrant, oauth.UnauthorizedClient,
	oauth.UnsupportedGrantType, oauth.InvalidScope, oauth.UnsupportedTokenType, oauth.TemporarilyUnavailable,
}

// fositeError translates a fosite error into an *oauth.Error with a
// standard code: clients decide whether to re-register, re-authorize or
// retry on the code, so fosite's private codes (request_unauthorized,
// token_inactive, ...) are folded into the standard ones. invalid_client is
// 401, with WWW-Authenticate when the client tried HTTP Basic (RFC 6749
// §5.2). A fosite server error stays an error the adapter logs as 500.
func (s *Server) fositeError(w http.ResponseWriter, r *http.Request, err error) error {
	if storage.IsUnavailable(err) {
		// fosite wraps storage errors (a client lookup as invalid_client,
		// the rest as server_error): the cause decides, so that an outage
		// never tells a client its credentials or grant are bad.
		return unavailable(w, fositeCause(err))
	}
	var oe *oauth.Error
	if errors.As(err, &oe) {
		if oe.Code == oauth.InvalidClient && oe.Status != http.StatusUnauthorized {
			// A client metadata document that cannot be used (GetClient):
			// invalid_client is 401 here, as for fosite's own.
			c := *oe
			c.Status = http.StatusUnauthorized
			return &c
		}
		return oe
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return err
	}
	fe := fosite.ErrorToRFC6749Error(err)
	if fe.ErrorField == oauth.TemporarilyUnavailable {
		// fosite's own (its revocation handler drops the cause): the client
		// must retry, so 503 with Retry-After (RFC 7009 §2.2.1), not a 400.
		return unavailable(w, fmt.Errorf("%s: %w", fe.WithExposeDebug(true).GetDescription(), err))
	}
	if fe.CodeField >= 500 {
		// fosite's Error() is only the code; the log needs the cause.
		return fmt.Errorf("%s: %s: %w", r.URL.Path, fe.WithExposeDebug(true).GetDescription(), err)
	}
	code, status := fe.ErrorField, fe.CodeField
	switch {
	// RFC 7521 §4.2.1: an invalid client assertion, a replayed one (fosite's
	// jti_known) included, is invalid_client.
	case code == "request_unauthorized" || code == oauth.InvalidClient || code == fosite.ErrJTIKnown.ErrorField:
		code, status = oauth.InvalidClient, http.StatusUnauthorized
	case !slices.Contains(oauthErrorCodes, code):
		code, status = oauth.InvalidRequest, http.StatusBadRequest
	}
	if code == oauth.InvalidClient && basicAuthAttempted(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+s.cfg.Issuer+`", charset="UTF-8"`)
	}
	if status < 400 || status >= 500 {
		status = http.StatusBadRequest
	}
	return &oauth.Error{Code: code, Description: fe.GetDescription(), Status: status, Err: err}
}

// fositeCause is err for the log: fosite's Error() is only its code, so a
// fosite error is replaced by its code and its cause.
func fositeCause(err error) error {
	var fe *fosite.RFC6749Error
	if errors.As(err, &fe) && fe.Unwrap() != nil {
		return fmt.Errorf("%s: %w", fe.ErrorField, fe.Unwrap())
	}
	return err
}

// errNoClient answers a request that names no client at all: RFC 6749 §5.2
// makes "no client authentication included" invalid_client (fosite says
// invalid_request).
var errNoClient = &oauth.Error{Code: oauth.InvalidClient, Description: "client authentication is required (HTTP Basic, or client_id in the body)", Status: http.StatusUnauthorized}

// clientNamed reports whether the request identifies a client: HTTP Basic
// credentials, a client_id or a client assertion in the body.
func clientNamed(r *http.Request) bool {
	return basicAuthAttempted(r) || r.PostForm.Get("client_id") != "" || r.PostForm.Get("client_assertion") != ""
}

// basicAuthAttempted reports whether the request carries HTTP Basic
// credentials.
func basicAuthAttempted(r *http.Request) bool {
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.EqualFold(scheme, "Basic")
}

// noStore marks a response as never to be cached (RFC 6749 §5.1).
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// parseOAuthForm reads the request's application/x-www-form-urlencoded body
// (RFC 6749 §3.2), at most maxFormBytes of it (a larger one is a
// *http.MaxBytesError, which the adapter answers 413).
func parseOAuthForm(w http.ResponseWriter, r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return &oauth.Error{Code: oauth.InvalidRequest, Description: "the request body must be application/x-www-form-urlencoded"}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return &oauth.Error{Code: oauth.InvalidRequest, Description: "the request body is not a valid form", Err: err}
	}
	return nil
}

// maxRateKeyLen bounds the client_id used as a rate-limit key; a longer one
// is not a client of ours, and the client IP is used instead.
const maxRateKeyLen = 256

// rateKey is the token endpoints' rate-limit key: the client the request
// names together with the client IP, else the client IP alone.
func rateKey(r *http.Request) string {
	id := r.PostForm.Get("client_id")
	if u, _, ok := r.BasicAuth(); ok {
		if dec, err := url.QueryUnescape(u); err == nil {
			id = dec
		}
	}
	if id == "" || len(id) > maxRateKeyLen {
		return "ip:" + clientIP(r)
	}
	// Per client and address: the many users of a hosted client share its
	// egress addresses and its budget there, while anyone else naming that
	// client_id (no secret is checked yet) spends only their own.
	return "client:" + id + "@" + clientIP(r)
}
