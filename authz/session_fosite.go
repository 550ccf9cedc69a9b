package authz

import (
	"maps"
	"slices"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/mcpauth/mcpauth/storage"
)

// grantSession is the fosite session of one grant: who granted it (nothing
// for client_credentials), through which client, and the id_token claims
// fosite fills in when openid was granted. fosite stores it as JSON with
// every code and token of the grant, so it holds nothing secret.
//
// The access token's claims are built afresh on every GetJWTClaims call, so
// a refreshed token gets a new iat, exp and jti instead of the first
// token's (fosite's JWTSession keeps them, and WithDefaults never
// overwrites iat).
type grantSession struct {
	Subject   string                         `json:"sub,omitempty"` // user id; "" for client_credentials
	Username  string                         `json:"username,omitempty"`
	ClientID  string                         `json:"client_id"`
	GrantID   string                         `json:"grant_id,omitempty"` // fosite's request id; set by grantStrategy
	ExpiresAt map[fosite.TokenType]time.Time `json:"expires_at,omitempty"`
	IDClaims  *jwt.IDTokenClaims             `json:"id_token_claims,omitempty"`
	IDHeaders *jwt.Headers                   `json:"id_token_headers,omitempty"`

	// codeRead is the authorization code row that GetAuthorizeCodeSession
	// read for this request, kept for the PKCE handler's read of the same
	// row that follows it (fositeStore.GetPKCERequestSession); never
	// stored (unexported), never cloned.
	codeRead *codeRead
}

// codeRead is one read of the code with signature sig.
type codeRead struct {
	sig  string
	code *storage.AuthorizeCode
}

var (
	_ oauth2.JWTSessionContainer = (*grantSession)(nil)
	_ openid.Session             = (*grantSession)(nil)
)

// newSession is the fosite session for a grant to user (nil for
// client_credentials) through client, the user having signed in at authTime.
//
// The id_token's rat (requested at) is set to authTime as well: fosite
// refuses to issue an id_token when, by these two values, prompt=login or
// max_age were not honoured, and /authorize is what honours them (it signs
// the user in again), so fosite's check must not second-guess it.
func (s *Server) newSession(user *storage.User, clientID string, authTime time.Time) fosite.Session {
	sess := &grantSession{ClientID: clientID}
	if user == nil {
		return sess
	}
	if authTime.IsZero() {
		authTime = s.cfg.Now()
	}
	at := authTime.UTC().Truncate(time.Second)
	sess.Subject = user.ID
	sess.Username = user.Username
	sess.IDClaims = &jwt.IDTokenClaims{Subject: user.ID, AuthTime: at, RequestedAt: at}
	sess.IDHeaders = &jwt.Headers{}
	return sess
}

// accessSubject is the access token's sub (RFC 9068 §2.2): the user, or for
// a grant without one (client_credentials) the client itself.
func (g *grantSession) accessSubject() string {
	if g.Subject != "" {
		return g.Subject
	}
	return g.ClientID
}

// claimGrantID names the grant an access token belongs to: the same for the
// token of a code exchange and every token refreshed from it, its own for
// each client_credentials token. Revocation works per grant, and the
// resource server refuses a token whose grant is revoked without a database
// round trip. RFC 9068 §2.2 allows additional claims.
const claimGrantID = "grant_id"

// GetJWTClaims implements oauth2.JWTSessionContainer: sub and client_id
// (RFC 9068 §2.2), and grant_id. fosite adds iss, aud, exp, iat, jti and
// scope.
func (g *grantSession) GetJWTClaims() jwt.JWTClaimsContainer {
	extra := map[string]any{"client_id": g.ClientID}
	if g.GrantID != "" {
		extra[claimGrantID] = g.GrantID
	}
	return &jwt.JWTClaims{Subject: g.accessSubject(), Extra: extra}
}

// GetJWTHeader implements oauth2.JWTSessionContainer. The signer sets alg,
// kid and typ itself.
func (g *grantSession) GetJWTHeader() *jwt.Headers { return &jwt.Headers{} }

// IDTokenClaims implements openid.Session; fosite modifies the claims in
// place, so the same pointer is returned every time.
func (g *grantSession) IDTokenClaims() *jwt.IDTokenClaims {
	if g.IDClaims == nil {
		g.IDClaims = &jwt.IDTokenClaims{}
	}
	return g.IDClaims
}

// IDTokenHeaders implements openid.Session.
func (g *grantSession) IDTokenHeaders() *jwt.Headers {
	if g.IDHeaders == nil {
		g.IDHeaders = &jwt.Headers{}
	}
	return g.IDHeaders
}

// SetExpiresAt implements fosite.Session.
func (g *grantSession) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	if g.ExpiresAt == nil {
		g.ExpiresAt = map[fosite.TokenType]time.Time{}
	}
	g.ExpiresAt[key] = exp
}

// GetExpiresAt implements fosite.Session; zero when unset.
func (g *grantSession) GetExpiresAt(key fosite.TokenType) time.Time {
	return g.ExpiresAt[key]
}

// GetUsername implements fosite.Session.
func (g *grantSession) GetUsername() string {
	if g == nil {
		return ""
	}
	return g.Username
}

// GetSubject implements fosite.Session: the user, "" for client_credentials
// (what storage records as the token's subject).
func (g *grantSession) GetSubject() string {
	if g == nil {
		return ""
	}
	return g.Subject
}

// SetSubject implements fosite.Session.
func (g *grantSession) SetSubject(subject string) { g.Subject = subject }

// Clone implements fosite.Session.
func (g *grantSession) Clone() fosite.Session {
	if g == nil {
		return nil
	}
	c := *g
	c.codeRead = nil
	c.ExpiresAt = maps.Clone(g.ExpiresAt)
	if g.IDClaims != nil {
		cl := *g.IDClaims
		cl.Audience = slices.Clone(cl.Audience)
		cl.AuthenticationMethodsReferences = slices.Clone(cl.AuthenticationMethodsReferences)
		cl.Extra = maps.Clone(cl.Extra)
		c.IDClaims = &cl
	}
	if g.IDHeaders != nil {
		c.IDHeaders = &jwt.Headers{Extra: maps.Clone(g.IDHeaders.Extra)}
	}
	return &c
}
