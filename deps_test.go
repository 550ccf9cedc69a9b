// Package deps_test keeps the import directions of STYLE.md true (the idea of
// tailscale's tstest/deptest): it lists each package's imports with `go list`
// and fails on a forbidden one, naming the reason.
package deps_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/mcpauth/mcpauth"

type pkg struct {
	ImportPath string
	Imports    []string // direct imports of the non-test files
	Deps       []string // every transitive dependency
	GoFiles    []string
	Dir        string
}

// rule forbids packages matching path (a prefix when it ends in "/...") from
// importing anything for which forbidden returns true.
type rule struct {
	path      string
	direct    bool // check direct imports only (else every transitive dependency)
	forbidden func(imp string) bool
	why       string
}

func ours(imp string) bool { return imp == module || strings.HasPrefix(imp, module+"/") }

func notStdlib(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return strings.Contains(first, ".")
}

func under(p string) func(string) bool {
	return func(imp string) bool { return imp == module+"/"+p || strings.HasPrefix(imp, module+"/"+p+"/") }
}

var rules = []rule{
	{path: "storage", forbidden: ours, why: "storage imports nothing of ours"},
	{path: "storage", direct: true, forbidden: func(i string) bool { return i == "net/http" }, why: "storage knows nothing of HTTP (fosite itself does)"},
	{path: "storage/pgcluster", forbidden: ours, why: "pgcluster imports nothing of ours"},
	{path: "authz/oauth", forbidden: notStdlib, why: "authz/oauth is standard library only"},
	{path: "web", forbidden: notStdlib, why: "web is standard library only"},
	{path: "migrations", forbidden: ours, why: "migrations imports nothing of ours"},
	{path: "authz/...", forbidden: under("resource"), why: "the AS never imports the RS; cmd/mcpauth wires them"},
	{path: "resource/...", forbidden: func(i string) bool { return under("authz")(i) && i != module+"/authz/oauth" },
		why: "the RS never imports the AS (only the shared vocabulary authz/oauth); cmd/mcpauth wires them"},
	{path: "...", direct: true, forbidden: func(i string) bool { return strings.HasPrefix(i, "github.com/go-jose/go-jose/v4") },
		why: "only authz/keys imports go-jose"},
	{path: "...", forbidden: under("cmd"), why: "nothing imports a command"},
	{path: "...", direct: true, forbidden: under("storage/storagetest"), why: "only tests use storagetest"},
}

func matches(pattern, importPath string) bool {
	rel := strings.TrimPrefix(strings.TrimPrefix(importPath, module), "/")
	if pattern == "..." {
		return true
	}
	if p, ok := strings.CutSuffix(pattern, "/..."); ok {
		return rel == p || strings.HasPrefix(rel, p+"/")
	}
	return rel == pattern
}

func TestImportDirections(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		for _, r := range rules {
			if !matches(r.path, p.ImportPath) {
				continue
			}
			if r.path == "..." && r.direct && strings.HasSuffix(p.ImportPath, "/authz/keys") {
				continue
			}
			list := p.Deps
			if r.direct {
				list = p.Imports
			}
			for _, imp := range list {
				if imp != p.ImportPath && r.forbidden(imp) {
					t.Errorf("%s imports %s: %s", p.ImportPath, imp, r.why)
				}
			}
		}
	}
}

// TestOnlyCmdReadsTheEnvironment: libraries take typed configuration; only
// cmd/mcpauth (and the test helper storagetest) reads environment variables
// (STYLE.md, Configuration).
func TestOnlyCmdReadsTheEnvironment(t *testing.T) {
	out, err := exec.Command("git", "grep", "-l", "-E", `os\.(Getenv|LookupEnv|Environ)\(`, "--", "*.go", ":!*_test.go", ":!cmd/", ":!storage/storagetest/").Output()
	if err != nil {
		// git grep exits 1 when nothing matches: that is the passing case.
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
			return
		}
		t.Fatalf("git grep: %v", err)
	}
	for _, f := range strings.Fields(string(out)) {
		t.Errorf("%s reads the environment; take the value in a Config instead", filepath.ToSlash(f))
	}
}
