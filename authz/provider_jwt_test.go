package authz

import (
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	fjwt "github.com/ory/fosite/token/jwt"
)

// TestJWTSignerRemembersVerifiedTokens: Decode verifies a token's signature
// once and then trusts the same bytes, but never a changed token, and still
// checks the claims (expiry) on every call.
func TestJWTSignerRemembersVerifiedTokens(t *testing.T) {
	s, _ := testServer(t, false, nil)
	ctx := t.Context()
	j := &jwtSigner{keys: s.keys, typ: typAccessToken, verified: newVerifiedJWTs()}
	sign := func(exp time.Time) string {
		tok, _, err := j.Generate(ctx, fjwt.MapClaims{"sub": "alice", "exp": exp.Unix(), "iat": time.Now().Unix()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tok := sign(time.Now().Add(time.Hour))
	for i := range 2 {
		if got, err := j.Decode(ctx, tok); err != nil || got.Claims["sub"] != "alice" {
			t.Fatalf("decode %d: %v %v", i+1, got.Claims, err)
		}
	}
	if n := len(j.verified.m); n != 1 {
		t.Fatalf("%d tokens remembered, want 1", n)
	}
	// One changed byte of the signature: verified afresh, and refused.
	last := tok[len(tok)-2]
	bad := tok[:len(tok)-2] + map[bool]string{true: "A", false: "B"}[last != 'A'] + tok[len(tok)-1:]
	var ve *fjwt.ValidationError
	if _, err := j.Decode(ctx, bad); !errors.As(err, &ve) || ve.Errors&fjwt.ValidationErrorSignatureInvalid == 0 {
		t.Errorf("tampered token: %v, want an invalid signature", err)
	}
	// Another typ's signer does not share what this one verified.
	id := &jwtSigner{keys: s.keys, typ: typIDToken, verified: newVerifiedJWTs()}
	if _, err := id.Decode(ctx, tok); err == nil {
		t.Error("an access token decoded as an id_token")
	}
	// An expired token stays expired on the remembered path.
	old := sign(time.Now().Add(-time.Minute))
	for i := range 2 {
		if _, err := j.Decode(ctx, old); !errors.As(err, &ve) || ve.Errors&fjwt.ValidationErrorExpired == 0 {
			t.Errorf("expired token, decode %d: %v, want expired", i+1, err)
		}
	}
}

// TestVerifiedJWTsExpireAndStayBounded: an entry is forgotten after
// verifiedJWTTTL, and the map never holds more than verifiedJWTMax.
func TestVerifiedJWTsExpireAndStayBounded(t *testing.T) {
	c := newVerifiedJWTs()
	now := time.Now()
	k := sha256.Sum256([]byte("t"))
	c.put(k, []byte("{}"), now)
	if c.get(k, now.Add(verifiedJWTTTL-time.Second)) == nil {
		t.Error("forgotten before its time")
	}
	if c.get(k, now.Add(verifiedJWTTTL)) != nil {
		t.Error("remembered after verifiedJWTTTL")
	}
	for i := range verifiedJWTMax + 100 {
		c.put(sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)}), []byte("{}"), now)
	}
	if n := len(c.m); n > verifiedJWTMax {
		t.Errorf("%d entries, more than %d", n, verifiedJWTMax)
	}
}
