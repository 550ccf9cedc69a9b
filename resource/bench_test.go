package resource

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/ulule/limiter/v3"
)

// BenchmarkMCPToolsCall measures one tools/call of a trivial tool through
// the whole /mcp stack in process (no network): with authentication
// (bearer check with a fake verifier, Origin, rate limit, JSON-RPC
// inspection and scope check, the go-sdk) and with DisableAuth on the same
// server configuration. DESIGN §7 wants auth ≥ 90 % of no-auth throughput.
func BenchmarkMCPToolsCall(b *testing.B) {
	for _, tc := range []struct {
		name string
		auth bool
	}{{"auth", true}, {"noauth", false}} {
		b.Run(tc.name, func(b *testing.B) {
			e := rsNewEnv(b, func(c *Config) {
				c.DisableAuth = !tc.auth
				c.RateLimit = limiter.Rate{Period: time.Second, Limit: 1 << 40}
			})
			e.verify.add("tok", "user", "client", "mcp")
			e.srv.AddTool(&mcp.Tool{Name: "bench", InputSchema: map[string]any{"type": "object"}},
				func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
				})
			h := e.srv.Routes()
			body := rsCall(1, "bench")
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Accept", "application/json, text/event-stream")
					req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
					req.Header.Set("Authorization", "Bearer tok")
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"text":"ok"`) {
						b.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
				}
			})
		})
	}
}
