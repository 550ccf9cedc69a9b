package upstream

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestToolListBounded: a tool whose definition is over MaxToolBytes is
// skipped, and the listing stops once MaxToolListBytes have been mounted.
func TestToolListBounded(t *testing.T) {
	e := newUpstreamEnv(t, nil)
	h := func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{}, nil
	}
	schema := map[string]any{"type": "object"}
	const bulk = 80 // 80 × 60 KiB > MaxToolListBytes
	for i := range bulk {
		e.upstream.AddTool(&mcp.Tool{Name: fmt.Sprintf("bulk%02d", i), Description: strings.Repeat("b", 60<<10), InputSchema: schema}, h)
	}
	e.upstream.AddTool(&mcp.Tool{Name: "big", Description: strings.Repeat("x", MaxToolBytes), InputSchema: schema}, h)
	e.upstream.AddTool(&mcp.Tool{Name: "a_small", InputSchema: schema}, h)
	poll(t, "up_a_small to be mounted", func() bool { return e.has("up_a_small") })
	if e.has("up_big") {
		t.Error("a tool over MaxToolBytes was mounted")
	}
	n := 0
	for name := range e.rs.ToolScopes() {
		if strings.HasPrefix(name, "up_bulk") {
			n++
		}
	}
	if n == 0 || n >= bulk || n*60<<10 > MaxToolListBytes {
		t.Errorf("%d of %d bulk tools mounted, want some, within %d bytes", n, bulk, MaxToolListBytes)
	}
}
