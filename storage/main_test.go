package storage_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

// reqNow is a fixed, microsecond-precise time (PostgreSQL keeps microseconds).
var reqNow = time.Now().UTC().Truncate(time.Second)

// mustCreateClient stores a client for token tests.
func mustCreateClient(t *testing.T, db *storage.DB, id string) *storage.Client {
	t.Helper()
	c := &storage.Client{
		ID:                      id,
		TokenEndpointAuthMethod: storage.AuthMethodNone,
		RedirectURIs:            []string{"http://127.0.0.1/callback"},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		Scopes:                  []string{"mcp", "admin"},
		Audiences:               []string{"https://as.example/mcp"},
		Source:                  storage.SourceDCR,
	}
	if err := db.CreateClient(t.Context(), c); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	return c
}

// newRequest builds a requester the way fosite's handlers hand it to storage.
func newRequest(client fosite.Client, subject string) *fosite.Request {
	return &fosite.Request{
		ID:                uuid.NewString(),
		RequestedAt:       reqNow,
		Client:            client,
		RequestedScope:    fosite.Arguments{"mcp", "admin"},
		GrantedScope:      fosite.Arguments{"mcp"},
		RequestedAudience: fosite.Arguments{"https://as.example/mcp"},
		GrantedAudience:   fosite.Arguments{"https://as.example/mcp"},
		Form:              url.Values{"redirect_uri": {"http://127.0.0.1/callback"}, "code": {"secret-code"}},
		Session: &fosite.DefaultSession{
			Subject:  subject,
			Username: subject + "-name",
			Extra:    map[string]any{"client_id": client.GetID()},
			ExpiresAt: map[fosite.TokenType]time.Time{
				fosite.AuthorizeCode: reqNow.Add(time.Minute),
				fosite.AccessToken:   reqNow.Add(10 * time.Minute),
				fosite.RefreshToken:  reqNow.Add(24 * time.Hour),
			},
		},
	}
}

// checkRequest compares what storage rebuilt with what was stored.
func checkRequest(t *testing.T, got fosite.Requester, want *fosite.Request, wantForm url.Values) {
	t.Helper()
	if got == nil {
		t.Fatal("requester is nil")
	}
	if got.GetID() != want.ID {
		t.Errorf("ID = %q, want %q", got.GetID(), want.ID)
	}
	if !got.GetRequestedAt().Equal(want.RequestedAt) {
		t.Errorf("RequestedAt = %v, want %v", got.GetRequestedAt(), want.RequestedAt)
	}
	if got.GetClient() == nil || got.GetClient().GetID() != want.Client.GetID() {
		t.Errorf("client = %v, want id %q", got.GetClient(), want.Client.GetID())
	}
	eq := func(name string, a, b fosite.Arguments) {
		if !a.Matches(b...) || len(a) != len(b) {
			t.Errorf("%s = %v, want %v", name, a, b)
		}
	}
	eq("requested scopes", got.GetRequestedScopes(), want.RequestedScope)
	eq("granted scopes", got.GetGrantedScopes(), want.GrantedScope)
	eq("requested audience", got.GetRequestedAudience(), want.RequestedAudience)
	eq("granted audience", got.GetGrantedAudience(), want.GrantedAudience)
	if form := got.GetRequestForm(); len(form) != len(wantForm) {
		t.Errorf("form = %v, want %v", form, wantForm)
	} else {
		for k := range wantForm {
			if form.Get(k) != wantForm.Get(k) {
				t.Errorf("form[%s] = %q, want %q", k, form.Get(k), wantForm.Get(k))
			}
		}
	}
	s, ok := got.GetSession().(*fosite.DefaultSession)
	if !ok {
		t.Fatalf("session is %T, want the *fosite.DefaultSession passed in", got.GetSession())
	}
	ws := want.Session.(*fosite.DefaultSession)
	if s.Subject != ws.Subject || s.Username != ws.Username || s.Extra["client_id"] != ws.Extra["client_id"] {
		t.Errorf("session = %+v, want %+v", s, ws)
	}
	for tt, exp := range ws.ExpiresAt {
		if !s.ExpiresAt[tt].Equal(exp) {
			t.Errorf("session expiry %s = %v, want %v", tt, s.ExpiresAt[tt], exp)
		}
	}
}

// count returns the number of rows of a table matching where.
func countRows(t *testing.T, db *storage.DB, table, where string, args ...any) int {
	t.Helper()
	var n int
	q := `SELECT count(*) FROM ` + table
	if where != "" {
		q += ` WHERE ` + where
	}
	if err := db.Pool().QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}
