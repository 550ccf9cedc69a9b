package authz

import (
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// testScopes are the scopes of a test server: what the built-in tools need.
var testScopes = []Scope{
	{Name: "mcp", Description: "Use the MCP tools", Tools: []string{"whoami"}},
	{Name: "admin", Description: "Administer mcpauth", Tools: []string{"admin_list_grants", "admin_revoke"}, AdminOnly: true},
	{Name: "openid", Description: "Know who you are"},
	{Name: "profile", Description: "Read your user name"},
	{Name: "offline_access", Description: "Stay connected when you are away"},
}

// testServer builds a Server on a fresh migrated database, with real
// signing keys, behind an httptest server (TLS when tls is true, so Secure
// cookies flow with hs.Client()). The issuer is the test server's URL. mod,
// if not nil, adjusts the Config before New.
func testServer(t *testing.T, tls bool, mod func(*Config)) (*Server, *httptest.Server) {
	t.Helper()
	return testServerOn(t, storagetest.New(t), tls, mod)
}

// testServerOn is testServer on the database db.
func testServerOn(t *testing.T, db *storage.DB, tls bool, mod func(*Config)) (*Server, *httptest.Server) {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	scheme := "http"
	if tls {
		scheme = "https"
	}
	issuer := scheme + "://" + hs.Listener.Addr().String()
	secret := []byte("test secret: 0123456789abcdef0123456789abcdef")
	ks, err := keys.New(t.Context(), db, secret, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Issuer:        issuer,
		MCPResource:   issuer + "/mcp",
		Secret:        secret,
		Scopes:        testScopes,
		DefaultScopes: []string{"mcp"},
		JWKSMaxAge:    300e9,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, db, ks, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = s.Routes()
	if tls {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(hs.Close)
	return s, hs
}
