package storage_test

import (
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// userCreate stores a user with a placeholder hash (storage does not hash).
func userCreate(t *testing.T, db *storage.DB, name string, admin bool) *storage.User {
	t.Helper()
	u := &storage.User{Username: name, PasswordHash: "$argon2id$hash-of-" + name, IsAdmin: admin}
	if err := db.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser(%q): %v", name, err)
	}
	return u
}

func TestUserCRUD(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()

	alice := userCreate(t, db, "Alice", true)
	if alice.ID == "" || alice.CreatedAt.IsZero() || alice.UpdatedAt.IsZero() {
		t.Fatalf("CreateUser did not set ID and times: %+v", alice)
	}
	userCreate(t, db, "bob", false)

	for _, name := range []string{"Alice", "alice", "ALICE"} {
		got, err := db.UserByName(ctx, name)
		if err != nil {
			t.Fatalf("UserByName(%q): %v", name, err)
		}
		if diff := cmp.Diff(alice, got); diff != "" {
			t.Errorf("UserByName(%q) (-want +got):\n%s", name, diff)
		}
	}
	got, err := db.UserByID(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(alice, got); diff != "" {
		t.Errorf("UserByID (-want +got):\n%s", diff)
	}

	for _, dup := range []string{"alice", "ALICE", "Alice"} {
		err := db.CreateUser(ctx, &storage.User{Username: dup, PasswordHash: "x"})
		if !errors.Is(err, storage.ErrConflict) {
			t.Errorf("CreateUser(%q) again: err = %v, want ErrConflict", dup, err)
		}
	}
	if err := db.CreateUser(ctx, &storage.User{Username: "carol"}); err == nil {
		t.Error("CreateUser without a password hash succeeded")
	}

	for _, tc := range []struct{ name, byName, byID string }{
		{"unknown name", "nobody", ""},
		{"unknown id", "", "00000000-0000-0000-0000-000000000000"},
		{"malformed id", "", "not-a-uuid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.byName != "" {
				_, err = db.UserByName(ctx, tc.byName)
			} else {
				_, err = db.UserByID(ctx, tc.byID)
			}
			if !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		})
	}

	users, err := db.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.Username)
	}
	if diff := cmp.Diff([]string{"Alice", "bob"}, names); diff != "" {
		t.Errorf("ListUsers names (-want +got):\n%s", diff)
	}
}

func TestUserUpdates(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	u := userCreate(t, db, "dave", false)
	other := userCreate(t, db, "erin", false)

	newSession := func(userID string) string {
		t.Helper()
		id := rand.Text()
		if err := db.CreateBrowserSession(ctx, id, &storage.BrowserSession{UserID: userID, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	load := func() *storage.User {
		t.Helper()
		got, err := db.UserByID(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	// Admin role.
	if err := db.SetUserAdmin(ctx, u.ID, true, nil); err != nil {
		t.Fatal(err)
	}
	if !load().IsAdmin {
		t.Error("SetUserAdmin(true) did not stick")
	}
	if err := db.SetUserAdmin(ctx, u.ID, false, nil); err != nil {
		t.Fatal(err)
	}
	if load().IsAdmin {
		t.Error("SetUserAdmin(false) did not stick")
	}

	// Disabling ends the user's sessions, and only theirs; it keeps the
	// first DisabledAt.
	s1, sOther := newSession(u.ID), newSession(other.ID)
	if err := db.SetUserDisabled(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	first := load().DisabledAt
	if first == nil {
		t.Fatal("SetUserDisabled(true): DisabledAt is nil")
	}
	if n := countRows(t, db, "browser_sessions", "user_id = $1", u.ID); n != 0 {
		t.Errorf("after disable: %d sessions of the user, want 0", n)
	}
	if _, err := db.BrowserSession(ctx, sOther); err != nil {
		t.Errorf("another user's session was ended: %v", err)
	}
	if _, err := db.BrowserSession(ctx, s1); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("disabled user's session: err = %v, want ErrNotFound", err)
	}
	if err := db.SetUserDisabled(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	if again := load().DisabledAt; again == nil || !again.Equal(*first) {
		t.Errorf("disabling twice moved DisabledAt from %v to %v", first, again)
	}
	if err := db.SetUserDisabled(ctx, u.ID, false); err != nil {
		t.Fatal(err)
	}
	if load().DisabledAt != nil {
		t.Error("SetUserDisabled(false): still disabled")
	}

	// A new password ends the user's sessions.
	newSession(u.ID)
	if err := db.SetUserPassword(ctx, u.ID, "$argon2id$new"); err != nil {
		t.Fatal(err)
	}
	if got := load().PasswordHash; got != "$argon2id$new" {
		t.Errorf("PasswordHash = %q after SetUserPassword", got)
	}
	if n := countRows(t, db, "browser_sessions", "user_id = $1", u.ID); n != 0 {
		t.Errorf("after password change: %d sessions of the user, want 0", n)
	}
	if err := db.SetUserPassword(ctx, u.ID, ""); err == nil {
		t.Error("SetUserPassword with an empty hash succeeded")
	}

	// A rehash keeps sessions and loses to a concurrent password change.
	newSession(u.ID)
	ok, err := db.RehashUserPassword(ctx, u.ID, "$argon2id$stale", "$argon2id$rehash")
	if err != nil || ok {
		t.Errorf("RehashUserPassword with a stale old hash = %v, %v; want false, nil", ok, err)
	}
	ok, err = db.RehashUserPassword(ctx, u.ID, "$argon2id$new", "$argon2id$rehash")
	if err != nil || !ok {
		t.Errorf("RehashUserPassword = %v, %v; want true, nil", ok, err)
	}
	if got := load().PasswordHash; got != "$argon2id$rehash" {
		t.Errorf("PasswordHash = %q after rehash", got)
	}
	if n := countRows(t, db, "browser_sessions", "user_id = $1", u.ID); n != 1 {
		t.Errorf("after rehash: %d sessions of the user, want 1", n)
	}

	// Missing users.
	for _, id := range []string{"00000000-0000-0000-0000-000000000000", "nope"} {
		for name, err := range map[string]error{
			"SetUserAdmin":    db.SetUserAdmin(ctx, id, true, nil),
			"SetUserDisabled": db.SetUserDisabled(ctx, id, true),
			"SetUserPassword": db.SetUserPassword(ctx, id, "x"),
		} {
			if !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%s(%q): err = %v, want ErrNotFound", name, id, err)
			}
		}
	}
}

func TestCreateFirstUserOnce(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()

	// Several servers start at once on an empty database: one user results.
	const n = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
	)
	for i := range n {
		wg.Go(func() {
			u := &storage.User{Username: "admin", PasswordHash: "h" + string(rune('a'+i)), IsAdmin: true}
			ok, err := db.CreateFirstUser(ctx, u)
			if err != nil {
				t.Errorf("CreateFirstUser: %v", err)
			}
			if ok {
				mu.Lock()
				created++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if created != 1 {
		t.Errorf("%d callers created the first user, want 1", created)
	}
	if n := countRows(t, db, "users", ""); n != 1 {
		t.Errorf("%d users, want 1", n)
	}
	// Any other user, not just "admin", counts as a first user.
	ok, err := db.CreateFirstUser(ctx, &storage.User{Username: "someone", PasswordHash: "h"})
	if err != nil || ok {
		t.Errorf("CreateFirstUser with users present = %v, %v; want false, nil", ok, err)
	}
}
