package authz

import (
	"encoding/json"
	"net/http"

	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// userinfo is the OIDC Core §5.3.2 response: sub always, preferred_username
// when profile was granted (§5.4).
type userinfo struct {
	Sub               string `json:"sub"`
	PreferredUsername string `json:"preferred_username,omitempty"`
}

// handleUserinfo is the OpenID Connect userinfo endpoint (OIDC Core §5.3),
// for an access token of ours, active, with openid granted, sent as a bearer
// token in the Authorization header (RFC 6750 §2.1). Failures are answered
// as RFC 6750 §3 says: 401 with WWW-Authenticate (no error code when no
// token was sent at all), 403 insufficient_scope without openid.
func (s *Server) handleUserinfo(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	ctx := r.Context()
	if err := s.allow(ctx, w, s.limits.token, "userinfo", "ip:"+clientIP(r)); err != nil {
		return err
	}
	token, ok := bearerToken(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+s.cfg.Issuer+`"`)
		return &oauth.Error{Code: oauth.InvalidRequest, Description: "send the access token as a Bearer token in the Authorization header", Status: http.StatusUnauthorized}
	}
	sess := &grantSession{}
	use, ar, err := s.oauth.provider.IntrospectToken(ctx, token, fosite.AccessToken, sess)
	if storage.IsUnavailable(err) {
		// The token could not be looked up: it is not invalid, and a 401
		// would make the client discard it (RFC 6750 §3.1).
		return unavailable(w, err)
	}
	if err != nil || use != fosite.AccessToken {
		// A refresh token is not a bearer credential (fosite's introspection
		// would accept one here).
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+s.cfg.Issuer+`", error="invalid_token", error_description="the access token is invalid, expired or revoked"`)
		return &oauth.Error{Code: oauth.InvalidToken, Description: "the access token is invalid, expired or revoked", Status: http.StatusUnauthorized}
	}
	sess, _ = ar.GetSession().(*grantSession)
	if !ar.GetGrantedScopes().Has("openid") || sess == nil || sess.Subject == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+s.cfg.Issuer+`", error="insufficient_scope", scope="openid"`)
		return &oauth.Error{Code: oauth.InsufficientScope, Description: "the access token was not granted openid", Status: http.StatusForbidden}
	}
	info := userinfo{Sub: sess.Subject}
	if ar.GetGrantedScopes().Has("profile") {
		info.PreferredUsername = sess.Username
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(info)
}
