package authz

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// Personal access tokens (issue 6 §6): a user's named bearer token for /mcp
// with scopes they choose and an expiry, for scripts and service accounts.
//
// A token is "mcpat_" followed by base64url (no padding) of 32 random bytes
// and a 10-byte tag, HMAC-SHA-256 of those bytes under a key derived from
// the server secret. The prefix makes a leaked token recognisable (secret
// scanners); the tag lets the server refuse a made-up token without a
// database query. Only sha256 of the whole token is stored.
//
// VerifyAccessToken accepts one like an access token: TokenInfo{Subject: the
// user's id, ClientID: "pat:" + the token's id, Scopes: exactly its scopes,
// Audience: the MCP resource, GrantID and TokenID: the token's id}. Its id is
// its grant id, so revoking it (storage.RevokePersonalAccessToken, or
// disabling its user) goes through revoked_grants and its notification: every
// replica refuses it within a second. Its expiry is checked in memory, with
// no leeway (the server's own clock made it). Its last use is recorded at most
// once a minute, off the request path.

// PATPrefix starts every personal access token.
const PATPrefix = "mcpat_"

// PATClientPrefix starts the ClientID of a personal access token's
// TokenInfo: "pat:" + its id. The resource server limits rates per subject
// and client, so per token.
const PATClientPrefix = "pat:"

const (
	patRandomLen = 32
	patTagLen    = 10
	// patTokenLen is the length of a token: prefix + base64url of 42 bytes.
	patTokenLen = len(PATPrefix) + (8*(patRandomLen+patTagLen)+5)/6
	// MaxPATTTL is the longest lifetime of a personal access token.
	MaxPATTTL = 366 * 24 * time.Hour
	// MinPATTTL is the shortest.
	MinPATTTL = time.Minute
	// MaxLivePATsPerUser caps a user's unexpired, unrevoked personal access
	// tokens; creating one more is refused.
	MaxLivePATsPerUser = 50
	// maxPATNameLen bounds a token's name, in bytes.
	maxPATNameLen = 100
	// patTouchEvery is how often at most a token's last use is written.
	patTouchEvery = time.Minute
)

// patScopesExcluded are the supported scopes a personal access token never
// carries: they are about tokens the authorization server issues to OAuth
// clients (ID tokens, refresh tokens, userinfo), not about /mcp.
var patScopesExcluded = []string{"openid", "profile", "email", "offline_access"}

// PATRequest asks for a personal access token.
type PATRequest struct {
	UserID    string        // the owner
	Name      string        // shown in lists; 1 to 100 printable characters
	Scopes    []string      // among PATScopes(owner); at least one
	TTL       time.Duration // MinPATTTL to MaxPATTTL
	CreatedBy string        // who asked: the user's name, an administrator's, "cli"
	ClientIP  string        // where the request came from, for the audit log; "" for the CLI
}

// ErrPATRequest wraps every refusal of a PATRequest; the text after it is
// safe to show to whoever asked.
var ErrPATRequest = errors.New("invalid personal access token request")

type patService struct {
	key []byte // HMAC key of the tag
	// touched (token id → unix nanoseconds) throttles the last-use writes.
	touchMu sync.Mutex
	touched map[string]int64
	// touches are the last-use writes in flight; RunAudit waits for them.
	touches sync.WaitGroup
	// refused remembers well-formed tokens found revoked, of a disabled
	// user, or gone: each of those is final (a revoked token stays revoked,
	// disabling a user revokes their tokens, only expired tokens are
	// deleted), so presenting one again costs no query.
	refusedMu sync.Mutex
	refused   map[[sha256.Size]byte]error
}

// patRefusedMax bounds patService.refused.
const patRefusedMax = 10_000

func (s *Server) initPATs() error {
	s.pats = &patService{key: s.subkey("personal access token tag", 32), touched: map[string]int64{},
		refused: map[[sha256.Size]byte]error{}}
	return nil
}

// PATScopes are the scopes user may give a personal access token, in the
// configured order: the supported scopes but the OpenID Connect ones, and
// admin-only scopes only for an administrator.
func (s *Server) PATScopes(user *storage.User) []Scope {
	var out []Scope
	for _, sc := range s.cfg.Scopes {
		if slices.Contains(patScopesExcluded, sc.Name) || (sc.AdminOnly && !user.IsAdmin) {
			continue
		}
		out = append(out, sc)
	}
	return out
}

// CreatePersonalAccessToken mints a personal access token for req.UserID,
// who must exist and be enabled, and returns it (the only time it exists
// outside the holder's hands) with its stored record. A refusal wraps
// ErrPATRequest (or storage.ErrNotFound for a missing user).
func (s *Server) CreatePersonalAccessToken(ctx context.Context, req PATRequest) (token string, pat *storage.PersonalAccessToken, err error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrPATRequest, fmt.Sprintf(format, a...))
	}
	name := strings.TrimSpace(req.Name)
	switch {
	case name == "":
		return "", nil, bad("a name is required")
	case len(name) > maxPATNameLen:
		return "", nil, bad("the name is longer than %d bytes", maxPATNameLen)
	case !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }):
		return "", nil, bad("the name contains a character that is not printable")
	case req.TTL < MinPATTTL || req.TTL > MaxPATTTL:
		return "", nil, bad("the lifetime must be between %v and %d days", MinPATTTL, int(MaxPATTTL.Hours()/24))
	case len(req.Scopes) == 0:
		return "", nil, bad("at least one scope is required")
	}
	user, err := s.db.UserByID(ctx, req.UserID)
	if err != nil {
		return "", nil, err
	}
	if user.DisabledAt != nil {
		return "", nil, bad("the user is disabled")
	}
	// A cap on live tokens per user: each is a credential to audit and
	// revoke, and creation is open to every signed-in user (/account).
	if n, err := s.db.CountLivePersonalAccessTokens(ctx, user.ID, s.cfg.Now()); err != nil {
		return "", nil, err
	} else if n >= MaxLivePATsPerUser {
		return "", nil, bad("the user already has %d live personal access tokens, the most allowed; revoke one first", n)
	}
	allowed := s.PATScopes(user)
	var scopes []string
	for _, name := range req.Scopes {
		if slices.Contains(scopes, name) {
			continue
		}
		if !slices.ContainsFunc(allowed, func(sc Scope) bool { return sc.Name == name }) {
			if sc, ok := s.scope(name); ok && sc.AdminOnly {
				return "", nil, bad("the scope %q is only for administrators", name)
			}
			return "", nil, bad("the scope %q cannot be given to a personal access token", name)
		}
		scopes = append(scopes, name)
	}
	token = s.newPAT()
	hash := sha256.Sum256([]byte(token))
	pat = &storage.PersonalAccessToken{
		UserID:    user.ID,
		Name:      name,
		Scopes:    scopes,
		Audience:  s.cfg.MCPResource,
		ExpiresAt: s.cfg.Now().Add(req.TTL).UTC().Truncate(time.Microsecond),
		CreatedBy: req.CreatedBy,
	}
	if err := s.db.CreatePersonalAccessToken(ctx, pat, hash[:]); err != nil {
		return "", nil, err
	}
	s.recordAudit(ctx, storage.AuditEvent{Event: storage.EventPATCreated, Actor: req.CreatedBy, Subject: user.Username, ClientIP: req.ClientIP,
		Details: map[string]any{"pat_id": pat.ID, "name": pat.Name, "scopes": pat.Scopes, "expires_at": pat.ExpiresAt}})
	return token, pat, nil
}

// newPAT makes a token: prefix, random bytes, tag.
func (s *Server) newPAT() string {
	b := make([]byte, patRandomLen, patRandomLen+patTagLen)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	b = append(b, s.patTag(b)...)
	return PATPrefix + base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) patTag(random []byte) []byte {
	m := hmac.New(sha256.New, s.pats.key)
	m.Write(random)
	return m.Sum(nil)[:patTagLen]
}

// patWellFormed reports whether token has the shape and the tag of a token
// this server made (its secret), without the database.
func (s *Server) patWellFormed(token string) bool {
	if len(token) != patTokenLen || !strings.HasPrefix(token, PATPrefix) {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(token[len(PATPrefix):])
	if err != nil || len(b) != patRandomLen+patTagLen {
		return false
	}
	return subtle.ConstantTimeCompare(b[patRandomLen:], s.patTag(b[:patRandomLen])) == 1
}

var (
	errPATUnknown  = invalidToken("unknown personal access token")
	errPATRevoked  = invalidToken("revoked")
	errPATDisabled = invalidToken("user disabled")
	errPATAudience = invalidToken("wrong audience")
)

// verifyPAT looks a well-formed personal access token up by its hash and
// says what it grants. Unknown, revoked, disabled and expired are final
// refusals, remembered. The caller caches the result and checks expiry and
// the revocation set.
func (s *Server) verifyPAT(ctx context.Context, token string) (*oauth.TokenInfo, error) {
	if !s.patWellFormed(token) {
		return nil, errPATUnknown
	}
	hash := sha256.Sum256([]byte(token))
	ps := s.pats
	ps.refusedMu.Lock()
	err, known := ps.refused[hash]
	ps.refusedMu.Unlock()
	if known {
		return nil, err
	}
	p, err := s.db.PersonalAccessTokenByHash(ctx, hash[:])
	var final error
	switch {
	case errors.Is(err, storage.ErrNotFound):
		final = errPATUnknown
	case err != nil:
		return nil, fmt.Errorf("look up personal access token: %w", err)
	case p.RevokedAt != nil:
		final = errPATRevoked
	case p.UserDisabled:
		final = errPATDisabled
	case !s.cfg.Now().Before(p.ExpiresAt):
		// Expired is final too: remembered, so that an expired token
		// presented again costs no database query.
		final = errTokenExpired
	}
	if final != nil {
		ps.refusedMu.Lock()
		if len(ps.refused) >= patRefusedMax {
			clear(ps.refused)
		}
		ps.refused[hash] = final
		ps.refusedMu.Unlock()
		return nil, final
	}
	// RFC 8707: a token is bound to its audience; ours is the MCP endpoint.
	if res, err := oauth.CanonicalResource(p.Audience); err != nil || res != s.oauth.verify.resource {
		return nil, errPATAudience
	}
	scopes := slices.Clip(p.Scopes)
	if !p.UserIsAdmin {
		// A demotion revokes the tokens holding an admin-only scope
		// (storage.SetUserAdmin); should one be left, its admin-only
		// scopes still give nothing to a user who is no administrator.
		scopes = slices.DeleteFunc(slices.Clone(scopes), func(name string) bool {
			sc, ok := s.scope(name)
			return ok && sc.AdminOnly
		})
	}
	return &oauth.TokenInfo{
		Subject:  p.UserID,
		ClientID: PATClientPrefix + p.ID,
		Scopes:   scopes,
		Audience: []string{s.cfg.MCPResource},
		GrantID:  p.ID,
		TokenID:  p.ID,
		IssuedAt: p.CreatedAt,
		Expiry:   p.ExpiresAt,
	}, nil
}

// touchPAT records the use of the token id, at most once every
// patTouchEvery per token and replica: in the background while RunAudit
// runs (it waits for the writes in flight when it stops), else at once.
func (s *Server) touchPAT(ctx context.Context, id string, now time.Time) {
	ps := s.pats
	ps.touchMu.Lock()
	last, ok := ps.touched[id]
	due := !ok || now.UnixNano()-last >= int64(patTouchEvery)
	if due {
		if len(ps.touched) >= 10_000 {
			clear(ps.touched) // bounded; forgetting only costs a write that changes nothing
		}
		ps.touched[id] = now.UnixNano()
	}
	ps.touchMu.Unlock()
	if !due {
		return
	}
	touch := func() {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := s.db.TouchPersonalAccessToken(tctx, id); err != nil {
			s.log.WarnContext(tctx, "recording a personal access token's use failed", "pat_id", id, "err", err)
		}
	}
	a := s.auditLog
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.running {
		ps.touches.Go(touch)
		return
	}
	touch()
}
