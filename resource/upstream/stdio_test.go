package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpauth/mcpauth/resource"
)

// TestMain doubles as a stdio MCP server: run with UPSTREAM_TEST_STDIO=1
// (as TestStdio's upstream does), the test binary serves tools over stdin
// and stdout instead of running the tests.
func TestMain(m *testing.M) {
	if os.Getenv("UPSTREAM_TEST_STDIO") == "1" {
		stdioServer()
		return
	}
	os.Exit(m.Run())
}

func stdioServer() {
	s := mcp.NewServer(&mcp.Implementation{Name: "stdio-test", Version: "1"}, nil)
	text := func(s string) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
	}
	mcp.AddTool(s, &mcp.Tool{Name: "grow", Description: "adds the tool grown"},
		func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
			s.AddTool(&mcp.Tool{Name: "grown", InputSchema: map[string]any{"type": "object"}},
				func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) { return text("grown"), nil })
			return text("ok"), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "env", Description: "the environment"},
		func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
			return text(strings.Join(os.Environ(), "\n")), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "medium", Description: "8 KiB"},
		func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
			return text(strings.Repeat("m", 8<<10)), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "huge", Description: "3 MiB"},
		func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
			return text(strings.Repeat("h", 3<<20)), nil, nil
		})
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		os.Exit(1)
	}
}

// TestStdio runs the test binary as a stdio upstream: it gets only its
// configured environment; a tool it adds (notifications/tools/list_changed)
// is mounted; a result over MaxResultBytes is refused cleanly with the
// process kept; a response line past the transport's cap breaks the
// connection, the caller gets a clean error, and the process is restarted;
// Close stops it.
func TestStdio(t *testing.T) {
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = http.NotFoundHandler()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	defer front.Close()
	rs, err := resource.New(resource.Config{Resource: front.URL + "/mcp", Issuer: front.URL, DisableAuth: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h = rs.Routes()
	mgr, err := New(rs, []Config{{
		Name: "up", Prefix: "up_", Command: self, Env: []string{"UPSTREAM_TEST_STDIO=1"},
		Start: StartBoot, MaxResultBytes: 1024, HealthInterval: time.Hour, // list changes come by notification only
	}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mgr.Close()
	mgr.Start(t.Context())
	if st := mgr.Status()[0]; st.State != StateUp || st.Transport != "stdio" || st.Tools != 4 {
		t.Fatalf("status = %+v", st)
	}
	client, err := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil).Connect(t.Context(), &mcp.StreamableClientTransport{
		Endpoint: front.URL + "/mcp", DisableStandaloneSSE: true, MaxRetries: -1,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	call := func(name string) (string, error) {
		res, err := client.CallTool(t.Context(), &mcp.CallToolParams{Name: name})
		if err != nil {
			return "", err
		}
		return res.Content[0].(*mcp.TextContent).Text, nil
	}

	env, err := call("up_env")
	if err != nil || env != "UPSTREAM_TEST_STDIO=1" {
		t.Errorf("the process's environment = %q (%v), want only its configured variable", env, err)
	}

	if _, err := call("up_grow"); err != nil {
		t.Fatal(err)
	}
	poll(t, "up_grown to be mounted", func() bool { _, ok := rs.ToolScopes()["up_grown"]; return ok })
	if got, err := call("up_grown"); got != "grown" {
		t.Errorf("up_grown: %q %v", got, err)
	}

	var rpcErr *jsonrpc.Error
	_, err = call("up_medium")
	if !errors.As(err, &rpcErr) || rpcErr.Code != CodeUpstream || !strings.Contains(rpcErr.Message, "result too large") {
		t.Errorf("up_medium: %v, want -32000 result too large", err)
	}
	if st := mgr.Status()[0]; st.State != StateUp || st.Restarts != 0 {
		t.Errorf("after a refused result: %+v, want up without a restart", st)
	}

	_, err = call("up_huge")
	if !errors.As(err, &rpcErr) || rpcErr.Code != CodeUpstream {
		t.Errorf("up_huge: %v, want -32000", err)
	}
	poll(t, "the restart", func() bool {
		st := mgr.Status()[0]
		return st.State == StateUp && st.Restarts == 1
	})
	if env, err := call("up_env"); err != nil || env != "UPSTREAM_TEST_STDIO=1" {
		t.Errorf("after the restart: %q %v", env, err)
	}

	mgr.Close()
	if st := mgr.Status()[0]; st.State != StateStopped {
		t.Errorf("after Close: %+v", st)
	}
	if _, err := call("up_env"); !errors.As(err, &rpcErr) || !strings.Contains(rpcErr.Message, "unavailable") {
		t.Errorf("a call after Close: %v, want unavailable", err)
	}
}

// TestStdioChildrenStopped: when a stdio upstream's process dies, the
// children it leaves behind (a wrapper's server, npx → sh → node) are
// stopped with it before the restart.
func TestStdioChildrenStopped(t *testing.T) {
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	front := httptest.NewServer(http.NotFoundHandler())
	defer front.Close()
	rs, err := resource.New(resource.Config{Resource: front.URL + "/mcp", Issuer: front.URL, DisableAuth: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := New(rs, []Config{{
		Name: "up", Prefix: "up_", Command: "/bin/sh",
		Args:  []string{"-c", `/bin/sleep 300 </dev/null >/dev/null 2>&1 & echo $! >` + pidFile + `; exec ` + self},
		Env:   []string{"UPSTREAM_TEST_STDIO=1"},
		Start: StartBoot, HealthInterval: time.Hour,
	}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mgr.Close()
	mgr.Start(t.Context())
	if st := mgr.Status()[0]; st.State != StateUp {
		t.Fatalf("status = %+v", st)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The leader is the process group whose member the child is.
	pgid, err := syscall.Getpgid(child)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(child, syscall.SIGKILL)
	if err := syscall.Kill(pgid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll(t, "the leader's child to be stopped", func() bool { return !stdioRunning(child) })
}

// stdioRunning reports whether pid is a live (not zombie) process.
func stdioRunning(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}
