package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/memory"
	redisstore "github.com/ulule/limiter/v3/drivers/store/redis"

	"github.com/mcpauth/mcpauth/authz"
	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/migrations"
	"github.com/mcpauth/mcpauth/resource"
	"github.com/mcpauth/mcpauth/resource/upstream"
	"github.com/mcpauth/mcpauth/storage"
)

// serve runs the production server. Every setting comes from the
// environment, and an unsafe or missing one stops it before it listens.
func (e *environment) serve(ctx context.Context, args []string) error {
	fs := e.flags("serve", "serve [--no-migrate]")
	noMigrate := fs.Bool("no-migrate", false, "do not apply database migrations at start (run `mcpauth migrate up` separately)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := DefaultConfig()
	if err := errors.Join(cfg.load(e.getenv), cfg.Validate()); err != nil {
		return configError(err)
	}
	log := newLogger(e.stderr, cfg)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("MCPAUTH_ADDR: %w", err)
	}
	return e.start(ctx, cfg, ln, log, !*noMigrate, nil)
}

// cimdTestTransport is nil except in this package's tests, which set it to
// trust the certificate of the HTTPS server they publish a metadata document
// on. Production trust is the system's roots, which no variable changes.
var cimdTestTransport *http.Transport

// configError presents every configuration problem, one per line.
func configError(err error) error {
	return fmt.Errorf("refusing to start; fix the configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

// mcpPath is where the MCP endpoint is served: the canonical MCP URL is the
// issuer plus this path.
const mcpPath = "/mcp"

// defaultScope is what a request with no scope gets, and all that the
// built-in whoami tool needs.
const defaultScope = "mcp"

// builtinScopes are the scopes mcpauth supports by itself: its MCP tools'
// scopes and the OpenID Connect ones, in the order the consent page lists
// them. The configuration file adds its own.
var builtinScopes = []authz.Scope{
	{Name: defaultScope, Description: "Use the MCP tools of this server on your behalf"},
	{Name: resource.AdminScope, Description: "Administer mcpauth through /mcp: list every user's connected applications and revoke them (the admin API needs a client an administrator created, or a personal access token)", AdminOnly: true},
	{Name: "openid", Description: "Confirm who you are to the application"},
	{Name: "profile", Description: "See your user name"},
	{Name: "offline_access", Description: "Stay connected while you are away (refresh tokens)"},
}

// supportedScopes is every scope the authorization server supports: the
// built-in ones, then those the configuration file describes or names
// (its description wins), each with the tools it unlocks.
func supportedScopes(tc *toolConfig, toolScopes map[string][]string) []authz.Scope {
	scopes := slices.Clone(builtinScopes)
	index := func(name string) int {
		return slices.IndexFunc(scopes, func(s authz.Scope) bool { return s.Name == name })
	}
	for _, sc := range tc.Scopes {
		if i := index(sc.Name); i >= 0 {
			// A file may describe a built-in scope and restrict it to
			// administrators, never lift a restriction.
			scopes[i].Description = sc.Description
			scopes[i].AdminOnly = scopes[i].AdminOnly || sc.AdminOnly
		} else {
			scopes = append(scopes, sc)
		}
	}
	for _, name := range tc.scopeNames() {
		if index(name) < 0 {
			scopes = append(scopes, authz.Scope{Name: name, Description: "Use the tools that need the " + name + " scope"})
		}
	}
	for i := range scopes {
		scopes[i].Tools = nil
		for tool, need := range toolScopes {
			if slices.Contains(need, scopes[i].Name) {
				scopes[i].Tools = append(scopes[i].Tools, tool)
			}
		}
		slices.Sort(scopes[i].Tools)
	}
	return scopes
}

// limiterStore is where rate-limit counters live: Redis when configured,
// so that every replica shares them; else the memory of this process.
// close releases the Redis connections.
func limiterStore(ctx context.Context, redisURL string) (store limiter.Store, close func(), err error) {
	if redisURL == "" {
		return memory.NewStore(), func() {}, nil
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, nil, errors.New("MCPAUTH_REDIS_URL: not a Redis URL")
	}
	client := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("MCPAUTH_REDIS_URL: cannot reach Redis: %w", err)
	}
	store, err = redisstore.NewStoreWithOptions(client, limiter.StoreOptions{Prefix: "mcpauth_ratelimit", MaxRetry: limiter.DefaultMaxRetry})
	if err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("MCPAUTH_REDIS_URL: %w", err)
	}
	return store, func() { client.Close() }, nil
}

// start runs the server on ln until ctx is done, then drains in-flight
// requests for up to cfg.ShutdownTimeout. It owns ln. prepare, if not nil,
// runs once the database is migrated and open, before serving.
func (e *environment) start(ctx context.Context, cfg Config, ln net.Listener, log *slog.Logger, migrate bool, prepare func(context.Context, *storage.DB) error) error {
	defer ln.Close()
	log.InfoContext(ctx, "starting mcpauth", "version", version(), "config", cfg)
	if migrate {
		if err := migrations.Up(ctx, cfg.DatabaseURL); err != nil {
			return fmt.Errorf("migrate database: %w", err)
		}
	}
	db, err := storage.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	if prepare != nil {
		if err := prepare(ctx, db); err != nil {
			return err
		}
	}
	ks, err := keys.New(ctx, db, cfg.Secret, keys.Options{
		PublishAhead: cfg.KeyPublishAhead,
		MaxTokenTTL:  max(cfg.AccessTokenTTL, authz.IDTokenTTL),
	})
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	store, closeStore, err := limiterStore(ctx, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer closeStore()
	// The resource server verifies tokens with the authorization server,
	// and the consent page lists the resource server's tools per scope: the
	// resource server is built first, with a verifier that calls the
	// authorization server, which exists before anything is served.
	var az *authz.Server
	mcpURL := cfg.Issuer + mcpPath
	rsCfg := resource.Config{
		Resource: mcpURL,
		Issuer:   cfg.Issuer,
		Verify: func(ctx context.Context, token string) (*oauth.TokenInfo, error) {
			return az.VerifyAccessToken(ctx, token)
		},
		Scopes:         []string{defaultScope},
		Policy:         cfg.Tools.Policy,
		ListAllTools:   cfg.Tools.ListAll,
		AllowedOrigins: cfg.Tools.AllowedOrigins,
		LimiterStore:   store,
		Version:        version(),
	}
	if cfg.Tools.MCPRateLimit != nil {
		rsCfg.RateLimit = *cfg.Tools.MCPRateLimit
	}
	// Lazy upstreams start when a request first lists or calls tools,
	// before the policy looks their tools up.
	var upstreams *upstream.Manager
	if len(cfg.Tools.Upstreams) > 0 {
		rsCfg.BeforeTools = func(ctx context.Context) { upstreams.Prepare(ctx) }
	}
	rs, err := resource.New(rsCfg, log)
	if err != nil {
		return err
	}
	// The admin tools' audit events go through the authorization server's
	// batching writer, with the request's client IP.
	resource.AddAdminTools(rs, db, func(ctx context.Context, ev storage.AuditEvent) { az.RecordAudit(ctx, ev) })
	upMetrics := newUpstreamMetrics()
	upstreams, err = upstream.New(rs, cfg.Tools.Upstreams, log, upMetrics)
	if err != nil {
		return err
	}
	upMetrics.status = upstreams.Status
	// Stopped after the server has drained (defers run last in, first out).
	defer upstreams.Close()
	for _, u := range cfg.Tools.Upstreams {
		log.InfoContext(ctx, "upstream configured", "upstream", u)
	}
	// Boot upstreams start now, so that their tools are mounted (and on the
	// consent page) before mcpauth serves.
	upstreams.Start(ctx)
	az, err = authz.New(authz.Config{
		Issuer:            cfg.Issuer,
		MCPResource:       mcpURL,
		Secret:            cfg.Secret,
		AccessTokenTTL:    cfg.AccessTokenTTL,
		RefreshTokenTTL:   cfg.RefreshTokenTTL,
		CodeTTL:           cfg.CodeTTL,
		SessionTTL:        cfg.SessionTTL,
		Scopes:            supportedScopes(cfg.Tools, rs.ToolScopes()),
		DefaultScopes:     []string{defaultScope},
		RegistrationToken: cfg.RegistrationToken,
		UnusedClientTTL:   cfg.UnusedClientTTL,
		RateLimits:        cfg.RateLimits,
		LimiterStore:      store,
		JWKSMaxAge:        jwksMaxAge,
		CIMD: authz.CIMDConfig{
			Disabled:             !cfg.CIMD,
			AllowHTTPLoopback:    cfg.CIMDAllowHTTPLoopback,
			AllowPrivateNetworks: cfg.CIMDAllowPrivate,
			MinCacheAge:          cfg.CIMDMinCacheAge,
			MaxCacheAge:          cfg.CIMDMaxCacheAge,
			Allow:                cfg.CIMDAllow,
			Deny:                 cfg.CIMDDeny,
			Transport:            cimdTestTransport,
		},
	}, db, ks, log)
	if err != nil {
		return err
	}
	auditDropped := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "mcpauth_audit_events_dropped_total",
		Help: "Audit events lost: the writer's queue stayed full, or the database refused them.",
	}, func() float64 { return float64(az.AuditDropped()) })
	handler := newRouter(routerDeps{
		cfg:          cfg,
		log:          log,
		metrics:      newMetrics(poolCollector{db}, upMetrics, auditDropped),
		ready:        db.Ping,
		upstreams:    upstreams.Status,
		authz:        az.Routes(),
		resource:     rs.Routes(),
		resourcePath: mcpPath,
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { ks.Run(bg, cfg.KeyReload) })
	db.SetAuditRetention(cfg.AuditRetention)
	wg.Go(func() { db.RunCleanup(bg, cfg.CleanupInterval, log) })
	// The audit writer stops after the requests are drained (stopBG runs
	// after Shutdown) and writes whatever is still queued.
	wg.Go(func() { az.RunAudit(bg) })
	wg.Go(func() { az.RunClientSweeper(bg, time.Hour) })
	wg.Go(func() { az.RunRevocations(bg) })
	defer func() {
		stopBG()
		wg.Wait()
	}()

	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.InfoContext(ctx, "serving", "issuer", cfg.Issuer, "addr", ln.Addr().String())
	fmt.Fprintf(e.stdout, "mcpauth is serving %s (listening on %s)\n", cfg.Issuer, ln.Addr())

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests", "timeout", cfg.ShutdownTimeout)
	drain, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(drain); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}
