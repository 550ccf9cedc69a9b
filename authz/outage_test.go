package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// outageEnv is a tokEnv whose database is reached through a proxy the test
// can cut or silence, with admin, a direct connection to the same database.
type outageEnv struct {
	*tokEnv
	proxy *storagetest.Proxy
	admin *pgx.Conn
	dbURL string // the database itself, not through the proxy
}

func outageSetup(t *testing.T, mod func(*Config)) *outageEnv {
	t.Helper()
	dbURL := storagetest.URL(t)
	proxy := storagetest.NewProxy(t, dbURL)
	db, err := storage.Open(t.Context(), proxy.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	admin, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	s, hs := testServerOn(t, db, false, mod)
	u := &storage.User{Username: "alice", PasswordHash: "$argon2id$unused"}
	if err := s.db.CreateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	return &outageEnv{tokEnv: &tokEnv{t: t, s: s, hs: hs, user: u}, proxy: proxy, admin: admin, dbURL: dbURL}
}

// outageWant503 checks a temporarily_unavailable answer.
func outageWant503(t *testing.T, what string, r tokResponse) {
	t.Helper()
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.str("error") != oauth.TemporarilyUnavailable {
		t.Errorf("%s: %d Retry-After %q %s, want 503 temporarily_unavailable with Retry-After", what, r.status, r.header.Get("Retry-After"), r.raw)
	}
}

// outageUserinfo calls /userinfo with the bearer token tok.
func (e *outageEnv) userinfo(tok string) tokResponse {
	e.t.Helper()
	r := e.do("/userinfo", "", "", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) })
	return r
}

// TestOutageUserinfoIntrospect: while the database is down or not
// answering, /userinfo and /introspect say so (503, Retry-After) instead of
// calling a valid token invalid (401) or inactive; a database that stops
// answering is a 503 at the request deadline, not a hang.
func TestOutageUserinfoIntrospect(t *testing.T) {
	e := outageSetup(t, func(c *Config) { c.RequestTimeout = time.Second })
	secret := e.client(tokClient{id: "rp", confidential: true})
	tok := e.exchange("rp", secret, e.authorize("rp", []string{"openid", "mcp"}, nil), nil)
	if tok.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", tok.status, tok.raw)
	}
	at := tok.str("access_token")
	if r := e.userinfo(at); r.status != http.StatusOK {
		t.Fatalf("userinfo before the outage: %d %s", r.status, r.raw)
	}

	// A token row that cannot be read in time (the table is locked by
	// another session): the client authenticated, the lookup did not answer.
	tx, err := e.admin.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), `LOCK TABLE oauth_access_tokens IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	outageWant503(t, "introspect, token lookup past the deadline", e.post("/introspect", url.Values{"token": {at}}, "rp", secret))
	outageWant503(t, "userinfo, token lookup past the deadline", e.userinfo(at))
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !e.active("rp", secret, at) {
		t.Fatal("the token is not active after the lock")
	}

	e.proxy.Cut()
	outageWant503(t, "userinfo, database down", e.userinfo(at))
	outageWant503(t, "introspect, database down", e.post("/introspect", url.Values{"token": {at}}, "rp", secret))
	e.proxy.Restore()
	e.proxy.Silence()
	start := time.Now()
	outageWant503(t, "userinfo, database silent", e.userinfo(at))
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("userinfo on a silent database took %v", d)
	}
	e.proxy.Restore()
	if r := e.userinfo(at); r.status != http.StatusOK {
		t.Errorf("userinfo after the outage: %d %s", r.status, r.raw)
	}
}

// TestOutageRefreshTouch: a refresh whose tokens are stored is answered even
// when the client's last-used update does not get through (its row is
// locked), so the rotated refresh token is not lost.
func TestOutageRefreshTouch(t *testing.T) {
	e := outageSetup(t, nil) // the default 10 s request deadline
	secret := e.client(tokClient{id: "rp", confidential: true})
	tok := e.exchange("rp", secret, e.authorize("rp", []string{"mcp", "offline_access"}, nil), nil)
	if tok.status != http.StatusOK || tok.str("refresh_token") == "" {
		t.Fatalf("exchange: %d %s", tok.status, tok.raw)
	}
	// Due for its last-used update, which waits for the lock.
	if _, err := e.admin.Exec(t.Context(), `UPDATE oauth_clients SET last_used_at = NULL WHERE id = 'rp'`); err != nil {
		t.Fatal(err)
	}
	tx, err := e.admin.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), `SELECT 1 FROM oauth_clients WHERE id = 'rp' FOR NO KEY UPDATE`); err != nil {
		t.Fatal(err)
	}
	// A client that waits 5 s, less than the request deadline.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.str("refresh_token")}}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.hs.URL+"/token", stringsReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("rp", secret)
	resp, err := e.hs.Client().Do(req)
	if err != nil {
		t.Fatalf("refresh while the client row is locked: %v", err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := jsonDecode(resp, &body); err != nil || resp.StatusCode != http.StatusOK || body["refresh_token"] == nil {
		t.Fatalf("refresh while the client row is locked: %d %v %v", resp.StatusCode, body, err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r := e.refresh("rp", secret, body["refresh_token"].(string), nil); r.status != http.StatusOK {
		t.Errorf("the rotated refresh token: %d %s", r.status, r.raw)
	}
}

// TestOutageFositeTemporarilyUnavailable: fosite's own
// temporarily_unavailable (its revocation handler returns it without a
// cause) is a 503 with Retry-After (RFC 7009 §2.2.1), not a 400.
func TestOutageFositeTemporarilyUnavailable(t *testing.T) {
	s, _ := testServer(t, false, nil)
	w := httptest.NewRecorder()
	s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return s.fositeError(w, r, fosite.ErrTemporarilyUnavailable)
	})(w, httptest.NewRequest(http.MethodPost, "/revoke", nil))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != unavailableRetryAfter {
		t.Errorf("got %d Retry-After %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

// TestOutageRefreshSilent: a refresh whose rotation does not get an answer
// from the database in time (the refresh token table, or the client row the
// new tokens reference, is locked by another session) is a 503 and leaves
// the old refresh token usable.
func TestOutageRefreshSilent(t *testing.T) {
	e := outageSetup(t, func(c *Config) { c.RequestTimeout = time.Second })
	secret := e.client(tokClient{id: "rp", confidential: true})
	tok := e.exchange("rp", secret, e.authorize("rp", []string{"mcp", "offline_access"}, nil), nil)
	if tok.status != http.StatusOK || tok.str("refresh_token") == "" {
		t.Fatalf("exchange: %d %s", tok.status, tok.raw)
	}
	rt := tok.str("refresh_token")
	for _, lock := range []string{
		`LOCK TABLE oauth_refresh_tokens IN ACCESS EXCLUSIVE MODE`,
		`SELECT 1 FROM oauth_clients WHERE id = 'rp' FOR UPDATE`,
	} {
		tx, err := e.admin.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(t.Context(), lock); err != nil {
			t.Fatal(err)
		}
		outageWant503(t, lock, e.refresh("rp", secret, rt, nil))
		if err := tx.Rollback(t.Context()); err != nil {
			t.Fatal(err)
		}
		r := e.refresh("rp", secret, rt, nil)
		if r.status != http.StatusOK {
			t.Fatalf("the refresh token after %s: %d %s", lock, r.status, r.raw)
		}
		rt = r.str("refresh_token")
	}
}

// TestOutageUnknownKey: a token signed by a key this replica has not loaded
// yet, while the database cannot be reached to load it, is "retry later"
// (503), not an invalid token; the failed reload does not use up the reload
// slot, so the token verifies as soon as the database is back.
func TestOutageUnknownKey(t *testing.T) {
	e := outageSetup(t, nil)
	direct, err := storage.Open(t.Context(), e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	// Another replica rotates the signing key, effective at once.
	other, err := keys.New(t.Context(), direct, e.s.cfg.Secret, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Rotate(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	tok, err := other.Sign("at+jwt", verifyClaims(e.tokEnv, time.Now()))
	if err != nil {
		t.Fatal(err)
	}

	e.proxy.Cut()
	_, err = e.s.VerifyAccessToken(t.Context(), tok)
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Code != oauth.TemporarilyUnavailable || oe.HTTPStatus() != http.StatusServiceUnavailable || errors.Is(err, oauth.ErrInvalidToken) {
		t.Errorf("unknown key, database down: %v, want temporarily_unavailable (503)", err)
	}
	e.proxy.Restore()
	if _, err := e.s.VerifyAccessToken(t.Context(), tok); err != nil {
		t.Errorf("unknown key, database back: %v, want the reload to happen and the token to verify", err)
	}
}

// TestOutageLogLine: the log line of an outage answer names the cause once,
// not fosite's bare code twice wrapped.
func TestOutageLogLine(t *testing.T) {
	s, _ := testServer(t, false, nil)
	var buf strings.Builder
	s.log = slog.New(slog.NewTextHandler(&buf, nil))
	down := fmt.Errorf("get client %q: %w: %w", "c1", storage.ErrUnavailable, errors.New("dial tcp: connection refused"))
	w := httptest.NewRecorder()
	s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return s.fositeError(w, r, fosite.ErrInvalidClient.WithWrap(down))
	})(w, httptest.NewRequest(http.MethodPost, "/token", nil))
	line := buf.String()
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(line, "connection refused") || strings.Count(line, oauth.TemporarilyUnavailable) != 1 {
		t.Errorf("%d, log %q: want the cause, and temporarily_unavailable once", w.Code, line)
	}
}

// TestOutagePAT: a personal access token not yet cached cannot be looked up
// while the database is down: temporarily_unavailable (503), not an invalid
// token; once the database is back it verifies.
func TestOutagePAT(t *testing.T) {
	e := outageSetup(t, nil)
	tok, _, err := e.s.CreatePersonalAccessToken(t.Context(), PATRequest{UserID: e.user.ID, Name: "script",
		Scopes: []string{"mcp"}, TTL: time.Hour, CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	e.proxy.Cut()
	_, err = e.s.VerifyAccessToken(t.Context(), tok)
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Code != oauth.TemporarilyUnavailable || oe.HTTPStatus() != http.StatusServiceUnavailable || errors.Is(err, oauth.ErrInvalidToken) {
		t.Errorf("personal access token, database down: %v, want temporarily_unavailable (503)", err)
	}
	e.proxy.Restore()
	if _, err := e.s.VerifyAccessToken(t.Context(), tok); err != nil {
		t.Errorf("personal access token, database back: %v", err)
	}
}
