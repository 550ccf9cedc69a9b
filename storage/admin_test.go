package storage_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// The storage side of the administrator's tools (issue 6): client listing
// and disabling, revocation of a user's grants for one client, and the
// remembered consent going with every revoked grant.

// adminConsent saves a consent of user for client.
func adminConsent(t *testing.T, db *storage.DB, userID, clientID string) {
	t.Helper()
	if err := db.SaveConsent(t.Context(), storage.Consent{UserID: userID, ClientID: clientID,
		Scopes: []string{"mcp"}, Audiences: []string{"https://as.example/mcp"}}); err != nil {
		t.Fatalf("SaveConsent: %v", err)
	}
}

// adminHasConsent reports whether user has a live consent for client.
func adminHasConsent(t *testing.T, db *storage.DB, userID, clientID string) bool {
	t.Helper()
	_, err := db.Consent(t.Context(), userID, clientID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Consent: %v", err)
	}
	return err == nil
}

func TestListClientSummaries(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	a := mustCreateClient(t, db, "a-client")
	mustCreateClient(t, db, "b-client")
	admin := &storage.Client{ID: "c-admin", TokenEndpointAuthMethod: storage.AuthMethodNone, Source: storage.SourceAdmin,
		Metadata: storage.ClientMetadata{ClientName: "Nightly 100%_Job"}}
	if err := db.CreateClient(ctx, admin); err != nil {
		t.Fatal(err)
	}
	revokeNewGrant(t, db, a, "u1", time.Hour)
	revokeNewGrant(t, db, a, "u2", time.Hour)
	dead := revokeNewGrant(t, db, a, "u3", time.Hour)
	if err := db.RevokeGrant(ctx, dead.req.ID); err != nil {
		t.Fatal(err)
	}

	type row struct {
		ID   string
		Live int
	}
	list := func(f storage.ClientFilter) []row {
		t.Helper()
		got, err := db.ListClientSummaries(ctx, f)
		if err != nil {
			t.Fatalf("ListClientSummaries(%+v): %v", f, err)
		}
		var out []row
		for _, s := range got {
			out = append(out, row{s.Client.ID, s.LiveGrants})
		}
		return out
	}
	for name, tc := range map[string]struct {
		f    storage.ClientFilter
		want []row
	}{
		"all":             {storage.ClientFilter{}, []row{{"a-client", 2}, {"b-client", 0}, {"c-admin", 0}}},
		"source":          {storage.ClientFilter{Source: storage.SourceAdmin}, []row{{"c-admin", 0}}},
		"query id":        {storage.ClientFilter{Query: "B-CLI"}, []row{{"b-client", 0}}},
		"query name":      {storage.ClientFilter{Query: "nightly"}, []row{{"c-admin", 0}}},
		"query wildcards": {storage.ClientFilter{Query: "%_"}, []row{{"c-admin", 0}}},
		"query no match":  {storage.ClientFilter{Query: "_-"}, nil},
		"page":            {storage.ClientFilter{Limit: 2}, []row{{"a-client", 2}, {"b-client", 0}}},
		"next page":       {storage.ClientFilter{Limit: 2, After: "b-client"}, []row{{"c-admin", 0}}},
		"unknown source":  {storage.ClientFilter{Source: "x"}, nil},
	} {
		if diff := cmp.Diff(tc.want, list(tc.f)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}

func TestSetClientDisabled(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	c := mustCreateClient(t, db, "to-disable")
	other := mustCreateClient(t, db, "other")
	alice := userCreate(t, db, "alice", false)
	g1 := revokeNewGrant(t, db, c, alice.ID, time.Hour)
	g2 := revokeNewGrant(t, db, c, "u2", time.Hour)
	keep := revokeNewGrant(t, db, other, alice.ID, time.Hour)
	adminConsent(t, db, alice.ID, c.ID)
	adminConsent(t, db, alice.ID, other.ID)
	l := revokeListen(t, db)

	n, err := db.SetClientDisabled(ctx, c.ID, true)
	if err != nil || n != 2 {
		t.Fatalf("SetClientDisabled(true) = %d, %v; want 2", n, err)
	}
	got := map[string]bool{revokeNext(t, l): true, revokeNext(t, l): true}
	if !got[g1.req.ID] || !got[g2.req.ID] {
		t.Errorf("notified %v, want both grants", got)
	}
	revoked, err := db.RevokedGrants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := revoked[g1.req.ID]; !ok {
		t.Error("grant 1 not in the revoked set")
	}
	if _, ok := revoked[g2.req.ID]; !ok {
		t.Error("grant 2 not in the revoked set")
	}
	if _, refresh, _ := revokeState(t, db, keep); !refresh {
		t.Error("another client's grant was revoked")
	}
	if adminHasConsent(t, db, alice.ID, c.ID) {
		t.Error("the consent for the disabled client is still live")
	}
	if !adminHasConsent(t, db, alice.ID, other.ID) {
		t.Error("the consent for another client was revoked")
	}
	if _, err := db.GetClient(ctx, c.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetClient of a disabled client: %v, want ErrNotFound", err)
	}
	rec, err := db.Client(ctx, c.ID)
	if err != nil || rec.DisabledAt == nil {
		t.Fatalf("Client = %+v, %v; want DisabledAt set", rec, err)
	}
	since := *rec.DisabledAt
	if n, err := db.SetClientDisabled(ctx, c.ID, true); err != nil || n != 0 {
		t.Errorf("disabling again = %d, %v", n, err)
	}
	if rec, _ := db.Client(ctx, c.ID); !rec.DisabledAt.Equal(since) {
		t.Error("disabling again moved DisabledAt")
	}

	// Enabling revives nothing.
	if n, err := db.SetClientDisabled(ctx, c.ID, false); err != nil || n != 0 {
		t.Fatalf("SetClientDisabled(false) = %d, %v", n, err)
	}
	if _, err := db.GetClient(ctx, c.ID); err != nil {
		t.Errorf("GetClient after enabling: %v", err)
	}
	for _, g := range []revokeGrantFixture{g1, g2} {
		if code, refresh, access := revokeState(t, db, g); code || refresh || access {
			t.Errorf("grant live after disabling and enabling: %t %t %t", code, refresh, access)
		}
	}
	if adminHasConsent(t, db, alice.ID, c.ID) {
		t.Error("enabling revived the consent")
	}
	if _, err := db.SetClientDisabled(ctx, "missing", true); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing client: %v, want ErrNotFound", err)
	}
}

func TestRevokeUserClientGrants(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	c1 := mustCreateClient(t, db, "app-1")
	c2 := mustCreateClient(t, db, "app-2")
	alice := userCreate(t, db, "alice", false)
	bob := userCreate(t, db, "bob", false)
	a1 := revokeNewGrant(t, db, c1, alice.ID, time.Hour)
	a1b := revokeNewGrant(t, db, c1, alice.ID, time.Hour)
	a2 := revokeNewGrant(t, db, c2, alice.ID, time.Hour)
	b1 := revokeNewGrant(t, db, c1, bob.ID, time.Hour)
	adminConsent(t, db, alice.ID, c1.ID)
	adminConsent(t, db, alice.ID, c2.ID)
	adminConsent(t, db, bob.ID, c1.ID)

	n, err := db.RevokeUserClientGrants(ctx, alice.ID, c1.ID)
	if err != nil || n != 2 {
		t.Fatalf("RevokeUserClientGrants = %d, %v; want 2", n, err)
	}
	for _, g := range []revokeGrantFixture{a1, a1b} {
		if code, refresh, access := revokeState(t, db, g); code || refresh || access {
			t.Error("a grant of alice for app-1 is live")
		}
	}
	for _, g := range []revokeGrantFixture{a2, b1} {
		if _, refresh, access := revokeState(t, db, g); !refresh || !access {
			t.Error("another grant was revoked")
		}
	}
	if adminHasConsent(t, db, alice.ID, c1.ID) || !adminHasConsent(t, db, alice.ID, c2.ID) || !adminHasConsent(t, db, bob.ID, c1.ID) {
		t.Error("consents: want only alice's for app-1 revoked")
	}
	// With no grant left, the consent is still revoked.
	adminConsent(t, db, alice.ID, c1.ID)
	if n, err := db.RevokeUserClientGrants(ctx, alice.ID, c1.ID); err != nil || n != 0 {
		t.Fatalf("second RevokeUserClientGrants = %d, %v; want 0", n, err)
	}
	if adminHasConsent(t, db, alice.ID, c1.ID) {
		t.Error("consent without grants not revoked")
	}
	if n, err := db.RevokeUserClientGrants(ctx, "not-a-uuid", c1.ID); n != 0 || err != nil {
		t.Errorf("bad user id = %d, %v", n, err)
	}
}

// TestRevokingAGrantRevokesItsConsent: every path that revokes a grant
// (RevokeGrant, fosite's revocation, a user's or client's grants) ends the
// remembered consent of its user and client, so the next authorization asks
// again (issue 6 §8).
func TestRevokingAGrantRevokesItsConsent(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	c := mustCreateClient(t, db, "app")
	other := mustCreateClient(t, db, "other-app")
	alice := userCreate(t, db, "alice", false)
	bob := userCreate(t, db, "bob", false)

	for name, revoke := range map[string]func(g revokeGrantFixture) error{
		"RevokeGrant":        func(g revokeGrantFixture) error { return db.RevokeGrant(ctx, g.req.ID) },
		"RevokeRefreshToken": func(g revokeGrantFixture) error { return db.RevokeRefreshToken(ctx, g.req.ID) },
		"RevokeAccessToken":  func(g revokeGrantFixture) error { return db.RevokeAccessToken(ctx, g.req.ID) },
		"RevokeUserGrants": func(revokeGrantFixture) error {
			_, err := db.RevokeUserGrants(ctx, alice.ID)
			return err
		},
		"RevokeClientGrants": func(revokeGrantFixture) error {
			_, err := db.RevokeClientGrants(ctx, c.ID)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			g := revokeNewGrant(t, db, c, alice.ID, time.Hour)
			adminConsent(t, db, alice.ID, c.ID)
			adminConsent(t, db, alice.ID, other.ID)
			adminConsent(t, db, bob.ID, other.ID)
			if err := revoke(g); err != nil {
				t.Fatal(err)
			}
			if adminHasConsent(t, db, alice.ID, c.ID) {
				t.Error("the grant's consent is still live")
			}
			if name != "RevokeUserGrants" && !adminHasConsent(t, db, alice.ID, other.ID) {
				t.Error("the user's consent for another client was revoked")
			}
			if !adminHasConsent(t, db, bob.ID, other.ID) {
				t.Error("another user's consent was revoked")
			}
		})
	}
}

func TestGrantOfToken(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	c := mustCreateClient(t, db, "app")
	g := revokeNewGrant(t, db, c, "u", time.Hour)
	for _, sig := range []string{g.code, g.access, g.refr} {
		if id, err := db.GrantOfToken(ctx, sig); err != nil || id != g.req.ID {
			t.Errorf("GrantOfToken(%q) = %q, %v; want %q", sig, id, err, g.req.ID)
		}
	}
	if err := db.RevokeGrant(ctx, g.req.ID); err != nil {
		t.Fatal(err)
	}
	if id, err := db.GrantOfToken(ctx, g.refr); err != nil || id != g.req.ID {
		t.Errorf("GrantOfToken of a revoked refresh token = %q, %v", id, err)
	}
	if _, err := db.GrantOfToken(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unknown signature: %v, want ErrNotFound", err)
	}
}
