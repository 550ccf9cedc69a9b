package keys

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// MaxTokenSize caps the length of a token Verify will look at. Our access
// tokens are well under 1 KiB; the cap bounds the work an attacker can ask
// for before any signature check.
const MaxTokenSize = 8 << 10

// ErrInvalidToken is wrapped by every error Verify returns.
var ErrInvalidToken = errors.New("invalid token")

// ErrUnknownKey is wrapped (with ErrInvalidToken) when the token names a kid
// the set does not hold; a caller may Reload and retry, rate-limited.
var ErrUnknownKey = errors.New("unknown signing key")

// Verify errors are allocated once: rejecting a token costs no allocation
// beyond the parse.
var (
	errTooLarge   = fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, MaxTokenSize)
	errNotCompact = fmt.Errorf("%w: not a JWS compact serialization in canonical base64url", ErrInvalidToken)
	errMalformed  = fmt.Errorf("%w: malformed", ErrInvalidToken)
	errAlg        = fmt.Errorf("%w: alg must be ES256", ErrInvalidToken)
	errNoKID      = fmt.Errorf("%w: no kid", ErrInvalidToken)
	errKID        = fmt.Errorf("%w: %w", ErrInvalidToken, ErrUnknownKey)
	errTyp        = fmt.Errorf("%w: wrong typ", ErrInvalidToken)
	errCrit       = fmt.Errorf("%w: unsupported crit or b64 header", ErrInvalidToken)
	errSignature  = fmt.Errorf("%w: bad signature", ErrInvalidToken)
)

// es256Only is the one algorithm Verify accepts. Pinning it in the parser
// refuses "none" and every other alg, including HS256 keyed with our public
// key (algorithm confusion, RFC 8725 §2.1 and §3.1).
var es256Only = []jose.SignatureAlgorithm{jose.ES256}

// ErrNoSigningKey is returned by Sign when no key signs at the current time.
var ErrNoSigningKey = errors.New("keys: no current signing key")

// Sign returns a compact JWS of claims signed by the current key, with the
// protected header {"alg":"ES256","kid":…,"typ":typ}. claims is marshalled
// with encoding/json unless it is already JSON ([]byte or json.RawMessage);
// either way it must be a JSON object (RFC 7519 §7.1). typ is required:
// explicit typing keeps one kind of JWT from being accepted as another
// (RFC 8725 §3.11; "at+jwt" for access tokens, RFC 9068 §2.1).
func (s *Set) Sign(typ string, claims any) (string, error) {
	if typ == "" {
		return "", errors.New("keys: sign: empty typ")
	}
	var payload []byte
	switch c := claims.(type) {
	case []byte:
		payload = c
	case json.RawMessage:
		payload = c
	default:
		b, err := json.Marshal(claims)
		if err != nil {
			return "", fmt.Errorf("keys: sign: marshal claims: %w", err)
		}
		payload = b
	}
	if len(payload) == 0 || payload[0] != '{' || !json.Valid(payload) {
		return "", errors.New("keys: sign: claims are not a JSON object")
	}
	now := s.now()
	k := s.signerAt(s.current(now), now)
	if k == nil {
		return "", ErrNoSigningKey
	}
	signer, err := k.signer(typ)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("keys: sign: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("keys: sign: serialize: %w", err)
	}
	return tok, nil
}

// signer returns the cached go-jose signer of p for typ.
func (p *parsed) signer(typ string) (jose.Signer, error) {
	if v, ok := p.signers.Load(typ); ok {
		return v.(jose.Signer), nil
	}
	sg, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: p.priv, KeyID: p.kid}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)),
	)
	if err != nil {
		return nil, fmt.Errorf("keys: signer for %s: %w", p.kid, err)
	}
	v, _ := p.signers.LoadOrStore(typ, sg)
	return v.(jose.Signer), nil
}

// Verify checks a compact JWS signed by one of the set's keys and returns
// its payload. It refuses anything but the compact serialization, any alg
// but ES256, a missing or unknown kid, a typ that does not match typ, and
// tokens longer than MaxTokenSize. Claims (iss, aud, exp, …) are the
// caller's to check. It takes no lock.
func (s *Set) Verify(token, typ string) ([]byte, error) {
	if len(token) > MaxTokenSize {
		return nil, errTooLarge
	}
	// RFC 7515 §7.1: exactly three base64url parts. This also turns away the
	// JSON serialization and five-part JWEs before any parsing.
	if !isCompact(token) {
		return nil, errNotCompact
	}
	jws, err := jose.ParseSignedCompact(token, es256Only)
	if err != nil {
		if _, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return nil, errAlg
		}
		return nil, errMalformed
	}
	if len(jws.Signatures) != 1 {
		return nil, errMalformed
	}
	h := jws.Signatures[0].Protected
	// RFC 7515 §4.1.11: we understand no extension, so any crit is refused;
	// and we never sign RFC 7797 unencoded payloads, so b64 is refused too.
	if _, ok := h.ExtraHeaders["crit"]; ok {
		return nil, errCrit
	}
	if _, ok := h.ExtraHeaders["b64"]; ok {
		return nil, errCrit
	}
	if h.KeyID == "" {
		return nil, errNoKID
	}
	got, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if !typMatches(got, typ) {
		return nil, errTyp
	}
	now := s.now()
	k, ok := s.current(now).byKID[h.KeyID]
	if !ok || k.removedAt(now) {
		return nil, errKID
	}
	payload, err := jws.Verify(k.pub)
	if err != nil {
		return nil, errSignature
	}
	return payload, nil
}

// typMatches compares media types as RFC 7515 §4.1.9 and RFC 8725 §3.11
// say: case-insensitively, with the "application/" prefix optional, so
// "at+jwt" matches "application/at+jwt" (RFC 9068 §2.1).
func typMatches(got, want string) bool {
	if want == "" {
		return false
	}
	return strings.EqualFold(trimApplication(got), trimApplication(want))
}

func trimApplication(t string) string {
	const p = "application/"
	if len(t) > len(p) && strings.EqualFold(t[:len(p)], p) {
		return t[len(p):]
	}
	return t
}

// isCompact reports whether token is three dot-separated parts in canonical
// unpadded base64url (RFC 7515 §2, §7.1): only the URL-safe alphabet, no
// padding, no line breaks (which Go's decoder would skip), and zero unused
// bits in the last character. So each accepted token has exactly one
// spelling, which keeps caches and logs keyed by the token string honest;
// the ECDSA signature itself stays malleable, as ES256 allows.
func isCompact(token string) bool {
	dots, start := 0, 0
	for i := 0; i <= len(token); i++ {
		if i < len(token) && token[i] != '.' {
			continue
		}
		if !isCanonicalB64(token[start:i]) {
			return false
		}
		if i < len(token) {
			dots++
		}
		start = i + 1
	}
	return dots == 2
}

func isCanonicalB64(p string) bool {
	for i := 0; i < len(p); i++ {
		if b64Value(p[i]) < 0 {
			return false
		}
	}
	if len(p) == 0 {
		return true
	}
	last := b64Value(p[len(p)-1])
	switch len(p) % 4 {
	case 1:
		return false
	case 2: // one byte: 8 of the last two characters' 12 bits
		return last&0x0f == 0
	case 3: // two bytes: 16 of 18 bits
		return last&0x03 == 0
	}
	return true
}

func b64Value(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '-':
		return 62
	case c == '_':
		return 63
	}
	return -1
}
