// Package authz is the OAuth 2.1 authorization server: metadata and keys,
// dynamic client registration, the browser login and consent pages, and the
// authorization, token, revocation and introspection endpoints (fosite runs
// the protocol; this package adds what fosite lacks around it). It never
// imports the resource server; cmd/mcpauth wires the two together.
package authz

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/ulule/limiter/v3"

	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/web"
)

// Config is the authorization server's typed configuration; cmd/mcpauth
// fills it from the environment and validates it.
type Config struct {
	// Issuer is the server's public base URL, with no path and no trailing
	// slash. It appears byte-identical in every document and token.
	Issuer string
	// MCPResource is the canonical URL of the MCP endpoint: the default
	// audience of every token and the only resource (RFC 8707) accepted.
	MCPResource string
	// Secret (≥ 32 bytes) is the root of the server's symmetric keys: each
	// use gets its own key derived with HKDF (see subkey).
	Secret []byte

	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	CodeTTL         time.Duration
	SessionTTL      time.Duration // browser sign-in

	// Scopes are the scopes the server supports, in the order the consent
	// page shows them; DefaultScopes are granted when a request names none.
	Scopes        []Scope
	DefaultScopes []string

	// RegistrationToken, when set, is the initial access token (RFC 7591
	// §3) that POST /register requires; empty means open registration.
	RegistrationToken string
	// UnusedClientTTL is how long a dynamically registered client that
	// never obtained a grant is kept.
	UnusedClientTTL time.Duration

	// RateLimits and the store their counters live in (nil: in memory;
	// cmd/mcpauth passes a Redis store when MCPAUTH_REDIS_URL is set).
	RateLimits   RateLimits
	LimiterStore limiter.Store

	// CIMD configures Client ID Metadata Documents (cimd.go).
	CIMD CIMDConfig

	// JWKSMaxAge is how long clients may cache /jwks.json; a rotated-in key
	// must be published longer than this before it signs.
	JWKSMaxAge time.Duration
	// RequestTimeout is the deadline of every request's work (database
	// calls included), so that a database that stops answering makes the
	// request a 503, not a hang; 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Scope is one scope the server supports, as the consent page explains it.
type Scope struct {
	Name        string
	Description string   // what it lets the application do, for people
	Tools       []string // the MCP tools it unlocks, shown on the consent page
	AdminOnly   bool     // granted only to users with the admin role
}

// RateLimits are the request budgets of the endpoints, per key (a client
// where the client is known, else the client IP; a user name for logins).
type RateLimits struct {
	Register     limiter.Rate
	Token        limiter.Rate
	Authorize    limiter.Rate
	LoginPerIP   limiter.Rate
	LoginPerUser limiter.Rate
}

// KeySet is the part of the signing key set the server needs. *keys.Set
// implements it.
type KeySet interface {
	// JWKS is the RFC 7517 JSON Web Key Set of the public keys.
	JWKS() []byte
	// Sign signs claims as a compact JWS with the current key and header typ.
	Sign(typ string, claims any) (string, error)
	// Verify checks a compact JWS signed by one of the keys, with header
	// typ, and returns its payload.
	Verify(token, typ string) ([]byte, error)
	// List describes every published key, oldest first (the admin console).
	List() []keys.KeyInfo
	// Rotate adds a new key that signs after the publish-ahead delay, or at
	// once when immediate, and returns its kid (the admin console).
	Rotate(ctx context.Context, immediate bool) (string, error)
}

// Server is the authorization server.
type Server struct {
	cfg  Config
	db   *storage.DB
	keys KeySet
	log  *slog.Logger

	asMetadata   []byte // /.well-known/oauth-authorization-server
	oidcMetadata []byte // /.well-known/openid-configuration
	pages        map[string]*template.Template
	limits       *limits

	// Each feature keeps its own state, built by its init function.
	sessions *sessions     // users, browser sessions, CSRF (login.go, session.go)
	reg      *registration // dynamic client registration (register.go)
	oauth    *oauthService // fosite and the token endpoints (provider.go, token.go)
	cimd     *cimdService  // client ID metadata documents (cimd.go, fetch.go)
	admin    *adminState   // the admin console (admin.go)
	auditLog *auditLog     // the audit log's writer (audit.go)
	pats     *patService   // personal access tokens (pat.go)
}

// New builds the authorization server.
func New(cfg Config, db *storage.DB, keys KeySet, log *slog.Logger) (*Server, error) {
	if cfg.Issuer == "" || cfg.MCPResource == "" {
		return nil, errors.New("authz: no issuer or MCP resource")
	}
	if len(cfg.Secret) < 32 {
		return nil, errors.New("authz: secret shorter than 32 bytes")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	s := &Server{cfg: cfg, db: db, keys: keys, log: log}
	var err error
	if s.pages, err = web.Pages(); err != nil {
		return nil, err
	}
	s.limits = newLimits(cfg.RateLimits, cfg.LimiterStore)
	for _, init := range []func() error{s.initCIMD, s.initAudit, s.initSessions, s.initAdmin, s.initRegistration, s.initOAuth} {
		if err := init(); err != nil {
			return nil, err
		}
	}
	if s.asMetadata, s.oidcMetadata, err = s.renderMetadata(); err != nil {
		return nil, err
	}
	return s, nil
}

// DefaultRequestTimeout is Config.RequestTimeout's default: longer than
// any healthy request (a password hash, a metadata document fetch), short
// enough that a client retries rather than gives up.
const DefaultRequestTimeout = 10 * time.Second

// Routes is every route of the authorization server.
func (s *Server) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.deadline)
	public := func(path string, h http.HandlerFunc) {
		r.With(openCORS).Get(path, h)
		r.With(openCORS).Options(path, h) // answered by openCORS
	}
	public("/.well-known/oauth-authorization-server", s.handleASMetadata)
	public("/.well-known/openid-configuration", s.handleOIDCMetadata)
	public("/jwks.json", s.handleJWKS)
	r.Get("/", s.handleHome)
	r.Handle("/static/*", staticFiles())

	s.sessionRoutes(r)
	s.registrationRoutes(r)
	s.authorizeRoutes(r)
	s.tokenRoutes(r)
	s.accountRoutes(r)
	s.adminRoutes(r)
	return r
}

// deadline gives the request's context the server's RequestTimeout: a
// database call past it fails as storage.ErrUnavailable, which the handlers
// answer with 503 and Retry-After.
func (s *Server) deadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// subkey derives the key for one purpose from the server secret (RFC 5869),
// so that no two mechanisms share a key.
func (s *Server) subkey(purpose string, n int) []byte {
	k, err := hkdf.Key(sha256.New, s.cfg.Secret, nil, "mcpauth "+purpose, n)
	if err != nil {
		panic(fmt.Sprintf("hkdf: %v", err)) // only for n beyond 255*32
	}
	return k
}
