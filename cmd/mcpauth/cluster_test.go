package main

// TestCluster runs mcpauth as operators scale it out (DESIGN §6, issue 9):
// three `mcpauth serve` processes on loopback ports, one PostgreSQL cluster
// of the test's own (it is stopped and started again), one redis-server,
// and a small round-robin reverse proxy in front that is the issuer.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/oauth2"

	"github.com/mcpauth/mcpauth/migrations"
	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/pgcluster"
)

// clusterChildEnv makes the test binary run mcpauth itself (os.Args[1:])
// instead of the tests: the cluster's replicas are real processes that can
// be killed, built from the same code (with the race detector under make
// test), and their stderr can be scanned.
const clusterChildEnv = "MCPAUTH_CLUSTER_TEST_CHILD"

func init() {
	if os.Getenv(clusterChildEnv) != "1" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcpauth:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// clusterOutput is a child's stdout and stderr, safe for concurrent use.
type clusterOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *clusterOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *clusterOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// clusterReplica is one `mcpauth serve` process.
type clusterReplica struct {
	addr   string
	base   string
	env    []string
	cmd    *exec.Cmd
	out    *clusterOutput
	exited chan struct{}
	err    error // the process's exit, once exited is closed
	// logs keeps the output of the replica's earlier processes (restarts).
	logs []*clusterOutput
}

// start runs the process and waits until it is ready.
func (r *clusterReplica) start(t *testing.T) {
	t.Helper()
	r.spawn(t)
	r.waitReady(t)
}

func (r *clusterReplica) spawn(t *testing.T) {
	t.Helper()
	r.out = &clusterOutput{}
	r.logs = append(r.logs, r.out)
	r.cmd = exec.Command(os.Args[0], "serve")
	r.cmd.Env = r.env
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.exited = make(chan struct{})
	cmd, exited := r.cmd, r.exited
	go func() { r.err = cmd.Wait(); close(exited) }()
}

func (r *clusterReplica) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(r.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-r.exited:
			t.Fatalf("replica %s exited: %v\n%s", r.addr, r.err, r.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not ready after 60s\n%s", r.addr, r.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *clusterReplica) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		<-r.exited
	}
}

// clusterRecord is one request the proxy passed on.
type clusterRecord struct {
	backend    int
	start, end time.Time
	status     int   // 0 when the backend gave no answer
	err        error // the backend's failure (the client got 502)
}

// clusterProxy is a round-robin reverse proxy in front of the replicas. It
// retries nothing a replica received: only a connection the replica's port
// refused (nothing was delivered) goes to the next replica, as any load
// balancer does. It records every request it passed on.
type clusterProxy struct {
	backends  []string       // base URLs
	out       [3]atomic.Bool // taken out of rotation (as an orchestrator does before it stops a replica)
	next      atomic.Uint64
	transport *http.Transport

	mu      sync.Mutex
	records []*clusterRecord
}

func (p *clusterProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	first := int(p.next.Add(1) % uint64(len(p.backends)))
	for k := range len(p.backends) {
		i := (first + k) % len(p.backends) // each replica at most once
		if p.out[i].Load() {
			continue
		}
		out, _ := http.NewRequestWithContext(r.Context(), r.Method, p.backends[i]+r.URL.RequestURI(), bytes.NewReader(body))
		out.Header = r.Header.Clone()
		out.Header.Del("Connection")
		out.Header.Set("X-Forwarded-For", host)
		out.Header.Set("X-Forwarded-Proto", "http")
		out.Host = r.Host
		rec := &clusterRecord{backend: i, start: time.Now()}
		p.mu.Lock()
		p.records = append(p.records, rec)
		p.mu.Unlock()
		resp, err := p.transport.RoundTrip(out)
		if err != nil {
			p.mu.Lock()
			rec.end, rec.err = time.Now(), err
			p.mu.Unlock()
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue // never delivered: the next replica
			}
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, err = io.Copy(w, resp.Body)
		resp.Body.Close()
		p.mu.Lock()
		rec.end, rec.status = time.Now(), resp.StatusCode
		if err != nil {
			rec.err = err
		}
		p.mu.Unlock()
		if err != nil {
			// The client must see the answer was cut short, not a short 200.
			panic(http.ErrAbortHandler)
		}
		return
	}
	http.Error(w, "no replica", http.StatusBadGateway)
}

// since returns copies of the records of requests started at or after t0.
func (p *clusterProxy) since(t0 time.Time) []clusterRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []clusterRecord
	for _, r := range p.records {
		if !r.start.Before(t0) {
			out = append(out, *r)
		}
	}
	return out
}

// clusterResult is what a load worker saw for one request.
type clusterResult struct {
	kind       string // "token" or "mcp"
	start, end time.Time
	status     int
	err        error
	retryAfter string
	errorCode  string // the OAuth error, if any
	token      string // the access token a 200 from /token carried
}

// clusterLoad runs workers against the proxy until stop is called, and
// returns everything they saw.
type clusterLoad struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []clusterResult
}

func clusterStartLoad(base, clientID, secret, mcpToken string, workers int) *clusterLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &clusterLoad{cancel: cancel}
	client := &http.Client{Timeout: 15 * time.Second}
	tokenForm := url.Values{"grant_type": {"client_credentials"}, "scope": {"mcp"}}.Encode()
	mcpBody := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ctx.Err() == nil && i < 100000; i++ {
				var req *http.Request
				res := clusterResult{start: time.Now()}
				if (w+i)%2 == 0 {
					res.kind = "token"
					req, _ = http.NewRequest(http.MethodPost, base+"/token", strings.NewReader(tokenForm))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.SetBasicAuth(clientID, secret)
				} else {
					res.kind = "mcp"
					req, _ = http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(mcpBody))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Accept", "application/json, text/event-stream")
					req.Header.Set("MCP-Protocol-Version", "2025-11-25")
					req.Header.Set("Authorization", "Bearer "+mcpToken)
				}
				resp, err := client.Do(req)
				if err != nil {
					res.err = err
				} else {
					b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
					resp.Body.Close()
					res.err = err // a body cut short is a failure too
					res.status, res.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
					var out struct {
						Error       string `json:"error"`
						AccessToken string `json:"access_token"`
					}
					if res.kind == "token" && json.Unmarshal(b, &out) == nil {
						res.errorCode, res.token = out.Error, out.AccessToken
					}
				}
				res.end = time.Now()
				l.mu.Lock()
				l.results = append(l.results, res)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *clusterLoad) stop() []clusterResult {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.results
}

// clusterToken gets a client_credentials access token from base.
func clusterToken(t *testing.T, base, id, secret string) string {
	t.Helper()
	status, out := postForm(t, base+"/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"mcp"}}, id, secret)
	tok, _ := out["access_token"].(string)
	if status != http.StatusOK || tok == "" {
		t.Fatalf("client_credentials at %s: %d %v", base, status, out)
	}
	return tok
}

// clusterKid is the kid in a JWT's header.
func clusterKid(t *testing.T, token string) string {
	t.Helper()
	head, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// clusterStoredTokens counts how many of tokens have a row in
// oauth_access_tokens (keyed by sha256 of the JWT's signature part, as
// storage keeps them).
func clusterStoredTokens(t *testing.T, dbURL string, tokens map[string]bool) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var hashes [][]byte
	for tok := range tokens {
		sig := tok[strings.LastIndex(tok, ".")+1:]
		h := sha256.Sum256([]byte(sig))
		hashes = append(hashes, h[:])
	}
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM oauth_access_tokens WHERE sig_hash = ANY($1)`, hashes).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// clusterAdminCall calls the admin_list_grants tool at base/mcp and
// returns the status and body.
func clusterAdminCall(t *testing.T, base, token string) (int, string) {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"admin_list_grants","arguments":{}}}`
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b)
}

// clusterStatus GETs u and returns the status.
func clusterStatus(u string) int {
	resp, err := http.Get(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// clusterMCPStatus is mcpCall's status, for use in polling loops.
func clusterMCPStatus(t *testing.T, base, token string) int {
	status, _ := mcpCall(t, base, token)
	return status
}

var clusterNewKeyRE = regexp.MustCompile(`new signing key (\S+):`)

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster, redis-server and three mcpauth processes")
	}
	began := time.Now()

	// A PostgreSQL cluster of this test's own: it is stopped and started.
	pgDir := devTempDir(t)
	pgOpts := pgcluster.Options{Dir: pgDir, Port: clusterFreePort(t), Ephemeral: true, Password: "cluster-test"}
	pg, err := pgcluster.Start(t.Context(), pgOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop(context.Background()) })
	admin, err := pgx.Connect(t.Context(), pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(t.Context(), "CREATE DATABASE mcpauth"); err != nil {
		t.Fatal(err)
	}
	admin.Close(t.Context())
	dbURL := pg.URL("mcpauth")
	if err := migrations.Up(t.Context(), dbURL); err != nil {
		t.Fatal(err)
	}
	redisURL := startRedis(t)

	// The proxy exists first: its URL is the issuer.
	proxy := &clusterProxy{transport: &http.Transport{DisableKeepAlives: true, ResponseHeaderTimeout: 15 * time.Second}}
	front := httptest.NewServer(proxy)
	defer front.Close()
	issuer := front.URL

	cfgFile := filepath.Join(t.TempDir(), "mcpauth.yaml")
	if err := os.WriteFile(cfgFile, []byte("mcp:\n  rate_limit: 1000000-M\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"MCPAUTH_ISSUER":              issuer,
		"MCPAUTH_DATABASE_URL":        dbURL,
		"MCPAUTH_SECRET":              goodSecret,
		"MCPAUTH_REDIS_URL":           redisURL,
		"MCPAUTH_TRUSTED_PROXIES":     "127.0.0.1/32",
		"MCPAUTH_CONFIG":              cfgFile,
		"MCPAUTH_RATE_LIMIT_REGISTER": "8-H",
		"MCPAUTH_RATE_LIMIT_TOKEN":    "1000000-M",
		"MCPAUTH_KEY_RELOAD_INTERVAL": "2s",
		"MCPAUTH_LOG_LEVEL":           "warn",
		"MCPAUTH_LOG_FORMAT":          "json",
		"MCPAUTH_SHUTDOWN_TIMEOUT":    "10s",
	}
	var base []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MCPAUTH_") {
			base = append(base, kv)
		}
	}
	base = append(base, clusterChildEnv+"=1")
	for k, v := range env {
		base = append(base, k+"="+v)
	}
	replicas := make([]*clusterReplica, 3)
	for i := range replicas {
		addr := freeAddr(t)
		replicas[i] = &clusterReplica{addr: addr, base: "http://" + addr, env: append(slices.Clone(base), "MCPAUTH_ADDR="+addr)}
		proxy.backends = append(proxy.backends, replicas[i].base)
	}
	t.Cleanup(func() {
		for _, r := range replicas {
			r.kill()
		}
	})
	for _, r := range replicas {
		r.spawn(t)
	}
	for _, r := range replicas {
		r.waitReady(t)
	}
	t.Logf("cluster up after %s", time.Since(began).Round(time.Millisecond))

	// A confidential client, stored as an administrator would.
	clientID, secret := "cluster-client", "cluster-secret-0123456789abcdefghijkl"
	{
		db, err := storage.Open(t.Context(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		hash := sha256.Sum256([]byte(secret))
		err = db.CreateClient(t.Context(), &storage.Client{
			ID: clientID, SecretHash: hash[:], SecretHashAlg: "sha256",
			TokenEndpointAuthMethod: storage.AuthMethodClientSecretBasic,
			GrantTypes:              []string{"client_credentials"},
			Scopes:                  []string{"mcp", "admin"},
			Audiences:               []string{issuer + "/mcp"},
			Source:                  storage.SourceAdmin,
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
	}

	t.Run("token from one works at all", func(t *testing.T) {
		for i, r := range replicas {
			tok := clusterToken(t, r.base, clientID, secret)
			for j, other := range replicas {
				if status := clusterMCPStatus(t, other.base, tok); status != http.StatusOK {
					t.Errorf("token issued by replica %d: replica %d answers %d", i, j, status)
				}
			}
		}
		if status := clusterMCPStatus(t, issuer, clusterToken(t, issuer, clientID, secret)); status != http.StatusOK {
			t.Errorf("through the proxy: %d", status)
		}
	})

	t.Run("revocation reaches all within 1s", func(t *testing.T) {
		tok := clusterToken(t, replicas[0].base, clientID, secret)
		for j, r := range replicas {
			if status := clusterMCPStatus(t, r.base, tok); status != http.StatusOK {
				t.Fatalf("before revocation, replica %d answers %d", j, status)
			}
		}
		status, out := postForm(t, replicas[0].base+"/revoke", url.Values{"token": {tok}}, clientID, secret)
		if status != http.StatusOK {
			t.Fatalf("revoke: %d %v", status, out)
		}
		revoked := time.Now()
		for j, r := range replicas[1:] {
			for {
				status, challenge := mcpCall(t, r.base, tok)
				if status == http.StatusUnauthorized && strings.Contains(challenge, `error="invalid_token"`) {
					t.Logf("replica %d refuses the revoked token after %s", j+1, time.Since(revoked).Round(time.Millisecond))
					break
				}
				if time.Since(revoked) > time.Second {
					t.Fatalf("replica %d still answers %d 1s after the revocation", j+1, status)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})

	// Registrations so far, against the budget of 8 an hour.
	registered := 0
	// The user's grant, refreshed through the outage below.
	var userClientID, userRefresh string
	// A second client of the user's, not consented to yet: the outage
	// subtest opens its consent page and submits it while the database is
	// down.
	var userBrowser *browser
	var consentURL string
	t.Run("browser session and consent across replicas", func(t *testing.T) {
		// Each request of the flow goes to the next replica: the sign-in
		// form, the sign-in, the consent page, the approval and the code
		// exchange are served by different processes.
		var out, errOut strings.Builder
		if err := run(t.Context(), []string{"user", "add", "dana"}, envOf(env), &out, &errOut); err != nil {
			t.Fatalf("user add: %v\n%s", err, errOut.String())
		}
		_, password, _ := strings.Cut(out.String(), "password: ")
		password = strings.TrimSpace(strings.SplitN(password, "\n", 2)[0])
		callback := "http://127.0.0.1:" + strconv.Itoa(clusterFreePort(t)) + "/cb"
		md, _ := json.Marshal(map[string]any{
			"redirect_uris": []string{callback}, "token_endpoint_auth_method": "none",
			"grant_types": []string{"authorization_code", "refresh_token"}, "application_type": "native",
		})
		resp, err := http.Post(issuer+"/register", "application/json", bytes.NewReader(md))
		if err != nil {
			t.Fatal(err)
		}
		var client map[string]any
		json.NewDecoder(resp.Body).Decode(&client)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("register: %s %v", resp.Status, client)
		}
		registered++
		conf := &oauth2.Config{
			ClientID: client["client_id"].(string), RedirectURL: callback, Scopes: []string{"mcp", "offline_access"},
			Endpoint: oauth2.Endpoint{AuthURL: issuer + "/authorize", TokenURL: issuer + "/token", AuthStyle: oauth2.AuthStyleInParams},
		}
		b := newBrowser(t)
		verifier := oauth2.GenerateVerifier()
		back := b.authorize(conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(verifier)), "dana", password)
		ctx := context.WithValue(t.Context(), oauth2.HTTPClient, http.DefaultClient)
		tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("exchange: %v (%v)", err, back)
		}
		for j, r := range replicas {
			if status := clusterMCPStatus(t, r.base, tok.AccessToken); status != http.StatusOK {
				t.Errorf("the user's token at replica %d: %d", j, status)
			}
		}
		// The session and the remembered consent are every replica's: three
		// more authorizations, one per replica, go straight back with a code.
		for range replicas {
			verifier := oauth2.GenerateVerifier()
			p := b.get(conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(verifier)))
			if p.status != http.StatusSeeOther && p.status != http.StatusFound {
				t.Fatalf("a signed-in user who consented gets %d at %s", p.status, p.url)
			}
			code := b.location(p).Query().Get("code")
			if _, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err != nil {
				t.Errorf("exchange: %v", err)
			}
		}
		// Refresh rotation across replicas: each refresh token works once,
		// wherever it is presented.
		rt := tok.RefreshToken
		for range replicas {
			status, out := postForm(t, issuer+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {conf.ClientID}}, "", "")
			next, _ := out["refresh_token"].(string)
			if status != http.StatusOK || next == "" || next == rt {
				t.Fatalf("refresh: %d %v", status, out)
			}
			rt = next
		}
		userClientID, userRefresh = conf.ClientID, rt

		md, _ = json.Marshal(map[string]any{
			"redirect_uris": []string{callback}, "token_endpoint_auth_method": "none",
			"grant_types": []string{"authorization_code", "refresh_token"}, "application_type": "native", "client_name": "second",
		})
		status, second := clusterRegister(t, issuer, "", md)
		if status != http.StatusCreated {
			t.Fatalf("register the second client: %d %v", status, second)
		}
		registered++
		conf2 := *conf
		conf2.ClientID = second["client_id"].(string)
		userBrowser, consentURL = b, conf2.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	})

	t.Run("rate limit shared through Redis", func(t *testing.T) {
		// 8 registrations an hour per address, counted once for the cluster:
		// each replica alone sees at most 4 of the 12 attempts.
		md := `{"redirect_uris":["http://127.0.0.1:1/cb"],"token_endpoint_auth_method":"none","grant_types":["authorization_code"],"application_type":"native"}`
		var statuses []int
		for range 12 - registered {
			resp, err := http.Post(issuer+"/register", "application/json", strings.NewReader(md))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			statuses = append(statuses, resp.StatusCode)
			if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
		}
		var want []int
		for i := range 12 - registered {
			if registered+i < 8 {
				want = append(want, http.StatusCreated)
			} else {
				want = append(want, http.StatusTooManyRequests)
			}
		}
		if fmt.Sprint(statuses) != fmt.Sprint(want) {
			t.Errorf("registrations through the round-robin proxy: %v, want %v", statuses, want)
		}
	})

	t.Run("key rotation used by all", func(t *testing.T) {
		oldTok := clusterToken(t, replicas[0].base, clientID, secret)
		oldKid := clusterKid(t, oldTok)
		var stdout, stderr strings.Builder
		if err := run(t.Context(), []string{"keys", "rotate", "--now"}, envOf(env), &stdout, &stderr); err != nil {
			t.Fatalf("keys rotate --now: %v\n%s", err, stderr.String())
		}
		m := clusterNewKeyRE.FindStringSubmatch(stdout.String())
		if m == nil {
			t.Fatalf("keys rotate printed %q", stdout.String())
		}
		newKid := m[1]
		if newKid == oldKid {
			t.Fatalf("the new key has the old kid")
		}
		rotated := time.Now()
		for i, r := range replicas {
			var tok string
			for {
				tok = clusterToken(t, r.base, clientID, secret)
				if clusterKid(t, tok) == newKid {
					break
				}
				if time.Since(rotated) > 15*time.Second {
					t.Fatalf("replica %d still signs with %s 15s after the rotation", i, clusterKid(t, tok))
				}
				time.Sleep(100 * time.Millisecond)
			}
			for j, other := range replicas {
				if status := clusterMCPStatus(t, other.base, tok); status != http.StatusOK {
					t.Errorf("a new-key token from replica %d: replica %d answers %d", i, j, status)
				}
			}
		}
		t.Logf("every replica signs with the new key %s after %s", newKid, time.Since(rotated).Round(time.Millisecond))
		for j, r := range replicas {
			if status := clusterMCPStatus(t, r.base, oldTok); status != http.StatusOK {
				t.Errorf("a token of the previous key at replica %d: %d", j, status)
			}
		}
	})

	// A token every replica has seen, for the /mcp load.
	mcpToken := clusterToken(t, issuer, clientID, secret)
	for _, r := range replicas {
		clusterMCPStatus(t, r.base, mcpToken)
	}

	t.Run("SIGKILL loses only in-flight requests", func(t *testing.T) {
		victim := 2
		t0 := time.Now()
		load := clusterStartLoad(issuer, clientID, secret, mcpToken, 6)
		time.Sleep(1500 * time.Millisecond)
		killStart := time.Now()
		replicas[victim].kill()
		stamp := time.Now() // the process is gone
		time.Sleep(1500 * time.Millisecond)
		results := load.stop()
		records := proxy.since(t0)

		inflight := 0
		for _, r := range records {
			if r.backend == victim && r.start.Before(stamp) && (r.end.IsZero() || r.end.After(killStart)) && !errors.Is(r.err, syscall.ECONNREFUSED) {
				inflight++
			}
		}
		failures, afterOK, afterLive := 0, 0, 0
		for _, r := range records {
			if r.backend != victim && r.start.After(stamp) {
				// Routed to a live replica after the kill: must succeed.
				afterLive++
				if r.err != nil || r.status != http.StatusOK {
					t.Errorf("a request to live replica %d, %s after the kill: status %d, %v", r.backend, r.start.Sub(stamp).Round(time.Millisecond), r.status, r.err)
				}
			}
			failed := r.err != nil && !errors.Is(r.err, syscall.ECONNREFUSED)
			if failed {
				failures++
				if r.backend != victim || !r.start.Before(stamp) {
					t.Errorf("a request to replica %d started %s after the kill failed: %v", r.backend, r.start.Sub(stamp), r.err)
				}
			}
			if r.backend != victim && r.start.After(stamp) && r.status == http.StatusOK {
				afterOK++
			}
		}
		clientFailures := 0
		for _, r := range results {
			if r.err != nil || r.status != http.StatusOK {
				clientFailures++
				t.Logf("failed %s request, %s after the kill: status %d, %v", r.kind, r.start.Sub(stamp).Round(time.Millisecond), r.status, r.err)
			}
		}
		for _, r := range records {
			if (r.err != nil && !errors.Is(r.err, syscall.ECONNREFUSED)) || (r.err == nil && r.status != http.StatusOK) {
				t.Logf("proxy: replica %d, %s after the kill: status %d, %v", r.backend, r.start.Sub(stamp).Round(time.Millisecond), r.status, r.err)
			}
		}
		t.Logf("%d requests; %d in flight at the killed replica, %d failed at the proxy, %d failed at the clients; %d served by the others after the kill",
			len(results), inflight, failures, clientFailures, afterOK)
		if failures > inflight || clientFailures > inflight {
			t.Errorf("%d (proxy) / %d (clients) requests failed, more than the %d in flight at the killed replica", failures, clientFailures, inflight)
		}
		if afterOK < 10 || afterOK != afterLive {
			t.Errorf("the other replicas served %d of the %d requests they got after the kill (want all, at least 10)", afterOK, afterLive)
		}
		// A replacement joins the same database and serves at once.
		replicas[victim].start(t)
		if status := clusterMCPStatus(t, replicas[victim].base, mcpToken); status != http.StatusOK {
			t.Errorf("the restarted replica refuses a valid token: %d", status)
		}
	})

	t.Run("PostgreSQL down for 10s under load", func(t *testing.T) {
		before := clusterToken(t, issuer, clientID, secret)
		// An administrator's token (the admin tools need the database).
		status, out := postForm(t, issuer+"/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"mcp admin"}}, clientID, secret)
		adminToken, _ := out["access_token"].(string)
		if status != http.StatusOK || adminToken == "" {
			t.Fatalf("admin token: %d %v", status, out)
		}
		if status, body := clusterAdminCall(t, issuer, adminToken); status != http.StatusOK || !strings.Contains(body, `"grants"`) {
			t.Fatalf("admin_list_grants with the database up: %d %s", status, body)
		}
		load := clusterStartLoad(issuer, clientID, secret, mcpToken, 4)
		// A user's refresh-token chain through the outage: a rotation is
		// all or nothing, so the chain never breaks.
		refreshCtx, stopRefresh := context.WithCancel(t.Context())
		refreshDone := make(chan []string)
		var refreshErrs []string
		refreshCounts := map[int]int{}
		go func() {
			var issued []string
			client := &http.Client{Timeout: 20 * time.Second}
			for i := 0; refreshCtx.Err() == nil && userRefresh != "" && i < 10000; i++ {
				form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {userRefresh}, "client_id": {userClientID}}
				req, _ := http.NewRequestWithContext(refreshCtx, http.MethodPost, issuer+"/token", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := client.Do(req)
				if err != nil {
					if refreshCtx.Err() == nil {
						refreshErrs = append(refreshErrs, err.Error())
						time.Sleep(200 * time.Millisecond)
					}
					continue
				}
				var out map[string]any
				json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				refreshCounts[resp.StatusCode]++
				switch {
				case resp.StatusCode == http.StatusOK:
					userRefresh = out["refresh_token"].(string)
					issued = append(issued, out["access_token"].(string))
				case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" && out["error"] == "temporarily_unavailable":
				default:
					refreshErrs = append(refreshErrs, fmt.Sprintf("refresh: %d %v", resp.StatusCode, out))
				}
				time.Sleep(20 * time.Millisecond)
			}
			refreshDone <- issued
		}()
		// The consent page of the second client, opened before the outage
		// and submitted during it.
		var consentPage *page
		if userBrowser != nil {
			consentPage = userBrowser.follow(userBrowser.get(consentURL))
			if consentPage.status != http.StatusOK || !strings.Contains(consentPage.body, `name="decision"`) {
				t.Fatalf("the second client's consent page: %d\n%s", consentPage.status, consentPage.body)
			}
		}
		time.Sleep(time.Second)
		if err := pg.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		down := time.Now() // the server has exited
		// Mid-outage: every replica is alive but not ready.
		time.Sleep(2 * time.Second)
		for i, r := range replicas {
			if s := clusterStatus(r.base + "/readyz"); s != http.StatusServiceUnavailable {
				t.Errorf("replica %d /readyz with the database down: %d", i, s)
			}
			if s := clusterStatus(r.base + "/healthz"); s != http.StatusOK {
				t.Errorf("replica %d /healthz with the database down: %d", i, s)
			}
			// A tool that needs the database: a JSON-RPC error, not a tool
			// result, and nothing of the cause.
			if _, body := clusterAdminCall(t, r.base, adminToken); !strings.Contains(body, `"code":-32000`) || !strings.Contains(body, "temporarily unavailable") {
				t.Errorf("replica %d admin_list_grants with the database down: %s", i, body)
			}
			clusterOutageEndpoints(t, i, r.base, clientID, secret, before)
		}
		if consentPage != nil {
			p := userBrowser.approve(consentPage)
			if p.status != http.StatusServiceUnavailable || p.header.Get("Retry-After") == "" || p.header.Get("Location") != "" {
				t.Errorf("consent submitted with the database down: %d Retry-After %q Location %q", p.status, p.header.Get("Retry-After"), p.header.Get("Location"))
			}
			p = userBrowser.get(consentURL)
			if p.status != http.StatusServiceUnavailable || p.header.Get("Retry-After") == "" {
				t.Errorf("/authorize of a signed-in user with the database down: %d Retry-After %q", p.status, p.header.Get("Retry-After"))
			}
		}
		time.Sleep(10*time.Second - time.Since(down))
		restarting := time.Now() // the server accepts connections before Start returns
		if pg, err = pgcluster.Start(t.Context(), pgOpts); err != nil {
			t.Fatal(err)
		}
		up := time.Now()
		// Recovery: every replica ready and issuing tokens again, by itself.
		for i, r := range replicas {
			for {
				if clusterStatus(r.base+"/readyz") == http.StatusOK {
					status, _ := postForm(t, r.base+"/token", url.Values{"grant_type": {"client_credentials"}}, clientID, secret)
					if status == http.StatusOK {
						break
					}
				}
				if time.Since(up) > 20*time.Second {
					t.Fatalf("replica %d has not recovered 20s after the database returned", i)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		t.Logf("every replica recovered %s after the database returned", time.Since(up).Round(time.Millisecond))
		time.Sleep(500 * time.Millisecond)
		results := load.stop()
		stopRefresh()
		refreshed := <-refreshDone

		tokens := map[string]bool{before: true}
		for _, e := range refreshErrs {
			t.Errorf("user's refresh chain: %s", e)
		}
		for _, tok := range refreshed {
			tokens[tok] = true
		}
		if userRefresh != "" {
			status, out := postForm(t, issuer+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {userRefresh}, "client_id": {userClientID}}, "", "")
			if status != http.StatusOK {
				t.Errorf("the user's last refresh token after the outage: %d %v", status, out)
			}
		}
		t.Logf("user's refresh chain: %v", refreshCounts)
		counts := map[string]int{}
		var outageTokenOK int
		for _, r := range results {
			key := fmt.Sprintf("%s %d", r.kind, r.status)
			if r.err != nil {
				key = r.kind + " error"
				t.Errorf("%s request failed at the transport: %v", r.kind, r.err)
			}
			counts[key]++
			switch {
			case r.kind == "mcp" && r.status != http.StatusOK:
				t.Errorf("/mcp with a cached valid token answered %d during the outage window", r.status)
			case r.kind == "token" && r.status == http.StatusOK:
				if r.token == "" {
					t.Errorf("a 200 from /token without an access token")
				}
				tokens[r.token] = true
				if r.start.After(down) && r.end.Before(restarting) {
					outageTokenOK++
				}
			case r.kind == "token" && r.status == http.StatusServiceUnavailable:
				if r.retryAfter == "" || r.errorCode != "temporarily_unavailable" {
					t.Errorf("503 from /token with Retry-After %q and error %q", r.retryAfter, r.errorCode)
				}
			case r.kind == "token":
				t.Errorf("/token answered %d (%s) during the outage window", r.status, r.errorCode)
			}
		}
		t.Logf("outage window: %v", counts)
		if counts["token 503"] == 0 {
			t.Errorf("no 503 from /token while PostgreSQL was down")
		}
		if outageTokenOK > 0 {
			t.Errorf("%d tokens issued while PostgreSQL was down", outageTokenOK)
		}
		if n := clusterStoredTokens(t, dbURL, tokens); n != len(tokens) {
			t.Errorf("%d of the %d access tokens the clients received are in the database", n, len(tokens))
		} else {
			t.Logf("all %d access tokens the clients received are in the database", n)
		}
	})

	t.Run("SIGTERM drains", func(t *testing.T) {
		// As Kubernetes (endpoint removal, preStop) or Caddy (health
		// checks) do, the replica leaves the rotation before it is told to
		// stop; what it is already serving must complete.
		r := replicas[1]
		load := clusterStartLoad(issuer, clientID, secret, mcpToken, 4)
		time.Sleep(time.Second)

		// A request that is certainly in flight: its body is still coming
		// when the signal arrives.
		conn, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		body := "grant_type=client_credentials&scope=mcp"
		head := "POST /token HTTP/1.1\r\nHost: " + r.addr + "\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
			"Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(clientID+":"+secret)) + "\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		if _, err := io.WriteString(conn, head+body[:10]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)

		// Out of the rotation first, then the signal (the manifests' preStop
		// pause): a connection the proxy opened just before would otherwise
		// still sit in the listen queue that Shutdown closes.
		proxy.out[1].Store(true)
		time.Sleep(500 * time.Millisecond)
		signalled := time.Now()
		if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		select {
		case <-r.exited:
			t.Fatalf("replica 1 exited with a request in flight: %v", r.err)
		default:
		}
		if _, err := io.WriteString(conn, body[10:]); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("the in-flight request got no answer: %v", err)
		}
		var out struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || out.AccessToken == "" {
			t.Errorf("the request in flight at SIGTERM: %s", resp.Status)
		}
		select {
		case <-r.exited:
		case <-time.After(15 * time.Second):
			t.Fatalf("replica 1 did not exit within 15s of SIGTERM")
		}
		if r.err != nil {
			t.Errorf("replica 1 exit after SIGTERM: %v\n%s", r.err, r.out)
		}
		time.Sleep(300 * time.Millisecond)
		results := load.stop()
		inflight := 0
		for _, rec := range proxy.since(signalled.Add(-time.Minute)) {
			if rec.backend == 1 && rec.start.Before(signalled) && rec.end.After(signalled) {
				inflight++
				if rec.status != http.StatusOK {
					t.Errorf("a proxied request in flight at SIGTERM: %d %v", rec.status, rec.err)
				}
			}
		}
		failed := 0
		for _, res := range results {
			if res.err != nil || res.status != http.StatusOK {
				failed++
			}
		}
		if failed > 0 {
			t.Errorf("%d of %d requests failed while replica 1 drained", failed, len(results))
		}
		t.Logf("the slow request and %d proxied requests in flight at SIGTERM completed; %d requests, %d failed; exit %v",
			inflight, len(results), failed, r.err)
	})

	// No process panicked, raced or answered 500, in any phase. (The 503s
	// of the outage are logged: the scan reads what it must.)
	logged503 := 0
	for i, r := range replicas {
		for _, out := range r.logs {
			for line := range strings.Lines(out.String()) {
				var entry struct {
					Msg    string `json:"msg"`
					Status int    `json:"status"`
				}
				if strings.Contains(line, "panic") || strings.Contains(line, "DATA RACE") || strings.HasPrefix(line, "goroutine ") {
					t.Errorf("replica %d: %s", i, line)
				}
				if json.Unmarshal([]byte(line), &entry) != nil {
					continue
				}
				if strings.Contains(line, `"level":"ERROR"`) && entry.Msg != "request" {
					t.Logf("replica %d logged: %s", i, strings.TrimSpace(line))
				}
				switch entry.Status {
				case http.StatusInternalServerError:
					t.Errorf("replica %d answered 500: %s", i, line)
				case http.StatusServiceUnavailable:
					logged503++
				}
			}
		}
	}
	if logged503 == 0 {
		t.Errorf("the replicas' logs show no 503: the log scan read nothing")
	}
	t.Logf("TestCluster took %s", time.Since(began).Round(time.Millisecond))
}

// clusterFreePort is a free loopback port.
// clusterOutageEndpoints checks, at one replica while the database is down,
// that every endpoint of the authorization server that needs it answers
// temporarily_unavailable with 503 and Retry-After: never invalid_token,
// invalid_client or an inactive token for credentials that are fine.
func clusterOutageEndpoints(t *testing.T, i int, base, clientID, secret, accessToken string) {
	t.Helper()
	check := func(what string, req *http.Request) {
		t.Helper()
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			t.Errorf("replica %d %s with the database down: %v", i, what, err)
			return
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || out["error"] != "temporarily_unavailable" {
			t.Errorf("replica %d %s with the database down: %d Retry-After %q %v, want 503 temporarily_unavailable", i, what, resp.StatusCode, resp.Header.Get("Retry-After"), out)
		}
	}
	form := func(path string, v url.Values) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(clientID, secret)
		return req
	}
	check("/introspect", form("/introspect", url.Values{"token": {accessToken}}))
	check("/revoke", form("/revoke", url.Values{"token": {accessToken}}))
	req, _ := http.NewRequest(http.MethodGet, base+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+accessToken)
	check("/userinfo", req)
	// From an address of its own (the replicas trust the loopback proxy's
	// X-Forwarded-For): the test's registration budget is spent.
	req, _ = http.NewRequest(http.MethodPost, base+"/register", strings.NewReader(`{"redirect_uris":["http://127.0.0.1:1/cb"],"token_endpoint_auth_method":"none"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", fmt.Sprintf("192.0.2.%d", 10+i))
	check("/register", req)
}

// clusterRegister registers a client at base (from the address xff when not
// empty) and returns the status and the answer.
func clusterRegister(t *testing.T, base, xff string, md []byte) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/register", bytes.NewReader(md))
	req.Header.Set("Content-Type", "application/json")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func clusterFreePort(t *testing.T) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}
