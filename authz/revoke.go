package authz

import (
	"errors"
	"net/http"

	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// tokenRequest reads a request about one token, to /revoke or /introspect
// (kind): no caching of the answer, the form capped and parsed, the rate
// limit spent, each parameter at most once, a client named and a token
// given.
func (s *Server) tokenRequest(w http.ResponseWriter, r *http.Request, kind string) error {
	noStore(w)
	if err := parseOAuthForm(w, r); err != nil {
		return err
	}
	if err := s.allow(r.Context(), w, s.limits.token, kind, rateKey(r)); err != nil {
		return err
	}
	for _, p := range []string{"token", "token_type_hint", "client_id", "client_secret"} {
		if len(r.PostForm[p]) > 1 {
			return &oauth.Error{Code: oauth.InvalidRequest, Description: "parameter " + p + " is repeated"}
		}
	}
	if !clientNamed(r) {
		return errNoClient
	}
	if r.PostForm.Get("token") == "" {
		return &oauth.Error{Code: oauth.InvalidRequest, Description: "token is missing"}
	}
	return nil
}

// handleRevoke is the revocation endpoint (RFC 7009). The client
// authenticates as at the token endpoint (a public client by its client_id).
// Revoking a refresh token or an access token revokes the whole grant it
// belongs to: every access and refresh token issued from the same
// authorization (RFC 7009 §2.1: SHOULD for a refresh token, MAY for an
// access token). An unknown, expired or already revoked
// token, or one of another client, is answered 200 like a success (RFC 7009
// §2.2: the client could not act on anything else).
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	if err := s.tokenRequest(w, r, "revoke"); err != nil {
		return err
	}
	ctx := r.Context()
	// RFC 7009 §2.2.1 would have unsupported_token_type for a hint the
	// server does not support; both hints are supported and any other is
	// ignored (§2.1: the hint is only a hint).
	err := s.oauth.provider.NewRevocationRequest(ctx, r)
	switch {
	case err == nil:
		// RFC 7009 §2.2: the same answer whether the token existed or not;
		// the log records the request the authenticated client made.
		id := requestClientID(r)
		e := storage.AuditEvent{Event: storage.EventTokenRevoked, Actor: "client:" + id, ClientID: id}
		if hint := r.PostForm.Get("token_type_hint"); hint == "access_token" || hint == "refresh_token" {
			e.Details = map[string]any{"token_type_hint": hint}
		}
		s.audit(r, e)
	case errors.Is(err, fosite.ErrUnauthorizedClient):
		// The token belongs to another client: nothing is revoked, and the
		// answer must not tell whether the token exists.
	default:
		return s.fositeError(w, r, err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
