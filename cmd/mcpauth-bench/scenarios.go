package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// bench holds what the scenarios share: the server, a keep-alive HTTP
// client, and the clients and user set up once.
type bench struct {
	srv  *server
	opts options
	tr   *http.Transport
	c    *http.Client

	user, password string
	// ccID and ccSecret: a confidential client registered by RFC 7591 for
	// client_credentials; it also introspects its own tokens.
	ccID, ccSecret string
	// codeID, callback: a public native client for authorization_code with
	// PKCE and refresh_token.
	codeID, callback string
	// mcpToken is a user's access token for /mcp; ccToken the confidential
	// client's, to introspect.
	mcpToken, ccToken string
	// refresh holds one refresh-token chain per refresh worker, carried on
	// from run to run.
	refreshMu sync.Mutex
	refresh   []string
	// noauth is the auth-off /mcp server, started by its first run;
	// noauthPprof its pprof address with -profile.
	noauth      *noauthServer
	noauthPprof string
}

const (
	tokenConcurrency = 32 // DESIGN §7: client_credentials at 32 concurrent clients
	mcpConcurrency   = 16 // DESIGN §7: /mcp at 16 concurrent clients
	mintConcurrency  = 8  // browsers minting codes in parallel (untimed)
)

func newBench(ctx context.Context, srv *server, o options) (*bench, error) {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
	b := &bench{srv: srv, opts: o, tr: tr, c: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	b.user, b.password = "bench", randomString()
	if err := srv.addUser(ctx, b.user, b.password); err != nil {
		return nil, err
	}
	regToken := envValue(srv.env, "MCPAUTH_REGISTRATION_TOKEN")
	cc, err := srv.register(ctx, regToken, map[string]any{
		"client_name": "bench client_credentials", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic", "scope": "mcp",
	})
	if err != nil {
		return nil, err
	}
	b.ccID, _ = cc["client_id"].(string)
	b.ccSecret, _ = cc["client_secret"].(string)
	// Nothing listens on the callback: the browser stops at the redirect.
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	b.callback = "http://" + addr + "/cb"
	pub, err := srv.register(ctx, regToken, map[string]any{
		"client_name": "bench native", "redirect_uris": []string{b.callback}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "application_type": "native",
	})
	if err != nil {
		return nil, err
	}
	b.codeID, _ = pub["client_id"].(string)

	tok, err := b.clientCredentials(ctx)
	if err != nil {
		return nil, fmt.Errorf("client_credentials: %w", err)
	}
	b.ccToken = tok.AccessToken
	var active struct {
		Active bool `json:"active"`
	}
	if err := b.post(ctx, "/introspect", url.Values{"token": {b.ccToken}}, true, &active); err != nil || !active.Active {
		return nil, fmt.Errorf("introspection of the client's own token: active=%v %v", active.Active, err)
	}
	codes, err := b.mint(ctx, tokenConcurrency+1)
	if err != nil {
		return nil, err
	}
	for i, c := range codes {
		tok, err := b.exchange(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("exchange: %w", err)
		}
		if tok.RefreshToken == "" {
			return nil, errors.New("the code exchange gave no refresh token")
		}
		if i == 0 {
			b.mcpToken = tok.AccessToken
		} else {
			b.refresh = append(b.refresh, tok.RefreshToken)
		}
	}
	if err := b.mcpCall(ctx, b.srv.base, b.mcpToken); err != nil {
		return nil, fmt.Errorf("/mcp whoami: %w", err)
	}
	return b, nil
}

// scenario is one row of the table. newWorkers prepares one run (untimed)
// and returns its workers; nil means the scenario cannot be measured.
type scenario struct {
	name        string
	concurrency int
	target      target
	note        string
	newWorkers  func(ctx context.Context) ([]op, error)
	// measure, instead of newWorkers, takes one measurement of many
	// samples (revocation latency): its result has percentiles, no req/s.
	measure func(ctx context.Context) (result, error)
	// profiled: -profile profiles this scenario's server: the mcpauth
	// serve child, or the process profileAt names.
	profiled  bool
	profileAt func() procTarget
	// group: consecutive scenarios of one group run interleaved.
	group string
	// tokenTable: repeated after -seed-rows.
	tokenTable bool
}

func (b *bench) scenarios() []scenario {
	same := func(n int, f op) func(context.Context) ([]op, error) {
		return func(context.Context) ([]op, error) {
			ws := make([]op, n)
			for i := range ws {
				ws[i] = f
			}
			return ws, nil
		}
	}
	list := []scenario{
		{
			name: "client_credentials", concurrency: tokenConcurrency, tokenTable: true,
			target: target{MinRPS: 2500, MaxP99: 25 * time.Millisecond, Text: "≥ 2,500 req/s, p99 ≤ 25 ms"},
			newWorkers: same(tokenConcurrency, func(ctx context.Context) (bool, error) {
				_, err := b.clientCredentials(ctx)
				return false, err
			}),
		},
		{
			name: "authorization_code", concurrency: tokenConcurrency, tokenTable: true,
			target:     target{MinRPS: 1500, Text: "≥ 1,500 req/s"},
			note:       "PKCE exchange only; codes minted through /authorize before each run",
			newWorkers: b.exchangeWorkers,
		},
		{
			name: "refresh_token", concurrency: tokenConcurrency, tokenTable: true,
			target:     target{MinRPS: 1500, Text: "≥ 1,500 req/s"},
			note:       "with rotation: each worker follows its own chain",
			newWorkers: b.refreshWorkers,
		},
		{
			name: "introspection", concurrency: tokenConcurrency, tokenTable: true,
			target: target{MinRPS: 8000, Text: "≥ 8,000 req/s"},
			note:   "a confidential client introspects its own client_credentials token",
			newWorkers: same(tokenConcurrency, func(ctx context.Context) (bool, error) {
				return false, b.post(ctx, "/introspect", url.Values{"token": {b.ccToken}}, true, nil)
			}),
		},
		{
			name: "mcp_whoami", concurrency: mcpConcurrency, group: "mcp",
			target: target{MinRPS: 3700, Text: "≥ 3,700 req/s (and ≥ 90 % of auth off)"},
			note:   "tools/call whoami, full auth + scope + rate limit",
			newWorkers: same(mcpConcurrency, func(ctx context.Context) (bool, error) {
				return false, b.mcpCall(ctx, b.srv.base, b.mcpToken)
			}),
		},
		{
			name: "mcp_whoami_noauth", concurrency: mcpConcurrency, group: "mcp",
			target: target{Text: "the baseline for the 90 % above"},
			note:   "the same /mcp stack without authentication (mcpauth-bench -serve-noauth)",
			newWorkers: func(ctx context.Context) ([]op, error) {
				if err := b.startNoAuth(ctx); err != nil {
					return nil, err
				}
				return same(mcpConcurrency, func(ctx context.Context) (bool, error) {
					return false, b.mcpCall(ctx, b.noauth.base, "")
				})(ctx)
			},
			profileAt: func() procTarget {
				return procTarget{pprofBase: "http://" + b.noauthPprof, pid: b.noauth.cmd.Process.Pid}
			},
		},
		{
			name: "revocation_propagation", concurrency: 1,
			target:  target{MaxP99: time.Second, Text: "≤ 1 s on every replica (p99)"},
			note:    "revoke on instance A, poll /mcp on instance B until 401",
			measure: b.revocationLatency,
		},
		{
			name: "auth_check_cached", concurrency: 2,
			target:  target{MaxP99: 20 * time.Microsecond, Text: "≤ 20 µs (Go benchmark)"},
			note:    "go test -bench BenchmarkVerifyAccessTokenCached ./authz (median of 3, ns/op)",
			measure: b.cachedAuthCheck,
		},
	}
	for i := range list {
		list[i].profiled = list[i].measure == nil
	}
	return list
}

// startNoAuth starts the auth-off /mcp server once.
func (b *bench) startNoAuth(ctx context.Context) error {
	if b.noauth != nil {
		return nil
	}
	if b.opts.profileDir != "" {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		b.noauthPprof = addr
	}
	s, err := startNoAuth(ctx, b.noauthPprof)
	if err != nil {
		return err
	}
	b.noauth = s
	// The same answer as serve's whoami, or the comparison is not fair.
	return b.mcpCall(ctx, s.base, "")
}

// close stops what the scenarios started.
func (b *bench) close() {
	if b.noauth != nil {
		b.noauth.stop()
	}
}

// exchangeWorkers mints -codes codes (untimed) and returns workers that
// exchange them until none is left.
func (b *bench) exchangeWorkers(ctx context.Context) ([]op, error) {
	codes, err := b.mint(ctx, b.opts.codes)
	if err != nil {
		return nil, err
	}
	ch := make(chan code, len(codes))
	for _, c := range codes {
		ch <- c
	}
	close(ch)
	ws := make([]op, tokenConcurrency)
	for i := range ws {
		ws[i] = func(ctx context.Context) (bool, error) {
			c, ok := <-ch
			if !ok {
				return true, nil
			}
			_, err := b.exchange(ctx, c)
			return false, err
		}
	}
	return ws, nil
}

// refreshWorkers returns one worker per refresh-token chain; a worker whose
// chain breaks stops.
func (b *bench) refreshWorkers(context.Context) ([]op, error) {
	ws := make([]op, len(b.refresh))
	for i := range ws {
		ws[i] = func(ctx context.Context) (bool, error) {
			b.refreshMu.Lock()
			rt := b.refresh[i]
			b.refreshMu.Unlock()
			var tok tokenResponse
			err := b.post(ctx, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {b.codeID}}, false, &tok)
			if err == nil && tok.RefreshToken == "" {
				err = errors.New("the refresh gave no new refresh token")
			}
			if err != nil {
				return true, err // the chain is broken: this worker is done
			}
			b.refreshMu.Lock()
			b.refresh[i] = tok.RefreshToken
			b.refreshMu.Unlock()
			return false, nil
		}
	}
	return ws, nil
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

func (b *bench) clientCredentials(ctx context.Context) (tokenResponse, error) {
	var tok tokenResponse
	err := b.post(ctx, "/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"mcp"}}, true, &tok)
	return tok, err
}

type code struct{ code, verifier string }

func (b *bench) exchange(ctx context.Context, c code) (tokenResponse, error) {
	var tok tokenResponse
	err := b.post(ctx, "/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {c.code}, "code_verifier": {c.verifier},
		"redirect_uri": {b.callback}, "client_id": {b.codeID},
	}, false, &tok)
	return tok, err
}

// mint gets n authorization codes through the real /authorize flow, with
// mintConcurrency browsers that each sign in once and approve as asked.
func (b *bench) mint(ctx context.Context, n int) ([]code, error) {
	var (
		mu    sync.Mutex
		codes []code
		first error
		wg    sync.WaitGroup
	)
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range min(mintConcurrency, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := newBrowser(b.tr, b.user, b.password)
			for range next {
				if ctx.Err() != nil {
					return
				}
				c, err := b.mintOne(br)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					codes = append(codes, c)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && len(codes) < n {
		first = ctx.Err()
	}
	return codes, first
}

func (b *bench) mintOne(br *browser) (code, error) {
	verifier := oauth2.GenerateVerifier()
	q := url.Values{
		"response_type": {"code"}, "client_id": {b.codeID}, "redirect_uri": {b.callback},
		"scope": {"mcp"}, "state": {randomString()},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
	}
	back, err := br.authorize(b.srv.base + "/authorize?" + q.Encode())
	if err != nil {
		return code{}, err
	}
	c := back.Query().Get("code")
	if c == "" {
		return code{}, fmt.Errorf("no code in %s", back.Redacted())
	}
	return code{code: c, verifier: verifier}, nil
}

// post sends form to path; with basic, as the confidential client. A
// non-200 answer is an error; out, when set, receives the JSON body.
func (b *bench) post(ctx context.Context, path string, form url.Values, basic bool, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.srv.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(b.ccID), url.QueryEscape(b.ccSecret))
	}
	return b.do(req, out)
}

// mcpCall posts a stateless tools/call of whoami to base/mcp with token
// (none: without Authorization). It is an error unless the answer is 200
// with whoami's structured result.
func (b *bench) mcpCall(ctx context.Context, base, token string) error {
	_, err := b.mcpStatus(ctx, base, token, true)
	return err
}

// mcpStatus is mcpCall that also returns the status code; with strict, any
// answer but 200 with whoami's result is an error.
func (b *bench) mcpStatus(ctx context.Context, base, token string, strict bool) (int, error) {
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/mcp", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if strict && (resp.StatusCode != http.StatusOK || !bytes.Contains(raw, []byte(`"structuredContent":{"client_id":`)) || bytes.Contains(raw, []byte(`"isError":true`))) {
		return resp.StatusCode, fmt.Errorf("POST /mcp: %s: %.300s", resp.Status, raw)
	}
	return resp.StatusCode, nil
}

func (b *bench) do(req *http.Request, out any) error {
	resp, err := b.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %.200s", req.Method, req.URL.Path, resp.Status, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func envValue(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

func randomString() string { return rand.Text() }

// machine is what the JSON says about where it was measured.
type machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model,omitempty"`
	MemTotal string `json:"mem_total,omitempty"`
	GoOS     string `json:"goos"`
	GoArch   string `json:"goarch"`
	Go       string `json:"go"`
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), GoOS: runtime.GOOS, GoArch: runtime.GOARCH, Go: runtime.Version()}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	m.MemTotal = procField("/proc/meminfo", "MemTotal")
	return m
}

// procField returns the value of the first "key: value" line of a /proc
// file with that key.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
