package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/pgcluster"
)

// dev runs mcpauth with zero configuration: a private PostgreSQL cluster and
// a generated secret under ./.mcpauth/ (both kept between runs), on
// http://localhost:8080. MCPAUTH_* variables still override each default.
func (e *environment) dev(ctx context.Context, args []string) error {
	fs := e.flags("dev", "dev")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:8080"
	cfg.LogFormat = "text"
	// Local clients and their tests serve their metadata documents from
	// this computer, often over plain http (DESIGN §8).
	cfg.CIMDAllowHTTPLoopback = true
	cfg.CIMDAllowPrivate = true
	if err := cfg.load(e.getenv); err != nil {
		return configError(err)
	}
	log := newLogger(e.stderr, cfg)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("MCPAUTH_ADDR: %w", err)
	}
	defer ln.Close()
	if cfg.Issuer == "" {
		cfg.Issuer = fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	}
	stop, err := e.useDatabase(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer stop()
	if err := cfg.Validate(); err != nil {
		return configError(err)
	}
	return e.start(ctx, cfg, ln, log, true, e.firstAdmin)
}

// firstAdmin creates the administrator on the first start of an empty
// database and prints its one-time password.
func (e *environment) firstAdmin(ctx context.Context, db *storage.DB) error {
	name, password, created, err := createFirstAdmin(ctx, db)
	if err != nil || !created {
		return err
	}
	fmt.Fprintf(e.stdout, "created the administrator %q with the password %s\n(shown only now: sign in and keep it, or change it with `mcpauth user passwd %s`)\n", name, password, name)
	return nil
}

// devDir is where mcpauth dev keeps its state.
func (e *environment) devDir() (string, error) {
	dir := e.getenv("MCPAUTH_DEV_DIR")
	if dir == "" {
		dir = ".mcpauth"
	}
	return filepath.Abs(dir)
}

// useDatabase fills in cfg.DatabaseURL and cfg.Secret for commands that can
// fall back to the dev cluster: with MCPAUTH_DATABASE_URL set it only checks
// that a secret is set too; otherwise it starts (or reuses) the dev cluster
// and takes the dev secret. stop stops the cluster if this call started it.
func (e *environment) useDatabase(ctx context.Context, cfg *Config, log *slog.Logger) (stop func(), err error) {
	stop = func() {}
	if cfg.DatabaseURL != "" {
		return stop, nil
	}
	dir, err := e.devDir()
	if err != nil {
		return stop, err
	}
	// The cluster runs as the postgres user when we are root, so the state
	// directory must be traversable; its files are private all the same.
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return stop, fmt.Errorf("dev state directory: %w", err)
	}
	if len(cfg.Secret) == 0 {
		if cfg.Secret, err = readOrCreateSecret(filepath.Join(dir, "secret")); err != nil {
			return stop, err
		}
	}
	password, err := readOrCreateSecret(filepath.Join(dir, "postgres-password"))
	if err != nil {
		return stop, err
	}
	c, err := pgcluster.Start(ctx, pgcluster.Options{
		Dir:      filepath.Join(dir, "postgres"),
		Password: string(password),
		Logger:   log,
	})
	if errors.Is(err, pgcluster.ErrNoBinaries) {
		return stop, err
	}
	if err != nil {
		return stop, fmt.Errorf("start the dev PostgreSQL cluster in %s: %w", dir, err)
	}
	if c.Started() {
		stop = func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.Stop(ctx); err != nil {
				log.Error("stop the dev PostgreSQL cluster", "err", err)
			}
		}
	}
	if err := createDatabase(ctx, c.URL("postgres"), "mcpauth"); err != nil {
		stop()
		return func() {}, err
	}
	cfg.DatabaseURL = c.URL("mcpauth")
	return stop, nil
}

// createDatabase creates database name unless it exists.
func createDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to the dev cluster: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

// readOrCreateSecret returns the secret kept in path, creating it (256 random
// bits, readable by the owner only) on first use.
func readOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < minSecretLen {
			return nil, fmt.Errorf("%s: too short; delete it to have a new one made (signing keys sealed with it will be lost)", path)
		}
		return []byte(s), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// Write it aside and link it into place, so that a concurrent start
	// reads either nothing or the whole secret.
	s := rand.Text() + rand.Text() // 2 × 128 bits, base32
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-secret-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(s + "\n"); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return readOrCreateSecret(path)
	} else if err != nil {
		return nil, err
	}
	return []byte(s), nil
}
