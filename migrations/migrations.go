// Package migrations holds mcpauth's PostgreSQL schema as numbered golang-migrate
// files (NNNN_name.up.sql / NNNN_name.down.sql) embedded in the binary, and applies
// them through golang-migrate's pgx/v5 driver.
//
// Several replicas may call Up at the same time: golang-migrate serialises them with
// a PostgreSQL advisory lock, so one applies the migrations and the others then find
// nothing to do. Each migration file is sent as one simple-protocol query, which
// PostgreSQL runs as a single implicit transaction, so a failed migration leaves the
// schema at the previous version (only the version row is marked dirty).
//
// This package imports nothing of mcpauth's and must not: cmd/mcpauth and the test
// helpers import it.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // registers the "pgx5" database driver
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

//go:embed *.sql
var files embed.FS

// FS returns the embedded migration files (for inspection and tests).
func FS() fs.FS { return files }

// ErrDirty is returned (wrapped, with instructions for the operator) when the
// schema_migrations table says a previous migration failed part-way.
var ErrDirty = errors.New("database schema is dirty")

// lockTimeout bounds how long Up and Down wait for another replica's migration
// when the context has no deadline.
const lockTimeout = 2 * time.Minute

// Status is the migration state of a database.
type Status struct {
	Version uint // applied version; 0 = nothing applied
	Dirty   bool // a migration to Version failed part-way
	Latest  uint // newest version embedded in this binary
}

// Up applies every migration not yet applied. A database that is already at the
// latest version is not an error.
func Up(ctx context.Context, databaseURL string) error {
	err := run(ctx, databaseURL, func(m *migrate.Migrate) error { return m.Up() })
	if err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	return nil
}

// Down reverts migrations: steps > 0 reverts that many (fewer if fewer are applied),
// steps < 0 reverts all of them. steps == 0 is an error.
func Down(ctx context.Context, databaseURL string, steps int) error {
	if steps == 0 {
		return errors.New("migrate down: steps must be positive (that many) or negative (all)")
	}
	err := run(ctx, databaseURL, func(m *migrate.Migrate) error {
		var err error
		if steps < 0 {
			err = m.Down()
		} else {
			err = m.Steps(-steps)
		}
		var short migrate.ErrShortLimit
		switch {
		case errors.As(err, &short):
			return nil // fewer migrations were applied than asked for: all of them are reverted
		case errors.Is(err, os.ErrNotExist):
			return nil // nothing applied, nothing to revert
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate down: %w", err)
	}
	return nil
}

// Force sets the recorded version to version and clears the dirty flag, without
// running any migration. It is the operator's way out of ErrDirty once they have
// checked the schema by hand; version 0 records that nothing is applied.
func Force(ctx context.Context, databaseURL string, version uint) error {
	err := run(ctx, databaseURL, func(m *migrate.Migrate) error {
		v := int(version)
		if version == 0 {
			v = -1 // golang-migrate's "nil version"
		}
		return m.Force(v)
	})
	if err != nil {
		return fmt.Errorf("migrate force %d: %w", version, err)
	}
	return nil
}

// CurrentStatus reports the applied version, the dirty flag and the latest
// embedded version.
func CurrentStatus(ctx context.Context, databaseURL string) (Status, error) {
	latest, err := latestVersion()
	if err != nil {
		return Status{}, fmt.Errorf("migration status: %w", err)
	}
	st := Status{Latest: latest}
	err = run(ctx, databaseURL, func(m *migrate.Migrate) error {
		v, dirty, err := m.Version()
		if errors.Is(err, migrate.ErrNilVersion) {
			return nil
		}
		if err != nil {
			return err
		}
		st.Version, st.Dirty = v, dirty
		return nil
	})
	if err != nil {
		return Status{}, fmt.Errorf("migration status: %w", err)
	}
	return st, nil
}

// latestVersion returns the highest version among the embedded migrations.
func latestVersion() (uint, error) {
	src, err := iofs.New(files, ".")
	if err != nil {
		return 0, fmt.Errorf("read embedded migrations: %w", err)
	}
	defer src.Close()
	v, err := src.First()
	if err != nil {
		return 0, fmt.Errorf("read embedded migrations: %w", err)
	}
	for {
		next, err := src.Next(v)
		if errors.Is(err, os.ErrNotExist) {
			return v, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read embedded migrations: %w", err)
		}
		v = next
	}
}

// run opens a migrate.Migrate on databaseURL, calls fn, and closes it. Context
// cancellation stops between migrations (golang-migrate's GracefulStop); a context
// deadline also bounds the wait for the advisory lock.
func run(ctx context.Context, databaseURL string, fn func(*migrate.Migrate) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	u, err := driverURL(databaseURL)
	if err != nil {
		return err
	}
	src, err := iofs.New(files, ".")
	if err != nil {
		return fmt.Errorf("read embedded migrations: %w", err)
	}
	m, err := migrate.NewWithSourceInstance("iofs", src, u)
	if err != nil {
		src.Close()
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		srcErr, dbErr := m.Close()
		if err == nil {
			err = errors.Join(srcErr, dbErr)
		}
	}()
	m.LockTimeout = lockTimeout
	if deadline, ok := ctx.Deadline(); ok {
		m.LockTimeout = time.Until(deadline)
	}

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			m.GracefulStop <- true
		case <-done:
		}
	}()

	err = fn(m)
	var dirty migrate.ErrDirty
	switch {
	case err == nil, errors.Is(err, migrate.ErrNoChange):
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("stopped: %w", ctxErr)
		}
		return nil
	case errors.As(err, &dirty):
		return dirtyError(dirty.Version)
	case errors.Is(err, migrate.ErrLockTimeout):
		return fmt.Errorf("another process holds the migration lock (is a migration running elsewhere?): %w", err)
	}
	return err
}

// dirtyError explains to the operator how to recover from a failed migration.
func dirtyError(version int) error {
	prev := version - 1
	fix := fmt.Sprintf("UPDATE schema_migrations SET version = %d, dirty = false", prev)
	if prev <= 0 {
		fix = "DELETE FROM schema_migrations"
	}
	return fmt.Errorf("%w at version %d: migration %d failed part-way. Each mcpauth migration runs in one "+
		"transaction, so the schema is normally still at version %d: check that, record it with `%s` "+
		"(migrations.Force does the same), and migrate again",
		ErrDirty, version, version, max(prev, 0), fix)
}

// driverURL turns an ordinary postgres:// or postgresql:// URL into golang-migrate's
// pgx5:// form. pgx5:// URLs are passed through.
func driverURL(databaseURL string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "", errors.New("database URL is not a valid URL (want postgres://user:pass@host:port/db)")
	}
	switch u.Scheme {
	case "postgres", "postgresql", "pgx5":
		u.Scheme = "pgx5"
		// pgxpool's pool_* settings mean nothing to the migration driver's
		// single connection, which would send them to the server as unknown
		// run-time parameters.
		q := u.Query()
		for k := range q {
			if strings.HasPrefix(k, "pool_") {
				q.Del(k)
			}
		}
		u.RawQuery = q.Encode()
		return u.String(), nil
	default:
		return "", fmt.Errorf("database URL scheme %q is not supported (want postgres:// or postgresql://)", u.Scheme)
	}
}
