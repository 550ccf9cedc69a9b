package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth/storage"
)

// cliRun runs mcpauth with args in srv's environment.
func cliRun(t *testing.T, srv *server, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(t.Context(), args, envOf(srv.env), &out, &errOut)
	return out.String(), errOut.String(), err
}

// cliMust runs mcpauth with args and fails the test if it fails.
func cliMust(t *testing.T, srv *server, args ...string) string {
	t.Helper()
	out, errOut, err := cliRun(t, srv, args...)
	if err != nil {
		t.Fatalf("mcpauth %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// cliDB opens srv's database for checks.
func cliDB(t *testing.T, srv *server) *storage.DB {
	t.Helper()
	db, err := storage.Open(t.Context(), srv.env["MCPAUTH_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// cliAudited checks that the CLI recorded event with actor "cli".
func cliAudited(t *testing.T, db *storage.DB, event string) storage.AuditEvent {
	t.Helper()
	ev, err := db.ListAuditEvents(context.Background(), storage.AuditFilter{Event: event, User: "cli"})
	if err != nil || len(ev) == 0 {
		t.Fatalf("no %s event by cli: %v", event, err)
	}
	return ev[0]
}

var (
	cliClientIDRE = regexp.MustCompile(`(?m)^client_id: (\S+)$`)
	cliSecretRE   = regexp.MustCompile(`(?m)^client_secret: (\S+)$`)
)

func TestClientCommands(t *testing.T) {
	srv := startServer(t)
	db := cliDB(t, srv)
	ctx := t.Context()

	// A confidential client_credentials client with the admin scope.
	out := cliMust(t, srv, "client", "create", "--name", "Nightly job", "--grant-type", "client_credentials", "--scope", "mcp admin")
	id, secret := cliClientIDRE.FindStringSubmatch(out), cliSecretRE.FindStringSubmatch(out)
	if id == nil || secret == nil || !strings.Contains(out, "shown only now") {
		t.Fatalf("client create printed %q", out)
	}
	c, err := db.Client(ctx, id[1])
	if err != nil || c.Source != storage.SourceAdmin || c.Metadata.ClientName != "Nightly job" || strings.Contains(string(c.SecretHash), secret[1]) {
		t.Fatalf("stored client = %+v, %v", c, err)
	}
	if ev := cliAudited(t, db, storage.EventClientRegistered); ev.ClientID != id[1] || ev.ClientIP != "" {
		t.Errorf("client.registered = %+v", ev)
	}
	ccToken := func() (int, map[string]any) {
		return postForm(t, srv.endpoint(t, "token_endpoint"), url.Values{"grant_type": {"client_credentials"}, "scope": {"mcp admin"}}, id[1], secret[1])
	}
	if status, body := ccToken(); status != http.StatusOK || body["scope"] != "mcp admin" {
		t.Fatalf("client_credentials: %d %v", status, body)
	}

	// A public client for browsers and apps.
	out = cliMust(t, srv, "client", "create", "--name", "Desktop app", "--public", "--redirect-uri", "http://127.0.0.1/cb",
		"--redirect-uri", "myapp:/cb")
	pub := cliClientIDRE.FindStringSubmatch(out)
	if pub == nil || cliSecretRE.MatchString(out) {
		t.Fatalf("public client create printed %q", out)
	}

	out = cliMust(t, srv, "client", "list")
	for _, want := range []string{id[1], "Nightly job", "created by admin", pub[1], "Desktop app"} {
		if !strings.Contains(out, want) {
			t.Errorf("client list lacks %q:\n%s", want, out)
		}
	}
	if out := cliMust(t, srv, "client", "list", "--query", "desk"); strings.Contains(out, id[1]) || !strings.Contains(out, pub[1]) {
		t.Errorf("client list --query desk:\n%s", out)
	}
	if out := cliMust(t, srv, "client", "list", "--source", "dcr"); !strings.Contains(out, "no clients") {
		t.Errorf("client list --source dcr:\n%s", out)
	}
	out = cliMust(t, srv, "client", "show", id[1])
	for _, want := range []string{"client_credentials", "mcp admin", "live grants:    1", "created by admin"} {
		if !strings.Contains(out, want) {
			t.Errorf("client show lacks %q:\n%s", want, out)
		}
	}

	// Disabled: no token; enabled again: tokens again.
	if out := cliMust(t, srv, "client", "disable", id[1]); !strings.Contains(out, "1 grant(s) revoked") {
		t.Errorf("disable printed %q", out)
	}
	cliAudited(t, db, storage.EventClientDisabled)
	if status, body := ccToken(); status != http.StatusUnauthorized || body["error"] != "invalid_client" {
		t.Errorf("client_credentials of a disabled client: %d %v", status, body)
	}
	cliMust(t, srv, "client", "enable", id[1])
	cliAudited(t, db, storage.EventClientEnabled)
	if status, body := ccToken(); status != http.StatusOK {
		t.Errorf("client_credentials after enable: %d %v", status, body)
	}

	// Delete needs --yes.
	if _, _, err := cliRun(t, srv, "client", "delete", id[1]); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Errorf("delete without --yes: %v", err)
	}
	cliMust(t, srv, "client", "delete", id[1], "--yes")
	cliAudited(t, db, storage.EventClientDeleted)
	if _, err := db.Client(ctx, id[1]); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted client: %v", err)
	}

	// Bad input: a clear message, non-zero exit.
	for _, args := range [][]string{
		{"client", "create"},
		{"client", "create", "--name", "x", "--public", "--grant-type", "client_credentials"},
		{"client", "create", "--name", "x", "--grant-type", "password"},
		{"client", "create", "--name", "x"}, // authorization_code without a redirect URI
		{"client", "create", "--name", "x", "--redirect-uri", "http://evil.example/cb"},
		{"client", "list", "--source", "nope"},
		{"client", "show", "no-such-client"},
		{"client", "disable", "no-such-client"},
		{"client", "frobnicate"},
		{"client"},
	} {
		if out, _, err := cliRun(t, srv, args...); err == nil {
			t.Errorf("mcpauth %s succeeded: %q", strings.Join(args, " "), out)
		}
	}
}
