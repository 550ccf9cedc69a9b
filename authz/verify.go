package authz

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// Access-token verification for the resource server (DESIGN §4), in
// process: the signature by kid (ES256 only, typ at+jwt), the claims RFC 9068
// §4 requires, then the in-memory set of revoked grants (revocation.go).
// Verified tokens are cached by their SHA-256 until they expire, so a
// repeated token costs a hash and two map lookups, not an ECDSA verify.

const (
	// maxAccessTokenLen caps the token VerifyAccessToken looks at: ours are
	// about 1 KiB, and anything longer is refused before any parsing.
	maxAccessTokenLen = 4 << 10
	// accessTokenLeeway is the clock skew allowed on exp, nbf and iat
	// (RFC 7519 §4.1.4, §4.1.5: "some small leeway"). It is shorter than
	// storage.RevokedGrantRetention, so a revoked grant stays in the set
	// for as long as any of its tokens can pass the exp check.
	accessTokenLeeway = 30 * time.Second
	// tokenCacheShards and tokenCacheMax bound the cache of verified tokens:
	// 64 shards so that concurrent requests seldom share a lock, 64 Ki
	// entries in all (a few tens of MiB at most).
	tokenCacheShards = 64
	tokenCacheMax    = 64 << 10
)

// Verification failures. Each wraps oauth.ErrInvalidToken; the text after
// it is safe to send as error_description (RFC 6750 §3.1). They are
// allocated once: refusing a token allocates nothing more.
var (
	errTokenEmpty        = invalidToken("no token")
	errTokenTooLong      = invalidToken("token too long")
	errTokenUnknownKey   = invalidToken("unknown signing key")
	errTokenUnverifiable = invalidToken("signature not verifiable")
	errTokenClaims       = invalidToken("malformed claims")
	errTokenIssuer       = invalidToken("wrong issuer")
	errTokenAudience     = invalidToken("wrong audience")
	errTokenNoExpiry     = invalidToken("no expiry")
	errTokenExpired      = invalidToken("expired")
	errTokenNotYetValid  = invalidToken("not yet valid")
	errTokenNoIssuedAt   = invalidToken("no issue time")
	errTokenFuture       = invalidToken("issued in the future")
	errTokenNoSubject    = invalidToken("no subject")
	errTokenNoClient     = invalidToken("no client_id")
	errTokenNoScope      = invalidToken("no scope")
	errTokenScope        = invalidToken("malformed scope")
	errTokenNoID         = invalidToken("no jti")
	errTokenNoGrant      = invalidToken("no grant_id")
	errTokenRevoked      = invalidToken("revoked")
)

func invalidToken(reason string) error { return fmt.Errorf("%w: %s", oauth.ErrInvalidToken, reason) }

// accessVerifier is what VerifyAccessToken keeps between calls.
type accessVerifier struct {
	resource string // the canonical MCP resource: every token's aud must name it
	cache    *tokenCache
	// lastKeyReload (unix nanoseconds) rate-limits the key reloads an
	// unknown kid triggers.
	lastKeyReload atomic.Int64
}

// keyReloadEvery is how often at most a token naming an unknown kid makes
// the server look for keys rotated elsewhere (an emergency rotation on
// another replica or the CLI). More often would let anyone make every
// request a database query.
const keyReloadEvery = 5 * time.Second

// keyReloader is the part of *keys.Set that picks up keys rotated elsewhere.
type keyReloader interface {
	Reload(ctx context.Context) error
}

// initVerifier prepares VerifyAccessToken and loads the set of revoked
// grants, so that a fresh server refuses revoked tokens before
// RunRevocations starts. initOAuth calls it.
func (s *Server) initVerifier() error {
	res, err := oauth.CanonicalResource(s.cfg.MCPResource)
	if err != nil {
		return fmt.Errorf("authz: MCP resource: %w", err)
	}
	s.oauth.verify = &accessVerifier{resource: res, cache: newTokenCache(tokenCacheMax)}
	if err := s.initPATs(); err != nil {
		return err
	}
	s.oauth.revoked = newRevocations(s.db, s.log)
	if s.db == nil {
		return nil // a server without storage (metadata tests) has nothing revoked
	}
	ctx, cancel := context.WithTimeout(context.Background(), revocationLoadTimeout)
	defer cancel()
	if err := s.oauth.revoked.reload(ctx); err != nil {
		return fmt.Errorf("authz: load revoked grants: %w", err)
	}
	return nil
}

// VerifyAccessToken checks an access token this server issued and says what
// it grants; it is the resource server's oauth.Verifier. It refuses, with an
// error wrapping oauth.ErrInvalidToken:
//   - a token longer than 4 KiB;
//   - anything but a compact JWS signed ES256 by a key of the set, found by
//     kid, with typ at+jwt (RFC 9068 §4; RFC 8725 §3.1 and §3.11: no alg
//     none, no HS256 keyed with the public key, no id_token);
//   - iss other than the issuer, byte for byte (RFC 9068 §4, RFC 9207);
//   - aud without the MCP resource, compared in canonical form (RFC 9068 §4,
//     RFC 8707: never a token for another audience, no passthrough);
//   - exp passed, nbf or iat in the future, beyond 30 s of leeway (RFC 7519
//     §4.1.4, §4.1.5, §4.1.6);
//   - sub, client_id, scope, jti or grant_id missing (RFC 9068 §2.2);
//   - a token of a revoked grant.
//
// A verified token is cached by its SHA-256 until it expires; a cached token
// is checked against the clock and the revocation set on every call. The
// caller gets its own copy of the TokenInfo.
func (s *Server) VerifyAccessToken(ctx context.Context, token string) (*oauth.TokenInfo, error) {
	switch {
	case token == "":
		return nil, errTokenEmpty
	case len(token) > maxAccessTokenLen:
		return nil, errTokenTooLong
	}
	now := s.cfg.Now()
	v := s.oauth.verify
	key := sha256.Sum256([]byte(token))
	// A personal access token (pat.go) is looked up in the database once,
	// then cached like a verified JWT; its expiry has no leeway.
	pat := strings.HasPrefix(token, PATPrefix)
	leeway := accessTokenLeeway
	if pat {
		leeway = 0
	}
	info := v.cache.get(key)
	if info == nil {
		var err error
		if pat {
			info, err = s.verifyPAT(ctx, token)
			if storage.IsUnavailable(err) {
				return nil, &oauth.Error{Code: oauth.TemporarilyUnavailable, Description: "the token cannot be checked now; retry later", Status: http.StatusServiceUnavailable, Err: err}
			}
		} else {
			info, err = s.verifyAccessToken(token, now)
			if errors.Is(err, errTokenUnknownKey) {
				reloaded, rerr := s.reloadKeys(ctx, now)
				switch {
				case reloaded:
					info, err = s.verifyAccessToken(token, now)
				case storage.IsUnavailable(rerr):
					// The key may well be ours, signed after this replica last
					// loaded the set: not an invalid token (a 401 would make
					// the client drop it), but try again later.
					return nil, &oauth.Error{Code: oauth.TemporarilyUnavailable, Description: "the signing keys cannot be loaded now; retry later", Status: http.StatusServiceUnavailable, Err: rerr}
				}
			}
		}
		if err != nil {
			return nil, err
		}
		v.cache.put(key, info, now)
	}
	if !now.Before(info.Expiry.Add(leeway)) {
		v.cache.remove(key)
		return nil, errTokenExpired
	}
	if s.oauth.revoked.revoked(info.GrantID) {
		return nil, errTokenRevoked
	}
	if pat {
		s.touchPAT(ctx, info.GrantID, now)
	}
	out := *info
	out.Scopes = slices.Clone(info.Scopes)
	out.Audience = slices.Clone(info.Audience)
	return &out, nil
}

// verifyAccessToken verifies token's signature and claims at now (not the
// revocation set) and returns what it grants.
func (s *Server) verifyAccessToken(token string, now time.Time) (*oauth.TokenInfo, error) {
	payload, err := s.keys.Verify(token, typAccessToken)
	if err != nil {
		return nil, keyError(err)
	}
	var c accessClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, errTokenClaims
	}
	// RFC 9068 §4: iss must match exactly, aud must contain this resource.
	if c.Issuer != s.cfg.Issuer {
		return nil, errTokenIssuer
	}
	if !s.oauth.verify.audienceOK(c.Audience) {
		return nil, errTokenAudience
	}
	// RFC 7519 §4.1.4-6 with leeway for clock skew between replicas.
	switch {
	case c.Expiry == nil:
		return nil, errTokenNoExpiry
	case !now.Before(c.Expiry.time().Add(accessTokenLeeway)):
		return nil, errTokenExpired
	case c.NotBefore != nil && now.Add(accessTokenLeeway).Before(c.NotBefore.time()):
		return nil, errTokenNotYetValid
	case c.IssuedAt == nil:
		return nil, errTokenNoIssuedAt
	case now.Add(accessTokenLeeway).Before(c.IssuedAt.time()):
		return nil, errTokenFuture
	// RFC 9068 §2.2: sub, client_id, jti required; scope because every
	// MCP call is authorised by it; grant_id for revocation.
	case c.Subject == "":
		return nil, errTokenNoSubject
	case c.ClientID == "":
		return nil, errTokenNoClient
	case c.Scope == nil:
		return nil, errTokenNoScope
	case c.JTI == "":
		return nil, errTokenNoID
	case c.GrantID == "":
		return nil, errTokenNoGrant
	}
	scopes, err := oauth.ParseScope(*c.Scope)
	if err != nil {
		return nil, errTokenScope
	}
	return &oauth.TokenInfo{
		Subject:  c.Subject,
		ClientID: c.ClientID,
		Scopes:   slices.Clip(scopes),
		Audience: slices.Clip([]string(c.Audience)),
		GrantID:  c.GrantID,
		TokenID:  c.JTI,
		IssuedAt: c.IssuedAt.time(),
		Expiry:   c.Expiry.time(),
	}, nil
}

// reloadKeys reloads the key set, at most once every keyReloadEvery across
// all requests, and reports whether it did, or why it failed. A failed
// reload does not count: the next unknown kid tries again.
func (s *Server) reloadKeys(ctx context.Context, now time.Time) (bool, error) {
	kr, ok := s.keys.(keyReloader)
	if !ok {
		return false, nil
	}
	v := s.oauth.verify
	last := v.lastKeyReload.Load()
	if now.UnixNano()-last < int64(keyReloadEvery) || !v.lastKeyReload.CompareAndSwap(last, now.UnixNano()) {
		return false, nil
	}
	if err := kr.Reload(ctx); err != nil {
		v.lastKeyReload.CompareAndSwap(now.UnixNano(), last)
		s.log.WarnContext(ctx, "reload signing keys for an unknown kid", "err", err)
		return false, err
	}
	return true, nil
}

// keyError turns the key set's refusal into a verification failure. The key
// set's reasons (bad signature, alg must be ES256, wrong typ, …) are fixed
// strings; any other error is not described.
func keyError(err error) error {
	if errors.Is(err, keys.ErrUnknownKey) {
		return errTokenUnknownKey
	}
	if errors.Is(err, keys.ErrInvalidToken) {
		if reason, ok := strings.CutPrefix(err.Error(), keys.ErrInvalidToken.Error()+": "); ok && reason != "" {
			return invalidToken(reason)
		}
	}
	return errTokenUnverifiable
}

// audienceOK reports whether aud names the MCP resource. mcpauth writes
// the canonical form itself, so the comparison is usually exact; otherwise
// each value is canonicalised (trailing-slash tolerant, RFC 8707 §2).
func (v *accessVerifier) audienceOK(aud audience) bool {
	for _, a := range aud {
		if a == v.resource {
			return true
		}
	}
	for _, a := range aud {
		if c, err := oauth.CanonicalResource(a); err == nil && c == v.resource {
			return true
		}
	}
	return false
}

// accessClaims are the claims of an RFC 9068 access token that verification
// looks at.
type accessClaims struct {
	Issuer    string       `json:"iss"`
	Subject   string       `json:"sub"`
	Audience  audience     `json:"aud"`
	Expiry    *numericDate `json:"exp"`
	NotBefore *numericDate `json:"nbf"`
	IssuedAt  *numericDate `json:"iat"`
	ClientID  string       `json:"client_id"`
	Scope     *string      `json:"scope"`
	JTI       string       `json:"jti"`
	GrantID   string       `json:"grant_id"`
}

// audience is aud: one string or an array of strings (RFC 7519 §4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	*a = list
	return nil
}

// numericDate is a JWT NumericDate (RFC 7519 §2): seconds since the epoch,
// possibly fractional.
type numericDate struct{ t time.Time }

// maxNumericDate keeps times well inside time.Time's range.
const maxNumericDate = 1 << 40

func (d *numericDate) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	if math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return errors.New("NumericDate out of range")
	}
	sec, frac := math.Modf(f)
	d.t = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return nil
}

func (d *numericDate) time() time.Time { return d.t }

// ---- the cache of verified tokens ----

// tokenCache maps the SHA-256 of a verified token to what it grants, until
// it expires. It is sharded so that concurrent lookups seldom share a lock,
// and bounded: a full shard first drops its expired entries, then an eighth
// of the rest.
type tokenCache struct {
	shards   [tokenCacheShards]tokenCacheShard
	perShard int
}

type tokenCacheShard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]*oauth.TokenInfo
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{perShard: max(1, size/tokenCacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]*oauth.TokenInfo)
	}
	return c
}

func (c *tokenCache) shard(key [sha256.Size]byte) *tokenCacheShard {
	return &c.shards[int(key[0])%tokenCacheShards]
}

// get returns the cached entry for key, or nil. The entry is shared: the
// caller must not modify it.
func (c *tokenCache) get(key [sha256.Size]byte) *oauth.TokenInfo {
	sh := c.shard(key)
	sh.mu.RLock()
	info := sh.m[key]
	sh.mu.RUnlock()
	return info
}

func (c *tokenCache) put(key [sha256.Size]byte, info *oauth.TokenInfo, now time.Time) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.m) >= c.perShard {
		for k, e := range sh.m {
			if !now.Before(e.Expiry.Add(accessTokenLeeway)) {
				delete(sh.m, k)
			}
		}
		drop := len(sh.m) - c.perShard + 1
		if drop > 0 {
			drop = max(drop, c.perShard/8)
			for k := range sh.m { // Go's map order: an arbitrary choice
				delete(sh.m, k)
				if drop--; drop == 0 {
					break
				}
			}
		}
	}
	sh.m[key] = info
}

func (c *tokenCache) remove(key [sha256.Size]byte) {
	sh := c.shard(key)
	sh.mu.Lock()
	delete(sh.m, key)
	sh.mu.Unlock()
}

// len is the number of cached tokens.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
