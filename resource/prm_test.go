package resource

import (
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/mcpauth/mcpauth/authz/oauth"
)

var rsUpdate = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestProtectedResourceMetadata(t *testing.T) {
	srv, err := New(Config{
		Resource: "https://auth.example.com/mcp",
		Issuer:   "https://auth.example.com",
		Verify:   func(context.Context, string) (*oauth.TokenInfo, error) { return nil, oauth.ErrInvalidToken },
		Scopes:   []string{"mcp"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Routes()
	golden := filepath.Join("testdata", "oauth-protected-resource.json")
	for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
		t.Run(path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Header.Set("MCP-Protocol-Version", "2025-11-25")
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("Access-Control-Allow-Origin %q", got)
			}
			if *rsUpdate {
				if err := os.WriteFile(golden, rec.Body.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got := rec.Body.String(); got != string(want) {
				t.Errorf("PRM:\n%s\nwant (testdata, -update to rewrite):\n%s", got, want)
			}
		})
	}

	// Preflight: open CORS, no body.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodOptions, "/.well-known/oauth-protected-resource/mcp", nil)
	req.Header.Set("Origin", "https://anything.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "*" ||
		rec.Header().Get("Access-Control-Allow-Methods") != "GET, HEAD, OPTIONS" {
		t.Errorf("preflight: %d %v", rec.Code, rec.Header())
	}
	// Anything but GET, HEAD and OPTIONS is 405.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/.well-known/oauth-protected-resource", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}
