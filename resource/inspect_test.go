package resource

import (
	"bytes"
	"context"
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
)

// rsOracle is the go-sdk's own answer to "which tools does this body call":
// a plain go-sdk server behind the same stateless handler options, whose
// receiving middleware records every tools/call the go-sdk dispatches after
// its own decoding.
type rsOracle struct {
	handler http.Handler
	mu      sync.Mutex
	called  []string
}

func rsNewOracle() *rsOracle {
	o := &rsOracle{}
	srv := mcp.NewServer(&mcp.Implementation{Name: "oracle", Version: "1"}, nil)
	srv.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if method == "tools/call" {
				if p, ok := req.GetParams().(*mcp.CallToolParamsRaw); ok && p != nil {
					o.mu.Lock()
					o.called = append(o.called, p.Name)
					o.mu.Unlock()
				}
			}
			return next(ctx, method, req)
		}
	})
	ok := func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{}, nil
	}
	for _, name := range []string{"whoami", "admin_stats", "a"} {
		srv.AddTool(&mcp.Tool{Name: name, InputSchema: map[string]any{"type": "object"}}, ok)
	}
	o.handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{
		Stateless: true, DisableLocalhostProtection: true, MaxRequestBodyBytes: MaxBodyBytes,
	})
	return o
}

// run posts body to the go-sdk and returns the tools it called and the status.
func (o *rsOracle) run(body []byte, version string) ([]string, int) {
	o.mu.Lock()
	o.called = nil
	o.mu.Unlock()
	// A request that opens a long-lived stream (subscriptions/listen) ends
	// with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/mcp", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if version != "" {
		req.Header.Set("Mcp-Protocol-Version", version)
	}
	rec := httptest.NewRecorder()
	o.handler.ServeHTTP(rec, req)
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.called), rec.Code
}

var rsVersions = []string{"", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"}

// FuzzInspect holds the property the scope check rests on: inspect finds
// every tool the go-sdk calls for a body (so no call escapes the check), and
// when the go-sdk accepts the request, exactly those.
func FuzzInspect(f *testing.F) {
	seeds := []string{
		rsCall(1, "whoami"),
		`[` + rsCall(1, "whoami") + `,` + rsCall(2, "admin_stats") + `]`,
		`[` + rsCall(1, "whoami") + `]`,
		`[]`, `null`, `{}`, `[null]`, `"tools/call"`,
		`{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"admin\u005fstats"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","name":"admin_stats"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping","params":{"name":"a"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"a"}}`,
		`{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"a"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"a"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"a","name":"whoami"}}`,
		`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"}}`,
		`{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"a"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":null}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":"x"}}`,
		`{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"a"}}`,
		`{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{"name":"a"}}`,
		`{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"a"}} {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"admin_stats"}}`,
		`[` + rsCall(1, "whoami") + `] garbage`,
		"\ufeff" + rsCall(1, "a"),
		" \t\r\n" + rsCall(1, "a") + "\n",
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\ud800"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_stats","x":` + strings.Repeat("[", 1001) + strings.Repeat("]", 1001) + `}}`,
		`[` + rsCall(1, "a") + `,{"jsonrpc":"2.0","id":2,"method":"nope"}]`,
		`[` + rsCall(1, "a") + `,` + rsCall(1, "admin_stats") + `]`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i))
	}
	o := rsNewOracle()
	f.Fuzz(func(t *testing.T, body []byte, v uint8) {
		// decodeMessage is jsonrpc.DecodeMessage without its buffer.
		m, ok := decodeMessage(body)
		dm, err := jsonrpc.DecodeMessage(body)
		if ok != (err == nil) {
			t.Fatalf("decodeMessage ok=%v, jsonrpc.DecodeMessage err=%v: body %q", ok, err, body)
		}
		if req, isReq := dm.(*jsonrpc.Request); ok && (isReq != m.isRequest || isReq &&
			(req.Method != m.method || req.ID != m.id || !bytes.Equal(req.Params, m.params))) {
			t.Fatalf("decodeMessage = %+v, jsonrpc.DecodeMessage = %+v: body %q", m, dm, body)
		}

		version := rsVersions[int(v)%len(rsVersions)]
		called, status := o.run(body, version)
		got := inspect(body).tools
		slices.Sort(called)
		slices.Sort(got)
		// Every call the go-sdk makes was seen (as a multiset).
		rest := slices.Clone(got)
		for _, name := range called {
			i := slices.Index(rest, name)
			if i < 0 {
				t.Fatalf("the go-sdk called %q, inspect missed it: body %q, version %q; inspect %q, go-sdk %q", name, body, version, got, called)
			}
			rest = slices.Delete(rest, i, i+1)
		}
		// A request the go-sdk accepted calls exactly what inspect found
		// (unless two requests share an id: the go-sdk then answers one
		// and inspect, stricter, checks both).
		if status == http.StatusOK && len(rest) > 0 && !rsDuplicateIDs(body) {
			t.Fatalf("accepted request: inspect found %q, the go-sdk called %q: body %q, version %q", got, called, body, version)
		}
	})
}

// rsDuplicateIDs reports whether two requests of a batch share an id.
func rsDuplicateIDs(body []byte) bool {
	msgs, _, _ := readBatch(body)
	var ids []any
	for _, m := range msgs {
		if m.isRequest && m.id.IsValid() {
			if slices.Contains(ids, m.id.Raw()) {
				return true
			}
			ids = append(ids, m.id.Raw())
		}
	}
	return false
}

func TestInspect(t *testing.T) {
	tests := []struct {
		body  string
		tools []string
		batch bool
	}{
		{rsCall(1, "whoami"), []string{"whoami"}, false},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, nil, false},
		{`[` + rsCall(1, "a") + `,{"jsonrpc":"2.0","method":"notifications/initialized"},` + rsCall(2, "b") + `]`, []string{"a", "b"}, true},
		{`{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"x"}}`, []string{"x"}, false},
		{`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}`, nil, false}, // a notification is refused, not called
		{`[` + rsCall(1, "a") + `,{"bad"}]`, nil, false},                              // undecodable: the go-sdk refuses it all
	}
	for _, tt := range tests {
		p := inspect([]byte(tt.body))
		if diff := cmp.Diff(tt.tools, p.tools); diff != "" || (p.tools != nil && p.batch != tt.batch) {
			t.Errorf("inspect(%s) (-want +got):\n%s batch %v", tt.body, diff, p.batch)
		}
	}
}
