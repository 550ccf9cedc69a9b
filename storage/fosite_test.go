package storage_test

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// sha256Hasher hashes server-generated client secrets (fosite-notes §12).
type sha256Hasher struct{}

func (sha256Hasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	h := sha256.Sum256(data)
	return h[:], nil
}

func (sha256Hasher) Compare(_ context.Context, hash, data []byte) error {
	h := sha256.Sum256(data)
	if subtle.ConstantTimeCompare(hash, h[:]) != 1 {
		return errors.New("secret mismatch")
	}
	return nil
}

const (
	testRedirect = "http://127.0.0.1:9999/callback"
	testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXkdBjftJeZ4CVP"
)

// provider composes the OAuth 2.1 subset of fosite (fosite-notes §10, §15) over db.
// compose.Compose panics if db lacks an interface a factory needs.
func provider(db *storage.DB) fosite.OAuth2Provider {
	cfg := &fosite.Config{
		AccessTokenLifespan:            10 * time.Minute,
		RefreshTokenLifespan:           24 * time.Hour,
		AuthorizeCodeLifespan:          time.Minute,
		GlobalSecret:                   []byte("0123456789abcdef0123456789abcdef"),
		EnforcePKCE:                    true,
		EnablePKCEPlainChallengeMethod: false,
		RefreshTokenScopes:             []string{},
		AudienceMatchingStrategy:       fosite.ExactAudienceMatchingStrategy,
		ClientSecretsHasher:            sha256Hasher{},
		SendDebugMessagesToClients:     true,
	}
	return compose.Compose(cfg, db, &compose.CommonStrategy{CoreStrategy: compose.NewOAuth2HMACStrategy(cfg)},
		compose.OAuth2AuthorizeExplicitFactory, compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2RefreshTokenGrantFactory, compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory, compose.OAuth2PKCEFactory)
}

func tokenRequest(ctx context.Context, form url.Values) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(form.Encode())).WithContext(ctx)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

// token runs a token request through fosite; it returns the access and refresh tokens.
func token(ctx context.Context, p fosite.OAuth2Provider, r *http.Request) (access, refresh string, err error) {
	ar, err := p.NewAccessRequest(ctx, r, &fosite.DefaultSession{})
	if err != nil {
		return "", "", err
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		for _, s := range ar.GetRequestedScopes() {
			ar.GrantScope(s)
		}
	}
	resp, err := p.NewAccessResponse(ctx, ar)
	if err != nil {
		return "", "", err
	}
	rt, _ := resp.GetExtra("refresh_token").(string)
	return resp.GetAccessToken(), rt, nil
}

// authorize runs an authorization request with PKCE for alice and returns the code.
func authorize(t *testing.T, p fosite.OAuth2Provider, clientID string) string {
	t.Helper()
	ctx := t.Context()
	sum := sha256.Sum256([]byte(testVerifier))
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {testRedirect},
		"scope":                 {"mcp"},
		"state":                 {"state-123456"},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	r := httptest.NewRequest(http.MethodGet, "/authorize?"+q.Encode(), nil).WithContext(ctx)
	ar, err := p.NewAuthorizeRequest(ctx, r)
	if err != nil {
		t.Fatalf("NewAuthorizeRequest: %v", fosite.ErrorToRFC6749Error(err).WithExposeDebug(true).GetDescription())
	}
	ar.GrantScope("mcp")
	resp, err := p.NewAuthorizeResponse(ctx, ar, &fosite.DefaultSession{Subject: "alice"})
	if err != nil {
		t.Fatalf("NewAuthorizeResponse: %v", fosite.ErrorToRFC6749Error(err).WithExposeDebug(true).GetDescription())
	}
	return resp.GetCode()
}

func exchange(ctx context.Context, p fosite.OAuth2Provider, clientID, code, verifier string) (string, string, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect}, "client_id": {clientID}}
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	return token(ctx, p, tokenRequest(ctx, form))
}

func refresh(ctx context.Context, p fosite.OAuth2Provider, clientID, rt string) (string, string, error) {
	return token(ctx, p, tokenRequest(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}}))
}

func active(ctx context.Context, p fosite.OAuth2Provider, tok string, use fosite.TokenUse) bool {
	_, _, err := p.IntrospectToken(ctx, tok, use, &fosite.DefaultSession{})
	return err == nil
}

func describe(err error) string {
	if err == nil {
		return "<nil>"
	}
	e := fosite.ErrorToRFC6749Error(err)
	return e.ErrorField + ": " + e.WithExposeDebug(true).GetDescription()
}

func publicClient(t *testing.T, db *storage.DB, id string) {
	t.Helper()
	if err := db.CreateClient(t.Context(), &storage.Client{
		ID: id, TokenEndpointAuthMethod: storage.AuthMethodNone, Source: storage.SourceDCR,
		RedirectURIs: []string{testRedirect}, GrantTypes: []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"}, Scopes: []string{"mcp"},
	}); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
}

func TestFositeClientCredentials(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	p := provider(db)
	hash, _ := sha256Hasher{}.Hash(ctx, []byte("cc-secret"))
	if err := db.CreateClient(ctx, &storage.Client{
		ID: "cc", SecretHash: hash, SecretHashAlg: "sha256", TokenEndpointAuthMethod: storage.AuthMethodClientSecretBasic,
		GrantTypes: []string{"client_credentials"}, Scopes: []string{"mcp"}, Source: storage.SourceAdmin,
	}); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}

	r := tokenRequest(ctx, url.Values{"grant_type": {"client_credentials"}, "scope": {"mcp"}})
	r.SetBasicAuth("cc", "cc-secret")
	at, rt, err := token(ctx, p, r)
	if err != nil {
		t.Fatalf("client_credentials: %s", describe(err))
	}
	if at == "" || rt != "" {
		t.Fatalf("access token %q, refresh token %q; want an access token only", at, rt)
	}
	if !active(ctx, p, at, fosite.AccessToken) {
		t.Error("introspection of the new access token failed")
	}

	// token_endpoint_auth_method is enforced (the client implements OpenIDConnectClient):
	// the secret in the body instead of Basic is refused.
	r = tokenRequest(ctx, url.Values{"grant_type": {"client_credentials"}, "client_id": {"cc"}, "client_secret": {"cc-secret"}})
	if _, _, err := token(ctx, p, r); !errors.Is(err, fosite.ErrInvalidClient) {
		t.Errorf("client_secret_post for a client_secret_basic client: %s, want invalid_client", describe(err))
	}
	// A wrong secret is refused.
	r = tokenRequest(ctx, url.Values{"grant_type": {"client_credentials"}})
	r.SetBasicAuth("cc", "wrong")
	if _, _, err := token(ctx, p, r); !errors.Is(err, fosite.ErrInvalidClient) {
		t.Errorf("wrong secret: %s, want invalid_client", describe(err))
	}
}

func TestFositeAuthorizationCode(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	p := provider(db)
	publicClient(t, db, "pub")

	// Exchange, then refresh with rotation, then reuse of the rotated token.
	code := authorize(t, p, "pub")
	at1, rt1, err := exchange(ctx, p, "pub", code, testVerifier)
	if err != nil {
		t.Fatalf("code exchange: %s", describe(err))
	}
	if at1 == "" || rt1 == "" {
		t.Fatalf("exchange gave access %q refresh %q; want both", at1, rt1)
	}
	if !active(ctx, p, at1, fosite.AccessToken) || !active(ctx, p, rt1, fosite.RefreshToken) {
		t.Fatal("tokens from the exchange are not active")
	}

	at2, rt2, err := refresh(ctx, p, "pub", rt1)
	if err != nil {
		t.Fatalf("refresh: %s", describe(err))
	}
	// The previous access token lives on until it expires (a JWT works at
	// /mcp until then), so it stays introspectable and revocable.
	if !active(ctx, p, at1, fosite.AccessToken) {
		t.Error("the access token paired with the rotated refresh token is gone before it expired")
	}
	if !active(ctx, p, at2, fosite.AccessToken) {
		t.Error("the refreshed access token is not active")
	}

	// Reusing rt1 is detected and revokes the whole grant, rt2 and at2 included.
	if _, _, err := refresh(ctx, p, "pub", rt1); !errors.Is(err, fosite.ErrInvalidGrant) {
		t.Fatalf("refresh token reuse: %s, want invalid_grant", describe(err))
	}
	if active(ctx, p, at2, fosite.AccessToken) {
		t.Error("access token still active after refresh token reuse")
	}
	if _, _, err := refresh(ctx, p, "pub", rt2); err == nil {
		t.Error("rt2 still works after reuse of rt1")
	}
}

func TestFositeCodeReplay(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	p := provider(db)
	publicClient(t, db, "pub")

	code := authorize(t, p, "pub")
	at, rt, err := exchange(ctx, p, "pub", code, testVerifier)
	if err != nil {
		t.Fatalf("code exchange: %s", describe(err))
	}
	// RFC 6749 §4.1.2: a second use of the code fails and revokes what the first issued.
	if _, _, err := exchange(ctx, p, "pub", code, testVerifier); !errors.Is(err, fosite.ErrInvalidGrant) {
		t.Fatalf("code replay: %s, want invalid_grant", describe(err))
	}
	if active(ctx, p, at, fosite.AccessToken) {
		t.Error("access token still active after code replay")
	}
	if _, _, err := refresh(ctx, p, "pub", rt); err == nil {
		t.Error("refresh token still works after code replay")
	}
}

func TestFositePKCEDowngrade(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	p := provider(db)
	publicClient(t, db, "pub")

	code := authorize(t, p, "pub")
	// A wrong verifier fails; so does the retry without one (EnforcePKCE, fosite-notes §4).
	if _, _, err := exchange(ctx, p, "pub", code, strings.Repeat("x", 43)); err == nil {
		t.Fatal("exchange with a wrong code_verifier succeeded")
	}
	if _, _, err := exchange(ctx, p, "pub", code, ""); err == nil {
		t.Fatal("exchange without code_verifier after a failed one succeeded (PKCE downgrade)")
	}
}

// TestFositeConcurrentExchange: of many simultaneous exchanges of one code,
// exactly one gets tokens (ory/fosite#778).
func TestFositeConcurrentExchange(t *testing.T) {
	db := storagetest.New(t)
	ctx := t.Context()
	p := provider(db)
	publicClient(t, db, "pub")
	code := authorize(t, p, "pub")

	const n = 10
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, _, errs[i] = exchange(ctx, p, "pub", code, testVerifier)
		}()
	}
	close(start)
	wg.Wait()
	var ok int
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	if ok != 1 {
		for i, err := range errs {
			t.Logf("exchange %d: %s", i, describe(err))
		}
		t.Fatalf("%d of %d concurrent exchanges of one code succeeded, want exactly 1", ok, n)
	}
	// A loser that reads the code after the winner committed sees a used code
	// and revokes the winner's tokens (RFC 6749 §4.1.2), so at most one is left.
	if got := countRows(t, db, "oauth_access_tokens", ""); got > 1 {
		t.Errorf("access tokens stored = %d, want at most 1", got)
	}
}
