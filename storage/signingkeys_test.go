package storage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// testSigningKey returns a key row; the key material is opaque to storage.
func testSigningKey(kid string, activeFrom time.Time) storage.SigningKey {
	return storage.SigningKey{
		KID:        kid,
		Alg:        "ES256",
		PrivateKey: []byte("sealed:" + kid),
		PublicJWK:  []byte(fmt.Sprintf(`{"crv": "P-256", "kid": %q, "kty": "EC", "x": "x", "y": "y"}`, kid)),
		CreatedAt:  activeFrom,
		ActiveFrom: activeFrom,
	}
}

func keyTimePtr(t time.Time) *time.Time { return &t }

// keyNow is a fixed instant with microsecond precision (PostgreSQL's).
var keyNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestSigningKeysLifecycle(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()

	got, err := db.SigningKeys(ctx, keyNow)
	if err != nil || len(got) != 0 {
		t.Fatalf("SigningKeys on an empty table = %v, %v; want none", got, err)
	}

	a := testSigningKey("a", keyNow)
	inserted, err := db.InsertFirstSigningKey(ctx, a, keyNow)
	if err != nil || !inserted {
		t.Fatalf("InsertFirstSigningKey(a) = %v, %v; want inserted", inserted, err)
	}
	// A second first key is refused while a signs.
	inserted, err = db.InsertFirstSigningKey(ctx, testSigningKey("a2", keyNow), keyNow)
	if err != nil || inserted {
		t.Fatalf("InsertFirstSigningKey(a2) = %v, %v; want not inserted", inserted, err)
	}
	got, err = db.SigningKeys(ctx, keyNow)
	if err != nil {
		t.Fatal(err)
	}
	// jsonb normalises the JSON text (key order, spacing); the rest round-trips.
	a.PublicJWK = []byte(`{"x": "x", "y": "y", "crv": "P-256", "kid": "a", "kty": "EC"}`)
	if diff := cmp.Diff([]storage.SigningKey{a}, got); diff != "" {
		t.Errorf("SigningKeys after the first key (-want +got):\n%s", diff)
	}

	// Rotation at +1m, taking over at +11m: a retires then, removed 40m later.
	b := testSigningKey("b", keyNow.Add(11*time.Minute))
	b.CreatedAt = keyNow.Add(time.Minute)
	removeA := keyNow.Add(51 * time.Minute)
	if err := db.RotateSigningKey(ctx, b, removeA); err != nil {
		t.Fatalf("RotateSigningKey(b): %v", err)
	}
	// An emergency rotation at +2m supersedes both a and the scheduled b.
	c := testSigningKey("c", keyNow.Add(2*time.Minute))
	removeAB := keyNow.Add(42 * time.Minute)
	if err := db.RotateSigningKey(ctx, c, removeAB); err != nil {
		t.Fatalf("RotateSigningKey(c): %v", err)
	}
	got, err = db.SigningKeys(ctx, keyNow.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := []storage.SigningKey{a, c, b} // by active_from
	want[0].RetireAt, want[0].RemoveAt = keyTimePtr(c.ActiveFrom), keyTimePtr(removeAB)
	want[2].RetireAt, want[2].RemoveAt = keyTimePtr(c.ActiveFrom), keyTimePtr(removeAB)
	for i := range want {
		want[i].PublicJWK = got[i].PublicJWK // compared above
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SigningKeys after two rotations (-want +got):\n%s", diff)
	}

	// Removed keys are not listed from remove_at on, then deleted.
	got, err = db.SigningKeys(ctx, removeAB)
	if err != nil || len(got) != 1 || got[0].KID != "c" {
		t.Fatalf("SigningKeys at remove_at = %v, %v; want only c", got, err)
	}
	n, err := db.DeleteRemovedSigningKeys(ctx, removeAB.Add(-time.Second))
	if err != nil || n != 0 {
		t.Errorf("DeleteRemovedSigningKeys before remove_at = %d, %v; want 0", n, err)
	}
	n, err = db.DeleteRemovedSigningKeys(ctx, removeAB)
	if err != nil || n != 2 {
		t.Errorf("DeleteRemovedSigningKeys at remove_at = %d, %v; want 2", n, err)
	}
}

func TestInsertFirstSigningKeyAfterAllRetired(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	a := testSigningKey("a", keyNow)
	a.RetireAt = keyTimePtr(keyNow.Add(time.Minute))
	if ok, err := db.InsertFirstSigningKey(ctx, a, keyNow); err != nil || !ok {
		t.Fatalf("InsertFirstSigningKey(a) = %v, %v", ok, err)
	}
	// Once a has retired, nothing signs: a new first key is allowed.
	if ok, err := db.InsertFirstSigningKey(ctx, testSigningKey("b", keyNow.Add(time.Minute)), keyNow.Add(time.Minute)); err != nil || !ok {
		t.Errorf("InsertFirstSigningKey(b) after a retired = %v, %v; want inserted", ok, err)
	}
	// A key scheduled for later does not count as signing now.
	db2 := storagetest.New(t)
	if ok, err := db2.InsertFirstSigningKey(ctx, testSigningKey("later", keyNow.Add(time.Hour)), keyNow); err != nil || !ok {
		t.Fatalf("InsertFirstSigningKey(later) = %v, %v", ok, err)
	}
	if ok, err := db2.InsertFirstSigningKey(ctx, testSigningKey("now", keyNow), keyNow); err != nil || !ok {
		t.Errorf("InsertFirstSigningKey(now) with only a future key = %v, %v; want inserted", ok, err)
	}
}

func TestInsertFirstSigningKeyConcurrent(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	// Hold the table so that every inserter is parked inside its
	// transaction, then let them all go at once: without serialisation each
	// would see an empty table and insert its own first key.
	blocker, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(context.WithoutCancel(ctx))
	if _, err := blocker.Exec(ctx, `LOCK TABLE signing_keys IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	const n = 6 // below the pool size, so all of them are in PostgreSQL at once
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		winners  []string
		failures []error
	)
	for i := range n {
		wg.Go(func() {
			kid := fmt.Sprintf("k%02d", i)
			ok, err := db.InsertFirstSigningKey(ctx, testSigningKey(kid, keyNow), keyNow)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, err)
			}
			if ok {
				winners = append(winners, kid)
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		// Activity is snapshotted once per transaction unless cleared.
		if _, err := blocker.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
			t.Fatal(err)
		}
		if err := blocker.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d inserters are waiting on a lock", waiting, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := blocker.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("errors: %v", failures)
	}
	if len(winners) != 1 {
		t.Fatalf("%d concurrent first inserts succeeded (%v), want exactly 1", len(winners), winners)
	}
	got, err := db.SigningKeys(ctx, keyNow)
	if err != nil || len(got) != 1 || got[0].KID != winners[0] {
		t.Errorf("SigningKeys = %v, %v; want only %s", got, err, winners[0])
	}
}

func TestRotateSigningKeyDuplicateKID(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	a := testSigningKey("a", keyNow)
	if _, err := db.InsertFirstSigningKey(ctx, a, keyNow); err != nil {
		t.Fatal(err)
	}
	// Rotating to a key that already exists fails as a conflict and, being
	// one transaction, leaves a unretired.
	err := db.RotateSigningKey(ctx, a, keyNow.Add(time.Hour))
	if !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("RotateSigningKey(existing kid) = %v, want ErrConflict", err)
	}
	got, err := db.SigningKeys(ctx, keyNow)
	if err != nil || len(got) != 1 || got[0].RetireAt != nil {
		t.Errorf("after a failed rotation: %v, %v; want a unretired", got, err)
	}
}
