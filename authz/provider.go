package authz

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"
	"github.com/ory/fosite/token/jwt"

	"github.com/mcpauth/mcpauth/storage"
)

// IDTokenTTL is the lifetime of an id_token. A retired signing key stays
// published until the longest-lived token it signed has expired, so
// cmd/mcpauth counts it in the key set's MaxTokenTTL.
const IDTokenTTL = time.Hour

// Token lifetimes when the Config leaves them zero.
const (
	defaultAccessTokenTTL  = 10 * time.Minute
	defaultRefreshTokenTTL = 30 * 24 * time.Hour
	defaultCodeTTL         = time.Minute
	// refreshTokenGrace is how long after its rotation a refresh token still
	// works, if it is its grant's immediately previous one: long enough for
	// a client whose refresh response was lost to retry, too short to be
	// worth stealing (storage.GetRefreshTokenSessionGrace).
	refreshTokenGrace = 10 * time.Second
)

// JWT typ header values (RFC 8725 §3.11 explicit typing): an access token
// (RFC 9068 §2.1) is never accepted as an id_token, nor the reverse.
const (
	typAccessToken = "at+jwt"
	typIDToken     = "JWT"
)

// oauthService is fosite, composed with only the OAuth 2.1 handlers, and
// what the token endpoints need around it.
type oauthService struct {
	// provider runs the protocol: /authorize (authorize.go) and the token
	// endpoints call it.
	provider fosite.OAuth2Provider
	// fosite is provider's concrete type, for client authentication at the
	// introspection endpoint (not part of fosite.OAuth2Provider).
	fosite *fosite.Fosite
	// codeSignature is fosite's storage key for an authorization code.
	codeSignature func(ctx context.Context, code string) string
	// verify and revoked serve VerifyAccessToken: its cache of verified
	// tokens and the set of revoked grants (verify.go, revocation.go).
	verify  *accessVerifier
	revoked *revocations
}

// initOAuth composes fosite (fosite-notes §10, §15): authorization code with
// PKCE (S256 only, for every client), refresh tokens rotated on every use,
// client credentials, introspection, revocation, and OpenID Connect's
// id_token for the code flow. Never implicit or password (OAuth 2.1 §10).
func (s *Server) initOAuth() error {
	ttl := func(d, def time.Duration) time.Duration {
		if d <= 0 {
			return def
		}
		return d
	}
	cfg := &fosite.Config{
		AccessTokenLifespan:   ttl(s.cfg.AccessTokenTTL, defaultAccessTokenTTL),
		RefreshTokenLifespan:  ttl(s.cfg.RefreshTokenTTL, defaultRefreshTokenTTL),
		AuthorizeCodeLifespan: ttl(s.cfg.CodeTTL, defaultCodeTTL),
		IDTokenLifespan:       IDTokenTTL,
		AccessTokenIssuer:     s.cfg.Issuer,
		IDTokenIssuer:         s.cfg.Issuer,
		TokenURL:              s.cfg.Issuer + "/token",
		GlobalSecret:          s.subkey("fosite hmac", 32),
		// OAuth 2.1 §4.1.1, RFC 7636: S256 for every client. Enforcing it
		// also closes fosite's PKCE downgrade (fosite-notes §4).
		EnforcePKCE:                    true,
		EnablePKCEPlainChallengeMethod: false,
		// Refresh tokens whenever the client has the refresh_token grant,
		// without offline_access (fosite-notes §12).
		RefreshTokenScopes: []string{},
		JWTScopeClaimKey:   jwt.JWTScopeFieldString, // RFC 9068 §2.2.3: "scope", a string
		// Audiences are exactly the canonical resource strings s.audience
		// returns (RFC 8707).
		AudienceMatchingStrategy: fosite.ExactAudienceMatchingStrategy,
		// Every client is offered the server's scopes (clientView.GetScopes),
		// matched exactly.
		ScopeStrategy:       fosite.ExactScopeStrategy,
		ClientSecretsHasher: clientSecretHasher{},
		// state stays required with at least 8 characters: OAuth 2.1 §4.1.1
		// makes it optional with PKCE, but fosite v0.49.0 enforces its
		// minimum whatever the setting (Fosite.GetMinParameterEntropy ignores
		// values ≤ 0). The MCP SDKs send one; a request without is refused
		// with invalid_request (authorizeRedirectError maps fosite's
		// non-standard invalid_state).
		MinParameterEntropy:        fosite.MinParameterEntropy,
		SendDebugMessagesToClients: false,
		// private_key_jwt with a jwks_uri (RFC 7523): fosite's own fetcher
		// would fetch any URL; this one goes through the SSRF guard.
		JWKSFetcherStrategy: newClientJWKSFetcher(s.fetcher().get, s.cfg.Now),
	}
	hmacStrategy := compose.NewOAuth2HMACStrategy(cfg)
	accessSigner := &jwtSigner{keys: s.keys, typ: typAccessToken, verified: newVerifiedJWTs()}
	idSigner := &jwtSigner{keys: s.keys, typ: typIDToken, verified: newVerifiedJWTs()}
	store := &fositeStore{DB: s.db, server: s, codeSignature: hmacStrategy.AuthorizeCodeSignature, refreshGrace: refreshTokenGrace}
	strategy := &compose.CommonStrategy{
		CoreStrategy: grantStrategy{&oauth2.DefaultJWTStrategy{
			Signer:          accessSigner,
			HMACSHAStrategy: hmacStrategy, // codes and refresh tokens stay opaque
			Config:          cfg,
		}},
		OpenIDConnectTokenStrategy: &openid.DefaultStrategy{Signer: idSigner, Config: cfg},
		Signer:                     idSigner, // id_token_hint
	}
	provider := compose.Compose(cfg, store, strategy,
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2PKCEFactory, // after the explicit code factory
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
		compose.OpenIDConnectExplicitFactory, // after the code factory
	)
	f, ok := provider.(*fosite.Fosite)
	if !ok {
		return fmt.Errorf("authz: compose returned %T, not *fosite.Fosite", provider)
	}
	s.oauth = &oauthService{
		provider:      provider,
		fosite:        f,
		codeSignature: hmacStrategy.AuthorizeCodeSignature,
	}
	return s.initVerifier()
}

// grantStrategy is fosite's JWT access-token strategy, which first records
// the grant in the session, so the token carries it as its grant_id claim.
// It is done here, where every access token is minted (code exchange,
// refresh, client_credentials, and any grant added later), from fosite's
// request id: fosite carries that id from the authorization request to the
// code exchange and on to every refresh (flow_authorize_code_token.go and
// flow_refresh.go SetID), and storage revokes by it (RevokeAccessToken,
// RevokeRefreshToken), so it is exactly the unit of revocation.
type grantStrategy struct {
	*oauth2.DefaultJWTStrategy
}

// GenerateAccessToken implements oauth2.AccessTokenStrategy.
func (g grantStrategy) GenerateAccessToken(ctx context.Context, requester fosite.Requester) (string, string, error) {
	sess, ok := requester.GetSession().(*grantSession)
	if !ok {
		return "", "", fmt.Errorf("access token: session is %T, not *grantSession", requester.GetSession())
	}
	if requester.GetID() == "" {
		return "", "", errors.New("access token: request has no id")
	}
	sess.GrantID = requester.GetID()
	return g.DefaultJWTStrategy.GenerateAccessToken(ctx, requester)
}

// ---- storage as fosite sees it ----

// fositeStore is the storage fosite is composed with: storage.DB, plus the
// per-request client view (withRedirectURI), OpenID Connect sessions keyed
// by the code's signature, PKCE records that outlive their first check, and
// a grace window for the immediately previous refresh token.
type fositeStore struct {
	*storage.DB
	server        *Server
	codeSignature func(ctx context.Context, code string) string
	refreshGrace  time.Duration
}

var (
	_ fosite.Storage                     = (*fositeStore)(nil)
	_ oauth2.CoreStorage                 = (*fositeStore)(nil)
	_ oauth2.TokenRevocationStorage      = (*fositeStore)(nil)
	_ pkce.PKCERequestStorage            = (*fositeStore)(nil)
	_ openid.OpenIDConnectRequestStorage = (*fositeStore)(nil)
)

type redirectURIKey struct{}

// withRedirectURI returns ctx such that, for this request only, fosite's
// GetClient sees the client with uri among its redirect URIs. /authorize
// calls it after its own oauth.MatchRedirectURI check passed (loopback
// redirect URIs match on any port, RFC 8252 §7.3), because fosite matches
// only IP-literal loopback hosts and never localhost with another port
// (fosite-notes §12).
func withRedirectURI(ctx context.Context, uri string) context.Context {
	return context.WithValue(ctx, redirectURIKey{}, uri)
}

// GetClient implements fosite.ClientManager: the stored client, seen through
// clientView.
//
// A client_id that is a URL is a Client ID Metadata Document client: it is
// resolved from its document (cached, refetched when the cache expires), so
// that the code exchange, refresh, revocation and private_key_jwt see what
// the document says now, and a client whose document went bad or was
// blocked by the allow/deny lists is refused everywhere (invalid_client).
func (st *fositeStore) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	var c *storage.Client
	if st.server.metadataDocumentClientID(id) {
		mc, err := st.server.metadataClient(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("get client %q: metadata document: %w", id, err)
		}
		if mc.DisabledAt != nil {
			return nil, fmt.Errorf("get client %q: disabled: %w", id, storage.ErrNotFound)
		}
		c = mc
	} else {
		fc, err := st.DB.GetClient(ctx, id)
		if err != nil {
			return nil, err
		}
		var ok bool
		if c, ok = fc.(*storage.Client); !ok {
			return nil, fmt.Errorf("get client %q: unexpected type %T", id, fc)
		}
	}
	uri, _ := ctx.Value(redirectURIKey{}).(string)
	return st.server.clientView(c, uri), nil
}

// metadataDocumentClientID reports whether id names a Client ID Metadata
// Document this server resolves (not when the feature is turned off).
func (s *Server) metadataDocumentClientID(id string) bool {
	return !s.cfg.CIMD.Disabled && isClientIDURL(id)
}

// DeletePKCERequestSession leaves the PKCE challenge in place. The code it
// belongs to is single-use by itself (a conditional UPDATE when it is
// exchanged), so the challenge needs no deleting; and keeping it means that
// of several concurrent exchanges of one code, every one with the right
// verifier reaches that UPDATE, where exactly one wins and the others, which
// see the code used only after the winner committed, revoke the winner's
// tokens (RFC 6749 §4.1.2). Deleting it, as fosite would, lets a loser fail
// early on "no PKCE data" and the winner's tokens survive. fosite's
// downgrade (fosite-notes §4) stays closed: EnforcePKCE refuses a missing
// verifier, and a stored challenge is never dropped.
func (st *fositeStore) DeletePKCERequestSession(context.Context, string) error { return nil }

// GetAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage, and
// keeps the row it read in the request's session for the PKCE handler,
// which fosite runs next and which asks for the same row
// (GetPKCERequestSession): one SELECT fewer per code exchange
// (docs/benchmarks.md). fosite's later read of the code, when it issues the
// tokens, still goes to the database, and the code stays single-use by the
// conditional UPDATE of InvalidateAuthorizeCodeSession, not by these reads.
func (st *fositeStore) GetAuthorizeCodeSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	code, err := st.DB.ReadAuthorizeCode(ctx, signature)
	if err != nil {
		return nil, err
	}
	if gs, ok := session.(*grantSession); ok {
		gs.codeRead = &codeRead{sig: signature, code: code}
	}
	req, err := code.CodeSession(session)
	// A used code presented again (fosite then revokes its grant, RFC 6749
	// §4.1.2) is recorded in the audit log.
	if errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) && req != nil {
		st.server.auditCodeReuse(ctx, req)
	}
	return req, err
}

// GetPKCERequestSession implements pkce.PKCERequestStorage: from the row
// GetAuthorizeCodeSession read for this request's session when there is
// one (taken once), else from the database. The PKCE request is built from
// the row exactly as a fresh read would build it, the stored session
// decoded again into session.
func (st *fositeStore) GetPKCERequestSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	if gs, ok := session.(*grantSession); ok && gs.codeRead != nil {
		read := gs.codeRead
		gs.codeRead = nil
		if read.sig == signature {
			return read.code.PKCESession(session)
		}
	}
	return st.DB.GetPKCERequestSession(ctx, signature, session)
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage: a rotated
// refresh token still works for refreshGrace if it is its grant's
// immediately previous one (a client retrying after a lost response); any
// other rotated token is reuse, and fosite revokes the grant (OAuth 2.1
// §4.3.1). Revocation and introspection see the same.
func (st *fositeStore) GetRefreshTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	return st.DB.GetRefreshTokenSessionGrace(ctx, signature, session, st.refreshGrace)
}

// RotateRefreshToken implements oauth2.RefreshTokenStorage with the same
// grace: rotating the previous token again retires the token its first
// rotation issued.
func (st *fositeStore) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	return st.DB.RotateRefreshTokenGrace(ctx, requestID, signature, st.refreshGrace)
}

// CreateOpenIDConnectSession implements openid.OpenIDConnectRequestStorage,
// keyed by the code's signature like the code itself.
func (st *fositeStore) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return st.DB.CreateOIDCSession(ctx, st.codeSignature(ctx, code), r)
}

// GetOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (st *fositeStore) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	return st.DB.GetOIDCSession(ctx, st.codeSignature(ctx, code), r.GetSession())
}

// DeleteOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (st *fositeStore) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return st.DB.DeleteOIDCSession(ctx, st.codeSignature(ctx, code))
}

// clientView is a stored client as fosite sees it during one request.
// Embedding keeps the optional interfaces visible (fosite.OpenIDConnectClient,
// so token_endpoint_auth_method is enforced; fosite.ClientWithSecretRotation).
type clientView struct {
	*storage.Client
	redirectURIs []string
	scopes       []string
	audience     []string
}

var (
	_ fosite.Client                   = (*clientView)(nil)
	_ fosite.OpenIDConnectClient      = (*clientView)(nil)
	_ fosite.ClientWithSecretRotation = (*clientView)(nil)
)

// clientView builds the view of c: its redirect URIs plus extra (if not
// empty); as scopes, every scope the server supports, because a client's
// registered scope is a hint, not an allow-list (DESIGN §4: MCP step-up; the
// user's consent decides, and client_credentials is checked in token.go);
// as audience, its allowed resources, by default the MCP resource.
func (s *Server) clientView(c *storage.Client, extra string) *clientView {
	v := &clientView{Client: c, redirectURIs: c.RedirectURIs, audience: c.Audiences}
	if extra != "" && !slices.Contains(v.redirectURIs, extra) {
		v.redirectURIs = append(slices.Clip(slices.Clone(c.RedirectURIs)), extra)
	}
	for _, sc := range s.cfg.Scopes {
		v.scopes = append(v.scopes, sc.Name)
	}
	if len(v.audience) == 0 {
		v.audience = []string{s.cfg.MCPResource}
	}
	return v
}

// GetRedirectURIs implements fosite.Client.
func (c *clientView) GetRedirectURIs() []string { return c.redirectURIs }

// GetTokenEndpointAuthSigningAlgorithm implements
// fosite.OpenIDConnectClient. A metadata document that names no
// token_endpoint_auth_signing_alg but whose inline keys all name the same
// alg (RFC 7517 §4.4) gets that one; otherwise fosite's default, RS256.
func (c *clientView) GetTokenEndpointAuthSigningAlgorithm() string {
	if c.TokenEndpointAuthSigningAlg == "" && c.Source == storage.SourceCIMD {
		if set := c.GetJSONWebKeys(); set != nil && len(set.Keys) > 0 {
			alg := set.Keys[0].Algorithm
			for _, k := range set.Keys {
				if k.Algorithm != alg {
					alg = ""
				}
			}
			if slices.Contains(clientAssertionAlgs, alg) {
				return alg
			}
		}
	}
	return c.Client.GetTokenEndpointAuthSigningAlgorithm()
}

// GetJSONWebKeys implements fosite.OpenIDConnectClient: the client's
// registered keys for private_key_jwt, those without a "use" counted as
// signing keys (RFC 7517 §4.2 makes it optional; fosite would skip them).
func (c *clientView) GetJSONWebKeys() *jose.JSONWebKeySet {
	return signingKeys(c.Client.GetJSONWebKeys())
}

// GetScopes implements fosite.Client.
func (c *clientView) GetScopes() fosite.Arguments { return c.scopes }

// GetAudience implements fosite.Client.
func (c *clientView) GetAudience() fosite.Arguments { return c.audience }

// storedClient returns the record behind a client fosite hands back.
func storedClient(c fosite.Client) *storage.Client {
	switch c := c.(type) {
	case *clientView:
		return c.Client
	case *storage.Client:
		return c
	}
	return nil
}

// ---- JWT signing over our key set ----

// jwtSigner is fosite's jwt.Signer on our key set (fosite-notes §9): ES256,
// kid in the header, one typ per signer, verification by kid so tokens
// outlive key rotations. fosite's DefaultSigner would sign typ "JWT",
// ignore kid and check only the current key.
type jwtSigner struct {
	keys KeySet
	typ  string
	// verified remembers tokens whose signature Decode checked (nil: no
	// cache), so that introspecting one token again costs a hash, not an
	// ECDSA verification (docs/benchmarks.md).
	verified *verifiedJWTs
}

var _ jwt.Signer = (*jwtSigner)(nil)

// Generate signs claims. The header fosite passes is not used: the key set
// writes alg, kid and typ (RFC 9068 §2.1) itself. iat is set to now, so a
// token minted on refresh does not carry the first token's time.
func (j *jwtSigner) Generate(_ context.Context, claims jwt.MapClaims, _ jwt.Mapper) (string, string, error) {
	if claims == nil {
		return "", "", errors.New("jwt: nil claims")
	}
	if _, ok := claims["iat"]; ok {
		claims["iat"] = time.Now().Unix()
	}
	tok, err := j.keys.Sign(j.typ, map[string]any(claims))
	if err != nil {
		return "", "", err
	}
	return tok, tok[strings.LastIndexByte(tok, '.')+1:], nil
}

// Decode verifies token (signature by kid, alg, typ) and returns it with its
// claims, checked for exp, iat and nbf. A bad signature or format is a
// *jwt.ValidationError with ValidationErrorSignatureInvalid or
// ValidationErrorMalformed; an expired token is returned together with a
// ValidationErrorExpired error (fosite accepts an expired id_token_hint).
//
// A token whose signature was verified before (the same bytes, by its
// SHA-256) is not verified again for up to verifiedJWTTTL; its claims are
// still parsed and checked on every call.
func (j *jwtSigner) Decode(_ context.Context, token string) (*jwt.Token, error) {
	var key [sha256.Size]byte
	var payload []byte
	if j.verified != nil {
		key = sha256.Sum256([]byte(token))
		payload = j.verified.get(key, time.Now())
	}
	if payload == nil {
		var err error
		if payload, err = j.keys.Verify(token, j.typ); err != nil {
			return &jwt.Token{}, &jwt.ValidationError{Errors: jwt.ValidationErrorSignatureInvalid, Inner: err}
		}
		if j.verified != nil {
			j.verified.put(key, payload, time.Now())
		}
	}
	hdr, err := base64.RawURLEncoding.DecodeString(token[:strings.IndexByte(token, '.')])
	if err != nil {
		return &jwt.Token{}, &jwt.ValidationError{Errors: jwt.ValidationErrorMalformed, Inner: err}
	}
	t := &jwt.Token{Header: map[string]any{}, Claims: jwt.MapClaims{}, Method: "ES256"}
	if err := json.Unmarshal(hdr, &t.Header); err != nil {
		return &jwt.Token{}, &jwt.ValidationError{Errors: jwt.ValidationErrorMalformed, Inner: err}
	}
	if err := t.Claims.UnmarshalJSON(payload); err != nil {
		return &jwt.Token{}, &jwt.ValidationError{Errors: jwt.ValidationErrorMalformed, Inner: err}
	}
	if err := t.Claims.Valid(); err != nil {
		return t, err
	}
	return t, nil
}

// Validate verifies token as Decode does and returns its signature.
func (j *jwtSigner) Validate(ctx context.Context, token string) (string, error) {
	if _, err := j.Decode(ctx, token); err != nil {
		return "", err
	}
	return j.GetSignature(ctx, token)
}

// Hash is SHA-256.
func (j *jwtSigner) Hash(_ context.Context, in []byte) ([]byte, error) {
	h := sha256.Sum256(in)
	return h[:], nil
}

// GetSignature returns the signature segment of a compact JWS, fosite's
// storage key for a JWT access token.
func (j *jwtSigner) GetSignature(_ context.Context, token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("jwt: not a compact JWS")
	}
	return parts[2], nil
}

// GetSigningMethodLength is SHA-256's size, as for ES256.
func (j *jwtSigner) GetSigningMethodLength(context.Context) int { return sha256.Size }

// verifiedJWTTTL bounds how long a verified signature is remembered: a key
// removed from the set (remove_at passed, keys.Set.Verify then refuses it)
// stops vouching for its tokens within this time at the latest, though
// keys are removed only after every token they signed has expired.
const verifiedJWTTTL = time.Minute

// verifiedJWTMax bounds the entries of a verifiedJWTs (about 1.5 KiB each).
const verifiedJWTMax = 16 << 10

// verifiedJWTs is a bounded map from a token's SHA-256 to its verified
// payload. Expired entries are replaced on the way; when full, arbitrary
// entries (Go's map order) make room.
type verifiedJWTs struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verifiedJWT
}

type verifiedJWT struct {
	payload []byte
	until   time.Time
}

func newVerifiedJWTs() *verifiedJWTs {
	return &verifiedJWTs{m: make(map[[sha256.Size]byte]verifiedJWT)}
}

// get returns the payload remembered for key, nil when none or expired.
func (c *verifiedJWTs) get(key [sha256.Size]byte, now time.Time) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return nil
	}
	if !now.Before(e.until) {
		delete(c.m, key)
		return nil
	}
	return e.payload
}

func (c *verifiedJWTs) put(key [sha256.Size]byte, payload []byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if len(c.m) < verifiedJWTMax {
			break
		}
		delete(c.m, k)
	}
	c.m[key] = verifiedJWT{payload: payload, until: now.Add(verifiedJWTTTL)}
}
