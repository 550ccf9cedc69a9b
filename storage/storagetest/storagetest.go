// Package storagetest gives tests a real PostgreSQL database, never a mock:
// a fresh database per test, cloned from a template that is migrated once per
// test binary, on a throwaway cluster that the test binary starts lazily
// (package pgcluster, Ephemeral, in a temporary directory; as root the server
// runs as the "postgres" user) or, when MCPAUTH_TEST_DATABASE_URL is set, on
// that existing server (a superuser URL; PostgreSQL 13 or later).
//
// Every package whose tests use it declares
//
//	func TestMain(m *testing.M) { storagetest.Main(m) }
//
// so that the cluster is stopped when the tests end. Missing PostgreSQL
// binaries fail the test (with pgcluster.ErrNoBinaries); they never skip it.
//
// It imports storage, migrations and pgcluster, and only tests may import it.
package storagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpauth/mcpauth/migrations"
	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/pgcluster"
)

// EnvURL names the environment variable holding the superuser URL of an
// existing server to use instead of a throwaway cluster.
const EnvURL = "MCPAUTH_TEST_DATABASE_URL"

// clusterDirPrefix starts the names of throwaway cluster directories in
// os.TempDir().
const clusterDirPrefix = "mcpauth-pg-"

// staleAfter is the age after which a cluster directory with no server
// running on it is taken to be left over by a killed test binary.
const staleAfter = 10 * time.Minute

// server is the PostgreSQL server of this test binary.
type server struct {
	cluster  *pgcluster.Cluster // nil on an external server
	tmpDir   string             // the cluster's directory
	base     *url.URL           // superuser URL of the administrative database
	admin    *pgxpool.Pool      // connections to base, for CREATE and DROP DATABASE
	template string             // the migrated template database
	strategy string             // the CREATE DATABASE option choosing how to copy
}

var (
	mu       sync.Mutex // guards srv, setupErr, done
	srv      *server
	setupErr error
	done     bool // setup ran (successfully or not)

	// cloneMu serialises CREATE DATABASE: PostgreSQL refuses to copy a
	// template that another session is using ("source database is being
	// accessed by other users"), which includes a concurrent copy.
	cloneMu sync.Mutex
)

// Main runs the tests, then stops the cluster they started (and, on an
// external server, drops the template database), and exits with the tests'
// status. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if err := teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "storagetest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// URL returns the superuser URL of a fresh database holding the migrated
// schema, dropped when the test ends.
func URL(t testing.TB) string {
	t.Helper()
	s := get(t)
	return createDatabase(t, s, s.template)
}

// EmptyURL returns the superuser URL of a fresh database without any
// migration (for migration tests), dropped when the test ends.
func EmptyURL(t testing.TB) string {
	t.Helper()
	// template0 is PostgreSQL's pristine template (template1 may carry
	// whatever an administrator added to it).
	return createDatabase(t, get(t), "template0")
}

// New opens a storage.DB on a fresh migrated database (URL), closed when the
// test ends.
func New(t testing.TB) *storage.DB {
	t.Helper()
	db, err := storage.Open(t.Context(), URL(t))
	if err != nil {
		t.Fatalf("storagetest: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// get returns the server, setting it up on first use, and fails the test if
// it cannot.
func get(t testing.TB) *server {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if !done {
		done = true
		srv, setupErr = setup()
	}
	if setupErr != nil {
		t.Fatalf("storagetest: %v", setupErr)
	}
	return srv
}

func setup() (_ *server, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	s := &server{}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.close())
		}
	}()
	if raw := os.Getenv(EnvURL); raw != "" {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return nil, fmt.Errorf("%s must be a postgres:// URL of a superuser", EnvURL)
		}
		s.base = u
	} else {
		removeStaleClusters()
		dir, err := os.MkdirTemp("", clusterDirPrefix)
		if err != nil {
			return nil, fmt.Errorf("create cluster directory: %w", err)
		}
		s.tmpDir = dir
		c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: dir, Ephemeral: true})
		if err != nil {
			return nil, err
		}
		s.cluster = c
		if s.base, err = url.Parse(c.URL("postgres")); err != nil {
			return nil, fmt.Errorf("parse cluster URL: %w", err)
		}
	}

	cfg, err := pgxpool.ParseConfig(s.base.String())
	if err != nil {
		// pgx's parse errors may quote the URL, password included.
		return nil, errors.New("cannot parse the test server URL")
	}
	cfg.MaxConns = 4
	if s.admin, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("connect to the test server: %w", err)
	}

	// PostgreSQL 15 copies a template by WAL-logging every block by default.
	// Without fsync, copying the files (and checkpointing, which then costs
	// little) is about twice as fast for our small template.
	var version int
	var fsync string
	if err := s.admin.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, current_setting('fsync')").Scan(&version, &fsync); err != nil {
		return nil, fmt.Errorf("read server settings: %w", err)
	}
	if version >= 150000 && fsync == "off" {
		s.strategy = " STRATEGY FILE_COPY"
	}

	// Unique across test binaries sharing an external server.
	s.template = "mcpauth_template_" + randomSuffix()
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+quote(s.template)+" TEMPLATE template0"); err != nil {
		return nil, fmt.Errorf("create template database: %w", err)
	}
	if err := migrations.Up(ctx, s.urlFor(s.template)); err != nil {
		return nil, fmt.Errorf("migrate template database: %w", err)
	}
	// Nobody may connect to the template any more, so that nothing stops
	// it from being copied.
	if _, err := s.admin.Exec(ctx, "ALTER DATABASE "+quote(s.template)+" WITH ALLOW_CONNECTIONS false"); err != nil {
		return nil, fmt.Errorf("seal template database: %w", err)
	}
	return s, nil
}

// teardown undoes setup, if it ran.
func teardown() error {
	mu.Lock()
	defer mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.close()
	srv = nil
	return err
}

// close drops the template database (on an external server), closes the
// administrative connections and stops and removes the throwaway cluster.
func (s *server) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if s.admin != nil {
		if s.cluster == nil && s.template != "" {
			if err := dropDatabase(ctx, s.admin, s.template); err != nil {
				errs = append(errs, err)
			}
		}
		s.admin.Close()
	}
	if s.cluster != nil {
		if err := s.cluster.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.tmpDir != "" {
		if err := os.RemoveAll(s.tmpDir); err != nil {
			errs = append(errs, fmt.Errorf("remove cluster directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// removeStaleClusters removes, best effort, the cluster directories of test
// binaries that were killed before Main could remove them (their servers died
// with them): those with no server running and not modified for staleAfter.
// A live test binary's directory has a running server, or is younger.
func removeStaleClusters() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), clusterDirPrefix+"*")) // the pattern is valid
	for _, dir := range dirs {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < staleAfter {
			continue
		}
		if _, running := pgcluster.Running(dir); running {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

// createDatabase creates a database copied from template and returns its
// URL; the database is dropped when the test ends.
func createDatabase(t testing.TB, s *server, template string) string {
	t.Helper()
	name := "mcpauth_test_" + randomSuffix()
	cloneMu.Lock()
	_, err := s.admin.Exec(t.Context(), "CREATE DATABASE "+quote(name)+" TEMPLATE "+quote(template)+s.strategy)
	cloneMu.Unlock()
	if err != nil {
		t.Fatalf("storagetest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dropDatabase(ctx, s.admin, name); err != nil {
			t.Errorf("storagetest: %v", err)
		}
	})
	return s.urlFor(name)
}

// dropDatabase drops a database, disconnecting whatever is still connected
// to it (WITH (FORCE), PostgreSQL 13).
func dropDatabase(ctx context.Context, admin *pgxpool.Pool, name string) error {
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// urlFor returns the server's URL with database name.
func (s *server) urlFor(name string) string {
	u := *s.base
	u.Path, u.RawPath = "/"+name, ""
	return u.String()
}

func quote(ident string) string { return pgx.Identifier{ident}.Sanitize() }

// randomSuffix returns 16 random hex digits for database names.
func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return hex.EncodeToString(b[:])
}
