package storagetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func tableExists(t *testing.T, conn *pgx.Conn, name string) bool {
	t.Helper()
	var ok bool
	if err := conn.QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestURLIsMigrated(t *testing.T) {
	conn := connect(t, URL(t))
	var version int
	var dirty bool
	if err := conn.QueryRow(t.Context(), "SELECT version, dirty FROM schema_migrations").Scan(&version, &dirty); err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	if version < 1 || dirty {
		t.Errorf("schema_migrations = (%d, %v), want a clean version ≥ 1", version, dirty)
	}
}

func TestURLDatabasesAreIndependent(t *testing.T) {
	a, b := URL(t), URL(t)
	if a == b {
		t.Fatalf("URL returned %s twice", a)
	}
	ca, cb := connect(t, a), connect(t, b)
	if _, err := ca.Exec(t.Context(), "CREATE TABLE only_in_a (v int)"); err != nil {
		t.Fatal(err)
	}
	if !tableExists(t, ca, "only_in_a") {
		t.Error("table missing where it was created")
	}
	if tableExists(t, cb, "only_in_a") {
		t.Error("table created in one database is visible in the other")
	}
}

func TestEmptyURLHasNoTables(t *testing.T) {
	conn := connect(t, EmptyURL(t))
	var n int
	if err := conn.QueryRow(t.Context(),
		"SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("EmptyURL database has %d tables, want 0", n)
	}
}

func TestDatabaseDroppedAtCleanup(t *testing.T) {
	var name string
	t.Run("use", func(t *testing.T) {
		conn := connect(t, URL(t))
		if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	conn := connect(t, EmptyURL(t))
	var exists bool
	if err := conn.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestNew(t *testing.T) {
	db := New(t)
	if err := db.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// TestParallel creates databases from many tests at once: the copies of the
// template must not collide.
func TestParallel(t *testing.T) {
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			db := New(t)
			if _, err := db.Pool().Exec(t.Context(), "SELECT 1"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// BenchmarkCreateDrop measures what URL costs a test: copying the template
// and dropping the copy.
func BenchmarkCreateDrop(b *testing.B) {
	s := get(b)
	for b.Loop() {
		name := "mcpauth_bench_" + randomSuffix()
		if _, err := s.admin.Exec(b.Context(), "CREATE DATABASE "+quote(name)+" TEMPLATE "+quote(s.template)+s.strategy); err != nil {
			b.Fatal(err)
		}
		if err := dropDatabase(b.Context(), s.admin, name); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRemoveStaleClusters(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // os.TempDir
	old := filepath.Join(tmp, clusterDirPrefix+"old")
	young := filepath.Join(tmp, clusterDirPrefix+"young")
	other := filepath.Join(tmp, "something-else")
	for _, dir := range []string{old, young, other} {
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-2 * staleAfter)
	for _, dir := range []string{old, other} {
		if err := os.Chtimes(dir, long, long); err != nil {
			t.Fatal(err)
		}
	}

	removeStaleClusters()

	for dir, want := range map[string]bool{old: false, young: true, other: true} {
		_, err := os.Stat(dir)
		if got := err == nil; got != want {
			t.Errorf("%s exists = %v, want %v", filepath.Base(dir), got, want)
		}
	}
}

func TestRemoveStaleClustersKeepsLiveOne(t *testing.T) {
	s := get(t)
	if s.cluster == nil {
		t.Skip("no throwaway cluster: the tests use " + EnvURL)
	}
	long := time.Now().Add(-2 * staleAfter)
	if err := os.Chtimes(s.tmpDir, long, long); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", filepath.Dir(s.tmpDir))

	removeStaleClusters()

	if _, err := os.Stat(s.tmpDir); err != nil {
		t.Fatalf("the running cluster's directory was removed: %v", err)
	}
	URL(t) // still works
}
