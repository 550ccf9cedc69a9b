package pgcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// clusterDir returns a fresh directory for a cluster. As root, the server
// runs as "postgres", which must be able to enter the parent that t.TempDir
// creates with mode 0700.
func clusterDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "pg")
}

func startTest(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("Stop at cleanup: %v", err)
		}
	})
	return c
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func setting(t *testing.T, conn *pgx.Conn, name string) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(t.Context(), "SELECT current_setting($1)", name).Scan(&v); err != nil {
		t.Fatalf("current_setting(%s): %v", name, err)
	}
	return v
}

func TestEphemeral(t *testing.T) {
	t.Parallel()
	c := startTest(t, Options{Dir: clusterDir(t), Ephemeral: true})
	if !c.Started() {
		t.Error("Started() = false for a new cluster")
	}
	if c.Port() <= 0 {
		t.Fatalf("Port() = %d", c.Port())
	}
	want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port())
	if got := c.URL("postgres"); got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}

	conn := connect(t, c.URL("postgres"))
	for name, want := range map[string]string{
		"fsync":              "off",
		"synchronous_commit": "off",
		"full_page_writes":   "off",
		"server_encoding":    "UTF8",
		"listen_addresses":   "127.0.0.1",
		"port":               strconv.Itoa(c.Port()),
	} {
		if got := setting(t, conn, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	conn.Close(t.Context())

	if port, ok := Running(c.dir); !ok || port != c.Port() {
		t.Errorf("Running = %d, %v; want %d, true", port, ok, c.Port())
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := probe(c.Port()); err == nil {
		t.Error("server still accepts connections after Stop")
	}
	if _, ok := Running(c.dir); ok {
		t.Error("Running after Stop = true")
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestPersistent(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t)
	opts := Options{Dir: dir, Password: "pa ss/word@"}

	first := startTest(t, opts)
	if !first.Started() {
		t.Fatal("Started() = false for a new cluster")
	}
	port := first.Port()
	conn := connect(t, first.URL("postgres"))
	if got := setting(t, conn, "fsync"); got != "on" {
		t.Errorf("fsync = %q on a persistent cluster, want on", got)
	}
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('row')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(t.Context())

	// Password authentication (scram-sha-256) is on.
	noPassword := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if c, err := pgx.Connect(t.Context(), noPassword); err == nil {
		c.Close(t.Context())
		t.Errorf("connected without the password via %s", noPassword)
	}

	// A second Start while it runs reuses the server.
	second := startTest(t, opts)
	if second.Started() {
		t.Error("second Start: Started() = true, want false")
	}
	if second.Port() != port {
		t.Errorf("second Start: port %d, want %d", second.Port(), port)
	}

	if err := first.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := probe(port); err == nil {
		t.Fatal("server still accepts connections after Stop")
	}

	// Started again on the same directory: same port, same data.
	third := startTest(t, opts)
	if !third.Started() {
		t.Error("Start after Stop: Started() = false")
	}
	if third.Port() != port {
		t.Errorf("Start after Stop: port %d, want %d", third.Port(), port)
	}
	conn = connect(t, third.URL("postgres"))
	var v string
	if err := conn.QueryRow(t.Context(), "SELECT v FROM kept").Scan(&v); err != nil || v != "row" {
		t.Errorf("row after restart = %q, %v; want \"row\"", v, err)
	}
}

func TestConcurrentStart(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		clusters []*Cluster
	)
	for range 3 {
		wg.Go(func() {
			c, err := Start(t.Context(), Options{Dir: dir})
			if err != nil {
				t.Errorf("Start: %v", err)
				return
			}
			mu.Lock()
			clusters = append(clusters, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(clusters) == 0 {
		t.FailNow()
	}
	t.Cleanup(func() {
		if err := clusters[0].Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	started := 0
	for _, c := range clusters {
		if c.Started() {
			started++
		}
		if c.Port() != clusters[0].Port() {
			t.Errorf("ports differ: %d, %d", c.Port(), clusters[0].Port())
		}
	}
	if started != 1 {
		t.Errorf("%d of %d concurrent Start calls started the server, want 1", started, len(clusters))
	}
}

// TestFixedPort asks for a port that another server holds, which fails with
// the server's explanation, then for the same port once it is free.
func TestFixedPort(t *testing.T) {
	t.Parallel()
	first := startTest(t, Options{Dir: clusterDir(t), Ephemeral: true})
	port := first.Port()
	opts := Options{Dir: clusterDir(t), Port: port, Ephemeral: true}
	if _, err := Start(t.Context(), opts); err == nil {
		t.Fatal("Start on a port in use succeeded")
	} else {
		t.Log(err)
		// The error carries the server's own explanation from its log.
		if !strings.Contains(err.Error(), "could not bind") {
			t.Errorf("error does not include the server log: %v", err)
		}
	}

	if err := first.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	second := startTest(t, opts)
	if second.Port() != port {
		t.Errorf("Port() = %d, want %d", second.Port(), port)
	}
	connect(t, second.URL("postgres"))
}

func TestNoBinaries(t *testing.T) {
	t.Parallel()
	_, err := Start(t.Context(), Options{Dir: clusterDir(t), BinDir: t.TempDir()})
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("Start with an empty BinDir: %v, want ErrNoBinaries", err)
	}
}

func TestBinDir(t *testing.T) {
	t.Parallel()
	dir, err := BinDir()
	if err != nil {
		t.Fatalf("BinDir: %v", err)
	}
	if !hasServerPrograms(dir) {
		t.Errorf("BinDir() = %s, which lacks the server programs", dir)
	}
}

func TestPathVersion(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]float64{
		"/usr/lib/postgresql/15/bin":          15,
		"/usr/pgsql-9.6/bin":                  9.6,
		"/opt/homebrew/opt/postgresql@16/bin": 16,
		"/usr/local/bin":                      0,
	} {
		if got := pathVersion(path); got != want {
			t.Errorf("pathVersion(%q) = %v, want %v", path, got, want)
		}
	}
}

// TestEphemeralDiesWithProcess kills (SIGKILL) a process that started an
// ephemeral cluster and checks that the server goes down with it.
func TestEphemeralDiesWithProcess(t *testing.T) {
	t.Parallel()
	if !parentDeathSupported {
		t.Skip("no parent-death signal on this system")
	}
	dir := clusterDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStartEphemeral$")
	cmd.Env = append(os.Environ(), "PGCLUSTER_HELPER_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var port int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "PORT "); ok {
			port, _ = strconv.Atoi(p)
			break
		}
	}
	if port == 0 {
		t.Fatal("helper did not report a port")
	}
	if err := probe(port); err != nil {
		t.Fatalf("server of the helper is not up: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	deadline := time.Now().Add(30 * time.Second)
	for probe(port) == nil {
		if time.Now().After(deadline) {
			t.Fatal("server still accepts connections 30s after its parent was killed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHelperStartEphemeral is the child process of TestEphemeralDiesWithProcess.
func TestHelperStartEphemeral(t *testing.T) {
	dir := os.Getenv("PGCLUSTER_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	c, err := Start(t.Context(), Options{Dir: dir, Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("PORT %d\n", c.Port())
	time.Sleep(time.Minute) // killed by the parent long before
}
