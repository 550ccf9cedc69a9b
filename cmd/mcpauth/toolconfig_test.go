package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/ulule/limiter/v3"

	"github.com/mcpauth/mcpauth/authz"
	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/resource"
)

func toolconfigEnv(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func toolconfigRate(t *testing.T, s string) *limiter.Rate {
	t.Helper()
	r, err := limiter.NewRateFromFormatted(s)
	if err != nil {
		t.Fatal(err)
	}
	return &r
}

// The example of docs/configuration.md, with a variable and a default.
const toolconfigExample = `# mcpauth tool policy
tools:
  list: permitted            # permitted (default) | all
  rules:                     # first match wins
    - match: whoami
      scopes: [mcp]
      rate_limit: 60-M
    - match: "admin_*"
      scopes: [admin]
      rate_limit: ${ADMIN_RATE:-30-M}
    - match: "files_*"
      scopes:
        - files.read
        - mcp
    - match: "debug_*"
      hide: true
    - match: ping
mcp:
  rate_limit: 600-M
  allowed_origins: [https://app.example.com, "${EXTRA_ORIGIN}", "http://localhost:6274"]
scopes:
  files.read:
    description: Read the files in the team share
  audit:
    description: "Read the audit log"
    admin_only: true
`

func TestToolConfigExample(t *testing.T) {
	cfg, err := parseToolConfig("mcpauth.yaml", []byte(toolconfigExample), toolconfigEnv(map[string]string{
		"EXTRA_ORIGIN": "https://claude.ai",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := &toolConfig{
		Policy: resource.Policy{Rules: []resource.ToolRule{
			{Match: "whoami", Scopes: []string{"mcp"}, RateLimit: toolconfigRate(t, "60-M")},
			{Match: "admin_*", Scopes: []string{"admin"}, RateLimit: toolconfigRate(t, "30-M")},
			{Match: "files_*", Scopes: []string{"files.read", "mcp"}},
			{Match: "debug_*", Hide: true},
			{Match: "ping"},
		}},
		MCPRateLimit:   toolconfigRate(t, "600-M"),
		AllowedOrigins: []string{"https://app.example.com", "https://claude.ai", "http://localhost:6274"},
		Scopes: []authz.Scope{
			{Name: "files.read", Description: "Read the files in the team share"},
			{Name: "audit", Description: "Read the audit log", AdminOnly: true},
		},
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"mcp", "admin", "files.read", "audit"}, cfg.scopeNames()); diff != "" {
		t.Errorf("scopes (-want +got):\n%s", diff)
	}
	if cfg.Policy.Rules[0].RateLimit.Limit != 60 || cfg.Policy.Rules[0].RateLimit.Period != time.Minute {
		t.Errorf("whoami rate = %+v, want 60 per minute", cfg.Policy.Rules[0].RateLimit)
	}
}

func TestToolConfigValid(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want *toolConfig
	}{
		{"empty file", "", nil, &toolConfig{}},
		{"only comments", "# nothing yet\n", nil, &toolConfig{}},
		{"null document", "~\n", nil, &toolConfig{}},
		{"empty sections", "tools:\nmcp:\n", nil, &toolConfig{}},
		{"list all", "tools:\n  list: all\n", nil, &toolConfig{ListAll: true}},
		{"list from env", "tools:\n  list: ${LIST}\n", map[string]string{"LIST": "all"}, &toolConfig{ListAll: true}},
		{"empty rules", "tools:\n  rules: []\n", nil, &toolConfig{}},
		{"rule without scopes keeps the registered ones", "tools:\n  rules:\n    - match: whoami\n      rate_limit: 5-S\n", nil,
			&toolConfig{Policy: resource.Policy{Rules: []resource.ToolRule{{Match: "whoami", RateLimit: toolconfigRate(t, "5-S")}}}}},
		{"hide false", "tools:\n  rules:\n    - {match: a, hide: false, scopes: [x]}\n", nil,
			&toolConfig{Policy: resource.Policy{Rules: []resource.ToolRule{{Match: "a", Scopes: []string{"x"}}}}}},
		{"hide from env", "tools:\n  rules:\n    - {match: a, hide: \"${HIDE:-true}\"}\n", nil,
			&toolConfig{Policy: resource.Policy{Rules: []resource.ToolRule{{Match: "a", Hide: true}}}}},
		{"pattern classes", "tools:\n  rules:\n    - match: \"tool_[a-c]?\"\n      scopes: [s]\n", nil,
			&toolConfig{Policy: resource.Policy{Rules: []resource.ToolRule{{Match: "tool_[a-c]?", Scopes: []string{"s"}}}}}},
		{"scope characters of RFC 6749", "tools:\n  rules:\n    - match: a\n      scopes: [\"files:read\", \"https://api.example.com/x\"]\n", nil,
			&toolConfig{Policy: resource.Policy{Rules: []resource.ToolRule{{Match: "a", Scopes: []string{"files:read", "https://api.example.com/x"}}}}}},
		{"dollar escapes", "tools:\n  rules:\n    - match: a\n      scopes: [\"pay$$\", \"$x\", \"a$\"]\n", nil,
			&toolConfig{Policy: resource.Policy{Rules: []resource.ToolRule{{Match: "a", Scopes: []string{"pay$", "$x", "a$"}}}}}},
		{"variable set overrides default", "mcp:\n  rate_limit: ${R:-1-S}\n", map[string]string{"R": "9-H"},
			&toolConfig{MCPRateLimit: toolconfigRate(t, "9-H")}},
		{"variable value is not expanded again", "tools:\n  rules:\n    - match: ${M}\n", map[string]string{"M": "a${B}"},
			&toolConfig{Policy: resource.Policy{Rules: []resource.ToolRule{{Match: "a${B}"}}}}},
		{"origin with port", "mcp:\n  allowed_origins:\n    - https://app.example.com:8443\n    - http://[::1]:6274\n", nil,
			&toolConfig{AllowedOrigins: []string{"https://app.example.com:8443", "http://[::1]:6274"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseToolConfig("c.yaml", []byte(tt.yaml), toolconfigEnv(tt.env))
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestToolConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want []string // each a line of the error, in order
	}{
		{"syntax error names the line", "tools:\n  list: all\n rules: x\n", nil,
			[]string{"c.yaml:2: did not find expected key"}},
		{"tab indentation", "tools:\n\tlist: all\n", nil,
			[]string{"c.yaml:2: "}},
		{"two documents", "tools:\n  list: all\n---\nmcp:\n", nil,
			[]string{"c.yaml:3: a second YAML document"}},
		{"top level is a list", "- tools\n", nil,
			[]string{"c.yaml:1: want a mapping of keys to values, got a list"}},
		{"unknown top-level key", "tools:\n  list: all\nupstream: []\n", nil,
			[]string{"c.yaml:3: upstream: unknown key; want one of mcp, scopes, tools, upstreams"}},
		{"scopes is a list", "scopes: [a]\n", nil,
			[]string{"c.yaml:1: scopes: want a mapping of scope names to their description, got a list"}},
		{"scope doc is a string", "scopes:\n  files.read: Read files\n", nil,
			[]string{"c.yaml:2: scopes.files.read: want a mapping of keys to values, got a single value"}},
		{"scope doc without description", "scopes:\n  files.read:\n    admin_only: true\n", nil,
			[]string{"c.yaml:3: scopes.files.read: missing description"}},
		{"scope doc empty description", "scopes:\n  files.read: {description: \"  \"}\n", nil,
			[]string{"c.yaml:2: scopes.files.read.description: empty"}},
		{"scope doc long description", "scopes:\n  files.read: {description: " + strings.Repeat("x", 201) + "}\n", nil,
			[]string{"c.yaml:2: scopes.files.read.description: want one line of at most 200 bytes"}},
		{"scope doc two lines", "scopes:\n  files.read:\n    description: |\n      one\n      two\n", nil,
			[]string{"c.yaml:3: scopes.files.read.description: want one line"}},
		{"scope doc bad name", "scopes:\n  \"a b\": {description: x}\n  offline_access: {description: y}\n", nil,
			[]string{`c.yaml:2: scopes.a b: "a b" is not one scope`, "c.yaml:3: scopes.offline_access: offline_access is about refresh tokens"}},
		{"scope doc twice", "scopes:\n  a: {description: x}\n  a: {description: y}\n", nil,
			[]string{"c.yaml:3: scopes.a: given twice (first on line 2)"}},
		{"scope doc unknown key", "scopes:\n  a: {description: x, tools: [t]}\n", nil,
			[]string{"c.yaml:2: scopes.a.tools: unknown key; want one of admin_only, description"}},
		{"scope doc admin_only not a bool", "scopes:\n  a: {description: x, admin_only: 1}\n", nil,
			[]string{`c.yaml:2: scopes.a.admin_only: want true or false, got "1"`}},
		{"unknown key in tools", "tools:\n  lists: all\n", nil,
			[]string{"c.yaml:2: tools.lists: unknown key; want one of list, rules"}},
		{"unknown key in a rule", "tools:\n  rules:\n    - match: a\n      scope: [mcp]\n", nil,
			[]string{"c.yaml:4: tools.rules[0].scope: unknown key; want one of hide, match, rate_limit, scopes"}},
		{"unknown key in mcp", "mcp:\n  origins: [https://a.example]\n", nil,
			[]string{"c.yaml:2: mcp.origins: unknown key; want one of allowed_origins, rate_limit"}},
		{"duplicate key", "tools:\n  list: all\n  list: permitted\n", nil,
			[]string{"c.yaml:3: tools.list: given twice (first on line 2)"}},
		{"merge key", "base: &b {match: a}\n", nil,
			[]string{"c.yaml:1: base: unknown key"}},
		{"alias", "tools:\n  rules:\n    - &r {match: a}\n    - *r\n", nil,
			[]string{"c.yaml:3: tools.rules[0]: YAML anchors and aliases are not supported", "c.yaml:4: tools.rules[1]: YAML anchors and aliases are not supported"}},
		{"tools is a list", "tools: [a]\n", nil,
			[]string{"c.yaml:1: tools: want a mapping of keys to values, got a list"}},
		{"bad list value", "tools:\n  list: some\n", nil,
			[]string{`c.yaml:2: tools.list: want permitted (only the tools the token may call) or all, got "some"`}},
		{"list is a mapping", "tools:\n  list: {a: b}\n", nil,
			[]string{"c.yaml:2: tools.list: want a single value, got a mapping"}},
		{"empty list value", "tools:\n  list:\n", nil,
			[]string{"c.yaml:2: tools.list: empty; want a single value"}},
		{"rules is a mapping", "tools:\n  rules:\n    match: a\n", nil,
			[]string{"c.yaml:3: tools.rules: want a list, got a mapping"}},
		{"rule is a string", "tools:\n  rules:\n    - whoami\n", nil,
			[]string{"c.yaml:3: tools.rules[0]: want a mapping of keys to values, got a single value"}},
		{"rule without match", "tools:\n  rules:\n    - scopes: [mcp]\n", nil,
			[]string{"c.yaml:3: tools.rules[0]: missing match"}},
		{"empty match", "tools:\n  rules:\n    - match: \"\"\n", nil,
			[]string{"c.yaml:3: tools.rules[0].match: empty; want a tool name or a pattern"}},
		{"null match", "tools:\n  rules:\n    - match:\n      scopes: [a]\n", nil,
			[]string{"c.yaml:3: tools.rules[0].match: empty; want a single value"}},
		{"match is a list", "tools:\n  rules:\n    - match: [a, b]\n", nil,
			[]string{"c.yaml:3: tools.rules[0].match: want a single value, got a list"}},
		{"bad pattern", "tools:\n  rules:\n    - match: \"files_[\"\n", nil,
			[]string{`c.yaml:3: tools.rules[0].match: "files_[" is not a valid pattern`}},
		{"pattern with trailing backslash", "tools:\n  rules:\n    - match: 'a\\'\n", nil,
			[]string{`c.yaml:3: tools.rules[0].match: "a\\" is not a valid pattern`}},
		{"match with a space", "tools:\n  rules:\n    - match: who ami\n", nil,
			[]string{`c.yaml:3: tools.rules[0].match: "who ami" contains a space`}},
		{"match too long", "tools:\n  rules:\n    - match: " + strings.Repeat("a", 129) + "\n", nil,
			[]string{"c.yaml:3: tools.rules[0].match: longer than 128 characters"}},
		{"empty scopes", "tools:\n  rules:\n    - match: a\n      scopes: []\n", nil,
			[]string{"c.yaml:4: tools.rules[0].scopes: empty; list the scopes"}},
		{"null scopes", "tools:\n  rules:\n    - match: a\n      scopes:\n", nil,
			[]string{"c.yaml:4: tools.rules[0].scopes: empty; list the scopes"}},
		{"scopes is a string", "tools:\n  rules:\n    - match: a\n      scopes: mcp\n", nil,
			[]string{"c.yaml:4: tools.rules[0].scopes: want a list, got a single value"}},
		{"two scopes in one item", "tools:\n  rules:\n    - match: a\n      scopes: [\"mcp admin\"]\n", nil,
			[]string{`c.yaml:4: tools.rules[0].scopes[0]: "mcp admin" is not one scope`}},
		{"scope with a quote", "tools:\n  rules:\n    - match: a\n      scopes:\n        - ok\n        - 'b\"c'\n", nil,
			[]string{`c.yaml:6: tools.rules[0].scopes[1]: "b\"c": scope contains a character RFC 6749 §3.3 does not allow`}},
		{"scope with a non-ASCII letter", "tools:\n  rules:\n    - match: a\n      scopes: [fichiers.lécture]\n", nil,
			[]string{`c.yaml:4: tools.rules[0].scopes[0]: "fichiers.lécture": scope contains a character`}},
		{"empty scope", "tools:\n  rules:\n    - match: a\n      scopes: [\"\"]\n", nil,
			[]string{`c.yaml:4: tools.rules[0].scopes[0]: "" is not one scope`}},
		{"scope is a list", "tools:\n  rules:\n    - match: a\n      scopes: [[a]]\n", nil,
			[]string{"c.yaml:4: tools.rules[0].scopes[0]: want a single value, got a list"}},
		{"duplicate scope", "tools:\n  rules:\n    - match: a\n      scopes: [x, y, x]\n", nil,
			[]string{`c.yaml:4: tools.rules[0].scopes[2]: "x" is listed twice`}},
		{"offline_access", "tools:\n  rules:\n    - match: a\n      scopes: [offline_access]\n", nil,
			[]string{"c.yaml:4: tools.rules[0].scopes[0]: offline_access is about refresh tokens"}},
		{"wildcard scope", "tools:\n  rules:\n    - match: a\n      scopes: [\"*\"]\n", nil,
			[]string{"c.yaml:4: tools.rules[0].scopes[0]: a wildcard scope grants everything"}},
		{"bad rate period", "tools:\n  rules:\n    - match: a\n      rate_limit: 60-W\n", nil,
			[]string{`c.yaml:4: tools.rules[0].rate_limit: want N-S, N-M, N-H or N-D (N > 0 requests per second, minute, hour or day), got "60-W"`}},
		{"rate without period", "tools:\n  rules:\n    - match: a\n      rate_limit: 60\n", nil,
			[]string{`c.yaml:4: tools.rules[0].rate_limit: want N-S`}},
		{"zero rate", "mcp:\n  rate_limit: 0-M\n", nil,
			[]string{`c.yaml:2: mcp.rate_limit: want N-S, N-M, N-H or N-D (N > 0`}},
		{"hide not a bool", "tools:\n  rules:\n    - match: a\n      hide: yes\n", nil,
			[]string{`c.yaml:4: tools.rules[0].hide: want true or false, got "yes"`}},
		{"hide with scopes and rate", "tools:\n  rules:\n    - match: a\n      hide: true\n      scopes: [x]\n      rate_limit: 1-S\n", nil,
			[]string{"c.yaml:5: tools.rules[0].scopes: has no effect on a hidden tool", "c.yaml:6: tools.rules[0].rate_limit: has no effect on a hidden tool"}},
		{"origins is a string", "mcp:\n  allowed_origins: https://a.example\n", nil,
			[]string{"c.yaml:2: mcp.allowed_origins: want a list, got a single value"}},
		{"origin with path", "mcp:\n  allowed_origins: [https://a.example/]\n", nil,
			[]string{`c.yaml:2: mcp.allowed_origins[0]: "https://a.example/": an origin has no path`}},
		{"origin with query", "mcp:\n  allowed_origins: [\"https://a.example?x\"]\n", nil,
			[]string{`c.yaml:2: mcp.allowed_origins[0]: "https://a.example?x": an origin has no path, query`}},
		{"origin without scheme", "mcp:\n  allowed_origins: [app.example.com]\n", nil,
			[]string{`c.yaml:2: mcp.allowed_origins[0]: "app.example.com" is not an origin`}},
		{"origin wildcard", "mcp:\n  allowed_origins: [\"*\"]\n", nil,
			[]string{`c.yaml:2: mcp.allowed_origins[0]: "*" is not an origin`}},
		{"origin scheme", "mcp:\n  allowed_origins: [\"ftp://a.example\"]\n", nil,
			[]string{`c.yaml:2: mcp.allowed_origins[0]: "ftp://a.example": scheme must be https or http`}},
		{"origin user", "mcp:\n  allowed_origins: [\"https://u@a.example\"]\n", nil,
			[]string{`c.yaml:2: mcp.allowed_origins[0]: "https://u@a.example": an origin has no user information`}},
		{"origin upper case", "mcp:\n  allowed_origins: [\"https://App.example\"]\n", nil,
			[]string{`c.yaml:2: mcp.allowed_origins[0]: "https://App.example": browsers send origins in lower case; use "https://app.example"`}},
		{"origin port", "mcp:\n  allowed_origins: [\"https://a.example:99999\", \"https://b.example:\", \"https://c.example:08\"]\n", nil,
			[]string{`c.yaml:2: mcp.allowed_origins[0]: "https://a.example:99999": port must be`, `c.yaml:2: mcp.allowed_origins[1]: "https://b.example:": empty port`, `c.yaml:2: mcp.allowed_origins[2]: "https://c.example:08": port must be`}},
		{"duplicate origin", "mcp:\n  allowed_origins:\n    - https://a.example\n    - https://a.example\n", nil,
			[]string{`c.yaml:4: mcp.allowed_origins[1]: "https://a.example" is listed twice`}},
		{"unset variable names it and the line", "tools:\n  rules:\n    - match: a\n      rate_limit: ${TOOL_RATE}\n", nil,
			[]string{"c.yaml:4: tools.rules[0].rate_limit: environment variable TOOL_RATE is not set"}},
		{"empty variable counts as unset", "mcp:\n  allowed_origins: [\"${ORIGIN}\"]\n", map[string]string{"ORIGIN": ""},
			[]string{"c.yaml:2: mcp.allowed_origins[0]: environment variable ORIGIN is not set"}},
		{"unterminated variable", "tools:\n  list: ${LIST\n", nil,
			[]string{"c.yaml:2: tools.list: unterminated ${"}},
		{"bad variable name", "tools:\n  list: ${1X}\n", nil,
			[]string{"c.yaml:2: tools.list: ${1X}: want ${NAME} or ${NAME:-default}"}},
		{"variable expanding to a bad value", "tools:\n  list: ${LIST}\n", map[string]string{"LIST": "none"},
			[]string{`c.yaml:2: tools.list: want permitted (only the tools the token may call) or all, got "none"`}},
		{"every problem at once", "tools:\n  list: x\n  rules:\n    - match: \"[\"\n    - match: ok\n      rate_limit: fast\nmcp:\n  allowed_origins: [nope]\n", nil,
			[]string{`c.yaml:2: tools.list:`, `c.yaml:4: tools.rules[0].match:`, `c.yaml:6: tools.rules[1].rate_limit:`, `c.yaml:8: mcp.allowed_origins[0]:`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseToolConfig("c.yaml", []byte(tt.yaml), toolconfigEnv(tt.env))
			if err == nil {
				t.Fatalf("no error; parsed %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("config %+v returned with an error", cfg)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("problem %d = %q, want it to start with %q", i, lines[i], want)
				}
			}
		})
	}
}

func TestToolConfigExpandVars(t *testing.T) {
	env := toolconfigEnv(map[string]string{"A": "x", "EMPTY": "", "B": "${A}"})
	tests := []struct {
		in, want, err string
	}{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "x"},
		{in: "pre-${A}-post", want: "pre-x-post"},
		{in: "${A}${A}", want: "xx"},
		{in: "${EMPTY:-d}", want: "d"},
		{in: "${UNSET:-}", want: ""},
		{in: "${UNSET:-a:-b}", want: "a:-b"},
		{in: "${A:-d}", want: "x"},
		{in: "${B}", want: "${A}"}, // a value is not expanded again
		{in: "$$", want: "$"},
		{in: "$${A}", want: "${A}"},
		{in: "$", want: "$"},
		{in: "a$b", want: "a$b"},
		{in: "${EMPTY}", err: "environment variable EMPTY is not set"},
		{in: "${UNSET}", err: "environment variable UNSET is not set"},
		{in: "${}", err: "${}: want ${NAME}"},
		{in: "${A B}", err: "${A B}: want ${NAME}"},
		{in: "${A-x}", err: "${A-x}: want ${NAME}"},
		{in: "x${A", err: "unterminated ${"},
	}
	for _, tt := range tests {
		got, err := expandVars(tt.in, env)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("expandVars(%q) error = %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("expandVars(%q) error = %v", tt.in, err)
		case tt.err == "" && got != tt.want:
			t.Errorf("expandVars(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestToolConfigLoad(t *testing.T) {
	dir := t.TempDir()
	t.Run("no path", func(t *testing.T) {
		cfg, err := loadToolConfig("", toolconfigEnv(nil))
		if err != nil || cfg == nil || len(cfg.Policy.Rules) != 0 || cfg.ListAll {
			t.Fatalf("loadToolConfig(\"\") = %+v, %v; want the zero config", cfg, err)
		}
	})
	t.Run("file", func(t *testing.T) {
		p := filepath.Join(dir, "mcpauth.yaml")
		if err := os.WriteFile(p, []byte(toolconfigExample), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadToolConfig(p, toolconfigEnv(map[string]string{"EXTRA_ORIGIN": "https://x.example"}))
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Policy.Rules) != 5 || len(cfg.AllowedOrigins) != 3 || len(cfg.Scopes) != 2 {
			t.Errorf("got %d rules, %d origins and %d scopes, want 5, 3 and 2", len(cfg.Policy.Rules), len(cfg.AllowedOrigins), len(cfg.Scopes))
		}
		_, err = loadToolConfig(p, toolconfigEnv(nil))
		if err == nil || !strings.HasPrefix(err.Error(), p+":20: mcp.allowed_origins[1]: environment variable EXTRA_ORIGIN is not set") {
			t.Errorf("error = %v, want it to name the file, line 20 and EXTRA_ORIGIN", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		p := filepath.Join(dir, "nope.yaml")
		_, err := loadToolConfig(p, toolconfigEnv(nil))
		if !os.IsNotExist(err) || !strings.Contains(err.Error(), p) {
			t.Errorf("error = %v, want not-exist naming %s", err, p)
		}
	})
	t.Run("too large", func(t *testing.T) {
		p := filepath.Join(dir, "big.yaml")
		if err := os.WriteFile(p, []byte(strings.Repeat("#\n", maxToolConfigSize)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadToolConfig(p, toolconfigEnv(nil))
		if err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("error = %v, want larger than", err)
		}
	})
}

// TestToolConfigResourceServer: what the file says is what the resource
// server does with it.
func TestToolConfigResourceServer(t *testing.T) {
	cfg, err := parseToolConfig("mcpauth.yaml", []byte(toolconfigExample), toolconfigEnv(map[string]string{"EXTRA_ORIGIN": "https://claude.ai"}))
	if err != nil {
		t.Fatal(err)
	}
	rc := resource.Config{
		Resource:       "https://auth.example.com/mcp",
		Issuer:         "https://auth.example.com",
		Verify:         func(context.Context, string) (*oauth.TokenInfo, error) { return nil, oauth.ErrInvalidToken },
		Scopes:         []string{"mcp"},
		Policy:         cfg.Policy,
		ListAllTools:   cfg.ListAll,
		AllowedOrigins: cfg.AllowedOrigins,
	}
	if cfg.MCPRateLimit != nil {
		rc.RateLimit = *cfg.MCPRateLimit
	}
	s, err := resource.New(rc, nil)
	if err != nil {
		t.Fatalf("resource.New with the example's settings: %v", err)
	}
	noop := func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{}, nil
	}
	for _, name := range []string{"files_read", "files_write_all", "debug_dump", "ping"} {
		s.AddTool(&mcp.Tool{Name: name, InputSchema: map[string]any{"type": "object"}}, noop)
	}
	want := map[string][]string{
		"whoami":          {"mcp"},
		"files_read":      {"files.read", "mcp"},
		"files_write_all": {"files.read", "mcp"}, // the example has no files_write* rule: files_* decides
		"ping":            {"mcp"},               // the rule gives no scopes: the tool's own (the basic scope)
	}
	if diff := cmp.Diff(want, s.ToolScopes()); diff != "" {
		t.Errorf("effective tool scopes (-want +got):\n%s", diff)
	}
}

// TestToolConfigDocExample: the worked example of docs/configuration.md is
// a valid file that means what the page says.
func TestToolConfigDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/configuration.md has no ```yaml block")
	}
	cfg, err := parseToolConfig("configuration.md", []byte(example), toolconfigEnv(nil))
	if err != nil {
		t.Fatalf("the documented example does not load:\n%v", err)
	}
	if !slices.Equal(cfg.AllowedOrigins, []string{"https://app.example.com", "http://localhost:6274"}) {
		t.Errorf("origins = %v, want the default of ${EXTRA_ORIGIN:-…} used", cfg.AllowedOrigins)
	}
	s, err := resource.New(resource.Config{
		Resource: "https://auth.example.com/mcp",
		Issuer:   "https://auth.example.com",
		Verify:   func(context.Context, string) (*oauth.TokenInfo, error) { return nil, oauth.ErrInvalidToken },
		Scopes:   []string{"mcp"},
		Policy:   cfg.Policy,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	noop := func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{}, nil
	}
	for _, name := range []string{"files_read", "files_write", "debug_dump"} {
		s.AddTool(&mcp.Tool{Name: name, InputSchema: map[string]any{"type": "object"}}, noop)
	}
	want := map[string][]string{
		"whoami":      {"mcp"},
		"files_read":  {"files.read"},
		"files_write": {"files.write"},
	}
	if diff := cmp.Diff(want, s.ToolScopes()); diff != "" {
		t.Errorf("effective tool scopes (-want +got):\n%s", diff)
	}
	if len(cfg.Scopes) != 2 || !cfg.Scopes[1].AdminOnly {
		t.Errorf("scopes = %+v, want files.read and an admin-only files.write", cfg.Scopes)
	}
}
