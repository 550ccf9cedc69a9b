package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/storage/pgcluster"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

// lineWriter collects output and reports the address once run prints it.
type lineWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	addr chan string
	once sync.Once
}

var listeningRE = regexp.MustCompile(`listening on ([^)\s]+)\)`)

func newLineWriter() *lineWriter { return &lineWriter{addr: make(chan string, 1)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := listeningRE.FindStringSubmatch(w.buf.String()); m != nil {
		w.once.Do(func() { w.addr <- m[1] })
	}
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// instance is one mcpauth started through run, as the binary would be.
type instance struct {
	base   string // http://addr
	stop   func() error
	stderr *lineWriter
}

// startRun runs mcpauth with args and env until the test ends or stop is
// called; stop returns run's error.
func startRun(t *testing.T, args []string, env map[string]string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stdout, stderr := newLineWriter(), newLineWriter()
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, envOf(env), stdout, stderr) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(60 * time.Second):
				runErr = context.DeadlineExceeded
			}
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	select {
	case addr := <-stdout.addr:
		return &instance{base: "http://" + addr, stop: stop, stderr: stderr}
	case err := <-done:
		t.Fatalf("mcpauth %v exited: %v\nstderr:\n%s", args, err, stderr)
	case <-time.After(90 * time.Second):
		t.Fatalf("mcpauth %v did not start\nstderr:\n%s", args, stderr)
	}
	return nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func getJSON(t *testing.T, url string, v any) *http.Response {
	t.Helper()
	resp, body := get(t, url)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, body)
	}
	return resp
}

type jwks struct {
	Keys []map[string]any `json:"keys"`
}

func kids(t *testing.T, base string) []string {
	t.Helper()
	var set jwks
	getJSON(t, base+"/jwks.json", &set)
	var out []string
	for _, k := range set.Keys {
		out = append(out, k["kid"].(string))
	}
	return out
}

// TestServe runs `mcpauth serve` against a fresh database, checks every
// endpoint of the foundation, stops it with a cancel (SIGTERM), and starts
// it again on the same database: the signing key is the same.
func TestServe(t *testing.T) {
	addr := freeAddr(t)
	issuer := "http://" + addr
	env := map[string]string{
		"MCPAUTH_ISSUER":       issuer,
		"MCPAUTH_ADDR":         addr,
		"MCPAUTH_DATABASE_URL": storagetest.URL(t),
		"MCPAUTH_SECRET":       goodSecret,
	}
	srv := startRun(t, []string{"serve"}, env)

	var md map[string]any
	resp := getJSON(t, srv.base+"/.well-known/oauth-authorization-server", &md)
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("metadata Access-Control-Allow-Origin = %q", got)
	}
	var oidc map[string]any
	getJSON(t, srv.base+"/.well-known/openid-configuration", &oidc)
	for name, doc := range map[string]map[string]any{"oauth-authorization-server": md, "openid-configuration": oidc} {
		if doc["issuer"] != issuer {
			t.Errorf("%s issuer = %q, want %q", name, doc["issuer"], issuer)
		}
		if doc["jwks_uri"] != issuer+"/jwks.json" {
			t.Errorf("%s jwks_uri = %q", name, doc["jwks_uri"])
		}
		if got, _ := json.Marshal(doc["code_challenge_methods_supported"]); string(got) != `["S256"]` {
			t.Errorf("%s code_challenge_methods_supported = %s", name, got)
		}
		if got, _ := json.Marshal(doc["response_types_supported"]); string(got) != `["code"]` {
			t.Errorf("%s response_types_supported = %s", name, got)
		}
		if doc["authorization_response_iss_parameter_supported"] != true {
			t.Errorf("%s lacks authorization_response_iss_parameter_supported", name)
		}
	}
	// The issuer is byte-identical in both documents (RFC 8414 §3.3).
	_, raw := get(t, srv.base+"/.well-known/oauth-authorization-server")
	if !bytes.Contains(raw, []byte(`"issuer":"`+issuer+`"`)) {
		t.Errorf("metadata does not carry the issuer verbatim: %s", raw)
	}

	// A preflight from a browser client is answered without authentication.
	req, _ := http.NewRequest(http.MethodOptions, srv.base+"/.well-known/oauth-authorization-server", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "mcp-protocol-version")
	pre, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	if pre.StatusCode != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("preflight: %s, headers %v", pre.Status, pre.Header)
	}

	resp, body := get(t, srv.base+"/jwks.json")
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age=") {
		t.Errorf("jwks: %s Cache-Control %q", resp.Status, resp.Header.Get("Cache-Control"))
	}
	var set jwks
	if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks = %s (%v), want one key", body, err)
	}
	for _, member := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
		if _, ok := set.Keys[0][member]; ok {
			t.Errorf("jwks key carries private member %q", member)
		}
	}
	if set.Keys[0]["alg"] != "ES256" || set.Keys[0]["use"] != "sig" {
		t.Errorf("jwks key = %v", set.Keys[0])
	}
	firstKid := set.Keys[0]["kid"]

	if resp, body := get(t, srv.base+"/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: %s %s", resp.Status, body)
	}
	if resp, body := get(t, srv.base+"/readyz"); resp.StatusCode != http.StatusOK {
		t.Errorf("readyz: %s %s", resp.Status, body)
	}
	if resp := getJSON(t, srv.base+"/readyz", &map[string]any{}); resp.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id on responses")
	}
	_, metrics := get(t, srv.base+"/metrics")
	for _, want := range []string{
		`mcpauth_http_requests_total{code="200",method="GET",route="/jwks.json"}`,
		`mcpauth_http_request_duration_seconds_bucket{method="GET",route="/.well-known/oauth-authorization-server"`,
		"mcpauth_db_pool_max_connections",
	} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if resp, _ := get(t, srv.base+"/no/such/path?code=secretcode"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %s", resp.Status)
	}

	if err := srv.stop(); err != nil {
		t.Fatalf("shutdown: %v\nstderr:\n%s", err, srv.stderr)
	}
	logs := srv.stderr.String()
	for _, secret := range []string{goodSecret, "secretcode"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
	if !strings.Contains(logs, `"request_id"`) || !strings.Contains(logs, `"client_ip":"127.0.0.1"`) {
		t.Errorf("access log lacks request_id or client_ip:\n%s", logs)
	}

	again := startRun(t, []string{"serve", "--no-migrate"}, env)
	if got := kids(t, again.base); len(got) != 1 || got[0] != firstKid {
		t.Errorf("after restart the JWKS has %v, want [%v]", got, firstKid)
	}
	if err := again.stop(); err != nil {
		t.Fatal(err)
	}

	// A wrong secret cannot unseal the stored key: the server refuses to start.
	env["MCPAUTH_SECRET"] = strings.Repeat("x", 40)
	var out, errOut bytes.Buffer
	err = run(t.Context(), []string{"serve"}, envOf(env), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "MCPAUTH_SECRET") {
		t.Errorf("serve with a wrong secret: %v", err)
	}
}

// TestDev runs the zero-configuration `mcpauth dev` twice on one state
// directory: the data, and so the signing key, survive; the cluster it
// started is stopped when it exits; commands next to it reuse its cluster.
func TestDev(t *testing.T) {
	dir := devTempDir(t)
	env := map[string]string{
		"MCPAUTH_DEV_DIR": dir,
		"MCPAUTH_ADDR":    "127.0.0.1:0",
	}
	first := startRun(t, []string{"dev"}, env)
	var md map[string]any
	getJSON(t, first.base+"/.well-known/oauth-authorization-server", &md)
	wantIssuer := "http://localhost:" + first.base[strings.LastIndex(first.base, ":")+1:]
	if md["issuer"] != wantIssuer {
		t.Errorf("dev issuer = %q, want %q", md["issuer"], wantIssuer)
	}
	kid := kids(t, first.base)
	pidFile := filepath.Join(dir, "postgres", "data", "postmaster.pid")
	if _, err := os.Stat(pidFile); err != nil {
		t.Fatalf("the dev cluster is not where expected: %v", err)
	}

	// A command next to the running server uses its cluster and leaves it running.
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"keys", "list"}, envOf(env), &out, &errOut); err != nil {
		t.Fatalf("keys list: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), kid[0]) || !strings.Contains(out.String(), "current") {
		t.Errorf("keys list:\n%s", out.String())
	}
	if resp, _ := get(t, first.base+"/readyz"); resp.StatusCode != http.StatusOK {
		t.Errorf("readyz after keys list: %s", resp.Status)
	}
	if err := first.stop(); err != nil {
		t.Fatalf("dev: %v\n%s", err, first.stderr)
	}
	if info, err := os.Stat(filepath.Join(dir, "secret")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("dev secret file: %v, mode %v", err, info.Mode())
	}
	if _, err := os.Stat(pidFile); err == nil {
		t.Errorf("the dev cluster is still running after mcpauth dev exited")
	}

	// Commands without a running server start the cluster and stop it again.
	out.Reset()
	if err := run(t.Context(), []string{"migrate", "status"}, envOf(env), &out, &errOut); err != nil {
		t.Fatalf("migrate status: %v\n%s", err, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "schema version ") {
		t.Errorf("migrate status: %q", out.String())
	}

	second := startRun(t, []string{"dev"}, env)
	if got := kids(t, second.base); len(got) != 1 || got[0] != kid[0] {
		t.Errorf("after restart the JWKS has %v, want %v", got, kid)
	}

	// Readiness follows the database: down while the cluster is stopped,
	// back by itself when it returns.
	password, err := os.ReadFile(filepath.Join(dir, "postgres-password"))
	if err != nil {
		t.Fatal(err)
	}
	opts := pgcluster.Options{Dir: filepath.Join(dir, "postgres"), Password: strings.TrimSpace(string(password))}
	c, err := pgcluster.Start(t.Context(), opts)
	if err != nil || c.Started() {
		t.Fatalf("attach to the running dev cluster: started=%v err=%v", c != nil && c.Started(), err)
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if resp, body := get(t, second.base+"/readyz"); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("readyz with the database down: %s %s", resp.Status, body)
	}
	if resp, _ := get(t, second.base+"/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("healthz with the database down: %s", resp.Status)
	}
	if _, err := pgcluster.Start(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _ := get(t, second.base+"/readyz")
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz did not recover after the database returned: %s", resp.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := second.stop(); err != nil {
		t.Fatalf("dev: %v\n%s", err, second.stderr)
	}
}

// devTempDir is a temporary state directory that the postgres system user
// can reach when the tests run as root.
func devTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "state")
}
