package authz

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"

	"github.com/ory/fosite"
)

// clientSecretHashAlg names, in oauth_clients.secret_hash_alg, how
// clientSecretHasher hashes.
const clientSecretHashAlg = "sha256"

// clientSecretHasher is fosite's ClientSecretsHasher for the secrets this
// server generates: 256 random bits each, so a single SHA-256 is as strong as
// any password hash and costs a microsecond instead of bcrypt's hundreds of
// milliseconds on every confidential client's token request (fosite-notes
// §12). It must never hash a secret a person chose.
type clientSecretHasher struct{}

var _ fosite.Hasher = clientSecretHasher{}

// errSecretMismatch is what Compare returns on a wrong secret; fosite turns
// any error into invalid_client.
var errSecretMismatch = errors.New("client secret does not match")

// Hash returns SHA-256(data), the value stored in oauth_clients.secret_hash.
func (clientSecretHasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	h := sha256.Sum256(data)
	return h[:], nil
}

// Compare reports whether data hashes to hash. The comparison is constant
// time, so the time a wrong secret takes to refuse tells nothing about it.
func (clientSecretHasher) Compare(_ context.Context, hash, data []byte) error {
	h := sha256.Sum256(data)
	if subtle.ConstantTimeCompare(h[:], hash) != 1 {
		return errSecretMismatch
	}
	return nil
}

// newClientSecret returns a fresh client secret: 256 random bits, base64url
// without padding (43 characters, safe in a form body and in Basic auth).
func newClientSecret() string { return randomSecret256() }

// newRegistrationToken returns a fresh RFC 7592 registration access token:
// 256 random bits, base64url (RFC 6750 §2.1 b64token characters only).
func newRegistrationToken() string { return randomSecret256() }

func randomSecret256() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// regTokenHash is the SHA-256 of a bearer credential (registration access token,
// initial access token) as stored and compared.
func regTokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}
