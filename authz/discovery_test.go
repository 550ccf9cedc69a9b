package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth/authz/keys"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fakeKeys is a KeySet with a fixed JWKS that cannot sign.
type fakeKeys struct{ jwks func() []byte }

func (f fakeKeys) JWKS() []byte { return f.jwks() }

func (f fakeKeys) Sign(string, any) (string, error) { return "", errors.New("fakeKeys cannot sign") }

func (f fakeKeys) Verify(string, string) ([]byte, error) {
	return nil, errors.New("fakeKeys cannot verify")
}

func (f fakeKeys) List() []keys.KeyInfo { return nil }

func (f fakeKeys) Rotate(context.Context, bool) (string, error) {
	return "", errors.New("fakeKeys cannot rotate")
}

func newTestServer(t *testing.T, issuer string) (*Server, *httptest.Server) {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	if issuer == "" {
		issuer = "http://" + hs.Listener.Addr().String()
	}
	s, err := New(Config{Issuer: issuer, MCPResource: issuer + "/mcp", Secret: make([]byte, 32), Scopes: testScopes, DefaultScopes: []string{"mcp"}, JWKSMaxAge: 300e9},
		nil, fakeKeys{jwks: func() []byte { return []byte(`{"keys":[]}`) }}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = s.Routes()
	hs.Start()
	t.Cleanup(hs.Close)
	return s, hs
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got, "", "  "); err != nil {
		t.Fatalf("%s is not JSON: %v\n%s", name, err, got)
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("%s differs from %s (-want +got):\n-%s\n+%s", name, path, want, pretty.Bytes())
	}
}

// TestMetadataGolden pins both discovery documents byte for byte.
func TestMetadataGolden(t *testing.T) {
	_, hs := newTestServer(t, "https://auth.example.com")
	for path, file := range map[string]string{
		"/.well-known/oauth-authorization-server": "oauth-authorization-server.json",
		"/.well-known/openid-configuration":       "openid-configuration.json",
	} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %s %s", path, resp.Status, resp.Header.Get("Content-Type"))
		}
		// RFC 8414 §3.3: the issuer is byte-identical to the configured one.
		if !bytes.Contains(body, []byte(`"issuer":"https://auth.example.com"`)) {
			t.Errorf("%s: issuer not verbatim: %s", path, body)
		}
		golden(t, file, body)
	}
}

// TestMetadataListsOnlyRealEndpoints: every URL in the metadata is routed
// (a GET may be refused with 405 or 401, but never 404).
func TestMetadataListsOnlyRealEndpoints(t *testing.T) {
	_, hs := testServer(t, false, nil)
	resp, err := http.Get(hs.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	n := 0
	for field, v := range md {
		u, ok := v.(string)
		if !ok || !strings.HasPrefix(u, hs.URL+"/") {
			continue
		}
		n++
		r, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode == http.StatusNotFound {
			t.Errorf("%s = %s answers %s", field, u, r.Status)
		}
	}
	if n == 0 {
		t.Fatal("metadata lists no endpoint")
	}
}

func TestJWKSIsServedAsIs(t *testing.T) {
	_, hs := newTestServer(t, "")
	resp, err := http.Get(hs.URL + "/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != `{"keys":[]}` || resp.Header.Get("Cache-Control") != "public, max-age=300" {
		t.Errorf("jwks: %q, Cache-Control %q", body, resp.Header.Get("Cache-Control"))
	}
}

func TestHomePage(t *testing.T) {
	_, hs := newTestServer(t, "https://auth.example.com")
	resp, err := http.Get(hs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("home: %s CSP %q", resp.Status, csp)
	}
	if !bytes.Contains(body, []byte("https://auth.example.com")) {
		t.Errorf("home page does not name the issuer:\n%s", body)
	}
	css, err := http.Get(hs.URL + "/static/style.css")
	if err != nil {
		t.Fatal(err)
	}
	css.Body.Close()
	if css.StatusCode != 200 || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: %s %s", css.Status, css.Header.Get("Content-Type"))
	}
}
