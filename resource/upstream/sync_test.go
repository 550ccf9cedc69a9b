package upstream

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// syncMounter records what is mounted, and fails MountTool when told to.
type syncMounter struct {
	mu      sync.Mutex
	tools   map[string]bool
	failing bool
}

func (m *syncMounter) MountTool(_ string, t *mcp.Tool, _ mcp.ToolHandler) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failing {
		return false, errors.New("refused")
	}
	m.tools[t.Name] = true
	return true, nil
}

func (m *syncMounter) UnmountTools(_ string, names ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range names {
		delete(m.tools, n)
	}
}

// TestSyncFailedRemount: a tool whose changed definition cannot be mounted
// stays known with its previous one, so that its later removal upstream
// unmounts it.
func TestSyncFailedRemount(t *testing.T) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "up", Version: "1"}, nil)
	h := func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{}, nil
	}
	srv.AddTool(&mcp.Tool{Name: "t", Description: "v1", InputSchema: map[string]any{"type": "object"}}, h)
	st, ct := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(t.Context(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, nil).Connect(t.Context(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	rs := &syncMounter{tools: map[string]bool{}}
	m, err := New(rs, []Config{{Name: "up", Prefix: "up_", URL: "https://up.example/mcp"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	u := m.upstreams[0]
	if err := u.sync(t.Context(), cs); err != nil || !rs.tools["up_t"] {
		t.Fatalf("first sync: %v, mounted %v", err, rs.tools)
	}
	srv.AddTool(&mcp.Tool{Name: "t", Description: "v2", InputSchema: map[string]any{"type": "object"}}, h)
	rs.failing = true
	if err := u.sync(t.Context(), cs); err != nil {
		t.Fatal(err)
	}
	rs.failing = false
	srv.RemoveTools("t")
	if err := u.sync(t.Context(), cs); err != nil {
		t.Fatal(err)
	}
	if rs.tools["up_t"] {
		t.Error("a tool removed upstream after a failed re-mount is still mounted")
	}
}
