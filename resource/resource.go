// Package resource is mcpauth's MCP resource server: the protected resource
// metadata (RFC 9728), the bearer-token middleware with its 401/403
// challenges (RFC 6750 §3), the per-tool scope and rate-limit policy, and the
// MCP Streamable HTTP endpoint (the official go-sdk, stateless) with the
// built-in tools.
//
// It never imports the authorization server (package authz): the command
// wiring hands it the verifier as a value (Config.Verify). It imports only
// authz/oauth of ours.
package resource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/memory"

	"github.com/mcpauth/mcpauth/authz/oauth"
)

// Config is the resource server's configuration. cmd/mcpauth fills it.
type Config struct {
	// Resource is the canonical MCP URL, e.g. https://auth.example.com/mcp:
	// PRM "resource" byte for byte, and its path is where the endpoint is
	// mounted.
	Resource string
	// Issuer is the authorization server's issuer: PRM
	// authorization_servers[0] byte for byte. Its origin may call /mcp from
	// a browser.
	Issuer string
	// Verify checks a bearer token (cmd passes the authorization server's
	// VerifyAccessToken). It must refuse a token for another audience.
	Verify oauth.Verifier
	// Scopes is the minimal set of scopes for basic use: PRM
	// scopes_supported, the scope= of every 401 challenge, and what a tool
	// registered without scopes of its own requires. Never offline_access,
	// never a wildcard.
	Scopes []string
	// Policy holds the per-tool rules from the configuration file.
	Policy Policy
	// ListAllTools makes tools/list show every visible tool; when false it
	// shows only the tools the caller's token may call.
	ListAllTools bool
	// RateLimit is the budget per (subject, client) for every /mcp request;
	// zero means DefaultRateLimit.
	RateLimit limiter.Rate
	// LimiterStore holds the rate-limit counters, shared with the
	// authorization server (memory, or Redis for several replicas); nil
	// means a private memory store.
	LimiterStore limiter.Store
	// AllowedOrigins are the browser origins (scheme://host[:port]) allowed
	// to call /mcp besides the issuer's own (DNS-rebinding protection).
	AllowedOrigins []string
	// DisableAuth turns off the bearer check, the scope checks and the rate
	// limits. For benchmarks and the conformance fixture only.
	DisableAuth bool
	// Name is PRM resource_name and the MCP serverInfo name; default
	// "mcpauth".
	Name string
	// Version is the MCP serverInfo version; default "dev".
	Version string
	// MCPOptions are passed to the go-sdk server (completions, resource
	// subscriptions, instructions…); its Logger defaults to New's logger.
	MCPOptions *mcp.ServerOptions
	// Now is the clock; default time.Now.
	Now func() time.Time
	// BeforeTools, when set, runs for an authenticated POST that may list
	// or call tools, before the policy looks the tools up: the upstream
	// manager starts lazy upstreams there, so that their tools exist (with
	// their policy) by the time the request is checked. It must return by
	// ctx's deadline at the latest.
	BeforeTools func(ctx context.Context)
}

// DefaultRateLimit is the per-(subject, client) budget on /mcp when
// Config.RateLimit is zero: generous for an agent calling tools in a loop,
// tight enough to stop one runaway client from starving the rest.
var DefaultRateLimit = limiter.Rate{Period: time.Minute, Limit: 600}

// MaxBodyBytes caps a JSON-RPC request body on /mcp.
const MaxBodyBytes = 1 << 20

// Server is the MCP resource server. Build it with New, register tools with
// AddTool, mount Routes.
type Server struct {
	cfg Config
	log *slog.Logger

	mcp     *mcp.Server
	handler http.Handler // the go-sdk Streamable HTTP handler

	canonical   string   // oauth.CanonicalResource(cfg.Resource), to match aud
	mcpPath     string   // path of cfg.Resource: where /mcp is mounted
	metadataURL string   // RFC 9728 §3.1: the path-inserted PRM URL
	origins     []string // allowed Origin values, normalised
	prm         []byte   // the PRM document

	perPrincipal *limiter.Limiter
	store        limiter.Store

	mu    sync.RWMutex
	tools map[string]*toolPolicy // registered (visible) tools by name
}

// BuiltinTools are the names of mcpauth's own tools: whoami, which New
// registers, and AddAdminTools' tools.
var BuiltinTools = []string{"whoami", "admin_list_grants", "admin_revoke"}

// New checks cfg and builds the server with the built-in whoami tool.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Name == "" {
		cfg.Name = "mcpauth"
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.RateLimit.Limit == 0 && cfg.RateLimit.Period == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.LimiterStore == nil {
		cfg.LimiterStore = memory.NewStore()
	}
	res, err := validate(&cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:          cfg,
		log:          log,
		mcpPath:      res.Path,
		metadataURL:  res.Scheme + "://" + res.Host + wellKnownPRM + res.Path,
		perPrincipal: limiter.New(cfg.LimiterStore, cfg.RateLimit),
		store:        cfg.LimiterStore,
		tools:        make(map[string]*toolPolicy),
	}
	s.origins = append(s.origins, originOf(mustParse(cfg.Issuer)))
	for _, o := range cfg.AllowedOrigins {
		s.origins = append(s.origins, originOf(mustParse(o)))
	}
	if s.canonical, err = oauth.CanonicalResource(cfg.Resource); err != nil {
		return nil, fmt.Errorf("resource server config: resource %q: %w", cfg.Resource, err)
	}
	if s.prm, err = s.metadataDocument(); err != nil {
		return nil, err
	}

	opts := mcp.ServerOptions{}
	if cfg.MCPOptions != nil {
		opts = *cfg.MCPOptions
	}
	if opts.Logger == nil {
		opts.Logger = log
	}
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: cfg.Name, Version: cfg.Version}, &opts)
	s.mcp.AddReceivingMiddleware(s.receivingMiddleware)
	s.handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.mcp }, &mcp.StreamableHTTPOptions{
		// Any replica serves any request: no session lives in one
		// process (docs/resource-server.md says what this gives up).
		Stateless: true,
		// The SDK's localhost check refuses a loopback connection whose
		// Host is not localhost, which is every request through a
		// same-host reverse proxy. checkOrigin does the DNS-rebinding
		// protection instead (MCP 2025-11-25 Transports, "Security
		// Warning": servers MUST validate Origin).
		DisableLocalhostProtection: true,
		MaxRequestBodyBytes:        MaxBodyBytes,
		Logger:                     log,
	})
	addWhoami(s)
	return s, nil
}

var (
	scopeToken = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]+$`) // RFC 6749 §3.3 scope-token
	safePath   = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)+$`)
)

// validate reports every problem of cfg at once; it returns the parsed
// resource URL.
func validate(cfg *Config) (*url.URL, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	res, err := url.Parse(cfg.Resource)
	switch {
	case cfg.Resource == "":
		bad("resource: required")
	case err != nil || !res.IsAbs() || res.Host == "" || res.User != nil:
		bad("resource %q: not an absolute URL", cfg.Resource)
	case res.RawQuery != "" || res.Fragment != "" || strings.HasSuffix(cfg.Resource, "#"):
		bad("resource %q: no query or fragment allowed (RFC 8707 §2)", cfg.Resource)
	case res.Scheme != "https" && res.Scheme != "http":
		bad("resource %q: scheme must be https", cfg.Resource)
	case !safePath.MatchString(res.Path):
		bad("resource %q: needs a plain path such as /mcp", cfg.Resource)
	}
	if iss, err := url.Parse(cfg.Issuer); cfg.Issuer == "" || err != nil || !iss.IsAbs() || iss.Host == "" {
		bad("issuer %q: not an absolute URL", cfg.Issuer)
	}
	if cfg.Verify == nil && !cfg.DisableAuth {
		bad("verify: required unless auth is disabled")
	}
	for _, sc := range cfg.Scopes {
		switch {
		case !scopeToken.MatchString(sc):
			bad("scopes: %q is not a scope token (RFC 6749 §3.3)", sc)
		case sc == "offline_access" || sc == "*" || sc == "all":
			// MCP 2025-11-25 "Scope Selection Strategy": minimal scopes, no
			// omnibus scope; 2026-07-28: no offline_access in PRM.
			bad("scopes: %q does not belong in the minimal scope set", sc)
		}
	}
	if cfg.RateLimit.Limit <= 0 || cfg.RateLimit.Period <= 0 {
		bad("rate limit: needs a positive limit and period")
	}
	for _, o := range cfg.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			bad("allowed origins: %q is not an origin (scheme://host[:port])", o)
		}
	}
	errs = append(errs, cfg.Policy.validate()...)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("resource server config: %w", err)
	}
	return res, nil
}

func mustParse(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err) // validated
	}
	return u
}

// MCP is the underlying go-sdk server, for resources, prompts and
// completions. Tools must be added through AddTool, so that the policy
// applies: with authentication on, a tool added to the go-sdk server
// directly is refused as unknown.
func (s *Server) MCP() *mcp.Server { return s.mcp }

// AddTool registers a tool that needs scopes (all of them; none means
// Config.Scopes). A matching policy rule can replace the scopes, add a rate
// limit, or hide the tool, which then is not registered at all.
func (s *Server) AddTool(t *mcp.Tool, h mcp.ToolHandler, scopes ...string) {
	s.addTool(t.Name, scopes, func() { s.mcp.AddTool(t, h) })
}

// AddTool registers a tool with typed input and output (schemas inferred as
// by mcp.AddTool); see Server.AddTool for scopes and policy.
func AddTool[In, Out any](s *Server, t *mcp.Tool, h mcp.ToolHandlerFor[In, Out], scopes ...string) {
	s.addTool(t.Name, scopes, func() { mcp.AddTool(s.mcp, t, h) })
}

// addTool records the tool's policy before the go-sdk can dispatch it, so
// that no request sees the tool without its policy.
func (s *Server) addTool(name string, scopes []string, add func()) {
	for _, sc := range scopes {
		if !scopeToken.MatchString(sc) {
			panic(fmt.Sprintf("resource: tool %q: invalid scope %q", name, sc))
		}
	}
	tp := s.policyFor(name, scopes, "")
	if tp == nil {
		s.log.Debug("tool hidden by policy", "tool", name)
		return
	}
	s.mu.Lock()
	prev, had := s.tools[name]
	s.tools[name] = tp
	s.mu.Unlock()
	ok := false
	defer func() {
		if !ok { // the go-sdk refused the tool (it panics): forget its policy
			s.mu.Lock()
			if had {
				s.tools[name] = prev
			} else {
				delete(s.tools, name)
			}
			s.mu.Unlock()
		}
	}()
	add()
	ok = true
}

// MountTool registers a tool whose schema and handler come from elsewhere
// (an upstream MCP server) on behalf of owner. The policy applies as for
// AddTool (the tool declares no scopes of its own: Config.Scopes unless a
// rule says otherwise). It reports whether the tool is visible (false: a
// rule hides it, nothing was registered). Unlike AddTool it returns an error
// instead of panicking when the go-sdk refuses the tool (a schema that is
// not an object), and it never replaces a tool that another owner
// registered, built-in tools included.
func (s *Server) MountTool(owner string, t *mcp.Tool, h mcp.ToolHandler) (visible bool, err error) {
	if owner == "" {
		return false, errors.New("resource: MountTool needs an owner")
	}
	tp := s.policyFor(t.Name, nil, owner)
	if tp == nil {
		return false, nil
	}
	tp.owner = owner
	s.mu.Lock()
	prev, had := s.tools[t.Name]
	if had && prev.owner != owner {
		s.mu.Unlock()
		return false, fmt.Errorf("tool %q is already registered by another source", t.Name)
	}
	s.tools[t.Name] = tp
	s.mu.Unlock()
	defer func() {
		if v := recover(); v != nil {
			// The go-sdk's Server.AddTool reports a bad tool only by
			// panicking; an upstream's tool list is input, not code.
			err = fmt.Errorf("tool %q: %v", t.Name, v)
			s.mu.Lock()
			if had {
				s.tools[t.Name] = prev
			} else {
				delete(s.tools, t.Name)
			}
			s.mu.Unlock()
		}
	}()
	s.mcp.AddTool(t, h)
	return true, nil
}

// UnmountTools removes the named tools that owner mounted; other names are
// ignored. Removal from the policy comes first, so no request can reach a
// tool that is going away without its policy.
func (s *Server) UnmountTools(owner string, names ...string) {
	var gone []string
	s.mu.Lock()
	for _, name := range names {
		if tp, ok := s.tools[name]; ok && tp.owner == owner {
			delete(s.tools, name)
			gone = append(gone, name)
		}
	}
	s.mu.Unlock()
	if len(gone) > 0 {
		s.mcp.RemoveTools(gone...)
	}
}

// tool returns the policy of a registered, visible tool.
func (s *Server) tool(name string) *toolPolicy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tools[name]
}

// ToolScopes returns the effective scopes of every visible tool (for the
// consent page, which lists the tools each scope unlocks).
func (s *Server) ToolScopes() map[string][]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := make(map[string][]string, len(s.tools))
	for name, tp := range s.tools {
		m[name] = slices.Clone(tp.scopes)
	}
	return m
}

// Routes serves the MCP endpoint at the path of Config.Resource (POST, GET,
// DELETE and OPTIONS; stateless, so GET and DELETE answer 405) and the
// protected resource metadata at /.well-known/oauth-protected-resource and
// at the path-inserted URL (RFC 9728 §3.1).
func (s *Server) Routes() http.Handler {
	mux := http.NewServeMux()
	prm := http.HandlerFunc(s.handleMetadata)
	mux.Handle(wellKnownPRM, prm)
	mux.Handle(wellKnownPRM+s.mcpPath, prm)
	mux.Handle(s.mcpPath, s.mcpHandler())
	return mux
}

type tokenInfoKey struct{}

// TokenInfo is the caller's verified token, for tool handlers (and any
// handler behind Routes); nil when authentication is disabled.
func TokenInfo(ctx context.Context) *oauth.TokenInfo {
	ti, _ := ctx.Value(tokenInfoKey{}).(*oauth.TokenInfo)
	return ti
}

func withTokenInfo(ctx context.Context, ti *oauth.TokenInfo) context.Context {
	return context.WithValue(ctx, tokenInfoKey{}, ti)
}
