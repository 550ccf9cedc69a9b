package storage_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// cleanupLockKey must match storage's cleanupLockKey.
const cleanupLockKey int64 = 0x6d63_7061_636c_6e75

// seedExpiry inserts, in every table with expires_at, rows named by what
// Cleanup must do with them, and returns how many it must delete.
func seedExpiry(t *testing.T, db *storage.DB) (wantDeleted int64) {
	t.Helper()
	mustCreateClient(t, db, "c")
	_, err := db.Pool().Exec(t.Context(), `
		INSERT INTO users (id, username, password_hash) VALUES ('00000000-0000-4000-8000-000000000001', 'alice', 'x');

		INSERT INTO oauth_codes (sig_hash, request_id, client_id, subject, requested_at, expires_at, active,
			requested_scopes, granted_scopes, requested_aud, granted_aud, session)
		SELECT sha256(v.name::bytea), gen_random_uuid(), 'c', 'alice', now(), v.exp, false, '{}', '{}', '{}', '{}', '{}'
		FROM (VALUES ('code-expired-2h', now() - interval '2 hours'),       -- deleted
		             ('code-expired-30m', now() - interval '30 minutes'),   -- kept: replay still detected
		             ('code-live', now() + interval '1 minute')) v(name, exp);

		INSERT INTO oauth_access_tokens (sig_hash, request_id, client_id, subject, requested_at, expires_at,
			requested_scopes, granted_scopes, requested_aud, granted_aud, session)
		SELECT sha256(v.name::bytea), gen_random_uuid(), 'c', 'alice', now(), v.exp, '{}', '{}', '{}', '{}', '{}'
		FROM (VALUES ('at-expired', now() - interval '1 second'),           -- deleted
		             ('at-live', now() + interval '10 minutes'),
		             ('at-forever', 'infinity'::timestamptz)) v(name, exp);

		INSERT INTO oauth_refresh_tokens (sig_hash, request_id, client_id, subject, requested_at, expires_at, active,
			requested_scopes, granted_scopes, requested_aud, granted_aud, session)
		SELECT sha256(v.name::bytea), gen_random_uuid(), 'c', 'alice', now(), v.exp, v.active, '{}', '{}', '{}', '{}', '{}'
		FROM (VALUES ('rt-expired', now() - interval '1 second', false),    -- deleted
		             ('rt-rotated-live', now() + interval '1 day', false),  -- kept for reuse detection
		             ('rt-live', now() + interval '1 day', true)) v(name, exp, active);

		INSERT INTO oauth_jti (jti_hash, expires_at)
		VALUES (sha256('jti-expired'), now() - interval '1 second'), (sha256('jti-live'), now() + interval '1 hour');
		-- Enough expired JTIs for several batches.
		INSERT INTO oauth_jti (jti_hash, expires_at)
		SELECT sha256(('bulk-' || i)::bytea), now() - interval '1 minute' FROM generate_series(1, 12000) i;

		INSERT INTO oauth_clients (id, token_endpoint_auth_method, source) VALUES ('c2', 'none', 'dcr'), ('c3', 'none', 'dcr');
		INSERT INTO oauth_consents (user_id, client_id, scopes, audiences, expires_at) VALUES
			('00000000-0000-4000-8000-000000000001', 'c', '{mcp}', '{}', now() - interval '1 second'),  -- deleted
			('00000000-0000-4000-8000-000000000001', 'c2', '{mcp}', '{}', NULL),
			('00000000-0000-4000-8000-000000000001', 'c3', '{mcp}', '{}', now() + interval '1 day');

		INSERT INTO browser_sessions (id_hash, user_id, expires_at) VALUES
			(sha256('sess-expired'), '00000000-0000-4000-8000-000000000001', now() - interval '1 second'),  -- deleted
			(sha256('sess-live'), '00000000-0000-4000-8000-000000000001', now() + interval '1 day');`)
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	return 1 + 1 + 1 + 1 + 12000 + 1 + 1
}

func TestCleanup(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	want := seedExpiry(t, db)

	// While another replica holds the lock, Cleanup does nothing.
	other, err := db.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, `SELECT pg_advisory_lock($1)`, cleanupLockKey); err != nil {
		t.Fatal(err)
	}
	if n, err := db.Cleanup(ctx); err != nil || n != 0 {
		t.Fatalf("Cleanup while locked elsewhere = %d, %v; want 0, nil", n, err)
	}
	if _, err := other.Exec(ctx, `SELECT pg_advisory_unlock($1)`, cleanupLockKey); err != nil {
		t.Fatal(err)
	}
	other.Release()

	n, err := db.Cleanup(ctx)
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if n != want {
		t.Errorf("Cleanup deleted %d rows, want %d", n, want)
	}
	for _, c := range []struct {
		table, where string
		want         int
	}{
		{"oauth_codes", "", 2},
		{"oauth_codes", "sig_hash = sha256('code-expired-30m')", 1},
		{"oauth_access_tokens", "", 2},
		{"oauth_refresh_tokens", "", 2},
		{"oauth_refresh_tokens", "sig_hash = sha256('rt-rotated-live')", 1},
		{"oauth_jti", "", 1},
		{"oauth_consents", "", 2},
		{"browser_sessions", "", 1},
		{"users", "", 1},
		{"oauth_clients", "", 3},
	} {
		if got := countRows(t, db, c.table, c.where); got != c.want {
			t.Errorf("%s where %q: %d rows, want %d", c.table, c.where, got, c.want)
		}
	}

	// The lock was released: a second run may take it and finds nothing.
	if n, err := db.Cleanup(ctx); err != nil || n != 0 {
		t.Errorf("second Cleanup = %d, %v; want 0, nil", n, err)
	}
}

func TestRunCleanup(t *testing.T) {
	db := storagetest.New(t)
	seedExpiry(t, db)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		db.RunCleanup(ctx, time.Hour, slog.New(slog.DiscardHandler))
	}()
	// RunCleanup cleans once at start.
	deadline := time.Now().Add(30 * time.Second)
	for countRows(t, db, "oauth_jti", "") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("RunCleanup did not clean at start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunCleanup did not return after its context was cancelled")
	}
}
