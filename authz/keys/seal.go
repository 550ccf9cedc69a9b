package keys

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// hkdfInfo binds the derived key-encryption key to this one purpose, so the
// same MCPAUTH_SECRET can key other things (HMACs, cookies) without reuse
// (RFC 5869 §3.2). Changing it makes every stored key unreadable.
const hkdfInfo = "mcpauth signing-key encryption v1"

// sealVersion is the first byte of every sealed private key, so the format
// can change later without guessing.
const sealVersion byte = 1

// MinSecretLen is the shortest MCPAUTH_SECRET New accepts (256 bits).
const MinSecretLen = 32

// ErrDecrypt reports a stored private key that cannot be opened: the
// MCPAUTH_SECRET differs from the one that sealed it, or the row was altered.
var ErrDecrypt = errors.New("cannot decrypt: wrong MCPAUTH_SECRET or corrupted key")

// sealer encrypts private keys at rest with AES-256-GCM under a key derived
// from the server secret, with the kid as additional data so a sealed key
// cannot be moved to another row.
type sealer struct{ aead cipher.AEAD }

func newSealer(secret []byte) (*sealer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("secret is %d bytes, need at least %d", len(secret), MinSecretLen)
	}
	kek, err := hkdf.Key(sha256.New, secret, nil, hkdfInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive key-encryption key: %w", err)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal returns version || nonce || ciphertext||tag. The nonce is random: a
// handful of keys per secret is far below GCM's 2^32 random-nonce bound
// (NIST SP 800-38D §8.3).
func (s *sealer) seal(kid string, plaintext []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:], plaintext, []byte(kid)), nil
}

func (s *sealer) open(kid string, sealed []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrDecrypt
	}
	pt, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(kid))
	if err != nil {
		// GCM cannot tell a wrong key from altered bytes; say both.
		return nil, ErrDecrypt
	}
	return pt, nil
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of pub.
// It is the kid: derived from the key itself, so it needs no coordination
// between replicas, cannot collide by accident, and lets a load check that
// the decrypted key really is the one the row names.
func thumbprint(pub *ecdsa.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// publicJWK is the public half as published in the JWKS (RFC 7517 §4).
func publicJWK(kid string, pub *ecdsa.PublicKey) jose.JSONWebKey {
	return jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}
}

// generated is a fresh key ready to be stored.
type generated struct {
	kid       string
	priv      *ecdsa.PrivateKey
	sealed    []byte
	publicJWK []byte
}

func (s *sealer) generate() (*generated, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate P-256 key: %w", err)
	}
	kid, err := thumbprint(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	sealed, err := s.seal(kid, der)
	if err != nil {
		return nil, err
	}
	pj, err := json.Marshal(publicJWK(kid, &priv.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("marshal public JWK: %w", err)
	}
	return &generated{kid: kid, priv: priv, sealed: sealed, publicJWK: pj}, nil
}

// openKey decrypts and checks one stored key: an ES256 P-256 key whose
// thumbprint is its kid and whose stored public JWK is its public half.
func (s *sealer) openKey(kid, alg string, sealed, storedJWK []byte) (*ecdsa.PrivateKey, error) {
	if alg != string(jose.ES256) {
		return nil, fmt.Errorf("unsupported alg %q", alg)
	}
	der, err := s.open(kid, sealed)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	priv, ok := k.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("private key is %T, want a P-256 ECDSA key", k)
	}
	tp, err := thumbprint(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	if tp != kid {
		return nil, fmt.Errorf("private key thumbprint %s does not match kid", tp)
	}
	var stored jose.JSONWebKey
	if err := stored.UnmarshalJSON(storedJWK); err != nil {
		return nil, fmt.Errorf("parse stored public JWK: %w", err)
	}
	spub, ok := stored.Key.(*ecdsa.PublicKey)
	if !ok || !spub.Equal(&priv.PublicKey) || !stored.IsPublic() {
		return nil, errors.New("stored public JWK does not match the private key")
	}
	return priv, nil
}
