package authz

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
)

// Bounds of a client's jwks_uri key set (RFC 7591 §2) as the token
// endpoint fetches it for private_key_jwt (RFC 7523 §2.2).
const (
	maxClientJWKSBytes = 16 << 10
	maxClientJWKSKeys  = 16
	// clientJWKSTTL is how long a fetched key set is used.
	clientJWKSTTL = 5 * time.Minute
	// clientJWKSMinRefresh is the shortest interval between two fetches of
	// one key set: fosite forces a refetch when an assertion names an
	// unknown kid, which anyone can send.
	clientJWKSMinRefresh = 30 * time.Second
	// maxClientJWKSCached bounds the cache; when full it is emptied.
	maxClientJWKSCached = 1024
)

// jwksGet is a guarded GET of at most maxBytes (fetch.go's fetcher).
type jwksGet func(ctx context.Context, url string, maxBytes int64) ([]byte, http.Header, error)

// clientJWKSFetcher is fosite's JWKSFetcherStrategy for private_key_jwt
// clients with a jwks_uri. fosite's default fetches any URL with no guard
// against SSRF; this one fetches through the same guarded fetcher as Client
// ID Metadata Documents (https only, no private addresses, size and time
// bounded), keeps only public signing keys, and caches per URL.
type clientJWKSFetcher struct {
	get jwksGet
	now func() time.Time

	mu    sync.Mutex
	cache map[string]cachedJWKS
}

type cachedJWKS struct {
	set     *jose.JSONWebKeySet
	fetched time.Time
}

var _ fosite.JWKSFetcherStrategy = (*clientJWKSFetcher)(nil)

func newClientJWKSFetcher(get jwksGet, now func() time.Time) *clientJWKSFetcher {
	return &clientJWKSFetcher{get: get, now: now, cache: map[string]cachedJWKS{}}
}

// Resolve implements fosite.JWKSFetcherStrategy. ignoreCache refetches,
// but not more often than clientJWKSMinRefresh.
func (f *clientJWKSFetcher) Resolve(ctx context.Context, location string, ignoreCache bool) (*jose.JSONWebKeySet, error) {
	now := f.now()
	f.mu.Lock()
	c, ok := f.cache[location]
	f.mu.Unlock()
	if ok {
		age := now.Sub(c.fetched)
		if age < clientJWKSTTL && (!ignoreCache || age < clientJWKSMinRefresh) {
			return c.set, nil
		}
	}
	body, _, err := f.get(ctx, location, maxClientJWKSBytes)
	if err != nil {
		return nil, fosite.ErrInvalidClient.WithHint("The client's jwks_uri could not be fetched.").WithWrap(err).WithDebug(err.Error())
	}
	set, err := parseClientJWKS(body)
	if err != nil {
		return nil, fosite.ErrInvalidClient.WithHint("The client's jwks_uri is not a usable JSON Web Key Set.").WithWrap(err).WithDebug(err.Error())
	}
	f.mu.Lock()
	if len(f.cache) >= maxClientJWKSCached {
		clear(f.cache)
	}
	f.cache[location] = cachedJWKS{set: set, fetched: now}
	f.mu.Unlock()
	return set, nil
}

// parseClientJWKS decodes a client's JSON Web Key Set (RFC 7517 §5): public
// keys only, at most maxClientJWKSKeys, encryption keys dropped.
func parseClientJWKS(b []byte) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("decode jwks: %w", err)
	}
	if len(set.Keys) == 0 || len(set.Keys) > maxClientJWKSKeys {
		return nil, fmt.Errorf("jwks has %d keys, want 1 to %d", len(set.Keys), maxClientJWKSKeys)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("jwks key %q is not a public key", k.KeyID)
		}
	}
	return signingKeys(&set), nil
}

// signingKeys returns set with every key that may verify signatures marked
// use "sig": RFC 7517 §4.2 makes use optional, and fosite's findPublicKey
// skips a key without it. Keys marked "enc" are left out.
func signingKeys(set *jose.JSONWebKeySet) *jose.JSONWebKeySet {
	if set == nil {
		return nil
	}
	out := &jose.JSONWebKeySet{}
	for _, k := range set.Keys {
		switch k.Use {
		case "sig":
		case "":
			k.Use = "sig"
		default:
			continue
		}
		out.Keys = append(out.Keys, k)
	}
	return out
}
