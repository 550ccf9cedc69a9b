package authz

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// tokenTypeRefresh is how introspection names a refresh token (the RFC 8693
// §3 token type identifier); an access token is "Bearer" (RFC 6749 §7.1).
const tokenTypeRefresh = "urn:ietf:params:oauth:token-type:refresh_token"

// introspection is the RFC 7662 §2.2 response. An inactive token is
// {"active":false} and nothing else.
type introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Username  string   `json:"username,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	Aud       []string `json:"aud,omitempty"`
	Iss       string   `json:"iss,omitempty"`
}

// handleIntrospect is the introspection endpoint (RFC 7662). Only
// confidential clients that authenticate with their secret may call it
// (§2.1: the endpoint MUST be protected), and a client learns only about its
// own tokens unless an administrator created it (a resource server): §4
// wants the server to decide who may learn what about a token. Revoked,
// expired, unknown and foreign tokens are all just inactive.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) error {
	if err := s.tokenRequest(w, r, "introspect"); err != nil {
		return err
	}
	ctx := r.Context()
	caller, err := s.oauth.fosite.AuthenticateClient(ctx, r, r.PostForm)
	if err != nil {
		return s.fositeError(w, r, err)
	}
	if caller.IsPublic() {
		if basicAuthAttempted(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+s.cfg.Issuer+`", charset="UTF-8"`)
		}
		return &oauth.Error{Code: oauth.InvalidClient, Description: "introspection is only for confidential clients", Status: http.StatusUnauthorized}
	}
	token := r.PostForm.Get("token")
	resp := introspection{}
	sess := &grantSession{}
	use, ar, err := s.oauth.provider.IntrospectToken(ctx, token, fosite.TokenUse(r.PostForm.Get("token_type_hint")), sess)
	if err != nil {
		// Only a token that is not active is {"active":false}; a token that
		// could not be looked up is an error (RFC 7662 §2.3), or the
		// resource server would drop a valid token.
		if storage.IsUnavailable(err) {
			return unavailable(w, err)
		}
		if fe := fosite.ErrorToRFC6749Error(err); fe.CodeField >= 500 {
			return fmt.Errorf("introspect: %s: %w", fe.WithExposeDebug(true).GetDescription(), err)
		}
	}
	if err == nil && s.mayIntrospect(caller, ar) {
		resp = s.introspection(use, ar)
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(resp)
}

// mayIntrospect reports whether caller may learn about the token of ar.
func (s *Server) mayIntrospect(caller fosite.Client, ar fosite.AccessRequester) bool {
	if ar.GetClient().GetID() == caller.GetID() {
		return true
	}
	c := storedClient(caller)
	return c != nil && c.Source == storage.SourceAdmin
}

// introspection describes an active token.
func (s *Server) introspection(use fosite.TokenUse, ar fosite.AccessRequester) introspection {
	resp := introspection{
		Active:   true,
		Scope:    oauth.FormatScope(ar.GetGrantedScopes()),
		ClientID: ar.GetClient().GetID(),
		Iss:      s.cfg.Issuer,
		Aud:      ar.GetGrantedAudience(),
		Iat:      ar.GetRequestedAt().Unix(),
	}
	tt := fosite.AccessToken
	resp.TokenType = "Bearer"
	if use == fosite.RefreshToken {
		tt, resp.TokenType = fosite.RefreshToken, tokenTypeRefresh
	}
	if sess, ok := ar.GetSession().(*grantSession); ok {
		resp.Sub = sess.accessSubject()
		if ar.GetGrantedScopes().Has("profile") {
			resp.Username = sess.Username
		}
		if exp := sess.GetExpiresAt(tt); !exp.IsZero() {
			resp.Exp = exp.Unix()
		}
	}
	return resp
}
