package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/resource"
	"github.com/mcpauth/mcpauth/resource/upstream"
)

// upstreamConfigEnv is the environment the config tests parse with: a PATH
// holding one executable, a secret-looking variable that must never reach
// a stdio upstream, and an upstream credential.
func upstreamConfigEnv(t *testing.T) (env map[string]string, bin string) {
	t.Helper()
	dir := t.TempDir()
	bin = filepath.Join(dir, "mcp-server-test")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "not-executable"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"PATH":           dir,
		"HOME":           "/home/mcpauth",
		"MCPAUTH_SECRET": "never-for-upstreams",
		"SEARCH_TOKEN":   "search-credential",
	}, bin
}

func TestUpstreamConfigValid(t *testing.T) {
	env, bin := upstreamConfigEnv(t)
	cfg, err := parseToolConfig("up.yaml", []byte(`
tools:
  rules:
    - match: "*"
      scopes: [mcp]
upstreams:
  - name: files
    command: mcp-server-test
    args: [--root, /srv, "--key=${SEARCH_TOKEN}"]
    env:
      LOG_LEVEL: debug
    start: boot
    timeout: 2m
    forward_identity: [meta]
    rules:
      - match: "write_*"
        scopes: [files.write]
        rate_limit: 10-M
      - match: "*"
        scopes: [files.read]
  - name: search
    prefix: web.
    url: https://search.internal.example/mcp
    headers:
      X-Api-Key: key-${SEARCH_TOKEN}
    bearer: ${SEARCH_TOKEN}
    health_interval: 10s
    max_result_bytes: 65536
    forward_identity: [headers, meta]
`), envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Upstreams) != 2 {
		t.Fatalf("upstreams = %+v", cfg.Upstreams)
	}
	files, search := cfg.Upstreams[0], cfg.Upstreams[1]
	if files.Command != bin || files.Prefix != "files_" || !slices.Equal(files.Args, []string{"--root", "/srv", "--key=search-credential"}) ||
		files.Start != upstream.StartBoot || files.Timeout != 2*time.Minute || !files.IdentityMeta || files.IdentityHeaders {
		t.Errorf("files = %+v", files)
	}
	// The process gets PATH and HOME of mcpauth's environment and its own
	// variables, nothing else.
	if want := []string{"PATH=" + env["PATH"], "HOME=/home/mcpauth", "LOG_LEVEL=debug"}; !slices.Equal(files.Env, want) {
		t.Errorf("files env = %q, want %q", files.Env, want)
	}
	if search.URL != "https://search.internal.example/mcp" || search.Prefix != "web." || search.Bearer != "search-credential" ||
		search.Headers["X-Api-Key"] != "key-search-credential" || search.HealthInterval != 10*time.Second ||
		search.MaxResultBytes != 65536 || !search.IdentityHeaders || !search.IdentityMeta {
		t.Errorf("search = %+v", search)
	}
	// The upstream's rules come first, prefixed; then tools.rules.
	var matches []string
	for _, r := range cfg.Policy.Rules {
		matches = append(matches, r.Match)
	}
	if want := []string{"files_write_*", "files_*", "*"}; !slices.Equal(matches, want) {
		t.Errorf("rules = %q, want %q", matches, want)
	}
	// An upstream's rules reach only the tools it mounts.
	var owners []string
	for _, r := range cfg.Policy.Rules {
		owners = append(owners, r.Owner)
	}
	if want := []string{"files", "files", ""}; !slices.Equal(owners, want) {
		t.Errorf("rule owners = %q, want %q", owners, want)
	}
	if r := cfg.Policy.Rules[0]; r.RateLimit == nil || r.RateLimit.Limit != 10 || !slices.Equal(r.Scopes, []string{"files.write"}) {
		t.Errorf("files_write_* rule = %+v", r)
	}
	// Their scopes are supported, whether or not the upstream ever starts.
	if got := cfg.scopeNames(); !slices.Contains(got, "files.write") || !slices.Contains(got, "files.read") {
		t.Errorf("scopeNames = %q", got)
	}
	if err := upstream.Validate(cfg.Upstreams); err != nil {
		t.Errorf("the parsed configuration does not validate: %v", err)
	}
	// Secrets stay out of the log.
	var log bytes.Buffer
	newLogger(&log, DefaultConfig()).Info("upstream", "upstream", search)
	newLogger(&log, DefaultConfig()).Info("upstream", "upstream", files)
	if s := log.String(); strings.Contains(s, "search-credential") || strings.Contains(s, "debug") {
		t.Errorf("the log shows a credential or an environment value: %s", s)
	}
}

func TestUpstreamConfigErrors(t *testing.T) {
	env, _ := upstreamConfigEnv(t)
	for _, tc := range []struct{ name, file, want string }{
		{"bad command", `
upstreams:
  - name: files
    command: no-such-server
`, `up.yaml:4: upstreams[0].command: "no-such-server" not found in PATH`},
		{"not executable", `
upstreams:
  - name: files
    command: ` + filepath.Join(env["PATH"], "not-executable") + `
`, `up.yaml:4: upstreams[0].command: "` + filepath.Join(env["PATH"], "not-executable") + `" is not an executable file`},
		{"bad URL", `
upstreams:
  - name: search
    url: ftp://search.example/mcp
`, `up.yaml:4: upstreams[0].url: url "ftp://search.example/mcp": scheme must be https or http`},
		{"credentials in the URL", `
upstreams:
  - name: search
    url: https://user:pw@search.example/mcp
`, `up.yaml:4: upstreams[0].url: url "https://user:pw@search.example/mcp": put credentials in bearer or headers, not in the URL`},
		{"duplicate prefix", `
upstreams:
  - name: one
    prefix: x_
    url: https://a.example/mcp
  - name: two
    prefix: x_
    url: https://b.example/mcp
`, `up.yaml:7: upstreams[1].prefix: "x_" duplicates the prefix "x_" of line 4`},
		{"duplicate prefix and another problem: both reported", `
upstreams:
  - name: one
    prefix: x_
    url: https://a.example/mcp
  - name: two
    prefix: x_
    url: https://b.example/mcp
    enviroment: {A: b}
`, `up.yaml:9: upstreams[1].enviroment: unknown key; want one of args, bearer, command, dir, env, forward_identity, headers, health_interval, max_result_bytes, name, prefix, rules, start, start_timeout, timeout, url
up.yaml:7: upstreams[1].prefix: "x_" duplicates the prefix "x_" of line 4`},
		{"overlapping prefix", `
upstreams:
  - name: files
    url: https://a.example/mcp
  - name: files_archive
    url: https://b.example/mcp
`, `up.yaml:5: upstreams[1].prefix: "files_archive_" overlaps the prefix "files_" of line 3`},
		{"duplicate name", `
upstreams:
  - name: one
    prefix: a_
    url: https://a.example/mcp
  - name: one
    prefix: b_
    url: https://b.example/mcp
`, `up.yaml:6: upstreams[1].name: "one" is used twice (first on line 3)`},
		{"unknown key", `
upstreams:
  - name: files
    command: mcp-server-test
    enviroment: {A: b}
`, `up.yaml:5: upstreams[0].enviroment: unknown key`},
		{"command and url", `
upstreams:
  - name: files
    command: mcp-server-test
    url: https://a.example/mcp
`, `up.yaml:5: upstreams[0].url: an upstream has a command (stdio) or a url (Streamable HTTP), not both`},
		{"neither", `
upstreams:
  - name: files
`, `up.yaml:3: upstreams[0]: missing command (a stdio server) or url (a Streamable HTTP server)`},
		{"no name", `
upstreams:
  - url: https://a.example/mcp
`, `up.yaml:3: upstreams[0]: missing name`},
		{"headers on stdio", `
upstreams:
  - name: files
    command: mcp-server-test
    headers: {X-A: b}
`, `up.yaml:3: upstreams[0].headers: only for an upstream with a url`},
		{"client credential header", `
upstreams:
  - name: search
    url: https://a.example/mcp
    headers: {Authorization: Bearer x}
`, `up.yaml:5: upstreams[0].headers.Authorization: "Authorization": use bearer: for the upstream's credential`},
		{"identity header", `
upstreams:
  - name: search
    url: https://a.example/mcp
    headers: {X-Mcpauth-Subject: admin}
`, `up.yaml:5: upstreams[0].headers.X-Mcpauth-Subject: "X-Mcpauth-Subject" is set by mcpauth or the transport`},
		{"unset credential", `
upstreams:
  - name: search
    url: https://a.example/mcp
    bearer: ${NO_SUCH_TOKEN}
`, `up.yaml:5: upstreams[0].bearer: environment variable NO_SUCH_TOKEN is not set`},
		{"prefix of a built-in tool", `
upstreams:
  - name: admin
    url: https://a.example/mcp
`, `upstreams[0].prefix: "admin_" starts the name of mcpauth's own tool admin_list_grants`},
		{"explicit prefix of a built-in tool", `
upstreams:
  - name: w
    prefix: who
    url: https://a.example/mcp
`, `up.yaml:4: upstreams[0].prefix: "who" starts the name of mcpauth's own tool whoami`},
		{"bad start", `
upstreams:
  - name: files
    command: mcp-server-test
    start: eager
`, `up.yaml:5: upstreams[0].start: want lazy`},
		{"bad timeout", `
upstreams:
  - name: files
    command: mcp-server-test
    timeout: 2h
`, `up.yaml:5: upstreams[0].timeout: want a duration such as 30s or 2m, at most 1h, got "2h"`},
		{"bad rule", `
upstreams:
  - name: files
    command: mcp-server-test
    rules:
      - match: "*"
        scopes: [offline_access]
`, `up.yaml:7: upstreams[0].rules[0].scopes[0]: offline_access is about refresh tokens`},
		{"bad identity", `
upstreams:
  - name: files
    command: mcp-server-test
    forward_identity: [token]
`, `up.yaml:5: upstreams[0].forward_identity[0]: want meta`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseToolConfig("up.yaml", []byte(tc.file), envOf(env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
}

// TestServeRefusesABadUpstream: `mcpauth serve` does not start with a bad
// upstream, and names the file and line.
func TestServeRefusesABadUpstream(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mcpauth.yaml")
	if err := os.WriteFile(path, []byte("upstreams:\n  - name: files\n    command: no-such-mcp-server\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := safeEnv()
	env["MCPAUTH_CONFIG"] = path
	env["PATH"] = t.TempDir()
	var stdout bytes.Buffer
	err := run(t.Context(), []string{"serve"}, envOf(env), &stdout, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), path+`:3: upstreams[0].command: "no-such-mcp-server" not found in PATH`) {
		t.Fatalf("serve with a bad upstream: %v", err)
	}
	if strings.Contains(stdout.String(), "serving") {
		t.Error("serve started")
	}
}

// TestUpstreamDocExample: the worked example of docs/upstreams.md is a valid
// file that means what the page says.
func TestUpstreamDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/upstreams.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/upstreams.md has no ```yaml block")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "npx"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseToolConfig("upstreams.md", []byte(example), envOf(map[string]string{"PATH": dir, "SEARCH_MCP_TOKEN": "t0ken"}))
	if err != nil {
		t.Fatalf("the documented example does not load:\n%v", err)
	}
	if len(cfg.Upstreams) != 2 || cfg.Upstreams[0].Prefix != "files_" || cfg.Upstreams[1].Prefix != "web." || cfg.Upstreams[1].Bearer != "t0ken" {
		t.Fatalf("upstreams = %+v", cfg.Upstreams)
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
	for name, want := range map[string]string{
		"files_read_text_file": "files.read",
		"files_list_directory": "files.read",
		"files_directory_tree": "files.read",
		"files_write_file":     "files.write",
		"files_move_file":      "files.write",
		"web.query":            "search",
		"web.admin_purge":      "hidden",
		"files_search_files":   "files.read",
	} {
		owner := ""
		for _, u := range cfg.Upstreams {
			if strings.HasPrefix(name, u.Prefix) {
				owner = u.Name // as the upstream Manager mounts it
			}
		}
		visible, err := s.MountTool(owner, &mcp.Tool{Name: name, InputSchema: map[string]any{"type": "object"}}, noop)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(s.ToolScopes()[name], " ")
		if !visible {
			got = "hidden"
		}
		if got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	names := cfg.scopeNames()
	for _, sc := range []string{"files.read", "files.write", "search"} {
		if !slices.Contains(names, sc) {
			t.Errorf("scope %s is not offered; scopeNames = %v", sc, names)
		}
	}
}
