package storage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// sweepLockKey must match storage's sweepLockKey.
const sweepLockKey int64 = 0x6d63_7073_7765_636c

// sweepClient stores a client of the given source and sets its created_at.
func sweepClient(t *testing.T, db *storage.DB, id, source string, age time.Duration) {
	t.Helper()
	c := &storage.Client{ID: id, TokenEndpointAuthMethod: storage.AuthMethodNone, Source: source}
	if err := db.CreateClient(t.Context(), c); err != nil {
		t.Fatalf("CreateClient(%s): %v", id, err)
	}
	if _, err := db.Pool().Exec(t.Context(), `UPDATE oauth_clients SET created_at = now() - make_interval(secs => $2) WHERE id = $1`,
		id, age.Seconds()); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteUnusedClients(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	const old, young = 8 * 24 * time.Hour, 24 * time.Hour

	// Name → whether the sweep (cutoff: 7 days ago) must delete it.
	want := map[string]bool{
		"old-unused":       true,
		"old-unused-2":     true,
		"young-unused":     false,
		"old-admin":        false,
		"old-cimd":         true,
		"old-used":         false,
		"old-with-code":    false,
		"old-with-access":  false,
		"old-with-refresh": false,
		"old-with-consent": false,
	}
	for id := range want {
		source, age := storage.SourceDCR, old
		switch id {
		case "young-unused":
			age = young
		case "old-admin":
			source = storage.SourceAdmin
		case "old-cimd":
			source = storage.SourceCIMD
		}
		sweepClient(t, db, id, source, age)
	}
	if err := db.TouchClient(ctx, "old-used"); err != nil {
		t.Fatalf("TouchClient: %v", err)
	}
	_, err := db.Pool().Exec(ctx, `
		INSERT INTO users (id, username, password_hash) VALUES ('00000000-0000-4000-8000-000000000001', 'alice', 'x');
		INSERT INTO oauth_codes (sig_hash, request_id, client_id, subject, requested_at, expires_at,
			requested_scopes, granted_scopes, requested_aud, granted_aud, session)
		VALUES (sha256('code'), gen_random_uuid(), 'old-with-code', 'alice', now(), now() + interval '1 minute', '{}', '{}', '{}', '{}', '{}');
		INSERT INTO oauth_access_tokens (sig_hash, request_id, client_id, subject, requested_at, expires_at,
			requested_scopes, granted_scopes, requested_aud, granted_aud, session)
		VALUES (sha256('at'), gen_random_uuid(), 'old-with-access', '', now(), now() + interval '10 minutes', '{}', '{}', '{}', '{}', '{}');
		INSERT INTO oauth_refresh_tokens (sig_hash, request_id, client_id, subject, requested_at, expires_at,
			requested_scopes, granted_scopes, requested_aud, granted_aud, session)
		VALUES (sha256('rt'), gen_random_uuid(), 'old-with-refresh', 'alice', now(), now() + interval '1 day', '{}', '{}', '{}', '{}', '{}');
		INSERT INTO oauth_consents (user_id, client_id, scopes, audiences)
		VALUES ('00000000-0000-4000-8000-000000000001', 'old-with-consent', '{mcp}', '{}');`)
	if err != nil {
		t.Fatalf("seed: %v", err)
	}

	// While another replica sweeps, this one does nothing.
	other, err := db.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, `SELECT pg_advisory_lock($1)`, sweepLockKey); err != nil {
		t.Fatal(err)
	}
	if n, err := db.DeleteUnusedClients(ctx, time.Now().Add(-7*24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("DeleteUnusedClients while locked elsewhere = %d, %v; want 0, nil", n, err)
	}
	if _, err := other.Exec(ctx, `SELECT pg_advisory_unlock($1)`, sweepLockKey); err != nil {
		t.Fatal(err)
	}
	other.Release()

	n, err := db.DeleteUnusedClients(ctx, time.Now().Add(-7*24*time.Hour))
	if err != nil {
		t.Fatalf("DeleteUnusedClients: %v", err)
	}
	if n != 3 {
		t.Errorf("DeleteUnusedClients deleted %d, want 3", n)
	}
	for id, gone := range want {
		exists := countRows(t, db, "oauth_clients", "id = $1", id) == 1
		if exists == gone {
			t.Errorf("client %s: exists = %v, want %v", id, exists, !gone)
		}
	}
	// The grants are still there.
	for _, table := range []string{"oauth_codes", "oauth_access_tokens", "oauth_refresh_tokens", "oauth_consents"} {
		if got := countRows(t, db, table, ""); got != 1 {
			t.Errorf("%s: %d rows, want 1", table, got)
		}
	}
	// Nothing left to sweep; the lock was released.
	if n, err := db.DeleteUnusedClients(ctx, time.Now().Add(-7*24*time.Hour)); err != nil || n != 0 {
		t.Errorf("second DeleteUnusedClients = %d, %v; want 0, nil", n, err)
	}
}

func TestDeleteUnusedClientsBatches(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	// More than one batch of old unused clients, and one young one.
	const many = 1234
	_, err := db.Pool().Exec(ctx, `
		INSERT INTO oauth_clients (id, token_endpoint_auth_method, source, created_at)
		SELECT 'bulk-' || i, 'none', 'dcr', now() - interval '30 days' FROM generate_series(1, $1) i;
		`, many)
	if err != nil {
		t.Fatal(err)
	}
	sweepClient(t, db, "young", storage.SourceDCR, time.Hour)
	n, err := db.DeleteUnusedClients(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != many {
		t.Fatalf("DeleteUnusedClients = %d, %v; want %d, nil", n, err, many)
	}
	if got := countRows(t, db, "oauth_clients", ""); got != 1 {
		t.Errorf("%d clients left, want 1 (the young one)", got)
	}
}

// A client locked by an in-flight transaction (here, one inserting a token for
// it, whose foreign-key check locks the client row) is skipped, not waited for
// and not deleted under it.
func TestDeleteUnusedClientsSkipsLockedClient(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	sweepClient(t, db, "busy", storage.SourceDCR, 30*24*time.Hour)
	sweepClient(t, db, "idle", storage.SourceDCR, 30*24*time.Hour)

	tx, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `INSERT INTO oauth_access_tokens (sig_hash, request_id, client_id, subject, requested_at, expires_at,
			requested_scopes, granted_scopes, requested_aud, granted_aud, session)
		VALUES (sha256('at'), gen_random_uuid(), 'busy', '', now(), now() + interval '10 minutes', '{}', '{}', '{}', '{}', '{}')`); err != nil {
		t.Fatal(err)
	}

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := db.DeleteUnusedClients(sctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("DeleteUnusedClients = %d, %v; want 1 (idle), nil", n, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("the token insert failed after the sweep: %v", err)
	}
	if got := countRows(t, db, "oauth_clients", "id = 'busy'"); got != 1 {
		t.Error("the busy client was deleted")
	}
	if n, err := db.DeleteUnusedClients(ctx, time.Now().Add(-24*time.Hour)); err != nil || n != 0 {
		t.Errorf("DeleteUnusedClients after the grant = %d, %v; want 0, nil", n, err)
	}
}

func TestTouchClient(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	mustCreateClient(t, db, "c")
	lastUsed := func() *time.Time {
		c, err := db.Client(ctx, "c")
		if err != nil {
			t.Fatal(err)
		}
		return c.LastUsedAt
	}
	if lastUsed() != nil {
		t.Fatal("a new client has last_used_at set")
	}
	if err := db.TouchClient(ctx, "c"); err != nil {
		t.Fatalf("TouchClient: %v", err)
	}
	first := lastUsed()
	if first == nil {
		t.Fatal("TouchClient did not set last_used_at")
	}
	// Within the minute, a second touch writes nothing.
	if err := db.TouchClient(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.Equal(*first) {
		t.Errorf("last_used_at moved within a minute: %v → %v", first, got)
	}
	// After a minute it moves again.
	if _, err := db.Pool().Exec(ctx, `UPDATE oauth_clients SET last_used_at = now() - interval '2 minutes' WHERE id = 'c'`); err != nil {
		t.Fatal(err)
	}
	if err := db.TouchClient(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); got == nil || time.Since(*got) > time.Minute {
		t.Errorf("last_used_at = %v after a touch, want about now", got)
	}
	if err := db.TouchClient(ctx, "missing"); err != nil {
		t.Errorf("TouchClient(missing) = %v, want nil", err)
	}
}

func TestUpdateRegisteredClient(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	c := mustCreateClient(t, db, "c")
	c.RegistrationTokenHash = []byte("hash-1")
	if err := db.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		current []byte
		ok      bool
	}{
		{"wrong hash", []byte("hash-0"), false},
		{"no hash", nil, false},
		{"current hash", []byte("hash-1"), true},
		{"the hash it replaced", []byte("hash-1"), false},
		{"the new hash", []byte("hash-2"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := *c
			u.RegistrationTokenHash = []byte("hash-2")
			u.Metadata.ClientName = "renamed " + tc.name
			err := db.UpdateRegisteredClient(ctx, &u, tc.current)
			if tc.ok != (err == nil) {
				t.Fatalf("UpdateRegisteredClient = %v, want ok = %v", err, tc.ok)
			}
			if !tc.ok && !isNotFound(err) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
			got, err := db.Client(ctx, "c")
			if err != nil {
				t.Fatal(err)
			}
			if renamed := got.Metadata.ClientName == u.Metadata.ClientName; renamed != tc.ok {
				t.Errorf("client name = %q after %s", got.Metadata.ClientName, tc.name)
			}
		})
	}
	missing := *c
	missing.ID = "missing"
	if err := db.UpdateRegisteredClient(ctx, &missing, []byte("hash-2")); !isNotFound(err) {
		t.Errorf("UpdateRegisteredClient(missing) = %v, want ErrNotFound", err)
	}
}

func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }
