package upstream

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestSlowClientProgress: a caller that asks for progress and stops
// reading does not hold up another caller's progress from the same
// upstream.
func TestSlowClientProgress(t *testing.T) {
	e := newUpstreamEnv(t, func(c *Config) { c.Timeout = time.Minute })
	schema := map[string]any{"type": "object"}
	flooding, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	e.upstream.AddTool(&mcp.Tool{Name: "flood", InputSchema: schema}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		msg := strings.Repeat("f", 1000)
		for i := range 8000 {
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: float64(i), Message: msg}); err != nil {
				t.Errorf("flood: %v", err)
				break
			}
		}
		close(flooding)
		select {
		case <-ctx.Done():
		case <-release:
		}
		return &mcp.CallToolResult{}, nil
	})
	seen := make(chan struct{})
	e.upstream.AddTool(&mcp.Tool{Name: "report", InputSchema: schema}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: 1, Message: "report"})
		select {
		case <-seen:
		case <-time.After(10 * time.Second):
		}
		return &mcp.CallToolResult{}, nil
	})
	poll(t, "flood and report to be mounted", func() bool { return e.has("up_flood") && e.has("up_report") })

	// The slow caller: its response is never read.
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"up_flood","arguments":{},"_meta":{"progressToken":"slow"}}}`
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	select {
	case <-flooding:
	case <-time.After(time.Minute):
		t.Fatal("the flood did not finish")
	}

	var once sync.Once
	c, err := mcp.NewClient(&mcp.Implementation{Name: "fast", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			if r.Params.Message == "report" {
				once.Do(func() { close(seen) })
			}
		},
	}).Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.url, DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	params := &mcp.CallToolParams{Name: "up_report", Arguments: map[string]any{}}
	params.SetProgressToken("fast")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := c.CallTool(ctx, params); err != nil {
		t.Fatal(err)
	}
	select {
	case <-seen:
	default:
		t.Error("the fast caller's progress was held up by the slow caller")
	}
}
