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
	return e.start(ctx, cfg, ln, log, !*noMigrate)
}

// configError presents every configuration problem, one per line.
func configError(err error) error {
	return fmt.Errorf("refusing to start; fix the configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

// start runs the server on ln until ctx is done, then drains in-flight
// requests for up to cfg.ShutdownTimeout. It owns ln.
func (e *environment) start(ctx context.Context, cfg Config, ln net.Listener, log *slog.Logger, migrate bool) error {
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
	ks, err := keys.New(ctx, db, cfg.Secret, keys.Options{
		PublishAhead: cfg.KeyPublishAhead,
		MaxTokenTTL:  cfg.AccessTokenTTL,
	})
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	az, err := authz.New(authz.Config{
		Issuer:         cfg.Issuer,
		MCPResource:    cfg.Issuer + "/mcp",
		Secret:         cfg.Secret,
		AccessTokenTTL: cfg.AccessTokenTTL,
		JWKSMaxAge:     jwksMaxAge,
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
