package resource

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMountTool: tools mounted at run time (as upstream MCP servers' are)
// go through the same policy as AddTool's: a rule's scopes, hide; they
// cannot replace another source's tool; a schema the go-sdk refuses is an
// error, not a panic; unmounting removes them; BeforeTools runs first, so a
// tool it mounts is checked by its policy in the same request.
func TestMountTool(t *testing.T) {
	var before atomic.Int32
	var e *rsEnv
	e = rsNewEnv(t, func(c *Config) {
		c.Policy.Rules = append(c.Policy.Rules, ToolRule{Match: "up_secret", Hide: true}, ToolRule{Match: "up_files_*", Scopes: []string{"files"}})
		c.BeforeTools = func(context.Context) {
			if before.Add(1) == 1 {
				if ok, err := e.srv.MountTool("up", &mcp.Tool{Name: "up_lazy", InputSchema: map[string]any{"type": "object"}}, mountOK); !ok || err != nil {
					t.Errorf("mount up_lazy: %v %v", ok, err)
				}
			}
		}
	})
	e.verify.add("tok", "u", "c", "mcp")
	schema := map[string]any{"type": "object", "properties": map[string]any{"path": map[string]any{"type": "string"}}}

	// The first request that may use tools mounts up_lazy before it is
	// looked up.
	if msgs := rsMessages(t, e.rsPost(t, "tok", rsCall(1, "up_lazy"))); msgs[0]["result"] == nil {
		t.Fatalf("up_lazy, mounted by BeforeTools: %v", msgs)
	}
	if ok, err := e.srv.MountTool("up", &mcp.Tool{Name: "up_files_read", InputSchema: schema}, mountOK); !ok || err != nil {
		t.Fatalf("mount up_files_read: %v %v", ok, err)
	}
	if ok, err := e.srv.MountTool("up", &mcp.Tool{Name: "up_secret", InputSchema: schema}, mountOK); ok || err != nil {
		t.Errorf("mount up_secret (hidden): visible %v, err %v", ok, err)
	}
	if _, err := e.srv.MountTool("other", &mcp.Tool{Name: "whoami", InputSchema: schema}, mountOK); err == nil {
		t.Error("a mounted tool replaced the built-in whoami")
	}
	if _, err := e.srv.MountTool("other", &mcp.Tool{Name: "up_lazy", InputSchema: schema}, mountOK); err == nil {
		t.Error("a source replaced another source's tool")
	}
	if _, err := e.srv.MountTool("up", &mcp.Tool{Name: "up_bad", InputSchema: map[string]any{"type": "string"}}, mountOK); err == nil {
		t.Error("a tool whose input schema is not an object was mounted")
	}
	if got := e.srv.ToolScopes()["up_files_read"]; !slices.Equal(got, []string{"files"}) {
		t.Errorf("up_files_read scopes = %v, want the rule's [files]", got)
	}
	if _, ok := e.srv.ToolScopes()["up_bad"]; ok {
		t.Error("the refused tool kept a policy")
	}

	resp := e.rsPost(t, "tok", rsCall(2, "up_files_read"))
	if www := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusForbidden || !strings.Contains(www, "files") {
		t.Errorf("up_files_read without files: %d %q", resp.StatusCode, www)
	}
	for _, name := range []string{"up_secret", "up_bad"} {
		msgs := rsMessages(t, e.rsPost(t, "tok", rsCall(3, name)))
		if rpcErr, _ := msgs[0]["error"].(map[string]any); rpcErr["code"] != float64(-32602) {
			t.Errorf("%s: %v, want -32602", name, msgs)
		}
	}

	e.srv.UnmountTools("other", "up_lazy") // not its tool: nothing happens
	e.srv.UnmountTools("up", "up_lazy", "whoami")
	if _, ok := e.srv.ToolScopes()["up_lazy"]; ok {
		t.Error("up_lazy is still registered")
	}
	if _, ok := e.srv.ToolScopes()["whoami"]; !ok {
		t.Error("UnmountTools removed a tool of another source")
	}
	msgs := rsMessages(t, e.rsPost(t, "tok", rsCall(4, "up_lazy")))
	if rpcErr, _ := msgs[0]["error"].(map[string]any); rpcErr["code"] != float64(-32602) {
		t.Errorf("up_lazy after unmount: %v, want -32602", msgs)
	}
}

func mountOK(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
}

// TestHandlerCancelledWhenClientLeaves: a client that goes away during a
// call (protocol 2025-11-25, whose handlers the go-sdk runs detached from
// the HTTP request) cancels the tool handler's context, with authentication
// on or off.
func TestHandlerCancelledWhenClientLeaves(t *testing.T) {
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("DisableAuth=%v", disable), func(t *testing.T) {
			e := rsNewEnv(t, func(c *Config) {
				if disable {
					c.DisableAuth, c.Verify = true, nil
				}
			})
			if !disable {
				e.verify.add("tok", "u", "c", "mcp")
			}
			entered, cancelled := make(chan struct{}), make(chan struct{})
			e.srv.AddTool(&mcp.Tool{Name: "wait", InputSchema: map[string]any{"type": "object"}},
				func(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					close(entered)
					select {
					case <-ctx.Done():
						close(cancelled)
					case <-time.After(30 * time.Second):
					}
					return &mcp.CallToolResult{}, nil
				})
			ctx, cancel := context.WithCancel(t.Context())
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url, strings.NewReader(rsCall(1, "wait")))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("MCP-Protocol-Version", "2025-11-25")
			if !disable {
				req.Header.Set("Authorization", "Bearer tok")
			}
			go func() {
				<-entered
				cancel()
			}()
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
			select {
			case <-cancelled:
			case <-time.After(10 * time.Second):
				t.Fatal("the handler was not cancelled within 10 s of the client leaving")
			}
		})
	}
}

// TestRuleOwner: a rule with an Owner applies only to the tools that owner
// mounted: not to a built-in tool, nor to another owner's, that its pattern
// matches.
func TestRuleOwner(t *testing.T) {
	e := rsNewEnv(t, func(c *Config) {
		c.Policy.Rules = []ToolRule{{Match: "*", Scopes: []string{"up:scope"}, Owner: "up"}}
	})
	e.srv.AddTool(&mcp.Tool{Name: "up_builtin", InputSchema: map[string]any{"type": "object"}}, mountOK)
	for owner, name := range map[string]string{"up": "up_a", "other": "up_b"} {
		if _, err := e.srv.MountTool(owner, &mcp.Tool{Name: name, InputSchema: map[string]any{"type": "object"}}, mountOK); err != nil {
			t.Fatal(err)
		}
	}
	scopes := e.srv.ToolScopes()
	if got := scopes["up_a"]; !slices.Equal(got, []string{"up:scope"}) {
		t.Errorf("up's own tool: scopes %v, want [up:scope]", got)
	}
	for _, name := range []string{"whoami", "up_builtin", "up_b"} {
		if slices.Contains(scopes[name], "up:scope") {
			t.Errorf("%s: scopes %v: up's rule reached a tool up did not mount", name, scopes[name])
		}
	}
}
