package oauth

import (
	"context"
	"errors"
	"time"
)

// TokenInfo is what a verified access token says: the resource server's
// view of a token the authorization server issued.
type TokenInfo struct {
	Subject  string   // sub: the user's id; the client's id for client_credentials
	ClientID string   // client_id (RFC 9068 §2.2)
	Scopes   []string // the granted scopes
	Audience []string // aud
	GrantID  string   // the grant the token belongs to: the unit of revocation
	TokenID  string   // jti
	IssuedAt time.Time
	Expiry   time.Time
}

// HasScope reports whether the token carries scope.
func (t *TokenInfo) HasScope(scope string) bool { return containsString(t.Scopes, scope) }

// ErrInvalidToken is wrapped by every verification failure. The text after
// it is safe to send as error_description (RFC 6750 §3.1).
var ErrInvalidToken = errors.New("invalid token")

// Verifier checks a bearer token and says what it grants. The authorization
// server provides it; the resource server calls it for every request.
type Verifier func(ctx context.Context, token string) (*TokenInfo, error)
