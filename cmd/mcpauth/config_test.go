package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/authz"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

const goodSecret = "0123456789abcdef0123456789abcdef"

func safeEnv() map[string]string {
	return map[string]string{
		"MCPAUTH_ISSUER":       "https://auth.example.com",
		"MCPAUTH_DATABASE_URL": "postgres://mcpauth:pw@127.0.0.1:1/mcpauth",
		"MCPAUTH_SECRET":       goodSecret,
		"MCPAUTH_ADDR":         "127.0.0.1:0",
	}
}

// TestServeRefusesUnsafeSettings: `mcpauth serve` exits non-zero, before it
// listens or touches the database, naming the setting that is unsafe.
func TestServeRefusesUnsafeSettings(t *testing.T) {
	tests := []struct {
		name string
		set  map[string]string // "" deletes the variable
		want []string
	}{
		{"missing secret", map[string]string{"MCPAUTH_SECRET": ""}, []string{"MCPAUTH_SECRET: required"}},
		{"short secret", map[string]string{"MCPAUTH_SECRET": "0123456789abcdef0123456789abcde"}, []string{"MCPAUTH_SECRET: too short: 31 bytes"}},
		{"plain http on a public host", map[string]string{"MCPAUTH_ISSUER": "http://auth.example.com"}, []string{"MCPAUTH_ISSUER: plain http is allowed only on a loopback host"}},
		{"issuer with a path", map[string]string{"MCPAUTH_ISSUER": "https://example.com/auth"}, []string{"MCPAUTH_ISSUER: must not have a path"}},
		{"issuer with a trailing slash", map[string]string{"MCPAUTH_ISSUER": "https://auth.example.com/"}, []string{"MCPAUTH_ISSUER: must not end with a slash"}},
		{"issuer with a query", map[string]string{"MCPAUTH_ISSUER": "https://auth.example.com?x=1"}, []string{"MCPAUTH_ISSUER: must not have a query or fragment"}},
		{"issuer with upper case", map[string]string{"MCPAUTH_ISSUER": "https://Auth.example.com"}, []string{"MCPAUTH_ISSUER: must be lower case"}},
		{"issuer not https", map[string]string{"MCPAUTH_ISSUER": "ftp://auth.example.com"}, []string{"MCPAUTH_ISSUER: scheme must be https"}},
		{"missing issuer", map[string]string{"MCPAUTH_ISSUER": ""}, []string{"MCPAUTH_ISSUER: required"}},
		{"missing database", map[string]string{"MCPAUTH_DATABASE_URL": ""}, []string{"MCPAUTH_DATABASE_URL: required"}},
		{"bad database url", map[string]string{"MCPAUTH_DATABASE_URL": "postgres://u:secretpw@[::1"}, []string{"MCPAUTH_DATABASE_URL: not a valid"}},
		{"bad duration", map[string]string{"MCPAUTH_ACCESS_TOKEN_TTL": "ten minutes"}, []string{"MCPAUTH_ACCESS_TOKEN_TTL: not a duration"}},
		{"token ttl too long", map[string]string{"MCPAUTH_ACCESS_TOKEN_TTL": "48h"}, []string{"MCPAUTH_ACCESS_TOKEN_TTL: must be between"}},
		{"publish ahead below JWKS cache", map[string]string{"MCPAUTH_KEY_PUBLISH_AHEAD": "1m"}, []string{"MCPAUTH_KEY_PUBLISH_AHEAD"}},
		{"bad proxy", map[string]string{"MCPAUTH_TRUSTED_PROXIES": "10.0.0.0/8, nonsense"}, []string{`MCPAUTH_TRUSTED_PROXIES: "nonsense"`}},
		{"bad log level", map[string]string{"MCPAUTH_LOG_LEVEL": "loud"}, []string{"MCPAUTH_LOG_LEVEL"}},
		{"pprof on a public address", map[string]string{"MCPAUTH_DEBUG_PPROF_ADDR": "0.0.0.0:6060"}, []string{"MCPAUTH_DEBUG_PPROF_ADDR: want a loopback IP"}},
		{"pprof on a host name", map[string]string{"MCPAUTH_DEBUG_PPROF_ADDR": "localhost:6060"}, []string{"MCPAUTH_DEBUG_PPROF_ADDR: want a loopback IP"}},
		{"secret twice", map[string]string{"MCPAUTH_SECRET_FILE": "/nonexistent"}, []string{"MCPAUTH_SECRET: set either MCPAUTH_SECRET or MCPAUTH_SECRET_FILE"}},
		{
			"every problem at once",
			map[string]string{"MCPAUTH_SECRET": "short", "MCPAUTH_ISSUER": "http://example.com/x", "MCPAUTH_DATABASE_URL": ""},
			[]string{"MCPAUTH_SECRET: too short", "MCPAUTH_ISSUER:", "MCPAUTH_DATABASE_URL: required"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := safeEnv()
			for k, v := range tt.set {
				if v == "" {
					delete(env, k)
				} else {
					env[k] = v
				}
			}
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), []string{"serve"}, envOf(env), &stdout, &stderr)
			if err == nil {
				t.Fatal("serve started with an unsafe setting")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "secretpw") || strings.Contains(err.Error(), goodSecret) {
				t.Errorf("error leaks a secret:\n%v", err)
			}
		})
	}
}

func TestConfigSecretFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(goodSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := safeEnv()
	delete(env, "MCPAUTH_SECRET")
	env["MCPAUTH_SECRET_FILE"] = path
	env["MCPAUTH_TRUSTED_PROXIES"] = "10.0.0.0/8, 192.168.1.7"
	env["MCPAUTH_ACCESS_TOKEN_TTL"] = "5m"
	cfg := DefaultConfig()
	if err := cfg.load(envOf(env)); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if string(cfg.Secret) != goodSecret {
		t.Errorf("secret from file = %q, want it without the newline", cfg.Secret)
	}
	if cfg.AccessTokenTTL != 5*time.Minute {
		t.Errorf("AccessTokenTTL = %s", cfg.AccessTokenTTL)
	}
	if got := len(cfg.TrustedProxies); got != 2 || cfg.TrustedProxies[1].String() != "192.168.1.7/32" {
		t.Errorf("TrustedProxies = %v", cfg.TrustedProxies)
	}
}

func TestConfigLogValueRedacts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DatabaseURL = "postgres://mcpauth:hunter2hunter2@db:5432/mcpauth?password=other"
	cfg.Secret = []byte(goodSecret)
	var buf bytes.Buffer
	newLogger(&buf, cfg).Info("start", "config", cfg)
	out := buf.String()
	for _, secret := range []string{"hunter2hunter2", goodSecret, "password=other"} {
		if strings.Contains(out, secret) {
			t.Errorf("log line leaks %q: %s", secret, out)
		}
	}
	if !strings.Contains(out, "db:5432") {
		t.Errorf("log line lost the database host: %s", out)
	}
}

func TestLoopbackIssuerAllowsHTTP(t *testing.T) {
	for _, iss := range []string{"http://localhost:8080", "http://127.0.0.1:9000", "http://[::1]:8080", "https://auth.example.com", "https://auth.example.com:8443"} {
		if err := validateIssuer(iss); err != nil {
			t.Errorf("validateIssuer(%q) = %v", iss, err)
		}
	}
}

// TestServeRefusesABadToolConfig: a bad MCPAUTH_CONFIG file stops serve,
// naming the file and the line.
func TestServeRefusesABadToolConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mcpauth.yaml")
	if err := os.WriteFile(path, []byte("tools:\n  rules:\n    - match: whoami\n      scopez: [mcp]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := safeEnv()
	env["MCPAUTH_CONFIG"] = path
	err := run(t.Context(), []string{"serve"}, envOf(env), &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "MCPAUTH_CONFIG") || !strings.Contains(err.Error(), path+":4") {
		t.Fatalf("serve with a bad config file: %v", err)
	}
}

func TestSupportedScopes(t *testing.T) {
	tc, err := parseToolConfig("test.yaml", []byte(`
scopes:
  files:
    description: Read and write your files
  admin:
    description: Run the admin tools
tools:
  rules:
    - match: "files_*"
      scopes: [files]
    - match: deploy
      scopes: [ops]
`), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	got := supportedScopes(tc, map[string][]string{"whoami": {"mcp"}, "files_read": {"files"}, "deploy": {"ops", "mcp"}})
	byName := map[string]authz.Scope{}
	var names []string
	for _, sc := range got {
		byName[sc.Name] = sc
		names = append(names, sc.Name)
	}
	if want := "mcp admin openid profile offline_access files ops"; strings.Join(names, " ") != want {
		t.Errorf("scopes = %v, want %s", names, want)
	}
	if sc := byName["files"]; sc.Description != "Read and write your files" || strings.Join(sc.Tools, ",") != "files_read" {
		t.Errorf("files = %+v", sc)
	}
	if sc := byName["mcp"]; strings.Join(sc.Tools, ",") != "deploy,whoami" {
		t.Errorf("mcp tools = %v", sc.Tools)
	}
	if !byName["admin"].AdminOnly || byName["admin"].Description != "Run the admin tools" || byName["ops"].Description == "" {
		t.Errorf("admin %+v, ops %+v", byName["admin"], byName["ops"])
	}
}
