package storage_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// patCreate stores a token of u whose secret is secret.
func patCreate(t *testing.T, db *storage.DB, u *storage.User, name, secret string, ttl time.Duration) *storage.PersonalAccessToken {
	t.Helper()
	p := &storage.PersonalAccessToken{UserID: u.ID, Name: name, Scopes: []string{"mcp"},
		Audience: "https://as.example/mcp", ExpiresAt: time.Now().Add(ttl).UTC().Truncate(time.Microsecond), CreatedBy: u.Username}
	h := sha256.Sum256([]byte(secret))
	if err := db.CreatePersonalAccessToken(t.Context(), p, h[:]); err != nil {
		t.Fatalf("CreatePersonalAccessToken: %v", err)
	}
	return p
}

func TestPersonalAccessTokens(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	alice := userCreate(t, db, "alice", true)
	bob := userCreate(t, db, "bob", false)
	pa := patCreate(t, db, alice, "ci", "mcpat_alice", 24*time.Hour)
	pb := patCreate(t, db, bob, "laptop", "mcpat_bob", time.Hour)
	if pa.ID == "" || pa.Username != "alice" || pa.CreatedAt.IsZero() || !pa.UserIsAdmin {
		t.Errorf("created token = %+v; want id, username, created_at, owner admin", pa)
	}

	h := sha256.Sum256([]byte("mcpat_alice"))
	got, err := db.PersonalAccessTokenByHash(ctx, h[:])
	if err != nil {
		t.Fatalf("PersonalAccessTokenByHash: %v", err)
	}
	if got.ID != pa.ID || got.UserID != alice.ID || got.Name != "ci" || !got.ExpiresAt.Equal(pa.ExpiresAt) ||
		got.Audience != "https://as.example/mcp" || got.CreatedBy != "alice" || got.RevokedAt != nil {
		t.Errorf("by hash = %+v, want %+v", got, pa)
	}
	if byID, err := db.PersonalAccessToken(ctx, pa.ID); err != nil || byID.Name != "ci" {
		t.Errorf("PersonalAccessToken(id) = %+v, %v", byID, err)
	}
	miss := sha256.Sum256([]byte("mcpat_nobody"))
	if _, err := db.PersonalAccessTokenByHash(ctx, miss[:]); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unknown hash: %v, want ErrNotFound", err)
	}
	// The same hash twice is refused; bad input is refused.
	dup := &storage.PersonalAccessToken{UserID: bob.ID, Name: "x", Audience: "a", ExpiresAt: time.Now().Add(time.Hour)}
	if err := db.CreatePersonalAccessToken(ctx, dup, h[:]); !errors.Is(err, storage.ErrConflict) {
		t.Errorf("duplicate hash: %v, want ErrConflict", err)
	}
	dup.UserID = uuid.NewString()
	other := sha256.Sum256([]byte("other"))
	if err := db.CreatePersonalAccessToken(ctx, dup, other[:]); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing user: %v, want ErrNotFound", err)
	}
	if err := db.CreatePersonalAccessToken(ctx, &storage.PersonalAccessToken{UserID: bob.ID}, other[:]); err == nil {
		t.Error("a token without name, audience and expiry was stored")
	}
	// Only the hash is stored.
	if n := countRows(t, db, "personal_access_tokens", "token_hash = sha256('mcpat_alice'::bytea)"); n != 1 {
		t.Errorf("hash rows = %d, want 1", n)
	}

	list, err := db.ListPersonalAccessTokens(ctx, "")
	if err != nil || len(list) != 2 {
		t.Fatalf("ListPersonalAccessTokens(all) = %d, %v; want 2", len(list), err)
	}
	list, err = db.ListPersonalAccessTokens(ctx, bob.ID)
	if err != nil || len(list) != 1 || list[0].ID != pb.ID {
		t.Fatalf("ListPersonalAccessTokens(bob) = %+v, %v", list, err)
	}
	if list, _ := db.ListPersonalAccessTokens(ctx, "not-a-uuid"); len(list) != 0 {
		t.Errorf("bad user id listed %d", len(list))
	}

	// Touch writes at most once a minute.
	if err := db.TouchPersonalAccessToken(ctx, pa.ID); err != nil {
		t.Fatal(err)
	}
	first, _ := db.PersonalAccessToken(ctx, pa.ID)
	if first.LastUsedAt == nil {
		t.Fatal("last use not recorded")
	}
	if err := db.TouchPersonalAccessToken(ctx, pa.ID); err != nil {
		t.Fatal(err)
	}
	second, _ := db.PersonalAccessToken(ctx, pa.ID)
	if !second.LastUsedAt.Equal(*first.LastUsedAt) {
		t.Error("a second touch within a minute wrote again")
	}

	// Revocation: the owner check, the notification, the revoked set.
	l := revokeListen(t, db)
	if err := db.RevokePersonalAccessToken(ctx, pa.ID, bob.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("revoking another user's token: %v, want ErrNotFound", err)
	}
	if err := db.RevokePersonalAccessToken(ctx, uuid.NewString(), ""); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("revoking a missing token: %v, want ErrNotFound", err)
	}
	if err := db.RevokePersonalAccessToken(ctx, pa.ID, alice.ID); err != nil {
		t.Fatalf("RevokePersonalAccessToken: %v", err)
	}
	if got := revokeNext(t, l); got != pa.ID {
		t.Errorf("notified %q, want %q", got, pa.ID)
	}
	if err := db.RevokePersonalAccessToken(ctx, pa.ID, ""); err != nil {
		t.Errorf("revoking again: %v", err)
	}
	revokeNone(t, l, 100*time.Millisecond)
	revoked, err := db.RevokedGrants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if exp, ok := revoked[pa.ID]; !ok || !exp.Equal(pa.ExpiresAt) {
		t.Errorf("revoked set has %v (%t) for the token, want its expiry %v", exp, ok, pa.ExpiresAt)
	}
	if got, _ := db.PersonalAccessTokenByHash(ctx, h[:]); got.RevokedAt == nil {
		t.Error("RevokedAt not set")
	}

	// Revoking everything of a user counts their tokens with their grants.
	carol := userCreate(t, db, "carol", false)
	pc := patCreate(t, db, carol, "c", "mcpat_carol", time.Hour)
	if n, err := db.RevokeUserGrants(ctx, carol.ID); err != nil || n != 1 {
		t.Errorf("RevokeUserGrants(carol) = %d, %v; want 1 (her token)", n, err)
	}
	if got := revokeNext(t, l); got != pc.ID {
		t.Errorf("notified %q, want carol's token %q", got, pc.ID)
	}

	// Disabling a user revokes their tokens.
	if err := db.SetUserDisabled(ctx, bob.ID, true); err != nil {
		t.Fatal(err)
	}
	if got := revokeNext(t, l); got != pb.ID {
		t.Errorf("notified %q, want bob's token %q", got, pb.ID)
	}
	if got, _ := db.PersonalAccessToken(ctx, pb.ID); got.RevokedAt == nil || !got.UserDisabled {
		t.Errorf("after disabling bob: %+v; want revoked, owner disabled", got)
	}
	// Deleting the user deletes their tokens.
	if _, err := db.Pool().Exec(ctx, `DELETE FROM users WHERE id = $1`, bob.ID); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "personal_access_tokens", "user_id = $1", bob.ID); n != 0 {
		t.Errorf("%d tokens of a deleted user left", n)
	}
}

func TestPersonalAccessTokenCleanup(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	u := userCreate(t, db, "carol", false)
	patCreate(t, db, u, "old", "mcpat_old", -storage.PersonalAccessTokenRetention-time.Hour)
	patCreate(t, db, u, "recent", "mcpat_recent", -time.Hour) // expired, still listed
	patCreate(t, db, u, "live", "mcpat_live", time.Hour)
	if _, err := db.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := db.ListPersonalAccessTokens(ctx, u.ID)
	if err != nil || len(list) != 2 {
		t.Fatalf("after cleanup: %d tokens, %v; want 2", len(list), err)
	}
	for _, p := range list {
		if p.Name == "old" {
			t.Error("the long-expired token was kept")
		}
	}
}

// TestPersonalAccessTokensListUsesIndex: listing one user's tokens can use
// the index on (user_id, created_at) (it compared user_id::text before).
func TestPersonalAccessTokensListUsesIndex(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	u := userCreate(t, db, "ida", false)
	patCreate(t, db, u, "a", "mcpat_ida", time.Hour)
	conn, err := db.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.Background(), `RESET enable_seqscan`)
	rows, err := conn.Query(ctx, `EXPLAIN `+storage.ListUserPATsSQL, storage.MaxPersonalAccessTokens, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if !regexp.MustCompile(`Index Cond: \((p\.)?user_id = `).MatchString(plan) {
		t.Errorf("the plan does not look the user up in an index:\n%s", plan)
	}
}
