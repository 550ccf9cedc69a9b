package authz

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/storage"
)

// auditEvents returns the events named event, newest first.
func auditEvents(t *testing.T, s *Server, event string) []storage.AuditEvent {
	t.Helper()
	ev, err := s.db.ListAuditEvents(t.Context(), storage.AuditFilter{Event: event})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// auditOne checks that exactly n events named event were written, and
// returns the newest.
func auditOne(t *testing.T, s *Server, event string, n int) storage.AuditEvent {
	t.Helper()
	ev := auditEvents(t, s, event)
	if len(ev) != n {
		t.Fatalf("%d %s events, want %d: %+v", len(ev), event, n, ev)
	}
	return ev[0]
}

// TestAuditLoginAndConsent: sign-in failures and successes and consent are
// recorded with actor, subject, client and client IP, never the password.
func TestAuditLoginAndConsent(t *testing.T) {
	e := azSetup(t)
	c := e.client(t)
	if r := e.login(t, c, "bob", "wrong password 123", "/"); r.StatusCode == http.StatusSeeOther {
		t.Fatal("wrong password signed in")
	}
	if r := e.login(t, c, loginPassword, "whatever", "/"); r.StatusCode == http.StatusSeeOther {
		t.Fatal("password as user name signed in")
	}
	fail := auditEvents(t, e.s, storage.EventLoginFailure)
	if len(fail) != 2 || fail[1].Subject != "bob" || fail[1].Details["reason"] != "wrong password" || fail[1].ClientIP != "127.0.0.1" {
		t.Fatalf("login.failure events = %+v", fail)
	}
	if !strings.HasPrefix(fail[0].Subject, "unknown:") || fail[0].Details["reason"] != "unknown user" {
		t.Errorf("failure with a password typed as the name = %+v; want an unknown:<hmac> subject", fail[0])
	}
	// A password that is also a valid user name is not recorded either; the
	// same name (any case) gives the same subject, another name another.
	for _, typed := range []string{"Tr0ub4dor3x", "tr0ub4dor3X", "correcthorse"} {
		if err := ValidateUsername(typed); err != nil {
			t.Fatalf("%q is not a valid user name: %v", typed, err)
		}
		if r := e.login(t, c, typed, "whatever", "/"); r.StatusCode == http.StatusSeeOther {
			t.Fatal("an unknown user signed in")
		}
	}
	fail = auditEvents(t, e.s, storage.EventLoginFailure)
	if len(fail) != 5 {
		t.Fatalf("%d login.failure events, want 5", len(fail))
	}
	if fail[2].Subject != fail[1].Subject || fail[0].Subject == fail[1].Subject || !regexp.MustCompile(`^unknown:[0-9a-f]{16}$`).MatchString(fail[0].Subject) {
		t.Errorf("unknown-user subjects = %q, %q, %q; want equal for one name in any case, distinct otherwise", fail[2].Subject, fail[1].Subject, fail[0].Subject)
	}
	for _, typed := range []string{"Tr0ub4dor3x", "tr0ub4dor3X", "correcthorse"} {
		auditNoSecret(t, e.s.db, typed)
	}
	c = e.signedInClient(t, "bob")
	ok := auditOne(t, e.s, storage.EventLoginSuccess, 1)
	if ok.Actor != "bob" || ok.Subject != "bob" || ok.ClientIP != "127.0.0.1" || ok.At.IsZero() {
		t.Errorf("login.success = %+v", ok)
	}

	page := e.do(t, c, "GET", "/authorize?"+e.params(nil).Encode(), nil, nil)
	form := azConsentForm(t, page.body)
	form.Set("decision", "allow")
	e.redirected(t, e.do(t, c, "POST", "/authorize", form, e.sameOrigin()), e.redirect)
	consent := auditOne(t, e.s, storage.EventConsentGranted, 1)
	if consent.Actor != "bob" || consent.ClientID != e.clientID || fmt.Sprint(consent.Details["scopes"]) != "[mcp]" {
		t.Errorf("consent.granted = %+v", consent)
	}
	auditNoSecret(t, e.s.db, loginPassword)
	auditNoSecret(t, e.s.db, "wrong password 123")
}

// TestAuditTokensAndClients: registration (RFC 7591/7592), token issue,
// refresh, reuse and revocation are recorded, without a token or secret.
func TestAuditTokensAndClients(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "web", confidential: true})
	first := e.exchange("web", secret, e.authorize("web", []string{"mcp"}, nil), nil)
	if first.status != http.StatusOK {
		t.Fatalf("exchange: %s", first.raw)
	}
	issued := auditOne(t, e.s, storage.EventTokenIssued, 1)
	if issued.Actor != "client:web" || issued.ClientID != "web" || issued.Subject != "alice" ||
		issued.Details["grant_type"] != "authorization_code" || issued.Details["grant_id"] == "" {
		t.Errorf("token.issued = %+v", issued)
	}
	second := e.refresh("web", secret, first.str("refresh_token"), nil)
	if second.status != http.StatusOK {
		t.Fatalf("refresh: %s", second.raw)
	}
	refreshed := auditOne(t, e.s, storage.EventTokenRefreshed, 1)
	if refreshed.Details["grant_id"] != issued.Details["grant_id"] {
		t.Errorf("token.refreshed grant %v, want %v", refreshed.Details["grant_id"], issued.Details["grant_id"])
	}
	third := e.refresh("web", secret, second.str("refresh_token"), nil)
	if third.status != http.StatusOK {
		t.Fatalf("second refresh: %s", third.raw)
	}
	auditOne(t, e.s, storage.EventTokenRefreshed, 2)
	// The first refresh token again (not the immediately previous one,
	// which a retry within the grace window may present): reuse.
	wantError(t, e.refresh("web", secret, first.str("refresh_token"), nil), http.StatusBadRequest, "invalid_grant")
	reuse := auditOne(t, e.s, storage.EventTokenReuseDetected, 1)
	if reuse.ClientID != "web" || reuse.Details["token"] != "refresh_token" {
		t.Errorf("token.reuse_detected = %+v", reuse)
	}
	// A refresh token of a revoked (not reused) grant is no reuse.
	other := e.exchange("web", secret, e.authorize("web", []string{"mcp"}, nil), nil)
	if r := e.post("/revoke", url.Values{"token": {other.str("refresh_token")}}, "web", secret); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	revoked := auditOne(t, e.s, storage.EventTokenRevoked, 1)
	if revoked.Actor != "client:web" || revoked.ClientID != "web" {
		t.Errorf("token.revoked = %+v", revoked)
	}
	wantError(t, e.refresh("web", secret, other.str("refresh_token"), nil), http.StatusBadRequest, "invalid_grant")
	auditOne(t, e.s, storage.EventTokenReuseDetected, 1)

	for _, tok := range []string{first.str("access_token"), first.str("refresh_token"), second.str("refresh_token"),
		third.str("access_token"), secret} {
		auditNoSecret(t, e.s.db, tok)
	}
}

func TestAuditRegistration(t *testing.T) {
	s, hs := testServer(t, false, regWithInitialToken)
	body := regMustRegister(t, hs, `{"client_name":"Audited","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"client_secret_basic"}`)
	id, tok := regString(t, body, "client_id"), regString(t, body, "registration_access_token")
	reg := auditOne(t, s, storage.EventClientRegistered, 1)
	if reg.ClientID != id || reg.Details["client_name"] != "Audited" || reg.Details["source"] != storage.SourceDCR {
		t.Errorf("client.registered = %+v", reg)
	}
	upd := regDo(t, hs, http.MethodPut, "/register/"+id, tok, "application/json",
		`{"client_id":"`+id+`","client_name":"Audited 2","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"client_secret_basic"}`)
	if upd.status != http.StatusOK {
		t.Fatalf("update: %d %s", upd.status, upd.raw)
	}
	if u := auditOne(t, s, storage.EventClientUpdated, 1); u.ClientID != id || u.Details["client_name"] != "Audited 2" {
		t.Errorf("client.updated = %+v", u)
	}
	newTok := regString(t, upd.body, "registration_access_token")
	if r := regDo(t, hs, http.MethodDelete, "/register/"+id, newTok, "", ""); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	if d := auditOne(t, s, storage.EventClientDeleted, 1); d.ClientID != id {
		t.Errorf("client.deleted = %+v", d)
	}
	for _, secret := range []string{tok, newTok, regString(t, body, "client_secret")} {
		auditNoSecret(t, s.db, secret)
	}
}

// TestAuditWriter: while RunAudit runs, events are batched and written
// within a flush interval; when it stops, every queued event is written.
func TestAuditWriter(t *testing.T) {
	s, _ := testServer(t, false, nil)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.RunAudit(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for { // wait until the writer runs
		s.auditLog.mu.RLock()
		running := s.auditLog.running
		s.auditLog.mu.RUnlock()
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writer did not start")
		}
		time.Sleep(time.Millisecond)
	}
	s.recordAudit(t.Context(), storage.AuditEvent{Event: storage.EventKeyRotated, Actor: "test", Subject: "kid-0"})
	for deadline := time.Now().Add(2 * time.Second); len(auditEvents(t, s, storage.EventKeyRotated)) != 1; {
		if time.Now().After(deadline) {
			t.Fatal("event not written within 2 s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	const n = 5000
	for i := range n {
		s.recordAudit(t.Context(), storage.AuditEvent{Event: storage.EventLoginFailure, Subject: fmt.Sprint("u", i)})
	}
	stop()
	<-done
	got, err := s.db.ListAuditEvents(t.Context(), storage.AuditFilter{Event: storage.EventLoginFailure, Limit: storage.MaxAuditLimit})
	if err != nil {
		t.Fatal(err)
	}
	var total int
	if err := s.db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE event = $1`, storage.EventLoginFailure).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total != n || s.AuditDropped() != 0 {
		t.Fatalf("%d events written, %d dropped; want %d, 0", total, s.AuditDropped(), n)
	}
	// In order of recording.
	if got[0].Subject != fmt.Sprint("u", n-1) {
		t.Errorf("newest event is %q", got[0].Subject)
	}
	// After the writer stopped, events are written at once.
	s.recordAudit(t.Context(), storage.AuditEvent{Event: storage.EventUserCreated, Subject: "late"})
	if ev := auditEvents(t, s, storage.EventUserCreated); len(ev) != 1 || !slices.ContainsFunc(ev, func(e storage.AuditEvent) bool { return e.Subject == "late" }) {
		t.Errorf("late event: %+v", ev)
	}
}

// TestAuditCodeReuse: a used authorization code presented again is recorded
// (and its grant revoked).
func TestAuditCodeReuse(t *testing.T) {
	e := newTokEnv(t, nil)
	secret := e.client(tokClient{id: "web", confidential: true})
	code := e.authorize("web", []string{"mcp"}, nil)
	first := e.exchange("web", secret, code, nil)
	if first.status != http.StatusOK {
		t.Fatalf("exchange: %s", first.raw)
	}
	wantError(t, e.exchange("web", secret, code, nil), http.StatusBadRequest, "invalid_grant")
	ev := auditOne(t, e.s, storage.EventTokenReuseDetected, 1)
	issued := auditOne(t, e.s, storage.EventTokenIssued, 1)
	if ev.ClientID != "web" || ev.Details["token"] != "authorization_code" || ev.Details["grant_id"] != issued.Details["grant_id"] {
		t.Errorf("token.reuse_detected = %+v (issued %+v)", ev, issued)
	}
	auditNoSecret(t, e.s.db, code)
}

// auditStartWriter runs RunAudit until the returned stop is called (which
// waits for it to finish).
func auditStartWriter(t *testing.T, s *Server) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.RunAudit(ctx) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		s.auditLog.mu.RLock()
		running := s.auditLog.running
		s.auditLog.mu.RUnlock()
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writer did not start")
		}
	}
	return func() { cancel(); <-done }
}

// TestAuditBadEventDroppedAlone: an event whose details cannot be encoded
// is dropped and counted alone; the batch it would have joined is written.
func TestAuditBadEventDroppedAlone(t *testing.T) {
	s, _ := testServer(t, false, nil)
	stop := auditStartWriter(t, s)
	s.recordAudit(t.Context(), storage.AuditEvent{Event: storage.EventUserCreated, Subject: "before"})
	s.recordAudit(t.Context(), storage.AuditEvent{Event: storage.EventUserCreated, Subject: "bad", Details: map[string]any{"f": func() {}}})
	s.recordAudit(t.Context(), storage.AuditEvent{Event: storage.EventUserCreated, Subject: "after"})
	stop()
	ev := auditEvents(t, s, storage.EventUserCreated)
	if len(ev) != 2 || ev[0].Subject != "after" || ev[1].Subject != "before" || s.AuditDropped() != 1 {
		t.Errorf("written %+v, dropped %d; want before and after, 1 dropped", ev, s.AuditDropped())
	}
}

// TestAuditDetailsCapped: details above storage.MaxAuditDetailsBytes are
// stored as a truncation marker, not whole.
func TestAuditDetailsCapped(t *testing.T) {
	s, _ := testServer(t, false, nil)
	uris := make([]string, 500)
	for i := range uris {
		uris[i] = fmt.Sprintf("https://app.example/callback/%0100d", i)
	}
	s.recordAudit(t.Context(), storage.AuditEvent{Event: storage.EventClientRegistered, ClientID: "c1",
		Details: map[string]any{"client_name": "big", "redirect_uris": uris}})
	ev := auditOne(t, s, storage.EventClientRegistered, 1)
	if ev.Details["truncated"] != true || ev.Details["redirect_uris"] != nil || fmt.Sprint(ev.Details["keys"]) != "[client_name redirect_uris]" {
		t.Errorf("details = %v; want a truncation marker", ev.Details)
	}
	var n int
	if err := s.db.Pool().QueryRow(t.Context(), `SELECT max(length(details::text)) FROM audit_events`).Scan(&n); err != nil || n > storage.MaxAuditDetailsBytes {
		t.Errorf("stored details of %d bytes (%v); want at most %d", n, err, storage.MaxAuditDetailsBytes)
	}
}

// TestAuditQueueBoundedInBytes: with the writer stalled, the queue stops
// taking events once auditQueueBytes are queued, long before it is full in
// events.
func TestAuditQueueBoundedInBytes(t *testing.T) {
	s, _ := testServer(t, false, nil)
	a := s.auditLog
	a.mu.Lock()
	a.running = true // a writer that never drains: a database stall
	a.mu.Unlock()
	big := strings.Repeat("x", storage.MaxAuditDetailsBytes-100)
	accepted := 0
	for i := 0; i < auditQueueSize && s.AuditDropped() == 0; i++ {
		s.recordAudit(t.Context(), storage.AuditEvent{Event: storage.EventClientRegistered, Details: map[string]any{"client_name": big}})
		if s.AuditDropped() == 0 {
			accepted++
		}
	}
	if s.AuditDropped() == 0 {
		t.Fatalf("%d events of ~4 KiB queued without a drop", accepted)
	}
	if q := a.queued.Load(); q > auditQueueBytes || accepted > auditQueueBytes/storage.MaxAuditDetailsBytes+100 {
		t.Errorf("queued %d events, %d bytes; want at most %d bytes", accepted, q, auditQueueBytes)
	}
	a.mu.Lock()
	a.running = false
	a.mu.Unlock()
}
