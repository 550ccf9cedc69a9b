package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHealthcheck: `mcpauth healthcheck` succeeds on 200 only, does not
// follow redirects, and derives its default URL from MCPAUTH_ADDR.
func TestHealthcheck(t *testing.T) {
	var status int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		if status == http.StatusFound {
			w.Header().Set("Location", "/healthz")
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	check := func(env map[string]string, args ...string) (string, error) {
		var out, errOut strings.Builder
		err := run(t.Context(), append([]string{"healthcheck"}, args...), envOf(env), &out, &errOut)
		return out.String(), err
	}
	for _, tc := range []struct {
		status int
		ok     bool
	}{{http.StatusOK, true}, {http.StatusServiceUnavailable, false}, {http.StatusFound, false}, {http.StatusInternalServerError, false}} {
		status = tc.status
		out, err := check(nil, srv.URL+"/healthz")
		if (err == nil) != tc.ok {
			t.Errorf("status %d: err = %v", tc.status, err)
		}
		if tc.ok && out != "ok\n" {
			t.Errorf("status %d: stdout %q", tc.status, out)
		}
	}
	status = http.StatusOK
	if _, err := check(map[string]string{"MCPAUTH_ADDR": ":" + port}); err != nil {
		t.Errorf("default URL from MCPAUTH_ADDR :%s: %v", port, err)
	}
	if _, err := check(map[string]string{"MCPAUTH_ADDR": "0.0.0.0:" + port}); err != nil {
		t.Errorf("default URL from MCPAUTH_ADDR 0.0.0.0:%s: %v", port, err)
	}
	if _, err := check(map[string]string{"MCPAUTH_ADDR": "127.0.0.1:" + port}); err != nil {
		t.Errorf("default URL from MCPAUTH_ADDR 127.0.0.1:%s: %v", port, err)
	}
	if _, err := check(map[string]string{"MCPAUTH_ADDR": "127.0.0.1:0"}); err == nil {
		t.Errorf("MCPAUTH_ADDR with port 0 accepted")
	}
	for _, bad := range []string{"file:///etc/passwd", "127.0.0.1:8080", "http://"} {
		if _, err := check(nil, bad); err == nil {
			t.Errorf("healthcheck %q: no error", bad)
		}
	}
	if _, err := check(nil, srv.URL, srv.URL); err == nil {
		t.Errorf("two URLs accepted")
	}
}
