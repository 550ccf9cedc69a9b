package resource

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkInspect measures the JSON-RPC inspection /mcp runs on every
// POST before the go-sdk: a single tools/call (the common case), a batch of
// ten calls, and a request that is not a call (the byte scan skips the
// decoding).
func BenchmarkInspect(b *testing.B) {
	single := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{"a":"b","n":[1,2,3]}}}`)
	calls := make([]string, 10)
	for i := range calls {
		calls[i] = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"tool%d","arguments":{}}}`, i+1, i)
	}
	batch := []byte("[" + strings.Join(calls, ",") + "]")
	list := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`)
	for _, tc := range []struct {
		name  string
		body  []byte
		tools int
	}{{"call", single, 1}, {"batch10", batch, 10}, {"list", list, 0}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.body)))
			for b.Loop() {
				if p := inspect(tc.body); len(p.tools) != tc.tools {
					b.Fatalf("inspect found %d calls, want %d", len(p.tools), tc.tools)
				}
			}
		})
	}
}
