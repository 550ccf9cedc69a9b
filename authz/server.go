// Package authz is the OAuth 2.1 authorization server: its metadata, its
// keys' public half, and (as they arrive) registration, authorization and
// token endpoints. It never imports the resource server; cmd/mcpauth wires
// the two together.
package authz

import (
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mcpauth/mcpauth/web"
)

// Config is the authorization server's typed configuration; cmd/mcpauth
// fills it from the environment and validates it.
type Config struct {
	// Issuer is the server's public base URL, with no path and no trailing
	// slash. It appears byte-identical in every document and token.
	Issuer string
	// JWKSMaxAge is how long clients may cache /jwks.json; a rotated-in key
	// must be published longer than this before it signs.
	JWKSMaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// KeySet is the part of the signing key set the server needs. *keys.Set
// implements it.
type KeySet interface {
	// JWKS is the RFC 7517 JSON Web Key Set of the public keys.
	JWKS() []byte
}

// Server is the authorization server.
type Server struct {
	cfg  Config
	keys KeySet
	log  *slog.Logger

	asMetadata   []byte // /.well-known/oauth-authorization-server
	oidcMetadata []byte // /.well-known/openid-configuration
	pages        map[string]*template.Template
}

// New builds the authorization server.
func New(cfg Config, keys KeySet, log *slog.Logger) (*Server, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("authz: no issuer")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, keys: keys, log: log}
	var err error
	if s.asMetadata, s.oidcMetadata, err = s.renderMetadata(); err != nil {
		return nil, err
	}
	if s.pages, err = web.Pages(); err != nil {
		return nil, err
	}
	return s, nil
}

// Routes is every route of the authorization server.
func (s *Server) Routes() http.Handler {
	r := chi.NewRouter()
	public := func(path string, h http.HandlerFunc) {
		r.With(publicCORS).Get(path, h)
		r.With(publicCORS).Options(path, h) // answered by publicCORS
	}
	public("/.well-known/oauth-authorization-server", s.handleASMetadata)
	public("/.well-known/openid-configuration", s.handleOIDCMetadata)
	public("/jwks.json", s.handleJWKS)
	r.Get("/", s.handleHome)
	r.Handle("/static/*", staticFiles())
	return r
}

// publicCORS lets browser-based clients read public documents: any origin,
// no credentials (Fetch standard, CORS protocol). OPTIONS, preflight or not,
// is answered here, before any handler.
func publicCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			h.Set("Allow", "GET, HEAD, OPTIONS")
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
			// Clients send MCP-Protocol-Version on discovery requests.
			h.Set("Access-Control-Allow-Headers", "*")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
