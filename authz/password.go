package authz

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Password hashing: argon2id (RFC 9106) in the PHC string format
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>, salt and hash in unpadded
// standard base64. The parameters are OWASP's first recommendation for
// argon2id (19 MiB, 2 passes, 1 lane): about 20 ms per hash on one core.
const (
	argonMemory  = 19 * 1024 // KiB
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16

	// MinPasswordBytes and MaxPasswordBytes bound a new password. The upper
	// bound also caps the work an attacker can ask of a login (NIST SP
	// 800-63B §3.1.1.2 allows a maximum of at least 64 characters).
	MinPasswordBytes = 8
	MaxPasswordBytes = 1024
)

// Bounds on parameters read back from a stored hash, so a corrupt or
// hostile row cannot make one login allocate gigabytes or spin for minutes.
const (
	maxArgonMemory  = 1 << 20 // KiB: 1 GiB
	maxArgonTime    = 16
	maxArgonThreads = 16
)

var errMalformedHash = errors.New("malformed argon2id hash")

// hashSlots bounds how many argon2 computations run at once: each holds
// argonMemory of RAM, so a flood of logins queues instead of exhausting
// memory.
var hashSlots = make(chan struct{}, 2*runtime.GOMAXPROCS(0))

func argonKey(password, salt []byte, t, m uint32, p uint8, n uint32) []byte {
	hashSlots <- struct{}{}
	defer func() { <-hashSlots }()
	return argon2.IDKey(password, salt, t, m, p, n)
}

// ValidatePassword reports what is wrong with a new password, or nil.
func ValidatePassword(password string) error {
	switch {
	case len(password) < MinPasswordBytes:
		return fmt.Errorf("password too short: at least %d characters", MinPasswordBytes)
	case len(password) > MaxPasswordBytes:
		return fmt.Errorf("password too long: at most %d bytes", MaxPasswordBytes)
	case !utf8.ValidString(password):
		return errors.New("password is not valid UTF-8")
	}
	return nil
}

// HashPassword returns the argon2id PHC string of a new password, after
// ValidatePassword.
func HashPassword(password string) (string, error) {
	if err := ValidatePassword(password); err != nil {
		return "", err
	}
	return hashPassword(password), nil
}

func hashPassword(password string) string {
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	key := argonKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// argonParams are the parameters of a stored hash.
type argonParams struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

func parseArgonHash(encoded string) (*argonParams, error) {
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=…,t=…,p=…", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return nil, errMalformedHash
	}
	var p argonParams
	seen := 0
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil || n == 0 {
			return nil, errMalformedHash
		}
		switch k {
		case "m":
			if n > maxArgonMemory {
				return nil, errMalformedHash
			}
			p.memory = uint32(n)
		case "t":
			if n > maxArgonTime {
				return nil, errMalformedHash
			}
			p.time = uint32(n)
		case "p":
			if n > maxArgonThreads {
				return nil, errMalformedHash
			}
			p.threads = uint8(n)
		default:
			return nil, errMalformedHash
		}
		seen++
	}
	if seen != 3 || p.memory == 0 || p.time == 0 || p.threads == 0 || p.memory < 8*uint32(p.threads) {
		return nil, errMalformedHash
	}
	var err error
	b64 := base64.RawStdEncoding.Strict()
	if p.salt, err = b64.DecodeString(parts[4]); err != nil || len(p.salt) < 8 {
		return nil, errMalformedHash
	}
	if p.key, err = b64.DecodeString(parts[5]); err != nil || len(p.key) < 16 || len(p.key) > 64 {
		return nil, errMalformedHash
	}
	return &p, nil
}

// verifyPassword reports whether password matches the stored hash, in
// constant time. A malformed hash is an error; a password over
// MaxPasswordBytes never matches (and costs no hashing).
func verifyPassword(encoded, password string) (bool, error) {
	p, err := parseArgonHash(encoded)
	if err != nil {
		return false, err
	}
	if len(password) > MaxPasswordBytes {
		return false, nil
	}
	got := argonKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(got, p.key) == 1, nil
}

// CheckPassword reports whether password matches a stored argon2id hash
// (false for a malformed hash), comparing in constant time.
func CheckPassword(hash, password string) bool {
	ok, err := verifyPassword(hash, password)
	return ok && err == nil
}

// passwordNeedsRehash reports whether a stored hash is weaker than (or
// different from) what HashPassword makes today, so that a successful login
// can replace it.
func passwordNeedsRehash(encoded string) bool {
	p, err := parseArgonHash(encoded)
	if err != nil {
		return true
	}
	return p.memory < argonMemory || p.time < argonTime || p.threads != argonThreads ||
		len(p.salt) < argonSaltLen || len(p.key) != argonKeyLen
}

// dummyHash is verified against when a login names no (usable) user, so that
// an unknown user costs the same time as a wrong password.
var dummyHash = sync.OnceValue(func() string { return hashPassword(rand.Text()) })

// GeneratePassword returns a new random password: 26 characters of base32,
// 130 bits.
func GeneratePassword() string { return rand.Text() }

// ValidateUsername reports what is wrong with a new username, or nil:
// 1–64 characters, ASCII letters, digits, '.', '_', '-' and '@' (ASCII only,
// so that no two names look alike).
func ValidateUsername(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("username must be 1 to 64 characters")
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-', c == '@':
		default:
			return fmt.Errorf("username %q: only letters a-z, digits and . _ - @ are allowed", name)
		}
	}
	return nil
}
