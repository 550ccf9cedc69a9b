package authz

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

func TestClientSecretHasher(t *testing.T) {
	ctx := t.Context()
	h := clientSecretHasher{}
	secret := newClientSecret()
	hash, err := h.Hash(ctx, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256([]byte(secret)); string(hash) != string(want[:]) {
		t.Fatalf("Hash = %x, want SHA-256 %x", hash, want)
	}
	for _, tc := range []struct {
		name       string
		hash, data []byte
		ok         bool
	}{
		{"the secret", hash, []byte(secret), true},
		{"another secret", hash, []byte(newClientSecret()), false},
		{"one byte more", hash, []byte(secret + "a"), false},
		{"one byte less", hash, []byte(secret[:len(secret)-1]), false},
		{"empty secret", hash, nil, false},
		{"no stored hash (public client)", nil, []byte(secret), false},
		{"empty secret, no stored hash", nil, nil, false},
		{"truncated hash", hash[:16], []byte(secret), false},
		{"the hash itself as the secret", hash, hash, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := h.Compare(ctx, tc.hash, tc.data)
			if (err == nil) != tc.ok {
				t.Errorf("Compare = %v, want ok = %v", err, tc.ok)
			}
		})
	}
}

func TestNewSecrets(t *testing.T) {
	seen := map[string]bool{}
	for _, gen := range []func() string{newClientSecret, newRegistrationToken} {
		for range 100 {
			s := gen()
			b, err := base64.RawURLEncoding.DecodeString(s)
			if err != nil || len(b) != 32 {
				t.Fatalf("%q is not 32 bytes of base64url: %v", s, err)
			}
			if seen[s] {
				t.Fatalf("%q generated twice", s)
			}
			seen[s] = true
			// RFC 6750 §2.1 b64token: usable as a bearer token as is.
			if _, ok := bearerToken(regAuthRequest("Bearer " + s)); !ok {
				t.Errorf("%q is not a valid bearer token", s)
			}
		}
	}
}

func TestRegBearerToken(t *testing.T) {
	for _, tc := range []struct {
		header, want string
		ok           bool
	}{
		{"Bearer abc-._~+/=", "abc-._~+/=", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"Bearer  abc", "abc", true},
		{"", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Basic abc", "", false},
		{"Bearerabc", "", false},
		{`Bearer "abc"`, "", false},
		{"Bearer a b", "", false},
		{"Bearer " + strings.Repeat("a", maxBearerTokenSize+1), "", false},
	} {
		got, ok := bearerToken(regAuthRequest(tc.header))
		if got != tc.want || ok != tc.ok {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRegSanitize(t *testing.T) {
	for in, want := range map[string]string{
		`plain text`:        `plain text`,
		`a "quoted" value`:  `a 'quoted' value`,
		"back\\slash\nnl\t": "back?slash?nl?",
		"é":                 "??",
		"":                  "",
	} {
		if got := regSanitize(in); got != want {
			t.Errorf("regSanitize(%q) = %q, want %q", in, got, want)
		}
	}
	if got := regSanitize(strings.Repeat("x", 1000)); len(got) != 400 {
		t.Errorf("regSanitize of 1000 bytes gives %d", len(got))
	}
}

// FuzzClientMetadata checks the registration validator on arbitrary bodies:
// a refusal is an RFC 7591 error with a clean description; an accepted client
// satisfies every rule, and registering its own metadata again gives the same
// client (validation is idempotent, so an RFC 7592 read-then-update round trip
// changes nothing).
func FuzzClientMetadata(f *testing.F) {
	for _, seed := range []string{
		`{"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none", "scope": "mcp admin x"}`,
		`{"redirect_uris": ["com.example:/cb"], "application_type": "native", "grant_types": ["authorization_code", "refresh_token"]}`,
		`{"grant_types": ["client_credentials"], "contacts": ["a@b", "a@b"], "client_uri": "https://a.example"}`,
		`{"redirect_uris": ["https://a.example/cb#f"], "client_name": "\u202e"}`,
		`{"redirect_uris": [1], "jwks": null, "response_types": ["code", "code"]}`,
		`[]`, `null`, `{"scope": "\"\\"}`,
	} {
		f.Add(seed)
	}
	s := &Server{cfg: Config{Scopes: testScopes, DefaultScopes: []string{"mcp"}}}
	if err := s.initRegistration(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		m, err := decodeClientMetadata(strings.NewReader(body))
		if err == nil {
			var c *storage.Client
			if c, err = s.clientFromMetadata(m); err == nil {
				regFuzzCheckClient(t, s, c)
				return
			}
		}
		var oe *oauth.Error
		if !errors.As(err, &oe) || (oe.Code != oauth.InvalidClientMetadata && oe.Code != oauth.InvalidRedirectURI) {
			t.Fatalf("error %v is not an RFC 7591 registration error", err)
		}
		if oe.Description == "" || regSanitize(oe.Description) != oe.Description {
			t.Fatalf("error description %q is empty or not RFC 6749 §5.2 clean", oe.Description)
		}
	})
}

func regFuzzCheckClient(t *testing.T, s *Server, c *storage.Client) {
	t.Helper()
	native := c.Metadata.ApplicationType == "native"
	if !native && c.Metadata.ApplicationType != "web" {
		t.Fatalf("application_type %q", c.Metadata.ApplicationType)
	}
	for _, u := range c.RedirectURIs {
		if err := oauth.ValidateRedirectURI(u, native); err != nil {
			t.Fatalf("accepted redirect URI %q: %v", u, err)
		}
	}
	for _, g := range c.GrantTypes {
		if !slices.Contains([]string{"authorization_code", "refresh_token", "client_credentials"}, g) {
			t.Fatalf("accepted grant type %q", g)
		}
	}
	if c.IsPublic() && slices.Contains(c.GrantTypes, "client_credentials") {
		t.Fatal("public client with client_credentials")
	}
	if slices.Contains(c.GrantTypes, "authorization_code") && len(c.RedirectURIs) == 0 {
		t.Fatal("authorization_code client without redirect URIs")
	}
	if len(c.Scopes) == 0 {
		t.Fatal("no scopes")
	}
	for _, sc := range c.Scopes {
		if !s.reg.supported[sc] {
			t.Fatalf("unsupported scope %q kept", sc)
		}
	}
	// Idempotence: the client's own metadata, sent again, gives the same client.
	again := map[string]any{
		"redirect_uris":              c.RedirectURIs,
		"token_endpoint_auth_method": c.TokenEndpointAuthMethod,
		"grant_types":                c.GrantTypes,
		"response_types":             c.ResponseTypes,
		"scope":                      oauth.FormatScope(c.Scopes),
		"application_type":           c.Metadata.ApplicationType,
		"client_name":                c.Metadata.ClientName,
		"client_uri":                 c.Metadata.ClientURI,
		"logo_uri":                   c.Metadata.LogoURI,
		"tos_uri":                    c.Metadata.TOSURI,
		"policy_uri":                 c.Metadata.PolicyURI,
		"contacts":                   c.Metadata.Contacts,
		"software_id":                c.Metadata.SoftwareID,
		"software_version":           c.Metadata.SoftwareVersion,
	}
	b, err := json.Marshal(again)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeClientMetadata(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("re-decoding %s: %v", b, err)
	}
	c2, err := s.clientFromMetadata(m)
	if err != nil {
		t.Fatalf("re-registering %s: %v", b, err)
	}
	if diff := cmp.Diff(c, c2, cmpopts.IgnoreUnexported(storage.Client{})); diff != "" {
		t.Fatalf("re-registration differs (-first +second):\n%s", diff)
	}
}

// regAuthRequest is a request with the given Authorization header.
func regAuthRequest(authorization string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://mcpauth.test/register/x", nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r
}
