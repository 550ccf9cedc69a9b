package storage_test

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

func TestBrowserSessions(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	u := userCreate(t, db, "frank", true)

	id := rand.Text()
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	s := &storage.BrowserSession{UserID: u.ID, ExpiresAt: expires, IP: "192.0.2.7", UserAgent: strings.Repeat("a", 600)}
	if err := db.CreateBrowserSession(ctx, id, s); err != nil {
		t.Fatal(err)
	}
	if s.CreatedAt.IsZero() || s.LastSeenAt.IsZero() {
		t.Errorf("CreateBrowserSession did not set the times: %+v", s)
	}

	// Only the hash of the id is stored.
	sum := sha256.Sum256([]byte(id))
	if n := countRows(t, db, "browser_sessions", "id_hash = $1", sum[:]); n != 1 {
		t.Errorf("%d rows keyed by sha256(id), want 1", n)
	}

	got, err := db.BrowserSession(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != u.ID || got.User == nil || got.User.Username != "frank" || !got.User.IsAdmin {
		t.Errorf("session user = %+v (id %q), want frank", got.User, got.UserID)
	}
	if !got.ExpiresAt.Equal(expires) || got.IP != "192.0.2.7" || len(got.UserAgent) != 512 {
		t.Errorf("session = expires %v ip %q ua %d bytes; want %v, 192.0.2.7, 512", got.ExpiresAt, got.IP, len(got.UserAgent), expires)
	}

	// Touch writes at most once per interval.
	if wrote, err := db.TouchBrowserSession(ctx, id, time.Minute); err != nil || wrote {
		t.Errorf("Touch right after creation = %v, %v; want false, nil", wrote, err)
	}
	if _, err := db.Pool().Exec(ctx, `UPDATE browser_sessions SET last_seen_at = now() - interval '2 minutes'`); err != nil {
		t.Fatal(err)
	}
	if wrote, err := db.TouchBrowserSession(ctx, id, time.Minute); err != nil || !wrote {
		t.Errorf("Touch after 2 minutes = %v, %v; want true, nil", wrote, err)
	}
	after, err := db.BrowserSession(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(after.LastSeenAt) > time.Minute {
		t.Errorf("LastSeenAt = %v after touch", after.LastSeenAt)
	}

	// Unknown, expired, disabled user's: not found.
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string
	}{
		{"unknown", func(t *testing.T) string { return rand.Text() }},
		{"expired", func(t *testing.T) string {
			id := rand.Text()
			if err := db.CreateBrowserSession(ctx, id, &storage.BrowserSession{UserID: u.ID, ExpiresAt: time.Now().Add(-time.Second)}); err != nil {
				t.Fatal(err)
			}
			return id
		}},
		{"disabled user", func(t *testing.T) string {
			v := userCreate(t, db, "gina", false)
			id := rand.Text()
			if err := db.CreateBrowserSession(ctx, id, &storage.BrowserSession{UserID: v.ID, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Pool().Exec(ctx, `UPDATE users SET disabled_at = now() WHERE id = $1`, v.ID); err != nil {
				t.Fatal(err)
			}
			return id
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := db.BrowserSession(ctx, tc.setup(t)); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		})
	}

	// A session for a user that does not exist cannot be created.
	if err := db.CreateBrowserSession(ctx, rand.Text(), &storage.BrowserSession{UserID: "00000000-0000-0000-0000-000000000000", ExpiresAt: expires}); err == nil {
		t.Error("session of a missing user created")
	}

	// Delete one; delete all of a user.
	id2 := rand.Text()
	if err := db.CreateBrowserSession(ctx, id2, &storage.BrowserSession{UserID: u.ID, ExpiresAt: expires}); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteBrowserSession(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := db.BrowserSession(ctx, id); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted session: err = %v, want ErrNotFound", err)
	}
	if err := db.DeleteBrowserSession(ctx, id); err != nil {
		t.Errorf("deleting a deleted session: %v", err)
	}
	if _, err := db.BrowserSession(ctx, id2); err != nil {
		t.Errorf("the other session was deleted too: %v", err)
	}
	if n, err := db.DeleteUserBrowserSessions(ctx, u.ID); err != nil || n != 2 { // id2 and the expired one
		t.Errorf("DeleteUserBrowserSessions = %d, %v; want 2, nil", n, err)
	}
	if _, err := db.BrowserSession(ctx, id2); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("session after DeleteUserBrowserSessions: err = %v, want ErrNotFound", err)
	}
}
