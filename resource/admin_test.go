package resource_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/resource"
	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// adminEnv is a resource server with the admin tools over a fresh database
// holding users, clients and grants, behind a fake verifier.
type adminEnv struct {
	t   *testing.T
	db  *storage.DB
	srv *httptest.Server
	url string // the MCP endpoint

	mu     sync.Mutex
	tokens map[string]*oauth.TokenInfo // bearer token → what it grants

	users   map[string]*storage.User   // by name
	clients map[string]*storage.Client // by id
	grants  map[string]string          // fixture name → grant id
}

// adminNow is the fixtures' clock: microsecond precision, like PostgreSQL.
var adminNow = time.Now().UTC().Truncate(time.Second)

func newAdminEnv(t *testing.T, policy resource.Policy) *adminEnv {
	t.Helper()
	e := &adminEnv{
		t:       t,
		db:      storagetest.New(t),
		tokens:  map[string]*oauth.TokenInfo{},
		users:   map[string]*storage.User{},
		clients: map[string]*storage.Client{},
		grants:  map[string]string{},
	}
	ctx := t.Context()
	for _, u := range []struct {
		name            string
		admin, disabled bool
	}{{"root", true, false}, {"alice", false, false}, {"bob", false, false}, {"former", true, true}} {
		su := &storage.User{Username: u.name, PasswordHash: "$argon2id$unused", IsAdmin: u.admin}
		if u.disabled {
			su.DisabledAt = &adminNow
		}
		if err := e.db.CreateUser(ctx, su); err != nil {
			t.Fatal(err)
		}
		e.users[u.name] = su
	}
	for _, c := range []struct{ id, name, source string }{
		{"app-one", "App One", storage.SourceDCR},
		{"app-two", "App Two", storage.SourceDCR},
		{"robot", "", storage.SourceAdmin},
	} {
		sc := &storage.Client{
			ID:                      c.id,
			TokenEndpointAuthMethod: storage.AuthMethodNone,
			RedirectURIs:            []string{"http://127.0.0.1/callback"},
			GrantTypes:              []string{"authorization_code", "refresh_token", "client_credentials"},
			ResponseTypes:           []string{"code"},
			Metadata:                storage.ClientMetadata{ClientName: c.name},
			Source:                  c.source,
		}
		if err := e.db.CreateClient(ctx, sc); err != nil {
			t.Fatal(err)
		}
		e.clients[c.id] = sc
	}
	// Grants, oldest first: ListGrants lists newest first.
	e.grant("alice-one", "app-one", "alice", []string{"mcp"}, 5*time.Minute, time.Hour)
	e.grant("alice-two", "app-two", "alice", []string{"mcp", "files.read"}, 4*time.Minute, time.Hour)
	e.grant("bob-one", "app-one", "bob", []string{"mcp"}, 3*time.Minute, time.Hour)
	e.grant("robot-own", "robot", "", []string{"mcp"}, 2*time.Minute, time.Hour)
	e.grant("bob-expired", "app-two", "bob", []string{"mcp"}, 1*time.Minute, -time.Minute)

	var h http.Handler
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)
	e.url = e.srv.URL + "/mcp"
	s, err := resource.New(resource.Config{
		Resource: e.url,
		Issuer:   e.srv.URL,
		Verify:   e.verify,
		Scopes:   []string{"mcp"},
		Policy:   policy,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	resource.AddAdminTools(s, e.db, nil)
	h = s.Routes()
	return e
}

// grant stores a grant of client to user (or the client's own when user is
// ""), created ago before adminNow, whose tokens expire in ttl (negative:
// expired).
func (e *adminEnv) grant(name, client, user string, scopes []string, ago, ttl time.Duration) {
	e.t.Helper()
	subject := ""
	if user != "" {
		subject = e.users[user].ID
	}
	at := adminNow.Add(-ago)
	req := &fosite.Request{
		ID:                uuid.NewString(),
		RequestedAt:       at,
		Client:            e.clients[client],
		RequestedScope:    scopes,
		GrantedScope:      scopes,
		RequestedAudience: fosite.Arguments{"https://as.example/mcp"},
		GrantedAudience:   fosite.Arguments{"https://as.example/mcp"},
		Form:              url.Values{},
		Session: &fosite.DefaultSession{
			Subject: subject,
			Extra:   map[string]any{"client_id": client},
			ExpiresAt: map[fosite.TokenType]time.Time{
				fosite.AccessToken:  adminNow.Add(min(ttl, 10*time.Minute)),
				fosite.RefreshToken: adminNow.Add(ttl),
			},
		},
	}
	ctx := e.t.Context()
	if err := e.db.CreateAccessTokenSession(ctx, "at-"+req.ID, req); err != nil {
		e.t.Fatal(err)
	}
	if user != "" {
		if err := e.db.CreateRefreshTokenSession(ctx, "rt-"+req.ID, "at-"+req.ID, req); err != nil {
			e.t.Fatal(err)
		}
	}
	e.grants[name] = req.ID
}

func (e *adminEnv) verify(_ context.Context, token string) (*oauth.TokenInfo, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ti, ok := e.tokens[token]; ok {
		return ti, nil
	}
	return nil, fmt.Errorf("%w: unknown token", oauth.ErrInvalidToken)
}

// token issues a bearer token for user (a user name) or, when user is "",
// for client's own client_credentials grant.
func (e *adminEnv) token(client, user string, scopes ...string) string {
	subject := client
	if user != "" {
		subject = e.users[user].ID
	}
	tok := "tok-" + uuid.NewString()
	e.mu.Lock()
	e.tokens[tok] = &oauth.TokenInfo{
		Subject:  subject,
		ClientID: client,
		Scopes:   scopes,
		Audience: []string{e.url},
		GrantID:  uuid.NewString(),
		TokenID:  uuid.NewString(),
		IssuedAt: adminNow,
		Expiry:   time.Now().Add(10 * time.Minute),
	}
	e.mu.Unlock()
	return tok
}

type adminBearer struct {
	token string
	base  http.RoundTripper
}

func (b adminBearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// session connects the go-sdk client with token.
func (e *adminEnv) session(token string) *mcp.ClientSession {
	e.t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "admin-test", Version: "1"}, nil)
	cs, err := c.Connect(e.t.Context(), &mcp.StreamableClientTransport{
		Endpoint:   e.url,
		HTTPClient: &http.Client{Transport: adminBearer{token, http.DefaultTransport}},
	}, nil)
	if err != nil {
		e.t.Fatalf("connect: %v", err)
	}
	e.t.Cleanup(func() { cs.Close() })
	return cs
}

// call calls a tool and returns its result; a protocol error fails the test.
func adminCall(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s(%v): %v", tool, args, err)
	}
	return res
}

// adminOK decodes a successful result's structured content into out.
func adminOK(t *testing.T, res *mcp.CallToolResult, out any) {
	t.Helper()
	if res.IsError {
		t.Fatalf("tool error: %s", adminText(res))
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
}

// adminErr checks that res is a tool error (isError) whose text contains want.
func adminErr(t *testing.T, res *mcp.CallToolResult, want string) {
	t.Helper()
	if !res.IsError {
		t.Fatalf("no tool error; got %s", adminText(res))
	}
	if got := adminText(res); !strings.Contains(got, want) {
		t.Errorf("tool error %q, want it to contain %q", got, want)
	}
}

func adminText(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

type adminGrantJSON struct {
	GrantID    string     `json:"grant_id"`
	ClientID   string     `json:"client_id"`
	ClientName string     `json:"client_name"`
	User       string     `json:"user"`
	UserID     string     `json:"user_id"`
	Scopes     []string   `json:"scopes"`
	Created    time.Time  `json:"created"`
	Refreshed  *time.Time `json:"refreshed"`
	Expiry     time.Time  `json:"expiry"`
}

type adminListJSON struct {
	Grants []adminGrantJSON `json:"grants"`
	More   bool             `json:"more"`
}

func (e *adminEnv) list(cs *mcp.ClientSession, args map[string]any) adminListJSON {
	e.t.Helper()
	var out adminListJSON
	adminOK(e.t, adminCall(e.t, cs, "admin_list_grants", args), &out)
	return out
}

// names maps listed grants back to fixture names, in order.
func (e *adminEnv) names(l adminListJSON) []string {
	var out []string
	for _, g := range l.Grants {
		name := "?" + g.GrantID
		for n, id := range e.grants {
			if id == g.GrantID {
				name = n
			}
		}
		out = append(out, name)
	}
	return out
}

func TestAdminListGrants(t *testing.T) {
	e := newAdminEnv(t, resource.Policy{})
	cs := e.session(e.token("app-one", "root", "mcp", "admin"))

	all := e.list(cs, nil)
	if diff := cmp.Diff([]string{"robot-own", "bob-one", "alice-two", "alice-one"}, e.names(all)); diff != "" {
		t.Errorf("every live grant, newest first (-want +got):\n%s", diff)
	}
	if all.More {
		t.Error("more = true for a complete list")
	}
	wantAliceTwo := adminGrantJSON{
		GrantID:    e.grants["alice-two"],
		ClientID:   "app-two",
		ClientName: "App Two",
		User:       "alice",
		UserID:     e.users["alice"].ID,
		Scopes:     []string{"mcp", "files.read"},
		Created:    adminNow.Add(-4 * time.Minute),
		Expiry:     adminNow.Add(time.Hour),
	}
	if diff := cmp.Diff(wantAliceTwo, all.Grants[2]); diff != "" {
		t.Errorf("alice's grant to app-two (-want +got):\n%s", diff)
	}
	robot := all.Grants[0]
	if robot.User != "" || robot.UserID != "" || robot.ClientID != "robot" || robot.ClientName != "" {
		t.Errorf("client_credentials grant = %+v, want client robot and no user", robot)
	}

	for _, tt := range []struct {
		name string
		args map[string]any
		want []string
		more bool
	}{
		{"by user", map[string]any{"user": "alice"}, []string{"alice-two", "alice-one"}, false},
		{"by user name with spaces", map[string]any{"user": "  alice "}, []string{"alice-two", "alice-one"}, false},
		{"by client", map[string]any{"client_id": "app-one"}, []string{"bob-one", "alice-one"}, false},
		{"by user and client", map[string]any{"user": "alice", "client_id": "app-one"}, []string{"alice-one"}, false},
		{"user without grants", map[string]any{"user": "root"}, nil, false},
		{"limit", map[string]any{"limit": 2}, []string{"robot-own", "bob-one"}, true},
		{"limit exactly all", map[string]any{"limit": 4}, []string{"robot-own", "bob-one", "alice-two", "alice-one"}, false},
		{"limit maximum", map[string]any{"limit": 200}, []string{"robot-own", "bob-one", "alice-two", "alice-one"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := e.list(cs, tt.args)
			if diff := cmp.Diff(tt.want, e.names(got)); diff != "" {
				t.Errorf("grants (-want +got):\n%s", diff)
			}
			if got.More != tt.more {
				t.Errorf("more = %t, want %t", got.More, tt.more)
			}
			if got.Grants == nil {
				t.Error("grants is null, want a list")
			}
		})
	}

	for _, tt := range []struct {
		name string
		args map[string]any
		want string
	}{
		{"unknown user", map[string]any{"user": "mallory"}, `no user named "mallory"`},
		{"unknown client", map[string]any{"client_id": "nope"}, `no client with client_id "nope"`},
		{"limit too large", map[string]any{"limit": 201}, "limit"},
		{"limit zero is the default but negative is not", map[string]any{"limit": -1}, "limit"},
		{"limit not a number", map[string]any{"limit": "ten"}, "limit"},
		{"unknown argument", map[string]any{"username": "alice"}, "username"},
		{"user too long", map[string]any{"user": strings.Repeat("a", 300)}, "user is longer than 256 bytes"},
		{"control character", map[string]any{"client_id": "a\x00b"}, "client_id contains a control character"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			adminErr(t, adminCall(t, cs, "admin_list_grants", tt.args), tt.want)
		})
	}
}

func TestAdminRevoke(t *testing.T) {
	e := newAdminEnv(t, resource.Policy{})
	cs := e.session(e.token("app-one", "root", "mcp", "admin"))
	revoke := func(args map[string]any) int {
		t.Helper()
		var out struct {
			Revoked *int `json:"revoked"`
		}
		adminOK(t, adminCall(t, cs, "admin_revoke", args), &out)
		if out.Revoked == nil {
			t.Fatal("no revoked count")
		}
		return *out.Revoked
	}
	revokedSet := func() map[string]time.Time {
		t.Helper()
		set, err := e.db.RevokedGrants(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return set
	}

	t.Run("bad input", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			args map[string]any
			want string
		}{
			{"nothing", map[string]any{}, "pass exactly one of grant_id, client_id or user"},
			{"two", map[string]any{"client_id": "app-one", "user": "alice"}, "pass exactly one of"},
			{"three", map[string]any{"grant_id": e.grants["alice-one"], "client_id": "app-one", "user": "alice"}, "pass exactly one of"},
			{"unknown grant", map[string]any{"grant_id": uuid.NewString()}, "no grant with grant_id"},
			{"grant id not a uuid", map[string]any{"grant_id": "x'; DROP TABLE users; --"}, "no grant with grant_id"},
			{"unknown client", map[string]any{"client_id": "nope"}, `no client with client_id "nope"`},
			{"unknown user", map[string]any{"user": "mallory"}, `no user named "mallory"`},
			{"blank user", map[string]any{"user": "   "}, "user is empty"},
			{"wrong type", map[string]any{"grant_id": 7}, "grant_id"},
			{"unknown argument", map[string]any{"token": "abc"}, "token"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				adminErr(t, adminCall(t, cs, "admin_revoke", tt.args), tt.want)
			})
		}
		if set := revokedSet(); len(set) != 0 {
			t.Errorf("bad input revoked %v", set)
		}
	})

	t.Run("grant", func(t *testing.T) {
		id := e.grants["alice-one"]
		if n := revoke(map[string]any{"grant_id": id}); n != 1 {
			t.Errorf("revoked = %d, want 1", n)
		}
		if _, ok := revokedSet()[id]; !ok {
			t.Errorf("grant %s not in the revoked set", id)
		}
		if got := e.names(e.list(cs, map[string]any{"user": "alice"})); !slices.Equal(got, []string{"alice-two"}) {
			t.Errorf("alice's grants after revoking one = %v, want [alice-two]", got)
		}
		// Again: not an error.
		if n := revoke(map[string]any{"grant_id": id}); n != 1 {
			t.Errorf("revoking again: revoked = %d, want 1", n)
		}
	})

	t.Run("client", func(t *testing.T) {
		// app-two: alice-two is live; bob-expired has only expired tokens.
		if n := revoke(map[string]any{"client_id": "app-two"}); n != 1 {
			t.Errorf("revoked = %d, want 1", n)
		}
		if got := e.names(e.list(cs, map[string]any{"client_id": "app-two"})); len(got) != 0 {
			t.Errorf("app-two still has grants %v", got)
		}
		if n := revoke(map[string]any{"client_id": "app-two"}); n != 0 {
			t.Errorf("revoking a client without live grants: revoked = %d, want 0", n)
		}
	})

	t.Run("user", func(t *testing.T) {
		e.grant("bob-two", "app-two", "bob", []string{"mcp"}, 0, time.Hour)
		if n := revoke(map[string]any{"user": "bob"}); n != 2 {
			t.Errorf("revoked = %d, want 2 (bob-one, bob-two)", n)
		}
		set := revokedSet()
		for _, name := range []string{"bob-one", "bob-two"} {
			if _, ok := set[e.grants[name]]; !ok {
				t.Errorf("%s not in the revoked set", name)
			}
		}
		if got := e.names(e.list(cs, nil)); !slices.Equal(got, []string{"robot-own"}) {
			t.Errorf("live grants left = %v, want [robot-own]", got)
		}
	})

	t.Run("audited", func(t *testing.T) {
		ev, err := e.db.ListAuditEvents(t.Context(), storage.AuditFilter{Event: storage.EventGrantRevoked})
		if err != nil {
			t.Fatal(err)
		}
		var by []string
		for _, x := range ev {
			if x.Actor != "root" {
				t.Errorf("grant.revoked actor = %q, want root", x.Actor)
			}
			by = append(by, fmt.Sprint(x.Details["by"]))
		}
		// Newest first: user, client twice, grant twice.
		if want := []string{"user", "client", "client", "grant", "grant"}; !slices.Equal(by, want) {
			t.Errorf("grant.revoked events by %v, want %v", by, want)
		}
		if ev[0].Subject != "bob" || ev[0].Details["revoked"] != float64(2) {
			t.Errorf("revoke by user event = %+v", ev[0])
		}
		// One convention for a revoked grant: the user's name (none for a
		// client's own grant), the client, the grant id.
		for _, x := range ev[3:] {
			if x.Subject != "alice" || x.ClientID != "app-one" || x.Details["grant_id"] != e.grants["alice-one"] {
				t.Errorf("revoke by grant event = %+v", x)
			}
		}
	})
}

// TestAdminPermission: the middleware refuses a token without the admin
// scope with the step-up challenge, and the tools themselves refuse a
// caller who is not (or no longer) an administrator, even with the scope.
func TestAdminPermission(t *testing.T) {
	e := newAdminEnv(t, resource.Policy{})

	t.Run("insufficient scope is a 403 step-up challenge", func(t *testing.T) {
		tok := e.token("app-one", "root", "mcp")
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_revoke","arguments":{"user":"alice"}}}`
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403", resp.StatusCode)
		}
		ch := resp.Header.Get("WWW-Authenticate")
		if !strings.Contains(ch, `error="insufficient_scope"`) || !strings.Contains(ch, `scope="mcp admin"`) {
			t.Errorf("WWW-Authenticate = %q, want insufficient_scope with scope=\"mcp admin\"", ch)
		}
		if set, _ := e.db.RevokedGrants(t.Context()); len(set) != 0 {
			t.Errorf("a refused call revoked %v", set)
		}
	})

	t.Run("tools/list hides the admin tools from a token without admin", func(t *testing.T) {
		cs := e.session(e.token("app-one", "alice", "mcp"))
		res, err := cs.ListTools(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, tool := range res.Tools {
			if strings.HasPrefix(tool.Name, "admin_") {
				t.Errorf("tools/list shows %s to a token without admin", tool.Name)
			}
		}
	})

	for _, tt := range []struct {
		name         string
		client, user string
		want         string
	}{
		{"a user who is not an administrator", "app-one", "alice", "not an administrator"},
		{"a disabled administrator", "app-one", "former", "not an administrator"},
		{"a self-registered client on its own behalf", "app-one", "", "only a client created by an administrator"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cs := e.session(e.token(tt.client, tt.user, "mcp", "admin"))
			adminErr(t, adminCall(t, cs, "admin_list_grants", nil), "permission denied: ")
			adminErr(t, adminCall(t, cs, "admin_revoke", map[string]any{"user": "bob"}), tt.want)
			if set, _ := e.db.RevokedGrants(t.Context()); len(set) != 0 {
				t.Errorf("a refused caller revoked %v", set)
			}
		})
	}

	t.Run("an administrator's client on its own behalf", func(t *testing.T) {
		cs := e.session(e.token("robot", "", "mcp", "admin"))
		if got := e.list(cs, map[string]any{"client_id": "robot"}); len(got.Grants) != 1 {
			t.Errorf("robot's grants = %v, want its own", e.names(got))
		}
	})

	t.Run("a deleted user", func(t *testing.T) {
		tok := e.token("app-one", "root", "mcp", "admin")
		e.mu.Lock()
		e.tokens[tok].Subject = uuid.NewString()
		e.mu.Unlock()
		cs := e.session(tok)
		adminErr(t, adminCall(t, cs, "admin_list_grants", nil), "the calling user no longer exists")
	})
}

// TestAdminPolicyCannotOpen: a policy rule that replaces the admin tools'
// scope with a basic one lets the call through the HTTP checks, but the
// tools still demand the admin scope.
func TestAdminPolicyCannotOpen(t *testing.T) {
	e := newAdminEnv(t, resource.Policy{Rules: []resource.ToolRule{{Match: "*", Scopes: []string{"mcp"}}}})
	cs := e.session(e.token("app-one", "root", "mcp"))
	adminErr(t, adminCall(t, cs, "admin_revoke", map[string]any{"user": "alice"}), `permission denied: the token lacks the "admin" scope`)
	if set, _ := e.db.RevokedGrants(t.Context()); len(set) != 0 {
		t.Errorf("revoked %v", set)
	}
}

// TestAdminToolSchemas: what an LLM client sees.
func TestAdminToolSchemas(t *testing.T) {
	e := newAdminEnv(t, resource.Policy{})
	cs := e.session(e.token("app-one", "root", "mcp", "admin"))
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tools := map[string]*mcp.Tool{}
	for _, tool := range res.Tools {
		tools[tool.Name] = tool
	}
	for _, name := range []string{"admin_list_grants", "admin_revoke"} {
		tool := tools[name]
		if tool == nil {
			t.Fatalf("tools/list lacks %s", name)
		}
		if len(tool.Description) < 200 || tool.Annotations == nil || tool.OutputSchema == nil {
			t.Errorf("%s: description %q, annotations %v, output schema %v", name, tool.Description, tool.Annotations, tool.OutputSchema)
		}
	}
	var in struct {
		Properties map[string]struct {
			Type        string   `json:"type"`
			Description string   `json:"description"`
			Minimum     *float64 `json:"minimum"`
			Maximum     *float64 `json:"maximum"`
		} `json:"properties"`
		Required             []string `json:"required"`
		AdditionalProperties any      `json:"additionalProperties"`
	}
	b, _ := json.Marshal(tools["admin_list_grants"].InputSchema)
	if err := json.Unmarshal(b, &in); err != nil {
		t.Fatal(err)
	}
	limit := in.Properties["limit"]
	if limit.Type != "integer" || limit.Minimum == nil || *limit.Minimum != 1 || limit.Maximum == nil || *limit.Maximum != 200 {
		t.Errorf("limit schema = %+v, want an integer from 1 to 200", limit)
	}
	if len(in.Required) != 0 || in.Properties["user"].Description == "" {
		t.Errorf("input schema %s: want every property optional and described", b)
	}
	if !tools["admin_list_grants"].Annotations.ReadOnlyHint || tools["admin_revoke"].Annotations.ReadOnlyHint {
		t.Error("admin_list_grants must be read-only and admin_revoke not")
	}
}

// TestAdminDatabaseSilent: a database that does not answer (the users table
// is locked by another session) makes an admin tool the temporarily
// unavailable JSON-RPC error at the tools' deadline, not a hang.
func TestAdminDatabaseSilent(t *testing.T) {
	e := newAdminEnv(t, resource.Policy{})
	cs := e.session(e.token("app-one", "root", "mcp", "admin"))
	tx, err := e.db.Pool().Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), `LOCK TABLE users IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "admin_list_grants", Arguments: map[string]any{}})
	if ctx.Err() != nil || err == nil || !strings.Contains(err.Error(), "temporarily unavailable") {
		t.Errorf("admin_list_grants with the database silent: %v (client deadline: %v), want the temporarily unavailable error", err, ctx.Err())
	}
}
