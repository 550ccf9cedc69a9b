package keys_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

var secret = bytes.Repeat([]byte("s3cr3t!"), 5) // 35 bytes

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	publishAhead = 10 * time.Minute
	maxTokenTTL  = 30 * time.Minute
	// removeAfter is how long after retiring a key leaves the JWKS: the
	// package's documented MaxTokenTTL plus its 5-minute leeway.
	removeAfter = maxTokenTTL + 5*time.Minute
)

func newSet(t *testing.T, db *storage.DB, clk *clock) *keys.Set {
	t.Helper()
	s, err := keys.New(t.Context(), db, secret, keys.Options{Now: clk.Now, PublishAhead: publishAhead, MaxTokenTTL: maxTokenTTL})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func kids(s *keys.Set) []string {
	var out []string
	for _, k := range s.List() {
		out = append(out, k.KID)
	}
	return out
}

func states(s *keys.Set) map[string]keys.State {
	out := map[string]keys.State{}
	for _, k := range s.List() {
		out[k.KID] = k.State
	}
	return out
}

// jwksKIDs parses the JWKS and returns its kids, checking on the way that
// every key is a public ES256 signing key with no private member.
func jwksKIDs(t *testing.T, s *keys.Set) []string {
	t.Helper()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(s.JWKS(), &set); err != nil {
		t.Fatalf("JWKS is not JSON: %v\n%s", err, s.JWKS())
	}
	var out []string
	for _, k := range set.Keys {
		// RFC 7518 §6.2.2.1 "d" is the EC private key; the others are the
		// RSA and symmetric private members, which must not appear either.
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"} {
			if _, ok := k[private]; ok {
				t.Errorf("JWKS key %v carries private member %q", k["kid"], private)
			}
		}
		for name, want := range map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig"} {
			if k[name] != want {
				t.Errorf("JWKS key %v: %s = %v, want %q", k["kid"], name, k[name], want)
			}
		}
		kid, _ := k["kid"].(string)
		if kid == "" {
			t.Errorf("JWKS key without kid: %v", k)
		}
		out = append(out, kid)
	}
	return out
}

// header decodes a compact JWS's protected header.
func header(t *testing.T, tok string) map[string]any {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatalf("header: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("header: %v", err)
	}
	return m
}

func sign(t *testing.T, s *keys.Set, claims any) string {
	t.Helper()
	tok, err := s.Sign("at+jwt", claims)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return tok
}

func mustVerify(t *testing.T, s *keys.Set, tok string) {
	t.Helper()
	if _, err := s.Verify(tok, "at+jwt"); err != nil {
		t.Errorf("Verify(token by %v): %v", header(t, tok)["kid"], err)
	}
}

func countRows(t *testing.T, db *storage.DB) int {
	t.Helper()
	var n int
	if err := db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM signing_keys`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFirstStartGeneratesOneKey(t *testing.T) {
	db := storagetest.New(t)
	clk := newClock()
	s1 := newSet(t, db, clk)
	k1 := s1.List()
	if len(k1) != 1 || k1[0].State != keys.StateCurrent || k1[0].Alg != "ES256" {
		t.Fatalf("first start: List = %+v, want one current ES256 key", k1)
	}
	if !k1[0].ActiveFrom.Equal(clk.Now()) || k1[0].RetireAt != nil || k1[0].RemoveAt != nil {
		t.Errorf("first key schedule = %+v, want active now and nothing else scheduled", k1[0])
	}

	clk.Add(time.Hour)
	s2 := newSet(t, db, clk)
	if diff := cmp.Diff(kids(s1), kids(s2)); diff != "" {
		t.Errorf("second start kids (-first +second):\n%s", diff)
	}
	if n := countRows(t, db); n != 1 {
		t.Errorf("signing_keys has %d rows after two starts, want 1", n)
	}
	// The second Set verifies what the first signed.
	mustVerify(t, s2, sign(t, s1, map[string]any{"sub": "alice"}))
}

func TestConcurrentFirstStart(t *testing.T) {
	db := storagetest.New(t)
	clk := newClock()
	const n = 8
	sets := make([]*keys.Set, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sets[i], errs[i] = keys.New(t.Context(), db, secret, keys.Options{Now: clk.Now})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("New #%d: %v", i, err)
		}
	}
	if got := countRows(t, db); got != 1 {
		t.Fatalf("signing_keys has %d rows after %d concurrent starts, want 1", got, n)
	}
	for i, s := range sets {
		if diff := cmp.Diff(kids(sets[0]), kids(s)); diff != "" {
			t.Errorf("set #%d kids (-set0 +set%d):\n%s", i, i, diff)
		}
	}
}

func TestTokensSurviveRotation(t *testing.T) {
	for _, immediate := range []bool{true, false} {
		name := map[bool]string{true: "immediate", false: "scheduled"}[immediate]
		t.Run(name, func(t *testing.T) {
			db := storagetest.New(t)
			clk := newClock()
			s := newSet(t, db, clk)
			other := newSet(t, db, clk) // another replica
			oldKID := s.List()[0].KID
			before := sign(t, s, map[string]any{"sub": "alice"})

			newKID, err := s.Rotate(t.Context(), immediate)
			if err != nil {
				t.Fatalf("Rotate: %v", err)
			}
			if newKID == oldKID {
				t.Fatal("Rotate returned the old kid")
			}
			if !immediate {
				clk.Add(publishAhead)
			}
			after := sign(t, s, map[string]any{"sub": "bob"})
			if got := header(t, after)["kid"]; got != newKID {
				t.Errorf("after rotation signed by %v, want %s", got, newKID)
			}
			mustVerify(t, s, before)
			mustVerify(t, s, after)

			// The other replica learns the new key on Reload, and still
			// verifies both tokens.
			if _, err := other.Verify(after, "at+jwt"); !errors.Is(err, keys.ErrUnknownKey) {
				t.Errorf("other replica before Reload: Verify = %v, want ErrUnknownKey", err)
			}
			if err := other.Reload(t.Context()); err != nil {
				t.Fatal(err)
			}
			mustVerify(t, other, before)
			mustVerify(t, other, after)
			if got := header(t, sign(t, other, map[string]any{})); got["kid"] != newKID {
				t.Errorf("other replica signs with %v, want %s", got["kid"], newKID)
			}
			want := map[string]keys.State{oldKID: keys.StateRetired, newKID: keys.StateCurrent}
			if diff := cmp.Diff(want, states(other)); diff != "" {
				t.Errorf("states (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScheduledKeyPublishedBeforeSigning(t *testing.T) {
	db := storagetest.New(t)
	clk := newClock()
	s := newSet(t, db, clk)
	oldKID := s.List()[0].KID
	start := clk.Now()

	newKID, err := s.Rotate(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{oldKID, newKID}, jwksKIDs(t, s)); diff != "" {
		t.Errorf("JWKS right after a scheduled rotation (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]keys.State{oldKID: keys.StateCurrent, newKID: keys.StateNext}, states(s)); diff != "" {
		t.Errorf("states before the switch (-want +got):\n%s", diff)
	}
	for _, k := range s.List() {
		if k.KID == oldKID && (k.RetireAt == nil || !k.RetireAt.Equal(start.Add(publishAhead))) {
			t.Errorf("old key retire_at = %v, want %v", k.RetireAt, start.Add(publishAhead))
		}
		if k.KID == newKID && !k.ActiveFrom.Equal(start.Add(publishAhead)) {
			t.Errorf("new key active_from = %v, want %v", k.ActiveFrom, start.Add(publishAhead))
		}
	}

	clk.Add(publishAhead - time.Second)
	if got := header(t, sign(t, s, map[string]any{}))["kid"]; got != oldKID {
		t.Errorf("1s before the switch: signed by %v, want the old key %s", got, oldKID)
	}
	clk.Add(time.Second)
	if got := header(t, sign(t, s, map[string]any{}))["kid"]; got != newKID {
		t.Errorf("at the switch: signed by %v, want the new key %s", got, newKID)
	}
	if diff := cmp.Diff(map[string]keys.State{oldKID: keys.StateRetired, newKID: keys.StateCurrent}, states(s)); diff != "" {
		t.Errorf("states after the switch (-want +got):\n%s", diff)
	}
}

func TestRetiredKeyRemovedAfterMaxTokenTTL(t *testing.T) {
	db := storagetest.New(t)
	clk := newClock()
	s := newSet(t, db, clk)
	oldKID := s.List()[0].KID
	old := sign(t, s, map[string]any{"sub": "alice"})

	clk.Add(time.Minute)
	newKID, err := s.Rotate(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(removeAfter - time.Second)
	if diff := cmp.Diff([]string{oldKID, newKID}, jwksKIDs(t, s)); diff != "" {
		t.Errorf("JWKS 1s before removal (-want +got):\n%s", diff)
	}
	mustVerify(t, s, old)

	clk.Add(time.Second)
	// No Reload: the clock alone takes the key out.
	if diff := cmp.Diff([]string{newKID}, jwksKIDs(t, s)); diff != "" {
		t.Errorf("JWKS at removal (-want +got):\n%s", diff)
	}
	if _, err := s.Verify(old, "at+jwt"); !errors.Is(err, keys.ErrUnknownKey) {
		t.Errorf("Verify(token of a removed key) = %v, want ErrUnknownKey", err)
	}
	if err := s.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{newKID}, kids(s)); diff != "" {
		t.Errorf("kids after Reload (-want +got):\n%s", diff)
	}
	if n, err := db.DeleteRemovedSigningKeys(t.Context(), clk.Now()); err != nil || n != 1 {
		t.Errorf("DeleteRemovedSigningKeys = %d, %v; want 1, nil", n, err)
	}
}

func TestRotateTwice(t *testing.T) {
	// A scheduled key superseded by an emergency rotation never signs.
	db := storagetest.New(t)
	clk := newClock()
	s := newSet(t, db, clk)
	first := s.List()[0].KID
	scheduled, err := s.Rotate(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	emergency, err := s.Rotate(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]keys.State{first: keys.StateRetired, scheduled: keys.StateRetired, emergency: keys.StateCurrent}
	if diff := cmp.Diff(want, states(s)); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
	for _, step := range []time.Duration{0, publishAhead, time.Hour} {
		clk.Add(step)
		if got := header(t, sign(t, s, map[string]any{}))["kid"]; got != emergency {
			t.Errorf("+%v: signed by %v, want the emergency key %s", step, got, emergency)
		}
	}
	// Both superseded keys have left the JWKS by now.
	if diff := cmp.Diff([]string{emergency}, jwksKIDs(t, s)); diff != "" {
		t.Errorf("JWKS an hour later (-want +got):\n%s", diff)
	}
}

func TestNewFailsOnUnreadableKey(t *testing.T) {
	tests := []struct {
		name   string
		breakf func(t *testing.T, db *storage.DB) []byte // returns the secret for the second New
	}{
		{"wrong secret", func(t *testing.T, db *storage.DB) []byte {
			return bytes.Repeat([]byte("another secret!!"), 2)
		}},
		{"tampered ciphertext", func(t *testing.T, db *storage.DB) []byte {
			if _, err := db.Pool().Exec(t.Context(),
				`UPDATE signing_keys SET private_key = set_byte(private_key, 30, get_byte(private_key, 30) # 1)`); err != nil {
				t.Fatal(err)
			}
			return secret
		}},
		{"ciphertext moved to another kid", func(t *testing.T, db *storage.DB) []byte {
			// Sealed under kid A, presented as kid B: the AAD stops it.
			if _, err := db.Pool().Exec(t.Context(),
				`UPDATE signing_keys SET kid = 'x' || kid`); err != nil {
				t.Fatal(err)
			}
			return secret
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := storagetest.New(t)
			clk := newClock()
			newSet(t, db, clk)
			sec := tt.breakf(t, db)
			_, err := keys.New(t.Context(), db, sec, keys.Options{Now: clk.Now})
			if !errors.Is(err, keys.ErrDecrypt) {
				t.Fatalf("New = %v, want ErrDecrypt", err)
			}
			if !strings.Contains(err.Error(), "cannot decrypt: wrong MCPAUTH_SECRET or corrupted key") ||
				!strings.Contains(err.Error(), "signing key") {
				t.Errorf("error does not say plainly what is wrong: %q", err)
			}
			if n := countRows(t, db); n != 1 {
				t.Errorf("signing_keys has %d rows, want 1: New must not replace an unreadable key", n)
			}
		})
	}
}

func TestNewRejectsShortSecret(t *testing.T) {
	db := storagetest.New(t)
	if _, err := keys.New(t.Context(), db, []byte("short"), keys.Options{}); err == nil {
		t.Fatal("New with a 5-byte secret succeeded")
	}
	if n := countRows(t, db); n != 0 {
		t.Errorf("signing_keys has %d rows, want 0", n)
	}
}

func TestJWKS(t *testing.T) {
	db := storagetest.New(t)
	clk := newClock()
	s := newSet(t, db, clk)
	if _, err := s.Rotate(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	got := jwksKIDs(t, s) // checks for private members
	if len(got) != 2 {
		t.Fatalf("JWKS has %d keys, want 2", len(got))
	}
	if bytes.Contains(s.JWKS(), []byte(`"d"`)) {
		t.Errorf("JWKS contains a \"d\" member: %s", s.JWKS())
	}
	// The kid is the RFC 7638 thumbprint: 32 bytes of SHA-256, base64url.
	for _, kid := range got {
		if b, err := base64.RawURLEncoding.DecodeString(kid); err != nil || len(b) != 32 {
			t.Errorf("kid %q is not a base64url SHA-256 thumbprint", kid)
		}
	}
}

func TestRunReloads(t *testing.T) {
	db := storagetest.New(t)
	clk := newClock()
	s := newSet(t, db, clk)
	other := newSet(t, db, clk)
	kid, err := other.Rotate(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx, 10*time.Millisecond); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(kids(s), kid) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not pick up the rotated key within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
