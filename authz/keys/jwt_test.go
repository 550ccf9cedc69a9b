package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauth/mcpauth/storage/storagetest"
)

var testSecret = bytes.Repeat([]byte("k"), 32)

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func testSet(t testing.TB) *Set {
	t.Helper()
	s, err := New(t.Context(), storagetest.New(t), testSecret, Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// es256 signs signingInput with priv as JWS ES256 (RFC 7518 §3.4: r||s).
func es256(t testing.TB, priv *ecdsa.PrivateKey, signingInput string) string {
	t.Helper()
	h := sha256.Sum256([]byte(signingInput))
	r, s, err := ecdsa.Sign(rand.Reader, priv, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return b64(sig)
}

// craft builds a compact JWS with any header, signed by priv.
func craft(t testing.TB, priv *ecdsa.PrivateKey, hdr map[string]any, claims string) string {
	t.Helper()
	in := b64JSON(t, hdr) + "." + b64([]byte(claims))
	return in + "." + es256(t, priv, in)
}

func TestSignHeader(t *testing.T) {
	s := testSet(t)
	tok, err := s.Sign("at+jwt", map[string]any{"sub": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	hdr, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(hdr)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	kid := s.List()[0].KID
	want := map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt"}
	if len(got) != len(want) {
		t.Errorf("header = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("header[%s] = %v, want %v", k, got[k], v)
		}
	}
	payload, err := s.Verify(tok, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}
	if string(payload) != `{"sub":"alice"}` {
		t.Errorf("payload = %s", payload)
	}
	// Pre-marshalled claims are taken as they are; non-objects are refused.
	if _, err := s.Sign("at+jwt", json.RawMessage(`{"a":1}`)); err != nil {
		t.Errorf("Sign(RawMessage object): %v", err)
	}
	for _, bad := range []any{[]byte(`[1]`), json.RawMessage(`{"a":`), "a string", 42, []byte(nil)} {
		if _, err := s.Sign("at+jwt", bad); err == nil {
			t.Errorf("Sign(%v) succeeded, want an error (claims must be a JSON object)", bad)
		}
	}
	if _, err := s.Sign("", map[string]any{}); err == nil {
		t.Error("Sign with an empty typ succeeded")
	}
}

func TestVerify(t *testing.T) {
	s := testSet(t)
	k := s.snap.Load().ordered[0]
	kid := k.kid
	claims := `{"sub":"alice","aud":"https://auth.example.com/mcp"}`
	good := func(hdr map[string]any) string { return craft(t, k.priv, hdr, claims) }

	stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	// HS256 keyed with the public key: the classic algorithm confusion.
	hs256 := func(key []byte) string {
		in := b64JSON(t, map[string]any{"alg": "HS256", "kid": kid, "typ": "at+jwt"}) + "." + b64([]byte(claims))
		m := hmac.New(sha256.New, key)
		m.Write([]byte(in))
		return in + "." + b64(m.Sum(nil))
	}
	signed := good(map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt"})
	parts := strings.Split(signed, ".")
	// A JWS JSON serialization of a token we signed.
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := sg.Sign([]byte(claims))
	if err != nil {
		t.Fatal(err)
	}
	jsonSerialized := jws.FullSerialize()
	// A token whose payload's last base64url character carries unused bits:
	// Go's decoder reads the same bytes, so only the canonical check stops it.
	short := craft(t, k.priv, map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt"}, `{"a":1}`)
	sp := strings.Split(short, ".")
	if len(sp[1])%4 != 2 {
		t.Fatalf("payload %q: want a length of 2 mod 4", sp[1])
	}
	last := sp[1][len(sp[1])-1]
	alt := strings.IndexByte(b64Alphabet, last) + 1
	nonCanonical := sp[0] + "." + sp[1][:len(sp[1])-1] + b64Alphabet[alt:alt+1] + "." + sp[2]
	if _, err := s.Verify(short, "at+jwt"); err != nil {
		t.Fatalf("Verify(short): %v", err)
	}
	big := good(map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt", "pad": strings.Repeat("x", MaxTokenSize)})

	tests := []struct {
		name  string
		token string
		typ   string
		want  error // nil: accepted
	}{
		{"valid", signed, "at+jwt", nil},
		{"typ case-insensitive", good(map[string]any{"alg": "ES256", "kid": kid, "typ": "AT+JWT"}), "at+jwt", nil},
		{"typ with application/ prefix", good(map[string]any{"alg": "ES256", "kid": kid, "typ": "application/at+jwt"}), "at+jwt", nil},
		{"expected typ with application/ prefix", signed, "Application/AT+JWT", nil},
		{"extra header ignored", good(map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt", "x": 1}), "at+jwt", nil},

		{"alg none", b64JSON(t, map[string]any{"alg": "none", "kid": kid, "typ": "at+jwt"}) + "." + b64([]byte(claims)) + ".", "at+jwt", errAlg},
		{"alg none with a signature", b64JSON(t, map[string]any{"alg": "none", "kid": kid, "typ": "at+jwt"}) + "." + parts[1] + "." + parts[2], "at+jwt", errAlg},
		{"HS256 keyed with the public key PEM", hs256(pubPEM), "at+jwt", errAlg},
		{"HS256 keyed with the public key DER", hs256(pubDER), "at+jwt", errAlg},
		{"HS256 keyed with the JWKS", hs256(s.JWKS()), "at+jwt", errAlg},
		{"alg es256 lower case", good(map[string]any{"alg": "es256", "kid": kid, "typ": "at+jwt"}), "at+jwt", errAlg},
		{"ES384 claimed", good(map[string]any{"alg": "ES384", "kid": kid, "typ": "at+jwt"}), "at+jwt", errAlg},
		{"unknown kid", craft(t, stranger, map[string]any{"alg": "ES256", "kid": "stranger", "typ": "at+jwt"}, claims), "at+jwt", ErrUnknownKey},
		{"stranger's key under our kid", craft(t, stranger, map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt"}, claims), "at+jwt", errSignature},
		{"missing kid", good(map[string]any{"alg": "ES256", "typ": "at+jwt"}), "at+jwt", errNoKID},
		{"embedded jwk instead of kid", good(map[string]any{"alg": "ES256", "typ": "at+jwt", "jwk": publicJWK(kid, k.pub)}), "at+jwt", errNoKID},
		{"wrong typ", good(map[string]any{"alg": "ES256", "kid": kid, "typ": "JWT"}), "at+jwt", errTyp},
		{"missing typ", good(map[string]any{"alg": "ES256", "kid": kid}), "at+jwt", errTyp},
		{"typ not a string", good(map[string]any{"alg": "ES256", "kid": kid, "typ": 1}), "at+jwt", errTyp},
		{"access token presented as an ID token", signed, "JWT", errTyp},
		{"empty expected typ", signed, "", errTyp},
		{"crit header", good(map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt", "crit": []string{"exp"}, "exp": 1}), "at+jwt", errCrit},
		{"b64 false", good(map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt", "b64": false, "crit": []string{"b64"}}), "at+jwt", errCrit},
		{"modified payload", parts[0] + "." + b64([]byte(`{"sub":"admin","aud":"https://auth.example.com/mcp"}`)) + "." + parts[2], "at+jwt", errSignature},
		{"modified header", b64JSON(t, map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt", "x": 1}) + "." + parts[1] + "." + parts[2], "at+jwt", errSignature},
		{"truncated signature", parts[0] + "." + parts[1] + "." + parts[2][:40], "at+jwt", errSignature},
		{"no signature", parts[0] + "." + parts[1] + ".", "at+jwt", errSignature},
		{"oversize", big, "at+jwt", errTooLarge},
		{"JSON serialization", jsonSerialized, "at+jwt", errNotCompact},
		{"two parts", parts[0] + "." + parts[1], "at+jwt", errNotCompact},
		{"five parts (JWE shape)", signed + ".a.b", "at+jwt", errNotCompact},
		{"empty", "", "at+jwt", errNotCompact},
		{"header not base64", "!!!." + parts[1] + "." + parts[2], "at+jwt", errNotCompact},
		{"non-canonical base64url", nonCanonical, "at+jwt", errNotCompact},
		{"padded base64url", parts[0] + "." + parts[1] + "==." + parts[2], "at+jwt", errNotCompact},
		{"line break in payload", parts[0] + "." + parts[1][:8] + "\n" + parts[1][8:] + "." + parts[2], "at+jwt", errNotCompact},
		{"standard base64 alphabet", parts[0] + "." + parts[1] + ".+" + parts[2][1:], "at+jwt", errNotCompact},
		{"whitespace around", " " + signed + " ", "at+jwt", errNotCompact},
		{"header not JSON", b64([]byte("nope")) + "." + parts[1] + "." + parts[2], "at+jwt", errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload, err := s.Verify(tt.token, tt.typ)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify = %v, want success", err)
				}
				if string(payload) != claims {
					t.Errorf("payload = %s, want %s", payload, claims)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("error %v does not wrap ErrInvalidToken", err)
			}
			if payload != nil {
				t.Errorf("rejected token returned a payload: %s", payload)
			}
		})
	}
	if len(big) <= MaxTokenSize {
		t.Fatalf("oversize token is only %d bytes", len(big))
	}
}

// FuzzVerify feeds Verify arbitrary tokens built around one genuine token.
// Property: whatever it accepts carries the genuine header and payload (only
// the ECDSA signature may be spelled differently), and it never panics.
func FuzzVerify(f *testing.F) {
	s := testSet(f)
	claims := `{"sub":"alice","scope":"mcp"}`
	tok, err := s.Sign("at+jwt", json.RawMessage(claims))
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	f.Add(tok)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + ".." + parts[2])
	f.Add(b64([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".")
	f.Add(b64([]byte(`{"alg":"HS256","kid":"x"}`)) + "." + parts[1] + "." + parts[2])
	f.Add(tok + "." + tok)
	f.Fuzz(func(t *testing.T, in string) {
		payload, err := s.Verify(in, "at+jwt")
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) || payload != nil {
				t.Fatalf("Verify(%q) = %q, %v", in, payload, err)
			}
			return
		}
		if string(payload) != claims || !strings.HasPrefix(in, parts[0]+"."+parts[1]+".") {
			t.Fatalf("Verify accepted a token we did not sign: %q → %s", in, payload)
		}
	})
}

// FuzzIsCanonicalB64 checks isCanonicalB64 against a simpler model: the
// string decodes as strict unpadded base64url and re-encodes to itself.
func FuzzIsCanonicalB64(f *testing.F) {
	for _, s := range []string{"", "A", "AA", "AB", "AAA", "AAB", "AAAA", "eyJ9", "a-_b", "a+/b", "AA==", "A\nA", "QQ", "QR"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		dec, err := base64.RawURLEncoding.Strict().DecodeString(p)
		want := err == nil && base64.RawURLEncoding.EncodeToString(dec) == p
		if got := isCanonicalB64(p); got != want {
			t.Fatalf("isCanonicalB64(%q) = %v, model says %v", p, got, want)
		}
	})
}

func TestTypMatches(t *testing.T) {
	for _, tt := range []struct {
		got, want string
		ok        bool
	}{
		{"at+jwt", "at+jwt", true},
		{"AT+JWT", "at+jwt", true},
		{"application/at+jwt", "at+jwt", true},
		{"APPLICATION/at+JWT", "at+jwt", true},
		{"at+jwt", "application/at+jwt", true},
		{"application/", "application/", true},
		{"jwt", "at+jwt", false},
		{"", "at+jwt", false},
		{"", "", false},
		{"text/at+jwt", "at+jwt", false},
		{"application/application/at+jwt", "at+jwt", false},
	} {
		if got := typMatches(tt.got, tt.want); got != tt.ok {
			t.Errorf("typMatches(%q, %q) = %v, want %v", tt.got, tt.want, got, tt.ok)
		}
	}
}

func TestConcurrentSignVerify(t *testing.T) {
	s := testSet(t)
	done := make(chan error)
	for i := range 8 {
		go func() {
			for j := range 50 {
				tok, err := s.Sign("at+jwt", map[string]int{"i": i, "j": j})
				if err == nil {
					_, err = s.Verify(tok, "at+jwt")
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	go func() { _, _ = s.Rotate(t.Context(), true) }()
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

type benchClaims struct {
	Iss      string `json:"iss"`
	Sub      string `json:"sub"`
	Aud      string `json:"aud"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	JTI      string `json:"jti"`
	Exp      int64  `json:"exp"`
	Iat      int64  `json:"iat"`
}

func benchSet(b *testing.B) (*Set, benchClaims) {
	s := testSet(b)
	now := time.Now()
	return s, benchClaims{
		Iss: "https://auth.example.com", Sub: "alice", Aud: "https://auth.example.com/mcp",
		ClientID: "3f9c2a7e1b8d4c6f", Scope: "mcp admin", JTI: "0e7c9d1a-6f2b-4a3c-9d8e-1f2a3b4c5d6e",
		Exp: now.Add(10 * time.Minute).Unix(), Iat: now.Unix(),
	}
}

func BenchmarkSign(b *testing.B) {
	s, c := benchSet(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign("at+jwt", c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	s, c := benchSet(b)
	tok, err := s.Sign("at+jwt", c)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(tok, "at+jwt"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyReject measures the cost of turning away a token under a
// kid we do not hold, the cheapest attack on the hot path.
func BenchmarkVerifyReject(b *testing.B) {
	s, c := benchSet(b)
	tok, err := s.Sign("at+jwt", c)
	if err != nil {
		b.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	bad := b64JSON(b, map[string]any{"alg": "ES256", "kid": "nope", "typ": "at+jwt"}) + "." + parts[1] + "." + parts[2]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(bad, "at+jwt"); err == nil {
			b.Fatal("accepted")
		}
	}
}
