package storage_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// TestRefreshTokenGrace: within the grace window only the grant's
// immediately previous refresh token still works, and using it retires the
// token its rotation issued.
func TestRefreshTokenGrace(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "client-grace")
	req := newRequest(client, "alice")
	req.Form = url.Values{}
	const grace = 10 * time.Second

	issue := func(rt, at string) {
		t.Helper()
		if err := db.CreateAccessTokenSession(ctx, at, req); err != nil {
			t.Fatalf("CreateAccessTokenSession(%s): %v", at, err)
		}
		if err := db.CreateRefreshTokenSession(ctx, rt, at, req); err != nil {
			t.Fatalf("CreateRefreshTokenSession(%s): %v", rt, err)
		}
	}
	active := func(rt string, g time.Duration) bool {
		t.Helper()
		got, err := db.GetRefreshTokenSessionGrace(ctx, rt, &fosite.DefaultSession{}, g)
		if err != nil && !errors.Is(err, fosite.ErrInactiveToken) {
			t.Fatalf("GetRefreshTokenSessionGrace(%s): %v", rt, err)
		}
		if got == nil || got.GetID() != req.ID {
			t.Fatalf("GetRefreshTokenSessionGrace(%s) returned no request", rt)
		}
		return err == nil
	}
	accessExists := func(at string) bool {
		_, err := db.GetAccessTokenSession(ctx, at, &fosite.DefaultSession{})
		return err == nil
	}

	issue("rt-1", "at-1")
	if err := db.RotateRefreshTokenGrace(ctx, req.ID, "rt-1", grace); err != nil {
		t.Fatalf("rotate rt-1: %v", err)
	}
	issue("rt-2", "at-2")
	if !active("rt-1", grace) {
		t.Errorf("rt-1 just rotated: inactive within the grace window")
	}
	if active("rt-1", 0) {
		t.Errorf("rt-1 active without a grace window")
	}

	// The client lost rt-2 and retries with rt-1: rt-2 is retired (at-2, a
	// JWT, lives until it expires).
	if err := db.RotateRefreshTokenGrace(ctx, req.ID, "rt-1", grace); err != nil {
		t.Fatalf("rotate rt-1 within grace: %v", err)
	}
	issue("rt-3", "at-3")
	if active("rt-2", grace) || !accessExists("at-2") {
		t.Errorf("after the retry with rt-1: rt-2 still active, or at-2 gone")
	}
	if !active("rt-1", grace) || !active("rt-3", grace) {
		t.Errorf("rt-1 (still the previous token) or rt-3 inactive")
	}

	// Once rt-3 is rotated, rt-1 is no longer the immediately previous token.
	if err := db.RotateRefreshTokenGrace(ctx, req.ID, "rt-3", grace); err != nil {
		t.Fatalf("rotate rt-3: %v", err)
	}
	issue("rt-4", "at-4")
	if active("rt-1", grace) {
		t.Errorf("rt-1 active after a later rotation")
	}
	if err := db.RotateRefreshTokenGrace(ctx, req.ID, "rt-1", grace); !errors.Is(err, fosite.ErrSerializationFailure) {
		t.Errorf("rotate rt-1 after a later rotation = %v, want ErrSerializationFailure", err)
	}
	if !active("rt-3", grace) || !active("rt-4", grace) {
		t.Errorf("rt-3 (previous) or rt-4 (current) inactive")
	}

	// A revoked grant has no grace.
	if err := db.RevokeRefreshToken(ctx, req.ID); err != nil {
		t.Fatal(err)
	}
	if active("rt-3", grace) || active("rt-4", grace) {
		t.Errorf("tokens of a revoked grant active")
	}
	if err := db.RotateRefreshTokenGrace(ctx, req.ID, "rt-3", grace); !errors.Is(err, fosite.ErrSerializationFailure) {
		t.Errorf("rotate in a revoked grant = %v, want ErrSerializationFailure", err)
	}

	// The window closes.
	req = newRequest(client, "bob")
	req.Form = url.Values{}
	issue("rt-a", "at-a")
	if err := db.RotateRefreshTokenGrace(ctx, req.ID, "rt-a", grace); err != nil {
		t.Fatal(err)
	}
	issue("rt-b", "at-b")
	ageUse(t, db, "rt-a", time.Minute)
	if active("rt-a", grace) {
		t.Errorf("rt-a active a minute after its rotation")
	}
	if err := db.RotateRefreshTokenGrace(ctx, req.ID, "rt-a", grace); !errors.Is(err, fosite.ErrSerializationFailure) {
		t.Errorf("rotate after the window = %v, want ErrSerializationFailure", err)
	}
	if !active("rt-b", grace) || !accessExists("at-b") {
		t.Errorf("rt-b or at-b retired by a refused retry")
	}
}

// ageUse moves the rotation time of refresh token sig back by d.
func ageUse(t *testing.T, db *storage.DB, sig string, d time.Duration) {
	t.Helper()
	if _, err := db.Pool().Exec(context.Background(),
		`UPDATE oauth_refresh_tokens SET used_at = used_at - make_interval(secs => $2) WHERE sig_hash = sha256($1::bytea)`,
		sig, d.Seconds()); err != nil {
		t.Fatal(err)
	}
}
