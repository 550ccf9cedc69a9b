package authz

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Revocation semantics (issue 6 §8): a disabled client can neither
// authorize nor obtain or refresh tokens, its tokens are inactive, and
// enabling it again resurrects nothing; revoking a grant also revokes the
// remembered consent.

func TestDisabledClient(t *testing.T) {
	e := newTokEnv(t, nil)
	ctx := t.Context()
	revocationRun(t, e.s)
	secret := e.client(tokClient{id: "web", confidential: true})
	svcSecret := e.client(tokClient{id: "svc", confidential: true, grants: []string{"client_credentials"}})
	introSecret := e.client(tokClient{id: "inspector", confidential: true, source: "admin"})
	grant := e.exchange("web", secret, e.authorize("web", []string{"mcp"}, nil), nil)
	if grant.status != http.StatusOK {
		t.Fatalf("exchange: %s", grant.raw)
	}
	cc := func() tokResponse {
		return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"mcp"}}, "svc", svcSecret)
	}
	if r := cc(); r.status != http.StatusOK {
		t.Fatalf("client_credentials before disabling: %s", r.raw)
	}
	code := e.authorize("web", []string{"mcp"}, nil) // issued before the client is disabled

	for _, id := range []string{"web", "svc"} {
		if _, err := e.s.db.SetClientDisabled(ctx, id, true); err != nil {
			t.Fatal(err)
		}
	}
	// No new tokens: every grant type is invalid_client.
	wantError(t, cc(), http.StatusUnauthorized, "invalid_client")
	wantError(t, e.refresh("web", secret, grant.str("refresh_token"), nil), http.StatusUnauthorized, "invalid_client")
	wantError(t, e.exchange("web", secret, code, nil), http.StatusUnauthorized, "invalid_client")
	// Its tokens are inactive, at /introspect and for the verifier.
	if e.active("inspector", introSecret, grant.str("access_token")) || e.active("inspector", introSecret, grant.str("refresh_token")) {
		t.Error("a disabled client's token is active at /introspect")
	}
	deadline := time.Now().Add(time.Second)
	for {
		if _, err := e.s.VerifyAccessToken(ctx, grant.str("access_token")); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a disabled client's access token still verifies after 1 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// No authorization: a page, not a redirect to the client.
	sum := "/authorize?" + url.Values{"response_type": {"code"}, "client_id": {"web"}, "redirect_uri": {tokRedirect},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}.Encode()
	resp, err := e.hs.Client().Get(e.hs.URL + sum)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusSeeOther || resp.StatusCode == http.StatusFound || resp.StatusCode < 400 {
		t.Errorf("/authorize for a disabled client: %s, want an error page", resp.Status)
	}

	// Enabled again: new grants work, the old ones stay dead.
	if _, err := e.s.db.SetClientDisabled(ctx, "web", false); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.refresh("web", secret, grant.str("refresh_token"), nil), http.StatusBadRequest, "invalid_grant")
	if _, err := e.s.VerifyAccessToken(ctx, grant.str("access_token")); err == nil {
		t.Error("enabling the client revived its access token")
	}
	if r := e.exchange("web", secret, e.authorize("web", []string{"mcp"}, nil), nil); r.status != http.StatusOK {
		t.Errorf("a new grant after enabling: %s", r.raw)
	}
}

func TestRevokingAGrantAsksForConsentAgain(t *testing.T) {
	e := azSetup(t)
	c := e.signedInClient(t, "bob")
	consent := func() string {
		t.Helper()
		page := e.do(t, c, "GET", "/authorize?"+e.params(nil).Encode(), nil, nil)
		if page.StatusCode != http.StatusOK || !strings.Contains(page.body, `name="decision"`) {
			t.Fatalf("want the consent page, got %s", page.Status)
		}
		form := azConsentForm(t, page.body)
		form.Set("decision", "allow")
		return e.redirected(t, e.do(t, c, "POST", "/authorize", form, e.sameOrigin()), e.redirect).Get("code")
	}
	code := consent()
	tok := e.do(t, e.client(t), "POST", "/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {e.redirect}, "code_verifier": {e.verifier}, "client_id": {e.clientID}}, nil)
	if tok.StatusCode != http.StatusOK {
		t.Fatalf("exchange: %s %s", tok.Status, tok.body)
	}
	// Remembered: no page.
	if q := e.redirected(t, e.do(t, c, "GET", "/authorize?"+e.params(nil).Encode(), nil, nil), e.redirect); q.Get("code") == "" {
		t.Fatal("remembered consent did not skip the page")
	}
	// The client revokes its refresh token (RFC 7009): the grant, and with
	// it the remembered consent, end.
	rt := jsonField(t, tok.body, "refresh_token")
	if r := e.do(t, e.client(t), "POST", "/revoke", url.Values{"token": {rt}, "client_id": {e.clientID}}, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %s %s", r.Status, r.body)
	}
	consent() // fails unless the page is shown again
}

// jsonField returns the string member key of the JSON object body.
func jsonField(t *testing.T, body, key string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not JSON: %q", body)
	}
	v, _ := m[key].(string)
	if v == "" {
		t.Fatalf("no %s in %s", key, body)
	}
	return v
}
