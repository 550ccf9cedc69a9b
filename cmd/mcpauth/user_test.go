package main

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/authz"
	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// userRun runs mcpauth user … against the database at url, with stdin as
// standard input when not nil (os.Stdin is swapped for a pipe, so these
// tests do not run in parallel).
func userRun(t *testing.T, url string, stdin *string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	if stdin != nil {
		r, w, perr := os.Pipe()
		if perr != nil {
			t.Fatal(perr)
		}
		go func() {
			w.WriteString(*stdin)
			w.Close()
		}()
		old := os.Stdin
		os.Stdin = r
		defer func() { os.Stdin = old; r.Close() }()
	}
	var out, errOut bytes.Buffer
	env := map[string]string{"MCPAUTH_DATABASE_URL": url}
	err = run(t.Context(), append([]string{"user"}, args...), envOf(env), &out, &errOut)
	return out.String(), errOut.String(), err
}

func ptr(s string) *string { return &s }

var userPasswordRE = regexp.MustCompile(`(?m)^password: (\S+)$`)

// userStored loads a user by name.
func userStored(t *testing.T, db *storage.DB, name string) *storage.User {
	t.Helper()
	u, err := db.UserByName(t.Context(), name)
	if err != nil {
		t.Fatalf("user %q: %v", name, err)
	}
	return u
}

func TestUserCommands(t *testing.T) {
	url := storagetest.URL(t)
	db, err := storage.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// list on an empty database.
	out, _, err := userRun(t, url, nil, "list")
	if err != nil || !strings.Contains(out, "no users") {
		t.Errorf("list (empty) = %q, %v", out, err)
	}

	// add with a generated password: printed once, and it is the one stored.
	out, _, err = userRun(t, url, nil, "add", "alice", "--admin")
	if err != nil {
		t.Fatalf("add alice: %v", err)
	}
	m := userPasswordRE.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "created user alice (administrator)") {
		t.Fatalf("add alice printed %q; want the user and a password line", out)
	}
	alice := userStored(t, db, "alice")
	if !alice.IsAdmin || alice.DisabledAt != nil {
		t.Errorf("alice = %+v, want an enabled admin", alice)
	}
	userLogin(t, db, "alice", m[1], true)

	// add with --password-stdin (flags before the name too); nothing printed
	// but the confirmation.
	out, _, err = userRun(t, url, ptr("bob's secret pw\n"), "add", "--password-stdin", "Bob")
	if err != nil {
		t.Fatalf("add Bob --password-stdin: %v", err)
	}
	if strings.Contains(out, "password") || strings.Contains(out, "secret") {
		t.Errorf("add --password-stdin printed %q", out)
	}
	bob := userStored(t, db, "bob")
	if bob.IsAdmin || bob.Username != "Bob" {
		t.Errorf("Bob = %+v, want a non-admin named Bob", bob)
	}
	userLogin(t, db, "bob", "bob's secret pw", true)

	// Errors.
	for _, tc := range []struct {
		name  string
		stdin *string
		args  []string
		want  string
	}{
		{"duplicate name in another case", nil, []string{"add", "ALICE"}, "already exists"},
		{"bad name", nil, []string{"add", "al ice"}, "username"},
		{"long name", nil, []string{"add", strings.Repeat("a", 65)}, "1 to 64"},
		{"empty stdin", ptr(""), []string{"add", "carol", "--password-stdin"}, "empty"},
		{"short stdin password", ptr("short\n"), []string{"add", "carol", "--password-stdin"}, "too short"},
		{"long stdin password", ptr(strings.Repeat("x", 2000) + "\n"), []string{"add", "carol", "--password-stdin"}, "longer than"},
		{"unknown user disable", nil, []string{"disable", "nobody"}, "no user named"},
		{"unknown user passwd", nil, []string{"passwd", "nobody"}, "no user named"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := userRun(t, url, tc.stdin, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("user %v: err = %v, want one mentioning %q", tc.args, err, tc.want)
			}
		})
	}
	for _, args := range [][]string{{}, {"frobnicate"}, {"add"}, {"add", "a", "b"}, {"list", "x"}, {"disable"}, {"add", "x", "--nope"}} {
		if _, _, err := userRun(t, url, nil, args...); !errors.Is(err, errUsage) {
			t.Errorf("user %q: err = %v, want errUsage", args, err)
		}
	}
	if _, err := db.UserByName(t.Context(), "carol"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("carol was created by a failed add: %v", err)
	}

	// Sessions of bob, to see disable and passwd end them.
	bobSession := func() string {
		id := authz.GeneratePassword()
		if err := db.CreateBrowserSession(t.Context(), id, &storage.BrowserSession{UserID: bob.ID, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		return id
	}

	// passwd with --password-stdin, then generated.
	s1 := bobSession()
	if _, _, err := userRun(t, url, ptr("new bob password\r\n"), "passwd", "BOB", "--password-stdin"); err != nil {
		t.Fatalf("passwd --password-stdin: %v", err)
	}
	userLogin(t, db, "bob", "bob's secret pw", false)
	userLogin(t, db, "bob", "new bob password", true)
	if _, err := db.BrowserSession(t.Context(), s1); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("bob's session survived passwd: %v", err)
	}
	out, _, err = userRun(t, url, nil, "passwd", "bob")
	if err != nil {
		t.Fatalf("passwd: %v", err)
	}
	if m := userPasswordRE.FindStringSubmatch(out); m == nil {
		t.Errorf("passwd printed %q, want a password line", out)
	} else {
		userLogin(t, db, "bob", m[1], true)
	}

	// disable ends sessions; enable restores sign-in.
	s2 := bobSession()
	if out, _, err := userRun(t, url, nil, "disable", "bob"); err != nil || !strings.Contains(out, "disabled Bob") {
		t.Fatalf("disable = %q, %v", out, err)
	}
	if userStored(t, db, "bob").DisabledAt == nil {
		t.Error("bob is not disabled")
	}
	if _, err := db.BrowserSession(t.Context(), s2); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("bob's session survived disable: %v", err)
	}

	// list shows both, with their roles and states.
	out, _, err = userRun(t, url, nil, "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("list = %q, want a header and two users", out)
	}
	if f := strings.Fields(lines[1]); f[0] != "alice" || f[1] != "yes" || f[2] != "-" {
		t.Errorf("list line %q, want alice yes -", lines[1])
	}
	if f := strings.Fields(lines[2]); f[0] != "Bob" || f[1] != "no" || f[2] == "-" {
		t.Errorf("list line %q, want Bob no <disabled at>", lines[2])
	}

	if _, _, err := userRun(t, url, nil, "enable", "bob"); err != nil {
		t.Fatal(err)
	}
	if userStored(t, db, "bob").DisabledAt != nil {
		t.Error("bob is still disabled after enable")
	}
}

// userLogin checks name's stored hash against password.
func userLogin(t *testing.T, db *storage.DB, name, password string, want bool) {
	t.Helper()
	u := userStored(t, db, name)
	if got := authz.CheckPassword(u.PasswordHash, password); got != want {
		t.Errorf("password %q of %s matches = %v, want %v", password, name, got, want)
	}
}

func TestCreateFirstAdmin(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()

	// Two servers start at once: one admin.
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results []string
	)
	for range 2 {
		wg.Go(func() {
			name, pw, created, err := createFirstAdmin(ctx, db)
			if err != nil {
				t.Error(err)
			}
			if created {
				mu.Lock()
				results = append(results, name+" "+pw)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(results) != 1 {
		t.Fatalf("created %d first admins, want 1", len(results))
	}
	name, pw, _ := strings.Cut(results[0], " ")
	if name != "admin" {
		t.Errorf("first admin is %q", name)
	}
	u := userStored(t, db, "admin")
	if !u.IsAdmin || !authz.CheckPassword(u.PasswordHash, pw) {
		t.Errorf("admin = %+v; want an admin whose password is the one returned", u)
	}
	// Later starts do nothing.
	if _, _, created, err := createFirstAdmin(ctx, db); created || err != nil {
		t.Errorf("second start: created %v, err %v", created, err)
	}
	// Audited once, without the password.
	ev, err := db.ListAuditEvents(ctx, storage.AuditFilter{Event: storage.EventUserCreated})
	if err != nil || len(ev) != 1 || ev[0].Subject != "admin" || ev[0].Actor != "system" {
		t.Errorf("user.created events = %+v, %v", ev, err)
	}
	var n int
	if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_events a WHERE strpos(a::text, $1) > 0`, pw).Scan(&n); err != nil || n != 0 {
		t.Errorf("the password is in %d audit rows (%v)", n, err)
	}
}
