package authz

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/storage"
)

// TestCodeReadServesThePKCERead: the PKCE handler's read of a code is served
// from the row GetAuthorizeCodeSession read for the same session (the row
// deleted in between shows no second read), once; any other session, or
// another code, reads the database.
func TestCodeReadServesThePKCERead(t *testing.T) {
	s, _ := testServer(t, false, nil)
	ctx := t.Context()
	st := &fositeStore{DB: s.db, server: s}
	client := &storage.Client{
		ID: "code-read", TokenEndpointAuthMethod: storage.AuthMethodNone,
		RedirectURIs: []string{"http://127.0.0.1/cb"}, GrantTypes: []string{"authorization_code"},
		ResponseTypes: []string{"code"}, Scopes: []string{"mcp"}, Source: storage.SourceDCR,
	}
	if err := s.db.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	newCode := func(sig string) {
		t.Helper()
		sess := &grantSession{Subject: "alice", ClientID: client.ID}
		sess.SetExpiresAt(fosite.AuthorizeCode, time.Now().Add(time.Minute))
		req := &fosite.Request{
			ID: uuid.NewString(), RequestedAt: time.Now(), Client: client,
			RequestedScope: fosite.Arguments{"mcp"}, GrantedScope: fosite.Arguments{"mcp"},
			Form: url.Values{"redirect_uri": {"http://127.0.0.1/cb"}}, Session: sess,
		}
		if err := s.db.CreateAuthorizeCodeSession(ctx, sig, req); err != nil {
			t.Fatal(err)
		}
		req.Form = url.Values{"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
		if err := s.db.CreatePKCERequestSession(ctx, sig, req); err != nil {
			t.Fatal(err)
		}
	}
	deleteCode := func(sig string) {
		t.Helper()
		if _, err := s.db.Pool().Exec(ctx, `DELETE FROM oauth_codes WHERE sig_hash = sha256($1::bytea)`, []byte(sig)); err != nil {
			t.Fatal(err)
		}
	}
	newCode("sig-a")

	sess := &grantSession{}
	if _, err := st.GetAuthorizeCodeSession(ctx, "sig-a", sess); err != nil {
		t.Fatalf("GetAuthorizeCodeSession: %v", err)
	}
	if sess.Subject != "alice" {
		t.Fatalf("session not decoded: %+v", sess)
	}
	if c := sess.Clone().(*grantSession); c.codeRead != nil {
		t.Error("a clone carries the code read")
	}
	deleteCode("sig-a")
	sess.Subject = "changed since"
	got, err := st.GetPKCERequestSession(ctx, "sig-a", sess)
	if err != nil {
		t.Fatalf("GetPKCERequestSession from the code read: %v", err)
	}
	if f := got.GetRequestForm(); f.Get("code_challenge") != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" || f.Get("code_challenge_method") != "S256" {
		t.Errorf("PKCE form %v", f)
	}
	if sess.Subject != "alice" {
		t.Errorf("the stored session was not decoded again, as a fresh read would: subject %q", sess.Subject)
	}
	// Taken once: the next PKCE read goes to the database (the row is gone).
	if _, err := st.GetPKCERequestSession(ctx, "sig-a", sess); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("second PKCE read: %v, want ErrNotFound from the database", err)
	}

	// Another session, or another code: the database.
	newCode("sig-b")
	sess = &grantSession{}
	if _, err := st.GetAuthorizeCodeSession(ctx, "sig-b", sess); err != nil {
		t.Fatal(err)
	}
	deleteCode("sig-b")
	if _, err := st.GetPKCERequestSession(ctx, "sig-b", &grantSession{}); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("PKCE read with another session: %v, want ErrNotFound from the database", err)
	}
	if _, err := st.GetPKCERequestSession(ctx, "sig-other", sess); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("PKCE read of another code: %v, want ErrNotFound from the database", err)
	}
}
