package storage_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// revokeGrantFixture is one grant with a code, an access token and a refresh
// token, as a code exchange leaves it (the code used).
type revokeGrantFixture struct {
	req                *fosite.Request
	code, access, refr string
}

// revokeNewGrant stores a grant of client to subject; the access token
// expires in accessTTL.
func revokeNewGrant(t *testing.T, db *storage.DB, client fosite.Client, subject string, accessTTL time.Duration) revokeGrantFixture {
	t.Helper()
	ctx := t.Context()
	req := newRequest(client, subject)
	req.Session.(*fosite.DefaultSession).ExpiresAt[fosite.AccessToken] = reqNow.Add(accessTTL)
	g := revokeGrantFixture{req: req, code: "code-" + req.ID, access: "at-" + req.ID, refr: "rt-" + req.ID}
	if err := db.CreateAuthorizeCodeSession(ctx, g.code, req); err != nil {
		t.Fatal(err)
	}
	req.Form = url.Values{}
	if err := db.CreateAccessTokenSession(ctx, g.access, req); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateRefreshTokenSession(ctx, g.refr, g.access, req); err != nil {
		t.Fatal(err)
	}
	return g
}

// revokeState reports what is left of g: whether its code and refresh token
// are active and whether its access token row exists.
func revokeState(t *testing.T, db *storage.DB, g revokeGrantFixture) (code, refresh, access bool) {
	t.Helper()
	ctx := t.Context()
	_, err := db.GetAuthorizeCodeSession(ctx, g.code, &fosite.DefaultSession{})
	code = err == nil
	if err != nil && !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		t.Fatalf("GetAuthorizeCodeSession: %v", err)
	}
	_, err = db.GetRefreshTokenSession(ctx, g.refr, &fosite.DefaultSession{})
	refresh = err == nil
	if err != nil && !errors.Is(err, fosite.ErrInactiveToken) {
		t.Fatalf("GetRefreshTokenSession: %v", err)
	}
	_, err = db.GetAccessTokenSession(ctx, g.access, &fosite.DefaultSession{})
	access = err == nil
	if err != nil && !errors.Is(err, fosite.ErrNotFound) {
		t.Fatalf("GetAccessTokenSession: %v", err)
	}
	return code, refresh, access
}

// revokeListen starts a revocation listener, closed at the end of the test.
func revokeListen(t *testing.T, db *storage.DB) *storage.RevocationListener {
	t.Helper()
	l, err := db.ListenRevocations(t.Context())
	if err != nil {
		t.Fatalf("ListenRevocations: %v", err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

// revokeNext waits up to 5 s for the next notification.
func revokeNext(t *testing.T, l *storage.RevocationListener) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	id, err := l.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return id
}

// revokeNone checks that no notification arrives within d.
func revokeNone(t *testing.T, l *storage.RevocationListener, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	if id, err := l.Next(ctx); err == nil {
		t.Fatalf("unexpected notification %q", id)
	}
}

func TestRevokeGrant(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "client-revoke")
	l := revokeListen(t, db)
	a := revokeNewGrant(t, db, client, "alice", 10*time.Minute)
	b := revokeNewGrant(t, db, client, "alice", 10*time.Minute)

	if err := db.RevokeGrant(ctx, a.req.ID); err != nil {
		t.Fatalf("RevokeGrant: %v", err)
	}
	if code, refresh, access := revokeState(t, db, a); code || refresh || access {
		t.Errorf("after RevokeGrant: code active %t, refresh active %t, access row %t; want none", code, refresh, access)
	}
	if code, refresh, access := revokeState(t, db, b); !code || !refresh || !access {
		t.Errorf("another grant of the same client was touched: code %t, refresh %t, access %t", code, refresh, access)
	}
	if got := revokeNext(t, l); got != a.req.ID {
		t.Errorf("notification = %q, want %q", got, a.req.ID)
	}
	set, err := db.RevokedGrants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The record lasts as long as the grant's access token.
	if diff := cmp.Diff(map[string]time.Time{a.req.ID: reqNow.Add(10 * time.Minute)}, set); diff != "" {
		t.Errorf("RevokedGrants (-want +got):\n%s", diff)
	}

	// Again: not an error, and the expiry stays (no access token is left to
	// say otherwise).
	if err := db.RevokeGrant(ctx, a.req.ID); err != nil {
		t.Errorf("second RevokeGrant: %v", err)
	}
	if set, _ := db.RevokedGrants(ctx); !set[a.req.ID].Equal(reqNow.Add(10 * time.Minute)) {
		t.Errorf("expiry after a second revocation = %v, want %v", set[a.req.ID], reqNow.Add(10*time.Minute))
	}
	revokeNext(t, l)

	for _, id := range []string{uuid.NewString(), "not-a-uuid", ""} {
		if err := db.RevokeGrant(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("RevokeGrant(%q) = %v, want ErrNotFound", id, err)
		}
	}
	if n := countRows(t, db, "revoked_grants", ""); n != 1 {
		t.Errorf("revoked_grants has %d rows, want 1", n)
	}
}

// TestRevokeFosite: fosite's RevokeAccessToken and RevokeRefreshToken (the
// /revoke endpoint, refresh token reuse, code reuse) each revoke the whole
// grant, record it and publish it.
func TestRevokeFosite(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "client-revoke")
	l := revokeListen(t, db)
	for name, revoke := range map[string]func(context.Context, string) error{
		"RevokeAccessToken":  db.RevokeAccessToken,
		"RevokeRefreshToken": db.RevokeRefreshToken,
	} {
		g := revokeNewGrant(t, db, client, "alice", 5*time.Minute)
		if err := revoke(ctx, g.req.ID); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if code, refresh, access := revokeState(t, db, g); code || refresh || access {
			t.Errorf("%s: code active %t, refresh active %t, access row %t; want none", name, code, refresh, access)
		}
		if got := revokeNext(t, l); got != g.req.ID {
			t.Errorf("%s: notification %q, want %q", name, got, g.req.ID)
		}
		set, err := db.RevokedGrants(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if exp, ok := set[g.req.ID]; !ok || !exp.Equal(reqNow.Add(5*time.Minute)) {
			t.Errorf("%s: revoked set has %v (%t), want expiry %v", name, exp, ok, reqNow.Add(5*time.Minute))
		}
	}
}

// TestRevokeNotifyOnCommit: the notification is part of the transaction: it
// is delivered on commit, and a rolled back revocation neither records nor
// publishes anything.
func TestRevokeNotifyOnCommit(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "client-revoke")
	l := revokeListen(t, db)
	g := revokeNewGrant(t, db, client, "alice", 10*time.Minute)

	rollback := errors.New("roll back")
	err := db.InTx(ctx, func(ctx context.Context) error {
		if err := db.RevokeGrant(ctx, g.req.ID); err != nil {
			return err
		}
		return rollback
	})
	if !errors.Is(err, rollback) {
		t.Fatalf("InTx = %v", err)
	}
	revokeNone(t, l, 200*time.Millisecond)
	if code, refresh, access := revokeState(t, db, g); !code || !refresh || !access {
		t.Errorf("rolled back revocation changed the grant: code %t, refresh %t, access %t", code, refresh, access)
	}
	if n := countRows(t, db, "revoked_grants", ""); n != 0 {
		t.Errorf("rolled back revocation left %d rows", n)
	}

	txCtx, err := db.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeGrant(txCtx, g.req.ID); err != nil {
		t.Fatal(err)
	}
	revokeNone(t, l, 200*time.Millisecond) // not before the commit
	if err := db.Commit(txCtx); err != nil {
		t.Fatal(err)
	}
	if got := revokeNext(t, l); got != g.req.ID {
		t.Errorf("notification %q, want %q", got, g.req.ID)
	}
}

// TestRevokeRacesRefresh: a refresh rotation in flight when the grant is
// revoked commits first, and the revocation then covers the tokens it
// issued.
func TestRevokeRacesRefresh(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "client-revoke")
	g := revokeNewGrant(t, db, client, "alice", 10*time.Minute)

	// The rotation, as fosite's refresh handler does it, held open.
	txCtx, err := db.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RotateRefreshToken(txCtx, g.req.ID, g.refr); err != nil {
		t.Fatal(err)
	}
	next := revokeGrantFixture{req: g.req, code: g.code, access: "at-2-" + g.req.ID, refr: "rt-2-" + g.req.ID}
	if err := db.CreateAccessTokenSession(txCtx, next.access, g.req); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateRefreshTokenSession(txCtx, next.refr, next.access, g.req); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- db.RevokeGrant(ctx, g.req.ID) }()
	select {
	case err := <-done:
		t.Fatalf("RevokeGrant returned while a rotation of the grant was in flight: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := db.Commit(txCtx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("RevokeGrant: %v", err)
	}
	if _, refresh, access := revokeState(t, db, next); refresh || access {
		t.Errorf("tokens issued by the racing refresh survived: refresh active %t, access row %t", refresh, access)
	}
}

func TestRevokeClientAndUserGrants(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	c1 := mustCreateClient(t, db, "client-1")
	c2 := mustCreateClient(t, db, "client-2")
	alice, bob := uuid.NewString(), uuid.NewString()
	a1 := revokeNewGrant(t, db, c1, alice, 10*time.Minute)
	a2 := revokeNewGrant(t, db, c2, alice, 10*time.Minute)
	b1 := revokeNewGrant(t, db, c1, bob, 10*time.Minute)
	b2 := revokeNewGrant(t, db, c2, bob, 10*time.Minute)
	// An expired grant is not live: nothing to revoke.
	old := revokeNewGrant(t, db, c1, bob, -time.Hour)
	if _, err := db.Pool().Exec(ctx, `UPDATE oauth_refresh_tokens SET expires_at = now() - interval '1 hour' WHERE request_id = $1;`, old.req.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx, `UPDATE oauth_codes SET active = false WHERE request_id = $1`, old.req.ID); err != nil {
		t.Fatal(err)
	}
	l := revokeListen(t, db)

	n, err := db.RevokeUserGrants(ctx, alice)
	if err != nil || n != 2 {
		t.Fatalf("RevokeUserGrants(alice) = %d, %v; want 2", n, err)
	}
	got := []string{revokeNext(t, l), revokeNext(t, l)}
	if want := []string{a1.req.ID, a2.req.ID}; !cmp.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Errorf("notifications %v, want %v", got, want)
	}
	n, err = db.RevokeClientGrants(ctx, "client-1")
	if err != nil || n != 1 {
		t.Fatalf("RevokeClientGrants(client-1) = %d, %v; want 1 (bob's; alice's is revoked)", n, err)
	}
	if got := revokeNext(t, l); got != b1.req.ID {
		t.Errorf("notification %q, want %q", got, b1.req.ID)
	}
	for name, g := range map[string]revokeGrantFixture{"a1": a1, "a2": a2, "b1": b1} {
		if code, refresh, access := revokeState(t, db, g); code || refresh || access {
			t.Errorf("%s: code %t, refresh %t, access %t after revocation", name, code, refresh, access)
		}
	}
	if code, refresh, access := revokeState(t, db, b2); !code || !refresh || !access {
		t.Errorf("b2 touched: code %t, refresh %t, access %t", code, refresh, access)
	}
	for _, f := range []func() (int, error){
		func() (int, error) { return db.RevokeUserGrants(ctx, "not-a-uuid") },
		func() (int, error) { return db.RevokeUserGrants(ctx, "") },
		func() (int, error) { return db.RevokeClientGrants(ctx, "no-such-client") },
		func() (int, error) { return db.RevokeClientGrants(ctx, "") },
		func() (int, error) { return db.RevokeUserGrants(ctx, alice) }, // nothing live left
	} {
		if n, err := f(); n != 0 || err != nil {
			t.Errorf("revoke nothing = %d, %v; want 0, nil", n, err)
		}
	}
	revokeNone(t, l, 100*time.Millisecond)
}

func TestListGrants(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	c1 := mustCreateClient(t, db, "client-1")
	c2 := mustCreateClient(t, db, "client-2")
	alice, bob := uuid.NewString(), uuid.NewString()
	a1 := revokeNewGrant(t, db, c1, alice, 10*time.Minute)
	a2 := revokeNewGrant(t, db, c2, alice, 10*time.Minute)
	b1 := revokeNewGrant(t, db, c1, bob, 10*time.Minute)
	revoked := revokeNewGrant(t, db, c1, bob, 10*time.Minute)
	if err := db.RevokeGrant(ctx, revoked.req.ID); err != nil {
		t.Fatal(err)
	}
	// A client_credentials grant: an access token only, no subject.
	cc := newRequest(c2, "")
	cc.Form = url.Values{}
	if err := db.CreateAccessTokenSession(ctx, "at-cc", cc); err != nil {
		t.Fatal(err)
	}
	// Refresh a1: a rotation and a new pair.
	if err := db.RotateRefreshToken(ctx, a1.req.ID, a1.refr); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateAccessTokenSession(ctx, "at-a1-2", a1.req); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateRefreshTokenSession(ctx, "rt-a1-2", "at-a1-2", a1.req); err != nil {
		t.Fatal(err)
	}

	ids := func(gs []storage.Grant) []string {
		var out []string
		for _, g := range gs {
			out = append(out, g.ID)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	for _, tc := range []struct {
		f    storage.GrantFilter
		want []string
	}{
		{storage.GrantFilter{}, sorted(a1.req.ID, a2.req.ID, b1.req.ID, cc.ID)},
		{storage.GrantFilter{UserID: alice}, sorted(a1.req.ID, a2.req.ID)},
		{storage.GrantFilter{ClientID: "client-1"}, sorted(a1.req.ID, b1.req.ID)},
		{storage.GrantFilter{UserID: bob, ClientID: "client-1"}, sorted(b1.req.ID)},
		{storage.GrantFilter{UserID: bob, ClientID: "client-2"}, nil},
		{storage.GrantFilter{UserID: "not-a-uuid"}, nil},
		{storage.GrantFilter{ClientID: "client-2", Limit: 1}, nil}, // length checked below
	} {
		got, err := db.ListGrants(ctx, tc.f)
		if err != nil {
			t.Fatalf("ListGrants(%+v): %v", tc.f, err)
		}
		if tc.f.Limit == 1 {
			if len(got) != 1 {
				t.Errorf("ListGrants(%+v) = %d grants, want 1", tc.f, len(got))
			}
			continue
		}
		if diff := cmp.Diff(tc.want, ids(got)); diff != "" {
			t.Errorf("ListGrants(%+v) (-want +got):\n%s", tc.f, diff)
		}
	}

	all, err := db.ListGrants(ctx, storage.GrantFilter{UserID: alice, ClientID: "client-1"})
	if err != nil || len(all) != 1 {
		t.Fatalf("ListGrants(alice, client-1) = %v, %v", all, err)
	}
	g := all[0]
	if g.ClientID != "client-1" || g.Subject != alice || !cmp.Equal(g.Scopes, []string{"mcp"}) {
		t.Errorf("grant = %+v, want client-1, alice, [mcp]", g)
	}
	if !g.CreatedAt.Equal(reqNow) || !g.ExpiresAt.Equal(reqNow.Add(24*time.Hour)) {
		t.Errorf("created %v, expires %v; want %v and the refresh token's %v", g.CreatedAt, g.ExpiresAt, reqNow, reqNow.Add(24*time.Hour))
	}
	if g.RefreshedAt == nil || time.Since(*g.RefreshedAt) > time.Minute {
		t.Errorf("RefreshedAt = %v, want the rotation just now", g.RefreshedAt)
	}
	ccs, err := db.ListGrants(ctx, storage.GrantFilter{ClientID: "client-2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range ccs {
		if g.ID == cc.ID && (g.Subject != "" || g.RefreshedAt != nil || !g.ExpiresAt.Equal(reqNow.Add(10*time.Minute))) {
			t.Errorf("client_credentials grant = %+v", g)
		}
	}
}

// TestRevokeCleanup: Cleanup deletes revoked_grants rows once their access
// tokens have expired and the retention has passed, and keeps the others;
// RevokedGrants leaves the deletable ones out too.
func TestRevokeCleanup(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	live, recent, old := uuid.NewString(), uuid.NewString(), uuid.NewString()
	_, err := db.Pool().Exec(ctx, fmt.Sprintf(`INSERT INTO revoked_grants (grant_id, expires_at) VALUES
		($1, now() + interval '5 minutes'),
		($2, now() - interval '%[1]f seconds' + interval '20 seconds'),
		($3, now() - interval '%[1]f seconds' - interval '1 second')`, storage.RevokedGrantRetention.Seconds()),
		live, recent, old)
	if err != nil {
		t.Fatal(err)
	}
	set, err := db.RevokedGrants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := set[old]; ok || len(set) != 2 {
		t.Errorf("RevokedGrants = %v, want the live and the recent grant", set)
	}
	if _, err := db.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "revoked_grants", "grant_id = $1", old); n != 0 {
		t.Errorf("expired revoked grant kept by Cleanup")
	}
	if n := countRows(t, db, "revoked_grants", ""); n != 2 {
		t.Errorf("Cleanup left %d rows, want 2", n)
	}
}

// TestRevocationListenerReconnect: a listener whose connection was
// terminated fails, and a new one receives again.
func TestRevocationListenerReconnect(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "client-revoke")
	l := revokeListen(t, db)
	if _, err := db.Pool().Exec(ctx, `SELECT pg_terminate_backend($1)`, int32(l.PID())); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := l.Next(wctx); err == nil || wctx.Err() != nil {
		t.Fatalf("Next on a terminated connection = %v, want a connection error at once", err)
	}
	l2 := revokeListen(t, db)
	g := revokeNewGrant(t, db, client, "alice", time.Minute)
	if err := db.RevokeGrant(ctx, g.req.ID); err != nil {
		t.Fatal(err)
	}
	// Someone else's NOTIFY on the channel is skipped.
	if _, err := db.Pool().Exec(ctx, `SELECT pg_notify($1, 'not a grant')`, storage.RevocationChannel); err != nil {
		t.Fatal(err)
	}
	if got := revokeNext(t, l2); got != g.req.ID {
		t.Errorf("notification %q, want %q", got, g.req.ID)
	}
}

// TestDisablingAUserRevokesTheirGrants: a disabled user keeps no grant.
func TestDisablingAUserRevokesTheirGrants(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "disable-client")
	u := &storage.User{Username: "carol", PasswordHash: "x"}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	g := revokeNewGrant(t, db, client, u.ID, time.Hour)
	other := revokeNewGrant(t, db, client, "someone-else", time.Hour)
	if err := db.SetUserDisabled(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	if code, refresh, access := revokeState(t, db, g); code || refresh || access {
		t.Errorf("after disabling the user: code %v refresh %v access %v still live", code, refresh, access)
	}
	if _, _, access := revokeState(t, db, other); !access {
		t.Error("another user's grant was revoked too")
	}
	revoked, err := db.RevokedGrants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := revoked[g.req.ID]; !ok {
		t.Errorf("the grant is not in the revoked set: %v", revoked)
	}
}

// TestDeletingAClientRevokesItsGrants: a deleted client's JWTs must not
// outlive it at /mcp, so its grants are recorded as revoked and published.
func TestDeletingAClientRevokesItsGrants(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "doomed-client")
	g := revokeNewGrant(t, db, client, "someone", time.Hour)
	l := revokeListen(t, db)
	if err := db.DeleteClient(ctx, client.ID); err != nil {
		t.Fatal(err)
	}
	if got := revokeNext(t, l); got != g.req.ID {
		t.Errorf("notified %q, want %q", got, g.req.ID)
	}
	revoked, err := db.RevokedGrants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := revoked[g.req.ID]; !ok {
		t.Errorf("the deleted client's grant is not in the revoked set: %v", revoked)
	}
}

// TestDemotingAnAdminRevokesTheirAdminTokens: removing the admin role
// revokes the user's grants and personal access tokens that hold an
// admin-only scope, and nothing else.
func TestDemotingAnAdminRevokesTheirAdminTokens(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "demote-client")
	u := userCreate(t, db, "dora", true)
	adminGrant := func() revokeGrantFixture {
		req := newRequest(client, u.ID)
		req.GrantedScope = fosite.Arguments{"mcp", "admin"}
		req.Session.(*fosite.DefaultSession).ExpiresAt[fosite.AccessToken] = reqNow.Add(time.Hour)
		g := revokeGrantFixture{req: req, code: "code-" + req.ID, access: "at-" + req.ID, refr: "rt-" + req.ID}
		if err := db.CreateAuthorizeCodeSession(ctx, g.code, req); err != nil {
			t.Fatal(err)
		}
		req.Form = url.Values{}
		if err := db.CreateAccessTokenSession(ctx, g.access, req); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateRefreshTokenSession(ctx, g.refr, g.access, req); err != nil {
			t.Fatal(err)
		}
		return g
	}()
	plainGrant := revokeNewGrant(t, db, client, u.ID, time.Hour)
	plainPAT := patCreate(t, db, u, "plain", "mcpat_plain", time.Hour)
	adminPAT := &storage.PersonalAccessToken{UserID: u.ID, Name: "adm", Scopes: []string{"mcp", "admin"},
		Audience: "https://as.example/mcp", ExpiresAt: time.Now().Add(time.Hour).UTC(), CreatedBy: "dora"}
	h := sha256.Sum256([]byte("mcpat_adm"))
	if err := db.CreatePersonalAccessToken(ctx, adminPAT, h[:]); err != nil {
		t.Fatal(err)
	}
	l := revokeListen(t, db)

	if err := db.SetUserAdmin(ctx, u.ID, false, []string{"admin"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{revokeNext(t, l): true, revokeNext(t, l): true}
	if !got[adminGrant.req.ID] || !got[adminPAT.ID] {
		t.Errorf("notified %v, want the admin grant %s and the admin token %s", got, adminGrant.req.ID, adminPAT.ID)
	}
	revokeNone(t, l, 200*time.Millisecond)
	if code, refresh, access := revokeState(t, db, adminGrant); code || refresh || access {
		t.Errorf("admin grant: code %v refresh %v access %v still live", code, refresh, access)
	}
	if _, refresh, access := revokeState(t, db, plainGrant); !refresh || !access {
		t.Error("the grant without an admin-only scope was revoked")
	}
	if p, _ := db.PersonalAccessToken(ctx, adminPAT.ID); p == nil || p.RevokedAt == nil {
		t.Errorf("admin token not revoked: %+v", p)
	}
	if p, _ := db.PersonalAccessToken(ctx, plainPAT.ID); p == nil || p.RevokedAt != nil {
		t.Errorf("plain token revoked: %+v", p)
	}
	// Promoting revokes nothing.
	if err := db.SetUserAdmin(ctx, u.ID, true, []string{"admin"}); err != nil {
		t.Fatal(err)
	}
	revokeNone(t, l, 200*time.Millisecond)
}

// TestGrantParties: the client and user of a grant, for the audit log.
func TestGrantParties(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	client := mustCreateClient(t, db, "parties-client")
	u := userCreate(t, db, "pat", false)
	g := revokeNewGrant(t, db, client, u.ID, time.Hour)
	own := revokeNewGrant(t, db, client, client.GetID(), time.Hour)
	if c, id, name, err := db.GrantParties(ctx, g.req.ID); err != nil || c != client.GetID() || id != u.ID || name != "pat" {
		t.Errorf("user grant: %q %q %q %v", c, id, name, err)
	}
	if c, id, name, err := db.GrantParties(ctx, own.req.ID); err != nil || c != client.GetID() || id != "" || name != "" {
		t.Errorf("client's own grant: %q %q %q %v", c, id, name, err)
	}
	for _, id := range []string{uuid.NewString(), "nope"} {
		if _, _, _, err := db.GrantParties(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GrantParties(%q): %v, want ErrNotFound", id, err)
		}
	}
}
