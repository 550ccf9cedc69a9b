package authz

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

func TestPasswordHashAndVerify(t *testing.T) {
	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q is not an argon2id PHC string with the OWASP parameters", h)
	}
	if h2, _ := HashPassword("correct horse battery staple"); h2 == h {
		t.Error("two hashes of one password are equal: no random salt")
	}
	if passwordNeedsRehash(h) {
		t.Error("a fresh hash needs a rehash")
	}
	for _, tc := range []struct {
		password string
		want     bool
	}{
		{"correct horse battery staple", true},
		{"correct horse battery stapl", false},
		{"Correct horse battery staple", false},
		{"", false},
		{strings.Repeat("x", MaxPasswordBytes+1), false},
	} {
		got, err := verifyPassword(h, tc.password)
		if err != nil || got != tc.want {
			t.Errorf("verifyPassword(%.30q) = %v, %v; want %v, nil", tc.password, got, err, tc.want)
		}
	}
}

// A hash made elsewhere with other parameters (a reference computation)
// verifies, and needs a rehash to today's parameters.
func TestPasswordVerifyForeignParameters(t *testing.T) {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("pw"), salt, 1, 8*1024, 2, 32)
	b64 := base64.RawStdEncoding
	h := fmt.Sprintf("$argon2id$v=19$m=8192,t=1,p=2$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(key))
	if ok, err := verifyPassword(h, "pw"); err != nil || !ok {
		t.Fatalf("verifyPassword = %v, %v; want true, nil", ok, err)
	}
	if ok, _ := verifyPassword(h, "pW"); ok {
		t.Error("wrong password matched")
	}
	if !passwordNeedsRehash(h) {
		t.Error("a weaker hash does not need a rehash")
	}
}

func TestPasswordMalformedHashes(t *testing.T) {
	good, _ := HashPassword("password1")
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	for _, h := range []string{
		"",
		"plain",
		"$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1,x=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,t=2$" + salt + "$" + key,
		"$argon2id$v=19$m=0,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=4294967295,t=2,p=1$" + salt + "$" + key, // 4 TiB
		"$argon2id$v=19$m=19456,t=1000000,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=255$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "=$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$",
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key + "$",
	} {
		if ok, err := verifyPassword(h, "password1"); err == nil || ok {
			t.Errorf("verifyPassword(%q) = %v, %v; want false and an error", h, ok, err)
		}
		if !passwordNeedsRehash(h) {
			t.Errorf("passwordNeedsRehash(%q) = false", h)
		}
	}
}

func TestValidatePasswordAndUsername(t *testing.T) {
	for _, tc := range []struct {
		pw string
		ok bool
	}{
		{"1234567", false},
		{"12345678", true},
		{strings.Repeat("é", MaxPasswordBytes/2), true},
		{strings.Repeat("x", MaxPasswordBytes+1), false},
		{"abcdefgh\xff", false},
	} {
		if err := ValidatePassword(tc.pw); (err == nil) != tc.ok {
			t.Errorf("ValidatePassword(%.20q) = %v, want ok %v", tc.pw, err, tc.ok)
		}
		if _, err := HashPassword(tc.pw); (err == nil) != tc.ok {
			t.Errorf("HashPassword(%.20q) = %v, want ok %v", tc.pw, err, tc.ok)
		}
	}
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"alice.smith_2-x@example.com", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"alice smith", false},
		{"alice/..", false},
		{"ålice", false},
		{"аlice", false}, // Cyrillic а
		{"alice\n", false},
	} {
		if err := ValidateUsername(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateUsername(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	if a, b := GeneratePassword(), GeneratePassword(); a == b || ValidatePassword(a) != nil || len(a) < 26 {
		t.Errorf("GeneratePassword gave %q and %q", a, b)
	}
}

// FuzzParseArgonHash checks that a stored hash, whatever it holds, never
// makes a login ask for more than the bounded work, and that every hash we
// accept round-trips its parameters.
func FuzzParseArgonHash(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5")
	f.Add("$argon2id$v=19$m=4294967295,t=2,p=1$$")
	f.Fuzz(func(t *testing.T, h string) {
		p, err := parseArgonHash(h)
		if err != nil {
			return
		}
		if p.memory > maxArgonMemory || p.time > maxArgonTime || p.threads > maxArgonThreads || p.threads == 0 || p.time == 0 {
			t.Fatalf("accepted unbounded parameters %+v from %q", p, h)
		}
		if len(p.salt) < 8 || len(p.key) < 16 || len(p.key) > 64 {
			t.Fatalf("accepted salt %d / key %d bytes from %q", len(p.salt), len(p.key), h)
		}
		b64 := base64.RawStdEncoding
		again := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.memory, p.time, p.threads, b64.EncodeToString(p.salt), b64.EncodeToString(p.key))
		if q, err := parseArgonHash(again); err != nil || q.memory != p.memory || q.time != p.time || q.threads != p.threads {
			t.Fatalf("re-encoded %q does not parse back the same: %v", again, err)
		}
	})
}
