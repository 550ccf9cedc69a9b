package authz

import (
	"testing"
)

// BenchmarkClientSecretCompare is the client-secret check of every
// confidential client's token request: SHA-256 of the presented secret and
// a constant-time comparison (DESIGN §7: not bcrypt).
func BenchmarkClientSecretCompare(b *testing.B) {
	var h clientSecretHasher
	ctx := b.Context()
	secret := []byte(newClientSecret())
	hash, err := h.Hash(ctx, secret)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := h.Compare(ctx, hash, secret); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJWTSignerDecode is the access-token check of the introspection
// endpoint (fosite's JWT strategy calls jwtSigner.Decode): first seen, with
// the ECDSA verification, and seen again, with the remembered signature.
func BenchmarkJWTSignerDecode(b *testing.B) {
	s, tok := verifyBenchServer(b)
	for _, tc := range []struct {
		name     string
		remember bool
	}{{"first", false}, {"again", true}} {
		b.Run(tc.name, func(b *testing.B) {
			j := &jwtSigner{keys: s.keys, typ: typAccessToken}
			if tc.remember {
				j.verified = newVerifiedJWTs()
			}
			ctx := b.Context()
			if _, err := j.Decode(ctx, tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := j.Decode(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
