package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// TestPprofOnItsOwnListener: MCPAUTH_DEBUG_PPROF_ADDR serves the profiles on
// that loopback address only; the public listener does not have them.
func TestPprofOnItsOwnListener(t *testing.T) {
	addr, pprofAddr := freeAddr(t), freeAddr(t)
	inst := startRun(t, []string{"serve"}, map[string]string{
		"MCPAUTH_ISSUER":           "http://" + addr,
		"MCPAUTH_ADDR":             addr,
		"MCPAUTH_DATABASE_URL":     storagetest.URL(t),
		"MCPAUTH_SECRET":           goodSecret,
		"MCPAUTH_LOG_LEVEL":        "warn",
		"MCPAUTH_DEBUG_PPROF_ADDR": pprofAddr,
	})
	resp, body := get(t, "http://"+pprofAddr+"/debug/pprof/heap?debug=1")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile") {
		t.Fatalf("pprof listener: %s %.200s", resp.Status, body)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap"} {
		if resp, _ := get(t, inst.base+path); resp.StatusCode == http.StatusOK {
			t.Errorf("the public listener serves %s", path)
		}
	}
}
