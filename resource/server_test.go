package resource

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/ulule/limiter/v3"

	"github.com/mcpauth/mcpauth/authz/oauth"
)

// rsVerifier is a hand-written fake of the authorization server's verifier:
// a map of token → what it grants.
type rsVerifier struct {
	aud    string // the audience of the tokens add makes
	mu     sync.Mutex
	tokens map[string]*oauth.TokenInfo
	calls  int
}

func (v *rsVerifier) verify(_ context.Context, token string) (*oauth.TokenInfo, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls++
	if token == "internal-failure" {
		return nil, errors.New("database unreachable at 10.0.0.7")
	}
	ti, ok := v.tokens[token]
	if !ok {
		return nil, fmt.Errorf("verify: %w: unknown or expired", oauth.ErrInvalidToken)
	}
	return ti, nil
}

func (v *rsVerifier) add(token, sub, client string, scopes ...string) *oauth.TokenInfo {
	v.mu.Lock()
	defer v.mu.Unlock()
	ti := &oauth.TokenInfo{
		Subject: sub, ClientID: client, Scopes: scopes, Audience: []string{"https://other.example/mcp", v.aud},
		GrantID: "grant-" + token, TokenID: "jti-" + token,
		IssuedAt: time.Now().Add(-time.Minute), Expiry: time.Now().Add(10 * time.Minute).Truncate(time.Second),
	}
	v.tokens[token] = ti
	return ti
}

// rsEnv is a resource server behind a real HTTP server whose URL is the
// issuer, with tools: whoami (built in, mcp), admin_stats (admin), echo
// (mcp; reports the token the handler sees), limited (mcp, 2 calls a
// minute by policy), debug_dump (hidden by policy), renamed_scope (declares
// mcp, policy says files).
type rsEnv struct {
	srv    *Server
	ts     *httptest.Server
	url    string // the MCP endpoint
	verify *rsVerifier
}

func rsNewEnv(t testing.TB, mod func(*Config)) *rsEnv {
	t.Helper()
	var h http.Handler = http.NotFoundHandler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(ts.Close)
	v := &rsVerifier{tokens: map[string]*oauth.TokenInfo{}, aud: ts.URL + "/mcp/"}
	cfg := Config{
		Resource:       ts.URL + "/mcp",
		Issuer:         ts.URL,
		Verify:         v.verify,
		Scopes:         []string{"mcp"},
		AllowedOrigins: []string{"https://app.example.com"},
		Policy: Policy{Rules: []ToolRule{
			{Match: "limited", RateLimit: &limiter.Rate{Period: time.Minute, Limit: 2}},
			{Match: "debug_*", Hide: true},
			{Match: "renamed_*", Scopes: []string{"files"}},
		}},
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	type echoOut struct {
		Subject  string   `json:"subject"`
		ClientID string   `json:"client_id"`
		SDKUser  string   `json:"sdk_user"`
		SDK      []string `json:"sdk_scopes"`
	}
	echo := func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, echoOut, error) {
		var out echoOut
		if ti := TokenInfo(ctx); ti != nil {
			out.Subject, out.ClientID = ti.Subject, ti.ClientID
		}
		if sti := req.Extra.TokenInfo; sti != nil {
			out.SDKUser, out.SDK = sti.UserID, sti.Scopes
		}
		return nil, out, nil
	}
	AddTool(srv, &mcp.Tool{Name: "echo", Description: "echo the token"}, echo)
	ok := func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
	}
	schema := map[string]any{"type": "object"}
	srv.AddTool(&mcp.Tool{Name: "admin_stats", Description: "admin only", InputSchema: schema}, ok, "admin")
	srv.AddTool(&mcp.Tool{Name: "limited", Description: "rate limited", InputSchema: schema}, ok)
	srv.AddTool(&mcp.Tool{Name: "debug_dump", Description: "hidden", InputSchema: schema}, ok)
	srv.AddTool(&mcp.Tool{Name: "renamed_scope", Description: "policy scope", InputSchema: schema}, ok, "mcp")
	h = srv.Routes()
	return &rsEnv{srv: srv, ts: ts, url: ts.URL + "/mcp", verify: v}
}

// rsBearer adds a bearer token to every request of a go-sdk client.
type rsBearer struct {
	token string
	base  http.RoundTripper
}

func (b rsBearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// rsConnect connects a go-sdk client to the endpoint with token.
func (e *rsEnv) rsConnect(t testing.TB, token string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "rs-test", Version: "1"}, nil)
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{
		Endpoint:             e.url,
		HTTPClient:           &http.Client{Transport: rsBearer{token, http.DefaultTransport}},
		DisableStandaloneSSE: true,
		MaxRetries:           -1,
	}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// rsPost sends one raw JSON-RPC POST to the endpoint.
func (e *rsEnv) rsPost(t testing.TB, token, body string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// rsMessages decodes the JSON-RPC messages of a response: a JSON body, or
// the data of each server-sent event.
func rsMessages(t testing.TB, resp *http.Response) []map[string]any {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && data != "" {
				var m map[string]any
				if err := json.Unmarshal([]byte(data), &m); err != nil {
					t.Fatalf("event %q: %v", data, err)
				}
				msgs = append(msgs, m)
			}
		}
		return msgs
	}
	if len(bytes.TrimSpace(body)) > 0 && body[0] == '[' {
		if err := json.Unmarshal(body, &msgs); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		return msgs
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return []map[string]any{m}
}

func rsCall(id int, tool string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{}}}`, id, tool)
}

func rsToolNames(tools []*mcp.Tool) []string {
	var names []string
	for _, t := range tools {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	return names
}

func TestClientListAndWhoami(t *testing.T) {
	e := rsNewEnv(t, nil)
	ti := e.verify.add("tok-alice", "user-alice", "client-1", "mcp", "openid")
	cs := e.rsConnect(t, "tok-alice")

	lt, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Only what the token may call: not admin_stats (admin), not
	// renamed_scope (files by policy), never debug_dump (hidden).
	if diff := cmp.Diff([]string{"echo", "limited", "whoami"}, rsToolNames(lt.Tools)); diff != "" {
		t.Errorf("tools/list (-want +got):\n%s", diff)
	}

	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		t.Fatal(err)
	}
	if res.IsError {
		t.Fatalf("whoami is an error: %+v", res.Content)
	}
	var got WhoamiOutput
	raw, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Subject != "user-alice" || got.ClientID != "client-1" || !slices.Equal(got.Scopes, []string{"mcp", "openid"}) ||
		!got.ExpiresAt.Equal(ti.Expiry) || got.ExpiresIn <= 0 || got.ExpiresIn > 600 {
		t.Errorf("whoami = %+v, want alice's token expiring at %v", got, ti.Expiry)
	}

	// The handler sees the token both ways: TokenInfo(ctx) and the go-sdk's
	// req.Extra.TokenInfo.
	res, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ = json.Marshal(res.StructuredContent)
	want := `{"client_id":"client-1","sdk_scopes":["mcp","openid"],"sdk_user":"user-alice","subject":"user-alice"}`
	if string(raw) != want {
		t.Errorf("echo = %s, want %s", raw, want)
	}
}

func TestListAllTools(t *testing.T) {
	e := rsNewEnv(t, func(c *Config) { c.ListAllTools = true })
	e.verify.add("tok", "u", "c", "mcp")
	lt, err := e.rsConnect(t, "tok").ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"admin_stats", "echo", "limited", "renamed_scope", "whoami"}, rsToolNames(lt.Tools)); diff != "" {
		t.Errorf("tools/list (-want +got):\n%s", diff)
	}
	want := map[string][]string{
		"admin_stats": {"admin"}, "echo": {"mcp"}, "limited": {"mcp"}, "renamed_scope": {"files"}, "whoami": {"mcp"},
	}
	if diff := cmp.Diff(want, e.srv.ToolScopes()); diff != "" {
		t.Errorf("ToolScopes (-want +got):\n%s", diff)
	}
}

func TestUnauthorized(t *testing.T) {
	e := rsNewEnv(t, nil)
	e.verify.add("good", "u", "c", "mcp")
	// A verifier that let a token for another resource through: refused
	// here all the same.
	e.verify.add("elsewhere", "u", "c", "mcp").Audience = []string{"https://other.example/mcp"}
	md := e.ts.URL + "/.well-known/oauth-protected-resource/mcp"
	plain := `Bearer resource_metadata="` + md + `", scope="mcp"`
	invalid := func(desc string) string {
		return plain + `, error="invalid_token", error_description="` + desc + `"`
	}
	tests := []struct {
		name      string
		header    []string // Authorization values
		query     string
		status    int
		challenge string
		body      string
	}{
		{"no token", nil, "", 401, plain, `{"error":"invalid_token","error_description":"missing bearer token"}`},
		{"query token is never read", nil, "?access_token=good", 401, plain, ""},
		{"other scheme", []string{"Basic dTpw"}, "", 401, plain, ""},
		{"unknown token", []string{"Bearer nope"}, "", 401, invalid("invalid token: unknown or expired"),
			`{"error":"invalid_token","error_description":"invalid token: unknown or expired"}`},
		{"lower-case scheme, unknown token", []string{"bearer nope"}, "", 401, invalid("invalid token: unknown or expired"), ""},
		{"malformed token", []string{"Bearer a b"}, "", 401, invalid("invalid token: malformed"), ""},
		{"empty token", []string{"Bearer "}, "", 401, invalid("invalid token: malformed"), ""},
		{"too long", []string{"Bearer " + strings.Repeat("a", maxAuthorization)}, "", 401, invalid("invalid token: too long"), ""},
		{"token for another audience", []string{"Bearer elsewhere"}, "", 401, invalid("invalid token: wrong audience"), ""},
		{"two headers", []string{"Bearer good", "Bearer good"}, "", 400,
			`Bearer resource_metadata="` + md + `", error="invalid_request", error_description="more than one Authorization header"`, ""},
		{"verifier failure is a 500 and tells nothing", []string{"Bearer internal-failure"}, "", 500, "",
			`{"error":"server_error","error_description":"internal error"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url+tt.query, strings.NewReader(rsCall(1, "whoami")))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for _, v := range tt.header {
				req.Header.Add("Authorization", v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate:\n got %s\nwant %s", got, tt.challenge)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tt.body != "" && strings.TrimSpace(string(body)) != tt.body {
				t.Errorf("body %s, want %s", body, tt.body)
			}
		})
	}
}

func TestPreflightAndOrigin(t *testing.T) {
	e := rsNewEnv(t, nil)
	e.verify.add("tok", "u", "c", "mcp")

	do := func(method, origin, token string) *http.Response {
		req, _ := http.NewRequestWithContext(t.Context(), method, e.url, strings.NewReader(rsCall(1, "whoami")))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if method == http.MethodOptions {
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	// A preflight carries no credentials: it is answered without them.
	resp := do(http.MethodOptions, "https://app.example.com", "")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight: status %d", resp.StatusCode)
	}
	for h, want := range map[string]string{
		"Access-Control-Allow-Origin":   "https://app.example.com",
		"Access-Control-Allow-Headers":  "Authorization, Content-Type, Accept, Mcp-Protocol-Version, Mcp-Session-Id, Last-Event-ID",
		"Access-Control-Allow-Methods":  "GET, POST, DELETE, OPTIONS",
		"Access-Control-Expose-Headers": "WWW-Authenticate, Retry-After, RateLimit, RateLimit-Policy, Mcp-Session-Id",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("preflight %s = %q, want %q", h, got, want)
		}
	}

	// Forbidden origins are refused before anything else, preflight or not
	// (DNS rebinding: the page's origin is the attacker's, whatever Host).
	for _, origin := range []string{"https://evil.example.com", "null", "http://app.example.com", e.ts.URL + ".evil.com"} {
		for _, method := range []string{http.MethodOptions, http.MethodPost} {
			resp := do(method, origin, "tok")
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s from %s: status %d, want 403", method, origin, resp.StatusCode)
				continue
			}
			if resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("%s from %s: CORS allowed", method, origin)
			}
			msgs := rsMessages(t, resp)
			if msgs[0]["error"].(map[string]any)["code"] != float64(-32000) || msgs[0]["id"] != nil {
				t.Errorf("%s from %s: body %v", method, origin, msgs[0])
			}
		}
	}

	// Allowed: the issuer's own origin (any case, default port elided) and
	// a configured one; the 401 is readable cross-origin.
	for _, origin := range []string{e.ts.URL, strings.ToUpper(e.ts.URL[:4]) + e.ts.URL[4:], "https://app.example.com", "https://APP.example.com:443"} {
		resp := do(http.MethodPost, origin, "tok")
		if resp.StatusCode != http.StatusOK {
			t.Errorf("POST from %s: status %d, want 200", origin, resp.StatusCode)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("POST from %s: Access-Control-Allow-Origin %q", origin, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	resp = do(http.MethodPost, "https://app.example.com", "")
	if resp.StatusCode != 401 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Errorf("cross-origin 401: status %d, headers %v", resp.StatusCode, resp.Header)
	}
}

func TestInsufficientScope(t *testing.T) {
	e := rsNewEnv(t, nil)
	e.verify.add("tok", "u", "c", "mcp", "openid", "offline_access")
	md := e.ts.URL + "/.well-known/oauth-protected-resource/mcp"

	tests := []struct {
		name, body, scope, desc string
		hdr                     []string
	}{
		{"admin tool", rsCall(1, "admin_stats"), "mcp admin", "tool admin_stats needs scope admin", nil},
		{"policy scope replaces the tool's", rsCall(1, "renamed_scope"), "mcp files", "tool renamed_scope needs scope files", nil},
		{"escaped method name", `{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"admin\u005fstats"}}`,
			"mcp admin", "tool admin_stats needs scope admin", nil},
		{"batch hiding a forbidden call", "[" + rsCall(1, "whoami") + "," + rsCall(2, "admin_stats") + "]",
			"mcp admin", "tool admin_stats needs scope admin", []string{"Mcp-Protocol-Version", "2025-03-26"}},
		{"batch without a protocol version (2025-03-26)", "[" + rsCall(1, "echo") + "," + rsCall(2, "renamed_scope") + "]",
			"mcp files", "tool renamed_scope needs scope files", nil},
		{"batch of two forbidden calls names both scopes", "[" + rsCall(1, "admin_stats") + "," + rsCall(2, "renamed_scope") + "]",
			"mcp admin files", "tool admin_stats needs scope admin", nil},
		{"trailing data after the message", rsCall(1, "admin_stats") + `{"x":1}`, "mcp admin", "tool admin_stats needs scope admin", nil},
		{"duplicate name key: the last one counts", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","name":"admin_stats"}}`,
			"mcp admin", "tool admin_stats needs scope admin", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.rsPost(t, "tok", tt.body, tt.hdr...)
			if resp.StatusCode != http.StatusForbidden {
				body, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want 403; body %s", resp.StatusCode, body)
			}
			want := `Bearer error="insufficient_scope", scope="` + tt.scope + `", resource_metadata="` + md + `", error_description="` + tt.desc + `"`
			if got := resp.Header.Get("WWW-Authenticate"); got != want {
				t.Errorf("WWW-Authenticate:\n got %s\nwant %s", got, want)
			}
			msgs := rsMessages(t, resp)
			if msgs[0]["error"] != "insufficient_scope" || msgs[0]["error_description"] != tt.desc {
				t.Errorf("body %v", msgs[0])
			}
		})
	}

	// The same batch with every call allowed goes through.
	e.verify.add("wide", "u", "c", "mcp", "admin")
	resp := e.rsPost(t, "wide", "["+rsCall(1, "whoami")+","+rsCall(2, "admin_stats")+"]", "Mcp-Protocol-Version", "2025-03-26")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("allowed batch: status %d", resp.StatusCode)
	}
	if msgs := rsMessages(t, resp); len(msgs) != 2 || msgs[0]["error"] != nil || msgs[1]["error"] != nil {
		t.Errorf("allowed batch: %v", msgs)
	}
}

func TestUnknownAndHiddenTools(t *testing.T) {
	e := rsNewEnv(t, nil)
	e.verify.add("tok", "u", "c", "mcp")
	// A tool added to the go-sdk server directly has no policy: with
	// authentication on, it does not exist either.
	e.srv.MCP().AddTool(&mcp.Tool{Name: "backdoor", InputSchema: map[string]any{"type": "object"}},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			t.Error("backdoor called")
			return &mcp.CallToolResult{}, nil
		})
	cs := e.rsConnect(t, "tok")
	for _, name := range []string{"no_such_tool", "debug_dump", "backdoor"} {
		// Raw: 200 with a JSON-RPC invalid params error, never 403.
		resp := e.rsPost(t, "tok", rsCall(7, name))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d, want 200", name, resp.StatusCode)
			continue
		}
		msgs := rsMessages(t, resp)
		rpcErr, _ := msgs[0]["error"].(map[string]any)
		if rpcErr == nil || rpcErr["code"] != float64(jsonrpc.CodeInvalidParams) || msgs[0]["id"] != float64(7) {
			t.Errorf("%s: response %v, want error -32602 for id 7", name, msgs[0])
		}
		// go-sdk client: the same error.
		_, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name})
		var we *jsonrpc.Error
		if !errors.As(err, &we) || we.Code != jsonrpc.CodeInvalidParams {
			t.Errorf("%s: client error %v, want -32602", name, err)
		}
	}
	lt, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if names := rsToolNames(lt.Tools); slices.Contains(names, "debug_dump") || slices.Contains(names, "backdoor") {
		t.Errorf("tools/list shows %v", names)
	}
	if _, ok := e.srv.ToolScopes()["debug_dump"]; ok {
		t.Error("ToolScopes lists a hidden tool")
	}
}

func TestRateLimits(t *testing.T) {
	e := rsNewEnv(t, func(c *Config) { c.RateLimit = limiter.Rate{Period: time.Minute, Limit: 5} })
	e.verify.add("tok", "u", "c", "mcp")
	e.verify.add("tok2", "u", "c2", "mcp")

	// Per tool: limited allows 2 calls a minute per (subject, client).
	for i := 1; i <= 2; i++ {
		if resp := e.rsPost(t, "tok", rsCall(i, "limited")); resp.StatusCode != 200 {
			t.Fatalf("limited call %d: status %d", i, resp.StatusCode)
		}
	}
	resp := e.rsPost(t, "tok", rsCall(3, "limited"))
	rsCheck429(t, resp, float64(3))
	if got := resp.Header.Get("RateLimit-Policy"); got != "2;w=60" {
		t.Errorf("RateLimit-Policy %q", got)
	}
	// Another client of the same user has its own budget.
	if resp := e.rsPost(t, "tok2", rsCall(1, "limited")); resp.StatusCode != 200 {
		t.Errorf("other client: status %d", resp.StatusCode)
	}

	// Per principal: 5 requests a minute; 3 spent above.
	for i := 4; i <= 5; i++ {
		if resp := e.rsPost(t, "tok", rsCall(i, "whoami")); resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	resp = e.rsPost(t, "tok", rsCall(6, "whoami"))
	rsCheck429(t, resp, float64(6))
	if got := resp.Header.Get("RateLimit-Policy"); got != "5;w=60" {
		t.Errorf("RateLimit-Policy %q", got)
	}
	// A batch over the limit has no single id: null.
	rsCheck429(t, e.rsPost(t, "tok", "["+rsCall(7, "whoami")+"]"), nil)
}

func rsCheck429(t *testing.T, resp *http.Response, id any) {
	t.Helper()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", resp.StatusCode)
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	if !strings.Contains(resp.Header.Get("RateLimit"), "remaining=0") {
		t.Errorf("RateLimit %q", resp.Header.Get("RateLimit"))
	}
	msgs := rsMessages(t, resp)
	rpcErr, _ := msgs[0]["error"].(map[string]any)
	if msgs[0]["jsonrpc"] != "2.0" || msgs[0]["id"] != id || rpcErr == nil || rpcErr["code"] != float64(-32000) {
		t.Errorf("429 body %v, want a JSON-RPC error -32000 for id %v", msgs[0], id)
	}
	if _, ok := msgs[0]["id"]; !ok {
		t.Error("429 body has no id member")
	}
}

func TestOversizedBody(t *testing.T) {
	e := rsNewEnv(t, nil)
	e.verify.add("tok", "u", "c", "mcp")
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{"x":"` + strings.Repeat("a", MaxBodyBytes) + `"}}}`
	resp := e.rsPost(t, "tok", big)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	if msgs := rsMessages(t, resp); msgs[0]["error"].(map[string]any)["code"] != float64(-32600) {
		t.Errorf("body %v", msgs[0])
	}
	// Without Content-Length (chunked), the cap holds while reading.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url, io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked: status %d, want 413", resp.StatusCode)
	}
}

func TestStatelessMethods(t *testing.T) {
	e := rsNewEnv(t, nil)
	e.verify.add("tok", "u", "c", "mcp")
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		req, _ := http.NewRequestWithContext(t.Context(), method, e.url, nil)
		req.Header.Set("Accept", "text/event-stream")
		// Unauthenticated: 401 first.
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without token: %d, want 401", method, resp.StatusCode)
		}
		req.Header.Set("Authorization", "Bearer tok")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405 (stateless)", method, resp.StatusCode)
		}
	}
}

func TestSameHostReverseProxy(t *testing.T) {
	// A proxy on the same host connects from loopback and keeps the public
	// Host: the go-sdk's localhost check would refuse it with 403.
	e := rsNewEnv(t, nil)
	e.verify.add("tok", "u", "c", "mcp")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url, strings.NewReader(rsCall(1, "whoami")))
	req.Host = "auth.example.com"
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
}

func TestDisableAuth(t *testing.T) {
	e := rsNewEnv(t, func(c *Config) { c.DisableAuth = true; c.Verify = nil })
	resp := e.rsPost(t, "", rsCall(1, "admin_stats"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if msgs := rsMessages(t, resp); msgs[0]["error"] != nil {
		t.Errorf("admin_stats without auth: %v", msgs[0])
	}
	// whoami says there is no caller, as a tool error.
	msgs := rsMessages(t, e.rsPost(t, "", rsCall(2, "whoami")))
	if res, _ := msgs[0]["result"].(map[string]any); res == nil || res["isError"] != true {
		t.Errorf("whoami without auth: %v", msgs[0])
	}
	// Origins are still checked.
	if resp := e.rsPost(t, "", rsCall(3, "whoami"), "Origin", "https://evil.example.com"); resp.StatusCode != 403 {
		t.Errorf("evil origin: %d", resp.StatusCode)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	v := func(context.Context, string) (*oauth.TokenInfo, error) { return nil, oauth.ErrInvalidToken }
	good := Config{Resource: "https://a.example/mcp", Issuer: "https://a.example", Verify: v, Scopes: []string{"mcp"}}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no resource", func(c *Config) { c.Resource = "" }, "resource: required"},
		{"relative resource", func(c *Config) { c.Resource = "/mcp" }, "not an absolute URL"},
		{"resource with query", func(c *Config) { c.Resource = "https://a.example/mcp?x=1" }, "no query"},
		{"resource without path", func(c *Config) { c.Resource = "https://a.example" }, "plain path"},
		{"no issuer", func(c *Config) { c.Issuer = "" }, "issuer"},
		{"no verifier", func(c *Config) { c.Verify = nil }, "verify: required"},
		{"offline_access", func(c *Config) { c.Scopes = []string{"mcp", "offline_access"} }, "minimal scope set"},
		{"bad scope", func(c *Config) { c.Scopes = []string{"a b"} }, "not a scope token"},
		{"bad pattern", func(c *Config) { c.Policy.Rules = []ToolRule{{Match: "[x"}} }, "syntax error in pattern"},
		{"bad rule scope", func(c *Config) { c.Policy.Rules = []ToolRule{{Match: "x", Scopes: []string{`a"b`}}} }, "not a scope token"},
		{"bad rule rate", func(c *Config) { c.Policy.Rules = []ToolRule{{Match: "x", RateLimit: &limiter.Rate{}}} }, "positive"},
		{"bad origin", func(c *Config) { c.AllowedOrigins = []string{"https://a.example/path"} }, "not an origin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			cfg.Policy = Policy{}
			tt.mod(&cfg)
			_, err := New(cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := New(good, nil); err != nil {
		t.Errorf("good config: %v", err)
	}
}

// TestEndpointScopeRequired: a token without the endpoint's own scope (a
// sign-in-only token) is refused for every method, with a challenge for it.
func TestEndpointScopeRequired(t *testing.T) {
	e := rsNewEnv(t, nil)
	e.verify.add("signin-only", "u1", "c1", "openid", "profile")
	r := e.rsPost(t, "signin-only", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	r.Body.Close()
	if r.StatusCode != http.StatusForbidden || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="insufficient_scope", scope="mcp"`) {
		t.Fatalf("tools/list with a sign-in-only token: %s %q", r.Status, r.Header.Get("WWW-Authenticate"))
	}
}

// TestVerifierUnavailable: a verifier that cannot decide now (its signing
// keys cannot be loaded while the database is down) is a 503 with
// Retry-After, not a 401 that would make the client drop its token.
func TestVerifierUnavailable(t *testing.T) {
	e := rsNewEnv(t, func(c *Config) {
		c.Verify = func(context.Context, string) (*oauth.TokenInfo, error) {
			return nil, &oauth.Error{Code: oauth.TemporarilyUnavailable, Description: "retry later", Status: http.StatusServiceUnavailable}
		}
	})
	resp := e.rsPost(t, "some-token", rsCall(1, "whoami"))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" || resp.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("got %d Retry-After %q WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("WWW-Authenticate"))
	}
}
