package authz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// verifyClaims are valid claims of an access token of e's server, issued
// now: each bad-token case changes one thing.
func verifyClaims(e *tokEnv, now time.Time) map[string]any {
	return map[string]any{
		"iss":       e.s.cfg.Issuer,
		"sub":       e.user.ID,
		"aud":       []string{e.s.cfg.MCPResource},
		"client_id": "app",
		"scope":     "mcp admin",
		"jti":       "jti-1",
		"grant_id":  "6f1c2d4e-0000-4000-8000-000000000001",
		"iat":       now.Unix(),
		"exp":       now.Add(10 * time.Minute).Unix(),
	}
}

// verifySign signs claims with e's key set.
func verifySign(t *testing.T, e *tokEnv, typ string, claims map[string]any) string {
	t.Helper()
	tok, err := e.s.keys.Sign(typ, claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// verifyKID is the kid of e's current signing key.
func verifyKID(t *testing.T, e *tokEnv) string {
	t.Helper()
	tok := verifySign(t, e, "at+jwt", map[string]any{})
	h, _ := base64.RawURLEncoding.DecodeString(tok[:strings.IndexByte(tok, '.')])
	var hdr struct{ Kid string }
	if err := json.Unmarshal(h, &hdr); err != nil || hdr.Kid == "" {
		t.Fatalf("no kid in %s", h)
	}
	return hdr.Kid
}

// verifyCompact assembles a compact JWS from a header, claims and signer.
func verifyCompact(t *testing.T, header, claims map[string]any, sign func(input []byte) []byte) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return input + "." + base64.RawURLEncoding.EncodeToString(sign([]byte(input)))
}

// verifyES256 signs as ES256 with key (RFC 7518 §3.4: R || S, 32 bytes each).
func verifyES256(key *ecdsa.PrivateKey) func([]byte) []byte {
	return func(input []byte) []byte {
		sum := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
		if err != nil {
			panic(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
}

// wantInvalid checks that err is a verification failure with reason.
func wantInvalid(t *testing.T, name string, info *oauth.TokenInfo, err error, reason string) {
	t.Helper()
	if err == nil || info != nil {
		t.Errorf("%s: accepted (%+v), want refused with %q", name, info, reason)
		return
	}
	if !errors.Is(err, oauth.ErrInvalidToken) {
		t.Errorf("%s: error %v does not wrap oauth.ErrInvalidToken", name, err)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("%s: error %q, want reason %q", name, err, reason)
	}
}

// TestVerifyAccessTokenRefuses: every way a token can be wrong is refused
// with ErrInvalidToken and a reason that says which.
func TestVerifyAccessTokenRefuses(t *testing.T) {
	e := newTokEnv(t, nil)
	ctx := t.Context()
	now := time.Now()
	kid := verifyKID(t, e)
	with := func(k string, v any) map[string]any {
		c := verifyClaims(e, now)
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Another key set, on another database, with the same secret.
	otherKeys, err := keys.New(ctx, storagetest.New(t), e.s.cfg.Secret, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	otherTok, err := otherKeys.Sign("at+jwt", verifyClaims(e, now))
	if err != nil {
		t.Fatal(err)
	}
	valid := verifySign(t, e, "at+jwt", verifyClaims(e, now))
	parts := strings.Split(valid, ".")
	tamperedClaims, _ := json.Marshal(with("sub", "someone-else"))
	jwks := e.s.keys.JWKS()

	cases := []struct {
		name, token, reason string
	}{
		{"empty", "", "no token"},
		{"too long", strings.Repeat("a", 5000), "too long"},
		{"not a JWS", "not-a-token", "not a JWS compact serialization"},
		{"expired", verifySign(t, e, "at+jwt", with("exp", now.Add(-time.Minute).Unix())), "expired"},
		{"not yet valid", verifySign(t, e, "at+jwt", with("nbf", now.Add(5*time.Minute).Unix())), "not yet valid"},
		{"issued in the future", verifySign(t, e, "at+jwt", with("iat", now.Add(5*time.Minute).Unix())), "issued in the future"},
		{"wrong audience", verifySign(t, e, "at+jwt", with("aud", []string{"https://other.example/mcp"})), "wrong audience"},
		{"audience of another path", verifySign(t, e, "at+jwt", with("aud", e.s.cfg.Issuer+"/mcp/other")), "wrong audience"},
		{"no audience", verifySign(t, e, "at+jwt", with("aud", nil)), "wrong audience"},
		{"wrong issuer", verifySign(t, e, "at+jwt", with("iss", e.s.cfg.Issuer+"/")), "wrong issuer"},
		{"no issuer", verifySign(t, e, "at+jwt", with("iss", nil)), "wrong issuer"},
		{"no exp", verifySign(t, e, "at+jwt", with("exp", nil)), "no expiry"},
		{"exp not a number", verifySign(t, e, "at+jwt", with("exp", "tomorrow")), "malformed claims"},
		{"no iat", verifySign(t, e, "at+jwt", with("iat", nil)), "no issue time"},
		{"no sub", verifySign(t, e, "at+jwt", with("sub", nil)), "no subject"},
		{"no client_id", verifySign(t, e, "at+jwt", with("client_id", nil)), "no client_id"},
		{"no scope", verifySign(t, e, "at+jwt", with("scope", nil)), "no scope"},
		{"bad scope", verifySign(t, e, "at+jwt", with("scope", "mcp \"x\"")), "malformed scope"},
		{"no jti", verifySign(t, e, "at+jwt", with("jti", nil)), "no jti"},
		{"no grant_id", verifySign(t, e, "at+jwt", with("grant_id", nil)), "no grant_id"},
		{"wrong typ (an id_token)", verifySign(t, e, "JWT", verifyClaims(e, now)), "wrong typ"},
		{"alg none", verifyCompact(t, map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid}, verifyClaims(e, now),
			func([]byte) []byte { return nil }), "alg must be ES256"},
		{"HS256 keyed with the public key", verifyCompact(t, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": kid}, verifyClaims(e, now),
			func(in []byte) []byte { m := hmac.New(sha256.New, jwks); m.Write(in); return m.Sum(nil) }), "alg must be ES256"},
		{"unknown kid", verifyCompact(t, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": "no-such-key"}, verifyClaims(e, now),
			verifyES256(attacker)), "unknown signing key"},
		{"our kid, another key", verifyCompact(t, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": kid}, verifyClaims(e, now),
			verifyES256(attacker)), "bad signature"},
		{"another key set", otherTok, "unknown signing key"},
		{"tampered payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString(tamperedClaims) + "." + parts[2], "bad signature"},
		{"tampered signature", parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64)), "bad signature"},
	}
	for _, tc := range cases {
		info, err := e.s.VerifyAccessToken(ctx, tc.token)
		wantInvalid(t, tc.name, info, err, tc.reason)
	}

	// Within the leeway, and an audience that differs only by a trailing
	// slash or in the letter case of the host, are accepted.
	for name, claims := range map[string]map[string]any{
		"exp 10 s ago":       with("exp", now.Add(-10*time.Second).Unix()),
		"nbf in 10 s":        with("nbf", now.Add(10*time.Second).Unix()),
		"iat in 10 s":        with("iat", now.Add(10*time.Second).Unix()),
		"aud with a slash":   with("aud", e.s.cfg.MCPResource+"/"),
		"aud among others":   with("aud", []string{"https://other.example", strings.ToUpper(e.s.cfg.Issuer[:4]) + e.s.cfg.Issuer[4:] + "/mcp"}),
		"fractional exp":     with("exp", float64(now.Add(time.Minute).Unix())+0.5),
		"empty scope string": with("scope", ""),
	} {
		if _, err := e.s.VerifyAccessToken(ctx, verifySign(t, e, "at+jwt", claims)); err != nil {
			t.Errorf("%s: %v, want accepted", name, err)
		}
	}
}

// TestVerifyAccessTokenIssued: tokens from the token endpoint verify, with
// the right TokenInfo; a grant keeps its grant_id across the code exchange
// and every refresh, and a client_credentials token has its own.
func TestVerifyAccessTokenIssued(t *testing.T) {
	e := newTokEnv(t, nil)
	ctx := t.Context()
	secret := e.client(tokClient{id: "web", confidential: true})
	ccSecret := e.client(tokClient{id: "svc", confidential: true, grants: []string{"client_credentials"}})

	before := time.Now().Add(-time.Second)
	r := e.exchange("web", secret, e.authorize("web", []string{"mcp", "admin"}, nil), nil)
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.status, r.raw)
	}
	info, err := e.s.VerifyAccessToken(ctx, r.str("access_token"))
	if err != nil {
		t.Fatalf("VerifyAccessToken: %v", err)
	}
	_, claims := e.jwt(r.str("access_token"), "at+jwt")
	grants, err := e.s.db.ListGrants(ctx, storage.GrantFilter{ClientID: "web"})
	if err != nil || len(grants) != 1 {
		t.Fatalf("ListGrants = %v, %v; want one grant", grants, err)
	}
	want := &oauth.TokenInfo{
		Subject: e.user.ID, ClientID: "web", Scopes: []string{"mcp", "admin"}, Audience: []string{e.s.cfg.MCPResource},
		GrantID: grants[0].ID, TokenID: claims["jti"].(string),
	}
	if diff := cmp.Diff(want, info, cmpopts.IgnoreFields(oauth.TokenInfo{}, "IssuedAt", "Expiry")); diff != "" {
		t.Errorf("TokenInfo (-want +got):\n%s", diff)
	}
	if claims["grant_id"] != grants[0].ID {
		t.Errorf("grant_id claim = %v, want the grant's id %s", claims["grant_id"], grants[0].ID)
	}
	if life := info.Expiry.Sub(info.IssuedAt); info.IssuedAt.Before(before) || life < 10*time.Minute-time.Second || life > 10*time.Minute+time.Second {
		t.Errorf("IssuedAt %v, Expiry %v; want now and 10 min later", info.IssuedAt, info.Expiry)
	}
	// The caller's copy is its own.
	info.Scopes[0] = "changed"
	if again, err := e.s.VerifyAccessToken(ctx, r.str("access_token")); err != nil || again.Scopes[0] != "mcp" {
		t.Errorf("second verify = %+v, %v: the cache was modified through a returned TokenInfo", again, err)
	}

	rt := r.str("refresh_token")
	for i := range 2 {
		rr := e.refresh("web", secret, rt, nil)
		if rr.status != http.StatusOK {
			t.Fatalf("refresh %d: %d %s", i, rr.status, rr.raw)
		}
		ri, err := e.s.VerifyAccessToken(ctx, rr.str("access_token"))
		if err != nil {
			t.Fatalf("verify refreshed token: %v", err)
		}
		if ri.GrantID != info.GrantID || ri.TokenID == info.TokenID {
			t.Errorf("refresh %d: grant %s, jti %s; want grant %s and a new jti", i, ri.GrantID, ri.TokenID, info.GrantID)
		}
		rt = rr.str("refresh_token")
	}

	seen := map[string]bool{info.GrantID: true}
	for range 2 {
		cr := e.post("/token", url.Values{"grant_type": {"client_credentials"}}, "svc", ccSecret)
		if cr.status != http.StatusOK {
			t.Fatalf("client_credentials: %d %s", cr.status, cr.raw)
		}
		ci, err := e.s.VerifyAccessToken(ctx, cr.str("access_token"))
		if err != nil {
			t.Fatalf("verify client_credentials token: %v", err)
		}
		if ci.Subject != "svc" || ci.ClientID != "svc" || seen[ci.GrantID] || ci.GrantID == "" {
			t.Errorf("client_credentials token: %+v; want subject and client svc and a grant of its own", ci)
		}
		seen[ci.GrantID] = true
	}
}

// TestVerifyAccessTokenCache: a cached token is still checked against the
// clock and the revocation set.
func TestVerifyAccessTokenCache(t *testing.T) {
	var skew atomic.Int64
	e := newTokEnv(t, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	ctx := t.Context()
	secret := e.client(tokClient{id: "web", confidential: true})
	r := e.exchange("web", secret, e.authorize("web", []string{"mcp"}, nil), nil)
	tok := r.str("access_token")
	info, err := e.s.VerifyAccessToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.s.oauth.verify.cache.len(); n != 1 {
		t.Fatalf("cache holds %d tokens after one verification, want 1", n)
	}
	// A cache hit: tamper with the cached entry to see it is what answers.
	key := sha256.Sum256([]byte(tok))
	e.s.oauth.verify.cache.get(key).ClientID = "from-the-cache"
	if got, err := e.s.VerifyAccessToken(ctx, tok); err != nil || got.ClientID != "from-the-cache" {
		t.Fatalf("second verification = %+v, %v; want the cached entry", got, err)
	}
	e.s.oauth.verify.cache.get(key).ClientID = "web"

	// Past exp plus leeway, the cached token is expired, and dropped.
	skew.Store(int64(11 * time.Minute))
	_, err = e.s.VerifyAccessToken(ctx, tok)
	wantInvalid(t, "cached, expired", nil, err, "expired")
	if n := e.s.oauth.verify.cache.len(); n != 0 {
		t.Errorf("expired token still cached (%d entries)", n)
	}
	skew.Store(0)

	// A revocation reaches a cached token.
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.s.RunRevocations(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	if _, err := e.s.VerifyAccessToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := e.s.db.RevokeGrant(ctx, info.GrantID); err != nil {
		t.Fatal(err)
	}
	verifyRefusedWithin(t, e.s, tok, time.Second)
}

// verifyRefusedWithin polls s until it refuses tok as revoked; deadline d
// (a functional deadline: DESIGN §4, "within 1 s").
func verifyRefusedWithin(t *testing.T, s *Server, tok string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		_, err := s.VerifyAccessToken(t.Context(), tok)
		if err != nil {
			wantInvalid(t, "revoked", nil, err, "revoked")
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("token still accepted %v after its revocation", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTokenCacheBounded(t *testing.T) {
	now := time.Now()
	c := newTokenCache(tokenCacheShards * 16)
	put := func(i int, exp time.Time) {
		c.put(sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)}), &oauth.TokenInfo{Expiry: exp}, now)
	}
	for i := range 10 * tokenCacheShards * 16 {
		put(i, now.Add(time.Minute))
	}
	if n := c.len(); n > tokenCacheShards*16 || n < tokenCacheShards*16/2 {
		t.Errorf("cache holds %d entries, want at most %d and not far below", n, tokenCacheShards*16)
	}
	// Expired entries go first: a full cache of expired entries keeps the
	// live ones that replace them.
	c = newTokenCache(tokenCacheShards * 16)
	for i := range tokenCacheShards * 16 * 4 {
		put(i, now.Add(-time.Hour))
	}
	live := map[[32]byte]bool{}
	for i := 1 << 20; i < 1<<20+64; i++ {
		k := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		c.put(k, &oauth.TokenInfo{Expiry: now.Add(time.Hour)}, now)
		live[k] = true
	}
	for k := range maps.Keys(live) {
		if c.get(k) == nil {
			t.Errorf("a live entry was evicted while expired ones were there")
			break
		}
	}
}

// Benchmarks of the resource server's auth check (DESIGN §7: a repeated
// token ≤ 20 µs).

func BenchmarkVerifyAccessTokenCached(b *testing.B) {
	s, tok := verifyBenchServer(b)
	ctx := b.Context()
	if _, err := s.VerifyAccessToken(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.VerifyAccessToken(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkVerifyAccessTokenUncached(b *testing.B) {
	s, tok := verifyBenchServer(b)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.verifyAccessToken(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}

// verifyBenchServer is a server with a real key set and 10,000 revoked
// grants, and an access token of it.
func verifyBenchServer(b *testing.B) (*Server, string) {
	b.Helper()
	db := storagetest.New(b)
	ctx := b.Context()
	secret := []byte("test secret: 0123456789abcdef0123456789abcdef")
	ks, err := keys.New(ctx, db, secret, keys.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx, `INSERT INTO revoked_grants (grant_id, expires_at)
		SELECT gen_random_uuid(), now() + interval '10 minutes' FROM generate_series(1, 10000)`); err != nil {
		b.Fatal(err)
	}
	const issuer = "https://auth.example.com"
	s, err := New(Config{Issuer: issuer, MCPResource: issuer + "/mcp", Secret: secret, Scopes: testScopes, DefaultScopes: []string{"mcp"}},
		db, ks, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	tok, err := ks.Sign(typAccessToken, map[string]any{
		"iss": issuer, "sub": "6f1c2d4e-0000-4000-8000-00000000000a", "aud": []string{issuer + "/mcp"},
		"client_id": "bench-client", "scope": "mcp admin", "jti": "8d3c7b8a-1b0e-4bb7-9f57-0c1f2b7a5e11",
		"grant_id": "6f1c2d4e-0000-4000-8000-000000000001", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	if err != nil {
		b.Fatal(err)
	}
	if n := len(tok); n < 500 {
		b.Fatalf("token of %d bytes: not representative", n)
	}
	return s, tok
}
