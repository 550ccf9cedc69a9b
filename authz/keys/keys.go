// Package keys holds the authorization server's JWT signing keys: it
// generates ES256 (P-256) keys, seals their private halves at rest with
// AES-256-GCM under a key derived from MCPAUTH_SECRET, rotates them, renders
// the public JWKS (RFC 7517), and signs and verifies compact JWTs by kid.
//
// Keys are decrypted and parsed once, when first seen, and served from an
// immutable in-memory snapshot, so Sign and Verify never touch the database.
//
// It is the only package of ours that imports go-jose (v4). It imports
// storage only for the record type; it must not import net/http, authz,
// resource, or fosite.
package keys

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauth/mcpauth/storage"
)

// Store is the storage the key set needs; *storage.DB satisfies it.
type Store interface {
	// SigningKeys returns every key not yet removed at now, oldest first.
	SigningKeys(ctx context.Context, now time.Time) ([]storage.SigningKey, error)
	// InsertFirstSigningKey inserts k unless some key signs at now,
	// atomically across replicas; it reports whether k was inserted.
	InsertFirstSigningKey(ctx context.Context, k storage.SigningKey, now time.Time) (bool, error)
	// RotateSigningKey inserts k and retires every other key still signing
	// at k.ActiveFrom, setting their retire_at to k.ActiveFrom and their
	// remove_at to removeAt.
	RotateSigningKey(ctx context.Context, k storage.SigningKey, removeAt time.Time) error
	// DeleteRemovedSigningKeys deletes keys whose remove_at is not after now.
	DeleteRemovedSigningKeys(ctx context.Context, now time.Time) (int64, error)
}

var _ Store = (*storage.DB)(nil)

// Defaults for Options.
const (
	DefaultPublishAhead = 10 * time.Minute
	DefaultMaxTokenTTL  = time.Hour
	// removeLeeway keeps a retired key published a little longer than the
	// longest token it signed, to cover clock skew and replicas that signed
	// with it until their next Reload.
	removeLeeway = 5 * time.Minute
)

// Options tune a Set. Zero values take the defaults.
type Options struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// PublishAhead is how long a rotated-in key is in the JWKS before it
	// signs, so that verifiers which cache the JWKS (and other replicas,
	// which Reload on a timer shorter than this) know it first.
	PublishAhead time.Duration
	// MaxTokenTTL is the longest lifetime of any JWT signed here: a retired
	// key stays in the JWKS this long (plus a leeway) after it stops signing.
	MaxTokenTTL time.Duration
	// Logger receives the errors of Run; slog.Default() when nil.
	Logger *slog.Logger
}

// State is where a key is in its life.
type State string

// Key states, as shown by `mcpauth keys list`.
const (
	StateNext    State = "next"    // published, signs from ActiveFrom
	StateCurrent State = "current" // signs now
	StateRetired State = "retired" // no longer signs, published until RemoveAt
)

// KeyInfo describes one key, without its private half.
type KeyInfo struct {
	KID        string     `json:"kid"`
	Alg        string     `json:"alg"`
	CreatedAt  time.Time  `json:"created_at"`
	ActiveFrom time.Time  `json:"active_from"`
	RetireAt   *time.Time `json:"retire_at,omitempty"`
	RemoveAt   *time.Time `json:"remove_at,omitempty"`
	State      State      `json:"state"`
}

// parsed is the decrypted, parsed key material, shared by every snapshot
// that holds the kid. It is never mutated after construction except for the
// signer cache, which is safe for concurrent use.
type parsed struct {
	kid     string
	priv    *ecdsa.PrivateKey
	pub     *ecdsa.PublicKey
	signers sync.Map // typ string → jose.Signer
}

// key is one key of a snapshot: its material and its schedule.
type key struct {
	*parsed
	createdAt, activeFrom time.Time
	retireAt, removeAt    time.Time // zero: not set
}

// signsAt reports whether k is the kind of key that signs at t.
func (k *key) signsAt(t time.Time) bool {
	return !t.Before(k.activeFrom) && (k.retireAt.IsZero() || t.Before(k.retireAt))
}

// removedAt reports whether k has left the JWKS at t.
func (k *key) removedAt(t time.Time) bool {
	return !k.removeAt.IsZero() && !t.Before(k.removeAt)
}

// snapshot is an immutable view of the key set.
type snapshot struct {
	byKID   map[string]*key
	ordered []*key // by activeFrom, then createdAt, then kid
	jwks    []byte
	// jwksUntil is when the JWKS next changes by the clock alone (the
	// earliest future remove_at); zero when it does not.
	jwksUntil time.Time
}

// Set is the key set. It is safe for concurrent use.
type Set struct {
	store        Store
	sealer       *sealer
	now          func() time.Time
	publishAhead time.Duration
	maxTokenTTL  time.Duration
	log          *slog.Logger

	snap atomic.Pointer[snapshot]
	mu   sync.Mutex // serializes Reload and Rotate; readers never take it
}

// New loads every published key, decrypting and parsing each once, and
// generates the first key when none can sign. A key that cannot be opened
// (wrong secret, altered row) is an error: New never replaces it silently.
func New(ctx context.Context, store Store, secret []byte, opts Options) (*Set, error) {
	sl, err := newSealer(secret)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	s := &Set{
		store:        store,
		sealer:       sl,
		now:          opts.Now,
		publishAhead: opts.PublishAhead,
		maxTokenTTL:  opts.MaxTokenTTL,
		log:          opts.Logger,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.publishAhead <= 0 {
		s.publishAhead = DefaultPublishAhead
	}
	if s.maxTokenTTL <= 0 {
		s.maxTokenTTL = DefaultMaxTokenTTL
	}
	if s.log == nil {
		s.log = slog.Default()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadLocked(ctx); err != nil {
		return nil, err
	}
	now := s.now()
	if s.signerAt(s.snap.Load(), now) != nil {
		return s, nil
	}
	g, err := s.sealer.generate()
	if err != nil {
		return nil, fmt.Errorf("keys: first key: %w", err)
	}
	rec := storage.SigningKey{
		KID: g.kid, Alg: string(jose.ES256), PrivateKey: g.sealed, PublicJWK: g.publicJWK,
		CreatedAt: now, ActiveFrom: now,
	}
	// Several replicas may start at once on an empty table: the store
	// inserts only if no signing key exists, under a lock, and we re-read
	// whatever won.
	if _, err := s.store.InsertFirstSigningKey(ctx, rec, now); err != nil {
		return nil, fmt.Errorf("keys: first key: %w", err)
	}
	if err := s.reloadLocked(ctx); err != nil {
		return nil, err
	}
	if s.signerAt(s.snap.Load(), s.now()) == nil {
		return nil, errors.New("keys: no signing key after generating the first one")
	}
	return s, nil
}

// Reload picks up keys added or rescheduled elsewhere (another replica, the
// CLI), decrypting only keys it has not seen, and drops removed ones.
func (s *Set) Reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked(ctx)
}

func (s *Set) reloadLocked(ctx context.Context) error {
	now := s.now()
	rows, err := s.store.SigningKeys(ctx, now)
	if err != nil {
		return fmt.Errorf("keys: load: %w", err)
	}
	var known map[string]*key
	if old := s.snap.Load(); old != nil {
		known = old.byKID
	}
	ks := make([]*key, 0, len(rows))
	for _, r := range rows {
		k := &key{createdAt: r.CreatedAt, activeFrom: r.ActiveFrom}
		if r.RetireAt != nil {
			k.retireAt = *r.RetireAt
		}
		if r.RemoveAt != nil {
			k.removeAt = *r.RemoveAt
		}
		if old, ok := known[r.KID]; ok {
			k.parsed = old.parsed
		} else {
			priv, err := s.sealer.openKey(r.KID, r.Alg, r.PrivateKey, r.PublicJWK)
			if err != nil {
				return fmt.Errorf("keys: signing key %s: %w", r.KID, err)
			}
			k.parsed = &parsed{kid: r.KID, priv: priv, pub: &priv.PublicKey}
		}
		ks = append(ks, k)
	}
	snap, err := buildSnapshot(ks, now)
	if err != nil {
		return err
	}
	s.snap.Store(snap)
	return nil
}

// buildSnapshot orders ks, drops the removed ones and renders the JWKS.
func buildSnapshot(ks []*key, now time.Time) (*snapshot, error) {
	ks = slices.DeleteFunc(slices.Clone(ks), func(k *key) bool { return k.removedAt(now) })
	slices.SortFunc(ks, func(a, b *key) int {
		if c := a.activeFrom.Compare(b.activeFrom); c != 0 {
			return c
		}
		if c := a.createdAt.Compare(b.createdAt); c != 0 {
			return c
		}
		switch {
		case a.kid < b.kid:
			return -1
		case a.kid > b.kid:
			return 1
		}
		return 0
	})
	snap := &snapshot{byKID: make(map[string]*key, len(ks)), ordered: ks}
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(ks))}
	for _, k := range ks {
		snap.byKID[k.kid] = k
		set.Keys = append(set.Keys, publicJWK(k.kid, k.pub))
		if !k.removeAt.IsZero() && (snap.jwksUntil.IsZero() || k.removeAt.Before(snap.jwksUntil)) {
			snap.jwksUntil = k.removeAt
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("keys: render JWKS: %w", err)
	}
	snap.jwks = b
	return snap, nil
}

// current returns the snapshot, first dropping keys whose remove_at has
// passed since it was built (the clock alone changes the JWKS).
func (s *Set) current(now time.Time) *snapshot {
	for {
		snap := s.snap.Load()
		if snap.jwksUntil.IsZero() || now.Before(snap.jwksUntil) {
			return snap
		}
		next, err := buildSnapshot(snap.ordered, now)
		if err != nil {
			// Unreachable in practice (marshalling public EC keys); keep
			// serving the previous view rather than nothing.
			return snap
		}
		if s.snap.CompareAndSwap(snap, next) {
			return next
		}
	}
}

// signerAt returns the key that signs at t: the latest-activated key whose
// window contains t, or nil.
func (s *Set) signerAt(snap *snapshot, t time.Time) *key {
	for i := len(snap.ordered) - 1; i >= 0; i-- {
		if k := snap.ordered[i]; k.signsAt(t) {
			return k
		}
	}
	return nil
}

// Rotate adds a new key, published now, that signs from now+PublishAhead,
// or from now when immediate (emergency rotation after a compromise). Every
// key that would still sign then retires at that moment and leaves the JWKS
// MaxTokenTTL (plus a leeway) later, when all tokens it signed have expired.
func (s *Set) Rotate(ctx context.Context, immediate bool) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	activeFrom := now
	if !immediate {
		activeFrom = now.Add(s.publishAhead)
	}
	g, err := s.sealer.generate()
	if err != nil {
		return "", fmt.Errorf("keys: rotate: %w", err)
	}
	rec := storage.SigningKey{
		KID: g.kid, Alg: string(jose.ES256), PrivateKey: g.sealed, PublicJWK: g.publicJWK,
		CreatedAt: now, ActiveFrom: activeFrom,
	}
	if err := s.store.RotateSigningKey(ctx, rec, activeFrom.Add(s.maxTokenTTL+removeLeeway)); err != nil {
		return "", fmt.Errorf("keys: rotate: %w", err)
	}
	if err := s.reloadLocked(ctx); err != nil {
		return "", err
	}
	return g.kid, nil
}

// Run reloads the keys every interval until ctx ends, and deletes keys
// whose remove_at has passed. Keep every shorter than PublishAhead, so that
// a scheduled key reaches this replica before it signs, and shorter than
// the 5-minute removal leeway, so that a replica that has not yet seen an
// emergency rotation (and still signs with the old key) does not outlive
// that key's place in the JWKS. Errors are logged and retried at the next
// tick.
func (s *Set) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
	}
}

// runTimeout bounds one reload of Run: a database that stops answering must
// not hold the set's lock (and with it every request's reload) for long.
const runTimeout = 10 * time.Second

// runOnce is one tick of Run.
func (s *Set) runOnce(ctx context.Context) {
	tctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	if err := s.Reload(tctx); err != nil {
		if ctx.Err() == nil {
			s.log.ErrorContext(ctx, "reload signing keys", "err", err)
		}
		return
	}
	if _, err := s.store.DeleteRemovedSigningKeys(tctx, s.now()); err != nil && ctx.Err() == nil {
		s.log.ErrorContext(ctx, "delete removed signing keys", "err", err)
	}
}

// JWKS returns the RFC 7517 JSON Web Key Set of every published key
// (upcoming, current and retired until removal), public members only. The
// bytes are rendered when the keys change; callers must not modify them.
func (s *Set) JWKS() []byte {
	return s.current(s.now()).jwks
}

// List describes every published key, oldest first.
func (s *Set) List() []KeyInfo {
	now := s.now()
	snap := s.current(now)
	signer := s.signerAt(snap, now)
	out := make([]KeyInfo, 0, len(snap.ordered))
	for _, k := range snap.ordered {
		ki := KeyInfo{
			KID: k.kid, Alg: string(jose.ES256),
			CreatedAt: k.createdAt, ActiveFrom: k.activeFrom,
			RetireAt: timePtr(k.retireAt), RemoveAt: timePtr(k.removeAt),
		}
		switch {
		case k == signer:
			ki.State = StateCurrent
		case now.Before(k.activeFrom) && (k.retireAt.IsZero() || k.retireAt.After(k.activeFrom)):
			ki.State = StateNext
		default:
			ki.State = StateRetired
		}
		out = append(out, ki)
	}
	return out
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
