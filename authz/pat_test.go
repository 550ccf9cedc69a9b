package authz

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// patClock is a clock tests move forward.
type patClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *patClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *patClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// patEnv is a token environment with an injected clock and an admin user.
func patEnv(t *testing.T) (*tokEnv, *patClock, *storage.User) {
	t.Helper()
	clock := &patClock{t: time.Now()}
	e := newTokEnv(t, func(c *Config) { c.Now = clock.now })
	admin := &storage.User{Username: "root", PasswordHash: "$argon2id$unused", IsAdmin: true}
	if err := e.s.db.CreateUser(t.Context(), admin); err != nil {
		t.Fatal(err)
	}
	return e, clock, admin
}

func TestPATCreateAndVerify(t *testing.T) {
	e, _, admin := patEnv(t)
	ctx := t.Context()
	tok, pat, err := e.s.CreatePersonalAccessToken(ctx, PATRequest{UserID: e.user.ID, Name: " laptop ",
		Scopes: []string{"mcp", "mcp"}, TTL: 24 * time.Hour, CreatedBy: "alice"})
	if err != nil {
		t.Fatalf("CreatePersonalAccessToken: %v", err)
	}
	if !strings.HasPrefix(tok, PATPrefix) || len(tok) != patTokenLen {
		t.Errorf("token %q: want prefix %q and length %d", tok, PATPrefix, patTokenLen)
	}
	if pat.Name != "laptop" || len(pat.Scopes) != 1 || pat.Audience != e.s.cfg.MCPResource || pat.Username != "alice" {
		t.Errorf("record = %+v", pat)
	}
	// Hashed at rest: no column of any row holds the token.
	var n int
	if err := e.s.db.Pool().QueryRow(ctx, `SELECT count(*) FROM personal_access_tokens p
		WHERE strpos(p::text, $1) > 0 OR strpos(encode(p.token_hash, 'escape'), $1) > 0`, tok).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows containing the token: %d, %v; want 0", n, err)
	}
	if err := e.s.db.Pool().QueryRow(ctx, `SELECT count(*) FROM personal_access_tokens WHERE token_hash = sha256($1::bytea)`,
		[]byte(tok)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows with the token's sha256: %d, %v; want 1", n, err)
	}

	info, err := e.s.VerifyAccessToken(ctx, tok)
	if err != nil {
		t.Fatalf("VerifyAccessToken: %v", err)
	}
	want := oauth.TokenInfo{Subject: e.user.ID, ClientID: PATClientPrefix + pat.ID, Scopes: []string{"mcp"},
		Audience: []string{e.s.cfg.MCPResource}, GrantID: pat.ID, TokenID: pat.ID, IssuedAt: pat.CreatedAt, Expiry: pat.ExpiresAt}
	if info.Subject != want.Subject || info.ClientID != want.ClientID || strings.Join(info.Scopes, " ") != "mcp" ||
		strings.Join(info.Audience, " ") != e.s.cfg.MCPResource || info.GrantID != pat.ID || !info.Expiry.Equal(pat.ExpiresAt) {
		t.Errorf("TokenInfo = %+v, want %+v", info, want)
	}
	// Cached: a second call gives the same answer; last use was recorded.
	if _, err := e.s.VerifyAccessToken(ctx, tok); err != nil {
		t.Fatalf("second VerifyAccessToken: %v", err)
	}
	got, err := e.s.db.PersonalAccessToken(ctx, pat.ID)
	if err != nil || got.LastUsedAt == nil {
		t.Errorf("last use not recorded: %+v, %v", got, err)
	}

	// The audit log says who created what, without the token.
	events, err := e.s.db.ListAuditEvents(ctx, storage.AuditFilter{Event: storage.EventPATCreated})
	if err != nil || len(events) != 1 || events[0].Subject != "alice" || events[0].Actor != "alice" {
		t.Fatalf("pat.created events = %+v, %v", events, err)
	}
	auditNoSecret(t, e.s.db, tok)

	// An administrator may give the admin scope to their own token.
	if _, p, err := e.s.CreatePersonalAccessToken(ctx, PATRequest{UserID: admin.ID, Name: "ops",
		Scopes: []string{"admin", "mcp"}, TTL: time.Hour, CreatedBy: "root"}); err != nil || len(p.Scopes) != 2 {
		t.Errorf("admin token: %+v, %v", p, err)
	}
}

func TestPATRequestValidation(t *testing.T) {
	e, _, _ := patEnv(t)
	ok := PATRequest{UserID: e.user.ID, Name: "n", Scopes: []string{"mcp"}, TTL: time.Hour}
	for name, mod := range map[string]func(*PATRequest){
		"no name":               func(r *PATRequest) { r.Name = "  " },
		"long name":             func(r *PATRequest) { r.Name = strings.Repeat("x", maxPATNameLen+1) },
		"control in name":       func(r *PATRequest) { r.Name = "a\nb" },
		"no scope":              func(r *PATRequest) { r.Scopes = nil },
		"unknown scope":         func(r *PATRequest) { r.Scopes = []string{"nope"} },
		"openid":                func(r *PATRequest) { r.Scopes = []string{"openid"} },
		"offline_access":        func(r *PATRequest) { r.Scopes = []string{"mcp", "offline_access"} },
		"admin for a non-admin": func(r *PATRequest) { r.Scopes = []string{"admin"} },
		"ttl too short":         func(r *PATRequest) { r.TTL = time.Second },
		"ttl too long":          func(r *PATRequest) { r.TTL = MaxPATTTL + time.Hour },
	} {
		r := ok
		mod(&r)
		if _, _, err := e.s.CreatePersonalAccessToken(t.Context(), r); !errors.Is(err, ErrPATRequest) {
			t.Errorf("%s: %v, want ErrPATRequest", name, err)
		}
	}
	r := ok
	r.UserID = "00000000-0000-4000-8000-000000000000"
	if _, _, err := e.s.CreatePersonalAccessToken(t.Context(), r); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing user: %v, want ErrNotFound", err)
	}
	if n := len(e.s.PATScopes(e.user)); n != 1 {
		t.Errorf("PATScopes(non-admin) = %d scopes, want 1 (mcp)", n)
	}
}

func TestPATRefused(t *testing.T) {
	e, clock, _ := patEnv(t)
	ctx := t.Context()
	revocationRun(t, e.s)
	create := func(name string, ttl time.Duration) (string, *storage.PersonalAccessToken) {
		t.Helper()
		tok, p, err := e.s.CreatePersonalAccessToken(ctx, PATRequest{UserID: e.user.ID, Name: name, Scopes: []string{"mcp"}, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.VerifyAccessToken(ctx, tok); err != nil {
			t.Fatalf("fresh token refused: %v", err)
		}
		return tok, p
	}
	refusedWithin := func(tok string, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			_, err := e.s.VerifyAccessToken(ctx, tok)
			if errors.Is(err, oauth.ErrInvalidToken) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("token still accepted after %v (err %v)", d, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Forged: the right shape, a wrong tag; and garbage with the prefix.
	tok, _ := create("a", time.Hour)
	b := []byte(tok)
	b[len(b)-1] ^= 1
	if b[len(b)-1] == tok[len(tok)-1] {
		t.Fatal("no change")
	}
	for _, forged := range []string{string(b), PATPrefix + "x", PATPrefix + strings.Repeat("A", patTokenLen-len(PATPrefix))} {
		if _, err := e.s.VerifyAccessToken(ctx, forged); !errors.Is(err, oauth.ErrInvalidToken) {
			t.Errorf("forged %q: %v, want invalid token", forged, err)
		}
	}

	// Revoked: refused within 1 s, although it was cached.
	tokB, pb := create("b", time.Hour)
	if err := e.s.db.RevokePersonalAccessToken(ctx, pb.ID, e.user.ID); err != nil {
		t.Fatal(err)
	}
	refusedWithin(tokB, time.Second)

	// Expired: refused once the clock passes its expiry.
	tokC, _ := create("c", 2*time.Minute)
	clock.add(2*time.Minute + time.Second)
	if _, err := e.s.VerifyAccessToken(ctx, tokC); !errors.Is(err, oauth.ErrInvalidToken) {
		t.Errorf("expired token: %v, want invalid token", err)
	}
	clock.add(-2*time.Minute - time.Second)

	// The user disabled: every token of theirs refused within 1 s.
	tokD, _ := create("d", time.Hour)
	if err := e.s.db.SetUserDisabled(ctx, e.user.ID, true); err != nil {
		t.Fatal(err)
	}
	refusedWithin(tokD, time.Second)
	refusedWithin(tok, time.Second)
	// Enabling the user again revives nothing.
	if err := e.s.db.SetUserDisabled(ctx, e.user.ID, false); err != nil {
		t.Fatal(err)
	}
	e.s.oauth.verify.cache = newTokenCache(tokenCacheMax)
	if _, err := e.s.VerifyAccessToken(ctx, tokD); !errors.Is(err, oauth.ErrInvalidToken) {
		t.Errorf("token of a re-enabled user: %v, want still refused", err)
	}
	// A disabled user cannot get a new one.
	if err := e.s.db.SetUserDisabled(ctx, e.user.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.s.CreatePersonalAccessToken(ctx, PATRequest{UserID: e.user.ID, Name: "x", Scopes: []string{"mcp"}, TTL: time.Hour}); !errors.Is(err, ErrPATRequest) {
		t.Errorf("token for a disabled user: %v, want ErrPATRequest", err)
	}
}

// auditNoSecret fails if any audit row contains secret.
func auditNoSecret(t *testing.T, db *storage.DB, secret string) {
	t.Helper()
	var n int
	if err := db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM audit_events a WHERE strpos(a::text, $1) > 0`,
		secret).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d audit rows contain a secret", n)
	}
}

// TestPATExpiredIsRemembered: an expired token is a final refusal, kept in
// the refused set, so presenting it again costs no database query.
func TestPATExpiredIsRemembered(t *testing.T) {
	e, clock, _ := patEnv(t)
	ctx := t.Context()
	tok, _, err := e.s.CreatePersonalAccessToken(ctx, PATRequest{UserID: e.user.ID, Name: "x", Scopes: []string{"mcp"}, TTL: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	clock.add(3 * time.Minute)
	if _, err := e.s.VerifyAccessToken(ctx, tok); !errors.Is(err, oauth.ErrInvalidToken) {
		t.Fatalf("expired token: %v, want invalid token", err)
	}
	hash := sha256.Sum256([]byte(tok))
	e.s.pats.refusedMu.Lock()
	got := e.s.pats.refused[hash]
	e.s.pats.refusedMu.Unlock()
	if got != errTokenExpired {
		t.Errorf("refused[token] = %v, want errTokenExpired", got)
	}
}

// TestPATAdminScopeNeedsAnAdmin: should a token with an admin-only scope
// outlive its owner's admin role (SetUserAdmin revokes it), verifying it
// drops the admin-only scopes.
func TestPATAdminScopeNeedsAnAdmin(t *testing.T) {
	e, _, admin := patEnv(t)
	ctx := t.Context()
	tok, _, err := e.s.CreatePersonalAccessToken(ctx, PATRequest{UserID: admin.ID, Name: "ops", Scopes: []string{"mcp", "admin"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Demoted behind SetUserAdmin's back: the token is not revoked.
	if _, err := e.s.db.Pool().Exec(ctx, `UPDATE users SET is_admin = false WHERE id = $1`, admin.ID); err != nil {
		t.Fatal(err)
	}
	info, err := e.s.VerifyAccessToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(info.Scopes, " ") != "mcp" {
		t.Errorf("scopes of a demoted admin's token = %v, want [mcp]", info.Scopes)
	}
}

// TestPATDemotionRevokes: the admin API's demotion revokes the user's
// tokens holding an admin-only scope.
func TestPATDemotionRevokes(t *testing.T) {
	e, _, admin := patEnv(t)
	ctx := t.Context()
	_, p, err := e.s.CreatePersonalAccessToken(ctx, PATRequest{UserID: admin.ID, Name: "ops", Scopes: []string{"mcp", "admin"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.s.AdminOnlyScopes(), " "); got != "admin" {
		t.Fatalf("AdminOnlyScopes = %q, want admin", got)
	}
	r := httptest.NewRequest(http.MethodPost, "/admin", nil)
	if err := e.s.opSetUserAdmin(r, &adminCaller{user: e.user}, admin, false); err != nil {
		t.Fatal(err)
	}
	if got, err := e.s.db.PersonalAccessToken(ctx, p.ID); err != nil || got.RevokedAt == nil {
		t.Errorf("token after the demotion: %+v, %v; want revoked", got, err)
	}
}
