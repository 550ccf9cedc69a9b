package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/memory"
	redisstore "github.com/ulule/limiter/v3/drivers/store/redis"

	"github.com/mcpauth/mcpauth/authz"
	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/migrations"
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

// configError presents every configuration problem, one per line.
func configError(err error) error {
	return fmt.Errorf("refusing to start; fix the configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

// builtinScopes are the scopes mcpauth supports by itself: its MCP tools'
// scope and the OpenID Connect ones. The consent page shows the descriptions.
var builtinScopes = []authz.Scope{
	{Name: "mcp", Description: "Use the MCP tools of this server on your behalf"},
	{Name: "openid", Description: "Confirm who you are to the application"},
	{Name: "profile", Description: "See your user name"},
	{Name: "offline_access", Description: "Stay connected while you are away (refresh tokens)"},
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
	az, err := authz.New(authz.Config{
		Issuer:            cfg.Issuer,
		MCPResource:       cfg.Issuer + "/mcp",
		Secret:            cfg.Secret,
		AccessTokenTTL:    cfg.AccessTokenTTL,
		RefreshTokenTTL:   cfg.RefreshTokenTTL,
		CodeTTL:           cfg.CodeTTL,
		SessionTTL:        cfg.SessionTTL,
		Scopes:            builtinScopes,
		DefaultScopes:     []string{"mcp"},
		RegistrationToken: cfg.RegistrationToken,
		UnusedClientTTL:   cfg.UnusedClientTTL,
		RateLimits:        cfg.RateLimits,
		LimiterStore:      store,
		JWKSMaxAge:        jwksMaxAge,
	}, db, ks, log)
	if err != nil {
		return err
	}
	handler := newRouter(routerDeps{
		cfg:     cfg,
		log:     log,
		metrics: newMetrics(poolCollector{db}),
		ready:   db.Ping,
		mounts:  []http.Handler{az.Routes()},
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
	wg.Go(func() { db.RunCleanup(bg, cfg.CleanupInterval, log) })
	wg.Go(func() { az.RunClientSweeper(bg, time.Hour) })
	defer func() {
		stopBG()
		wg.Wait()
	}()

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
