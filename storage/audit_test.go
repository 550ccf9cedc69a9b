package storage_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

func TestAuditEvents(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	t0 := time.Now().UTC().Truncate(time.Microsecond).Add(-time.Hour)
	events := []storage.AuditEvent{
		{At: t0, Event: storage.EventLoginSuccess, Actor: "alice", Subject: "alice", ClientIP: "192.0.2.1"},
		{At: t0.Add(time.Minute), Event: storage.EventConsentGranted, Actor: "alice", Subject: "alice", ClientID: "c1",
			ClientIP: "2001:db8::1", Details: map[string]any{"scopes": []any{"mcp"}}},
		{At: t0.Add(2 * time.Minute), Event: storage.EventClientDisabled, Actor: "admin", ClientID: "c1", ClientIP: "not an ip"},
		{At: t0.Add(3 * time.Minute), Event: storage.EventUserDisabled, Actor: "cli", Subject: "bob"},
		{Event: storage.EventKeyRotated, Actor: "system", Subject: "kid-1"}, // At from the database
	}
	if err := db.InsertAuditEvents(ctx, events); err != nil {
		t.Fatalf("InsertAuditEvents: %v", err)
	}
	if err := db.InsertAuditEvents(ctx, nil); err != nil {
		t.Fatalf("InsertAuditEvents(nil): %v", err)
	}
	all, err := db.ListAuditEvents(ctx, storage.AuditFilter{})
	if err != nil {
		t.Fatalf("ListAuditEvents: %v", err)
	}
	if len(all) != len(events) {
		t.Fatalf("got %d events, want %d", len(all), len(events))
	}
	// Newest (highest id) first.
	for i := 1; i < len(all); i++ {
		if all[i-1].ID <= all[i].ID {
			t.Fatalf("not newest first: ids %d then %d", all[i-1].ID, all[i].ID)
		}
	}
	consent := all[3]
	want := storage.AuditEvent{ID: consent.ID, At: t0.Add(time.Minute), Event: storage.EventConsentGranted, Actor: "alice",
		Subject: "alice", ClientID: "c1", ClientIP: "2001:db8::1", Details: map[string]any{"scopes": []any{"mcp"}}}
	if diff := cmp.Diff(want, consent); diff != "" {
		t.Errorf("consent event (-want +got):\n%s", diff)
	}
	if all[2].ClientIP != "" {
		t.Errorf("an invalid IP was stored as %q", all[2].ClientIP)
	}
	if time.Since(all[0].At) > time.Minute {
		t.Errorf("event without At got %v, want the database's now()", all[0].At)
	}

	ids := func(f storage.AuditFilter) []string {
		t.Helper()
		got, err := db.ListAuditEvents(ctx, f)
		if err != nil {
			t.Fatalf("ListAuditEvents(%+v): %v", f, err)
		}
		var out []string
		for _, e := range got {
			out = append(out, e.Event)
		}
		return out
	}
	for name, tc := range map[string]struct {
		f    storage.AuditFilter
		want []string
	}{
		"user as actor or subject": {storage.AuditFilter{User: "alice"}, []string{storage.EventConsentGranted, storage.EventLoginSuccess}},
		"user as subject":          {storage.AuditFilter{User: "bob"}, []string{storage.EventUserDisabled}},
		"client":                   {storage.AuditFilter{ClientID: "c1"}, []string{storage.EventClientDisabled, storage.EventConsentGranted}},
		"event":                    {storage.AuditFilter{Event: storage.EventKeyRotated}, []string{storage.EventKeyRotated}},
		"since":                    {storage.AuditFilter{Since: t0.Add(2 * time.Minute), Until: t0.Add(4 * time.Minute)}, []string{storage.EventUserDisabled, storage.EventClientDisabled}},
		"until":                    {storage.AuditFilter{Until: t0.Add(time.Minute)}, []string{storage.EventLoginSuccess}},
		"limit":                    {storage.AuditFilter{Limit: 2}, []string{storage.EventKeyRotated, storage.EventUserDisabled}},
		"page":                     {storage.AuditFilter{Before: all[1].ID, Limit: 2}, []string{storage.EventClientDisabled, storage.EventConsentGranted}},
		"combined":                 {storage.AuditFilter{User: "alice", ClientID: "c1"}, []string{storage.EventConsentGranted}},
		"nothing":                  {storage.AuditFilter{User: "nobody"}, nil},
	} {
		if diff := cmp.Diff(tc.want, ids(tc.f)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}

	// Pruning deletes what is older than the cut-off only.
	n, err := db.PruneAuditEvents(ctx, t0.Add(90*time.Second))
	if err != nil || n != 2 {
		t.Fatalf("PruneAuditEvents = %d, %v; want 2", n, err)
	}
	if got := countRows(t, db, "audit_events", ""); got != 3 {
		t.Errorf("%d events left, want 3", got)
	}
}

func TestAuditRetentionInCleanup(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	old := time.Now().Add(-48 * time.Hour)
	if err := db.InsertAuditEvents(ctx, []storage.AuditEvent{
		{At: old, Event: storage.EventLoginFailure, Actor: "x"},
		{Event: storage.EventLoginSuccess, Actor: "x"},
	}); err != nil {
		t.Fatal(err)
	}
	// Retention 0 (the default) keeps everything.
	if _, err := db.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := countRows(t, db, "audit_events", ""); got != 2 {
		t.Fatalf("retention 0 deleted events: %d left", got)
	}
	db.SetAuditRetention(24 * time.Hour)
	if _, err := db.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := countRows(t, db, "audit_events", "event = $1", storage.EventLoginSuccess); got != 1 {
		t.Errorf("the recent event was deleted")
	}
	if got := countRows(t, db, "audit_events", ""); got != 1 {
		t.Errorf("%d events left after cleanup with a 24h retention, want 1", got)
	}
}

// TestAuditEventsHostileText: a NUL or invalid UTF-8 from a client does not
// fail the batch it is in; overlong text is cut.
func TestAuditEventsHostileText(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	err := db.InsertAuditEvents(ctx, []storage.AuditEvent{
		{Event: storage.EventTokenRevoked, Actor: "client:a\x00b\xff", Subject: strings.Repeat("é", 1000),
			Details: map[string]any{"token_type_hint": "x\x00y\xfe"}},
		{Event: storage.EventLoginSuccess, Actor: "fine"},
	})
	if err != nil {
		t.Fatalf("InsertAuditEvents: %v", err)
	}
	ev, err := db.ListAuditEvents(ctx, storage.AuditFilter{})
	if err != nil || len(ev) != 2 {
		t.Fatalf("events = %d, %v; want 2", len(ev), err)
	}
	bad := ev[1]
	if bad.Actor != "client:a\uFFFDb\uFFFD" || bad.Details["token_type_hint"] != "x\uFFFDy\uFFFD" {
		t.Errorf("stored %q, %q", bad.Actor, bad.Details["token_type_hint"])
	}
	if len(bad.Subject) > 1000 || !utf8.ValidString(bad.Subject) {
		t.Errorf("subject of %d bytes, valid UTF-8 %t", len(bad.Subject), utf8.ValidString(bad.Subject))
	}
}
