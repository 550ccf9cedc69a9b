package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpauth/mcpauth/resource"
)

// upstreamEnv is a go-sdk MCP server over Streamable HTTP (the upstream),
// a resource server (authentication off: the policy and the proxy are
// what is tested here; cmd/mcpauth's tests run them with real tokens) with
// the upstream mounted under "up_", and a go-sdk client of the resource
// server.
type upstreamEnv struct {
	upstream  *mcp.Server
	cancelled chan struct{} // closed when the sleep tool's context ends
	rs        *resource.Server
	mgr       *Manager
	client    *mcp.ClientSession
	url       string // the resource server's /mcp
}

func newUpstreamEnv(t *testing.T, mod func(*Config)) *upstreamEnv {
	t.Helper()
	e := &upstreamEnv{upstream: mcp.NewServer(&mcp.Implementation{Name: "test-upstream", Version: "1"}, nil), cancelled: make(chan struct{})}
	mcp.AddTool(e.upstream, &mcp.Tool{Name: "sleep", Description: "sleeps until cancelled"},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
			<-ctx.Done()
			close(e.cancelled)
			return nil, nil, ctx.Err()
		})
	mcp.AddTool(e.upstream, &mcp.Tool{Name: "fail", Description: "a JSON-RPC error"},
		func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
			return nil, nil, &jsonrpc.Error{Code: -32099, Message: "upstream says no"}
		})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return e.upstream }, nil))
	t.Cleanup(up.Close)

	var h http.Handler = http.NotFoundHandler()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(front.Close)
	rs, err := resource.New(resource.Config{
		Resource:    front.URL + "/mcp",
		Issuer:      front.URL,
		DisableAuth: true,
		Policy:      resource.Policy{Rules: []resource.ToolRule{{Match: "up_hidden*", Hide: true}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h = rs.Routes()
	e.url = front.URL + "/mcp"
	cfg := Config{Name: "up", Prefix: "up_", URL: up.URL, Start: StartBoot, Timeout: 500 * time.Millisecond, HealthInterval: 100 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	e.mgr, err = New(rs, []Config{cfg}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.mgr.Close)
	e.mgr.Start(t.Context())
	e.rs = rs
	e.client, err = mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil).Connect(t.Context(), &mcp.StreamableClientTransport{
		Endpoint: front.URL + "/mcp", DisableStandaloneSSE: true, MaxRetries: -1,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.client.Close() })
	return e
}

func (e *upstreamEnv) has(name string) bool {
	_, ok := e.rs.ToolScopes()[name]
	return ok
}

func poll(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestListChangesPickedUp: tools added and removed upstream appear and
// disappear on the resource server (the periodic tools/list of an HTTP
// upstream), under the policy.
func TestListChangesPickedUp(t *testing.T) {
	e := newUpstreamEnv(t, nil)
	if !e.has("up_sleep") || !e.has("up_fail") {
		t.Fatalf("tools = %v", e.rs.ToolScopes())
	}
	ok := func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "later"}}}, nil
	}
	e.upstream.AddTool(&mcp.Tool{Name: "later", InputSchema: map[string]any{"type": "object"}}, ok)
	e.upstream.AddTool(&mcp.Tool{Name: "hidden_one", InputSchema: map[string]any{"type": "object"}}, ok)
	poll(t, "up_later to be mounted", func() bool { return e.has("up_later") })
	res, err := e.client.CallTool(t.Context(), &mcp.CallToolParams{Name: "up_later"})
	if err != nil || res.Content[0].(*mcp.TextContent).Text != "later" {
		t.Fatalf("up_later: %v %v", res, err)
	}
	if e.has("up_hidden_one") {
		t.Error("a tool hidden by the policy was mounted")
	}
	if st := e.mgr.Status()[0]; st.State != StateUp || st.Tools != 3 || st.Transport != "http" {
		t.Errorf("status = %+v, want up with 3 visible tools", st)
	}
	e.upstream.RemoveTools("later")
	poll(t, "up_later to be removed", func() bool { return !e.has("up_later") })
	_, err = e.client.CallTool(t.Context(), &mcp.CallToolParams{Name: "up_later"})
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != jsonrpc.CodeInvalidParams {
		t.Errorf("up_later after removal: %v, want -32602", err)
	}
}

// TestCallErrors: the upstream's own JSON-RPC error comes back unchanged;
// a call past the timeout is a clean -32000 and the upstream's handler is
// cancelled.
func TestCallErrors(t *testing.T) {
	e := newUpstreamEnv(t, nil)
	_, err := e.client.CallTool(t.Context(), &mcp.CallToolParams{Name: "up_fail"})
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != -32099 || rpcErr.Message != "upstream says no" {
		t.Errorf("up_fail: %v, want the upstream's -32099 unchanged", err)
	}
	_, err = e.client.CallTool(t.Context(), &mcp.CallToolParams{Name: "up_sleep"})
	if !errors.As(err, &rpcErr) || rpcErr.Code != CodeUpstream || !strings.Contains(rpcErr.Message, "no answer within 500ms") {
		t.Errorf("up_sleep: %v, want -32000 no answer within 500ms", err)
	}
	// An upstream error past the caps is replaced.
	for name, rpc := range map[string]*jsonrpc.Error{
		"longmessage": {Code: -32099, Message: strings.Repeat("m", maxErrorMessage+1)},
		"bigdata":     {Code: -32099, Message: "big", Data: []byte(`"` + strings.Repeat("d", maxErrorBytes) + `"`)},
	} {
		e.upstream.AddTool(&mcp.Tool{Name: name, InputSchema: map[string]any{"type": "object"}},
			func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) { return nil, rpc })
		poll(t, name+" to be mounted", func() bool { return e.has("up_" + name) })
		_, err = e.client.CallTool(t.Context(), &mcp.CallToolParams{Name: "up_" + name})
		if !errors.As(err, &rpcErr) || rpcErr.Code != CodeUpstream || rpcErr.Message != "upstream up: error too large" {
			t.Errorf("up_%s: %.200v, want -32000 error too large", name, err)
		}
	}
	select {
	case <-e.cancelled: // notifications/cancelled reached the upstream
	case <-time.After(10 * time.Second):
		t.Error("the upstream's handler was not cancelled after the timeout")
	}
}

// TestUnavailable: an upstream that cannot be reached leaves mcpauth
// running; it is down and retried, and counts its failures.
func TestUnavailable(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	var h http.Handler = http.NotFoundHandler()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	defer front.Close()
	rs, err := resource.New(resource.Config{Resource: front.URL + "/mcp", Issuer: front.URL, DisableAuth: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := New(rs, []Config{{Name: "dead", Prefix: "dead_", URL: dead.URL, Start: StartBoot, StartTimeout: time.Second}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mgr.Close()
	mgr.Start(t.Context())
	poll(t, "two failed attempts", func() bool {
		st := mgr.Status()[0]
		return st.State != StateUp && st.Restarts >= 2
	})
	mgr.Close()
	if st := mgr.Status()[0]; st.State != StateStopped {
		t.Errorf("after Close: %+v", st)
	}
}

func TestValidate(t *testing.T) {
	good := Config{Name: "a", Prefix: "a_", URL: "https://a.example/mcp"}
	for _, tc := range []struct {
		name string
		cfgs []Config
		want string
	}{
		{"duplicate prefix", []Config{good, {Name: "b", Prefix: "a_", URL: "https://b.example/mcp"}}, "overlaps"},
		{"duplicate name", []Config{good, {Name: "a", Prefix: "b_", URL: "https://b.example/mcp"}}, "used twice"},
		{"relative command", []Config{{Name: "a", Prefix: "a_", Command: "node"}}, "absolute path"},
		{"both", []Config{{Name: "a", Prefix: "a_", Command: "/bin/true", URL: "https://a.example"}}, "both"},
		{"reserved header", []Config{{Name: "a", Prefix: "a_", URL: "https://a.example", Headers: map[string]string{"Authorization": "x"}}}, "set by mcpauth"},
		{"identity header on stdio", []Config{{Name: "a", Prefix: "a_", Command: "/bin/true", IdentityHeaders: true}}, "HTTP upstream"},
		{"tab in bearer", []Config{{Name: "a", Prefix: "a_", URL: "https://a.example", Bearer: "x\ty"}}, "tab"},
		{"mcpauth header", []Config{{Name: "a", Prefix: "a_", URL: "https://a.example", Headers: map[string]string{"X-MCPAUTH-Subject": "x"}}}, "set by mcpauth"},
		{"bad URL", []Config{{Name: "a", Prefix: "a_", URL: "ftp://a.example/mcp"}}, "scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Validate(tc.cfgs); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
	if err := Validate([]Config{good}); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
}

func TestMetaForwarded(t *testing.T) {
	u := &upstream{cfg: Config{IdentityMeta: false}}
	got := u.meta(t.Context(), mcp.Meta{
		"progressToken":   "p",
		"mcpauth/subject": "forged",
		"io.modelcontextprotocol/protocolVersion": "2026-07-28",
		"modelcontextprotocol.io/x":               1,
		"dev.mcp/y":                               2,
		"example.com/keep":                        3,
		"keep":                                    4,
		"mcp.example.com/x":                       5,
		"example.com/mcpish":                      6,
	})
	want := mcp.Meta{"example.com/keep": 3, "keep": 4, "example.com/mcpish": 6}
	if len(got) != len(want) {
		t.Fatalf("meta = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("meta = %v, want %v", got, want)
		}
	}
}
