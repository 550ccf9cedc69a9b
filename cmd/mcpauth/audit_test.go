package main

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// TestAuditCLIUserAndKeyCommands: the user and keys commands record what
// they did, with actor "cli" and never a password.
func TestAuditCLIUserAndKeyCommands(t *testing.T) {
	url := storagetest.URL(t)
	srv := &server{env: map[string]string{"MCPAUTH_DATABASE_URL": url, "MCPAUTH_SECRET": goodSecret, "MCPAUTH_ISSUER": "https://as.example"}}
	db := cliDB(t, srv)
	password := srv.addUser(t, "carol")
	cliAudited(t, db, storage.EventUserCreated)

	if out := cliMust(t, srv, "user", "admin", "carol", "on"); !strings.Contains(out, "carol is now an administrator") {
		t.Errorf("user admin on printed %q", out)
	}
	if u, _ := db.UserByName(t.Context(), "carol"); !u.IsAdmin {
		t.Error("carol is not an administrator")
	}
	if ev := cliAudited(t, db, storage.EventUserAdminChanged); ev.Subject != "carol" || ev.Details["admin"] != true {
		t.Errorf("user.admin_changed = %+v", ev)
	}
	// Demoting revokes the tokens holding an admin-only scope, not the others.
	cliMust(t, srv, "token", "create", "--user", "carol", "--name", "ops", "--scope", "mcp admin", "--expires", "2h")
	cliMust(t, srv, "token", "create", "--user", "carol", "--name", "plain", "--scope", "mcp", "--expires", "2h")
	if out := cliMust(t, srv, "user", "admin", "carol", "off"); !strings.Contains(out, "holding an admin-only scope (admin) are revoked") {
		t.Errorf("user admin off printed %q", out)
	}
	u, _ := db.UserByName(t.Context(), "carol")
	if u.IsAdmin {
		t.Error("carol is still an administrator")
	}
	pats, err := db.ListPersonalAccessTokens(t.Context(), u.ID)
	if err != nil || len(pats) != 2 {
		t.Fatalf("carol's tokens: %+v, %v", pats, err)
	}
	for _, p := range pats {
		if revoked := p.RevokedAt != nil; revoked != (p.Name == "ops") {
			t.Errorf("token %s revoked = %v after the demotion", p.Name, revoked)
		}
	}
	for _, args := range [][]string{{"user", "admin", "carol"}, {"user", "admin", "carol", "maybe"}, {"user", "admin", "nobody", "on"}} {
		if _, _, err := cliRun(t, srv, args...); err == nil {
			t.Errorf("mcpauth %s succeeded", strings.Join(args, " "))
		}
	}
	out := cliMust(t, srv, "user", "passwd", "carol")
	newPassword := userPasswordRE.FindStringSubmatch(out)[1]
	cliAudited(t, db, storage.EventUserPasswordReset)
	cliMust(t, srv, "user", "disable", "carol")
	cliAudited(t, db, storage.EventUserDisabled)
	cliMust(t, srv, "user", "enable", "carol")
	cliAudited(t, db, storage.EventUserEnabled)

	out = cliMust(t, srv, "keys", "rotate")
	if ev := cliAudited(t, db, storage.EventKeyRotated); ev.Subject == "" || !strings.Contains(out, ev.Subject) {
		t.Errorf("key.rotated = %+v; keys rotate printed %q", ev, out)
	}
	var n int
	for _, secret := range []string{password, newPassword} {
		if err := db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM audit_events a WHERE strpos(a::text, $1) > 0`, secret).Scan(&n); err != nil || n != 0 {
			t.Errorf("a password is in %d audit rows (%v)", n, err)
		}
	}
}

// TestAuditSurvivesShutdown: token requests are audited through the
// batching writer; a clean shutdown writes every queued event.
func TestAuditSurvivesShutdown(t *testing.T) {
	srv := startServer(t)
	db := cliDB(t, srv)
	id, secret := srv.adminClient(t)
	const n = 50
	for range n {
		if status, body := postForm(t, srv.endpoint(t, "token_endpoint"), url.Values{"grant_type": {"client_credentials"}}, id, secret); status != http.StatusOK {
			t.Fatalf("client_credentials: %d %v", status, body)
		}
	}
	if err := srv.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	var got int
	if err := db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE event = $1 AND client_id = $2`,
		storage.EventTokenIssued, id).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Errorf("%d token.issued events after shutdown, want %d", got, n)
	}
}

func TestAuditRetentionConfig(t *testing.T) {
	if got := DefaultConfig().AuditRetention; got != 90*24*time.Hour {
		t.Errorf("default audit retention = %v, want 90 days", got)
	}
	for v, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "0": 0, "0d": 0, "2160h": 2160 * time.Hour} {
		env := safeEnv()
		env["MCPAUTH_AUDIT_RETENTION"] = v
		cfg := DefaultConfig()
		if err := cfg.load(envOf(env)); err != nil {
			t.Errorf("%q: %v", v, err)
			continue
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%q: Validate: %v", v, err)
		}
		if cfg.AuditRetention != want {
			t.Errorf("%q = %v, want %v", v, cfg.AuditRetention, want)
		}
	}
	for _, v := range []string{"forever", "-1d", "10m", "xd"} {
		env := safeEnv()
		env["MCPAUTH_AUDIT_RETENTION"] = v
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), []string{"serve"}, envOf(env), &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "MCPAUTH_AUDIT_RETENTION") {
			t.Errorf("%q: %v, want an error naming MCPAUTH_AUDIT_RETENTION", v, err)
		}
	}
}
