package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// TestMCPClientStepUp is what an MCP client built on the official Go SDK
// lives through against mcpauth: it connects to /mcp, is challenged, finds
// the authorization server through the protected resource metadata,
// registers itself (DCR), authorizes with PKCE and resource while its user
// signs in and consents, lists the tools, calls whoami, calls a tool that
// needs another scope, is told so with 403 insufficient_scope, authorizes
// again for the wider scope, and the call succeeds.
func TestMCPClientStepUp(t *testing.T) {
	srv := startServer(t)
	admin := "root"
	password := srv.addUser(t, admin, "--admin")
	callback := "http://127.0.0.1:" + strings.Split(freeAddr(t), ":")[1] + "/callback"

	var authorizations atomic.Int32
	var scopesAsked []string
	session := sdkSession(t, srv, &auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{
			Metadata: &oauthex.ClientRegistrationMetadata{
				RedirectURIs:            []string{callback},
				ClientName:              "go-sdk step-up test",
				TokenEndpointAuthMethod: "none",
				GrantTypes:              []string{"authorization_code", "refresh_token"},
			},
		},
		RedirectURL: callback,
	}, admin, password, func(authURL string) {
		authorizations.Add(1)
		scopesAsked = append(scopesAsked, urlQuery(t, authURL, "scope"))
	})
	ctx := t.Context()

	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	if !strings.Contains(strings.Join(names, " "), "whoami") {
		t.Fatalf("tools/list = %v, want whoami", names)
	}

	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil || res.IsError {
		t.Fatalf("whoami: %v %+v", err, res)
	}
	who, _ := json.Marshal(res.StructuredContent)
	if !strings.Contains(string(who), `"mcp"`) {
		t.Errorf("whoami = %s", who)
	}
	if n := authorizations.Load(); n != 1 {
		t.Fatalf("%d authorizations before step-up, want 1", n)
	}

	// admin_list_grants needs the admin scope: 403 insufficient_scope, the
	// handler authorizes again for more, and the retried call succeeds.
	res, err = session.CallTool(ctx, &mcp.CallToolParams{Name: "admin_list_grants", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("admin_list_grants after step-up: %v %+v", err, res)
	}
	if n := authorizations.Load(); n != 2 {
		t.Fatalf("%d authorizations, want 2 (the step-up)", n)
	}
	if !strings.Contains(scopesAsked[1], "admin") || !strings.Contains(scopesAsked[1], "mcp") {
		t.Errorf("step-up asked for %q, want mcp and admin", scopesAsked[1])
	}
	// The wider token still serves the narrower tools.
	if res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"}); err != nil || res.IsError {
		t.Errorf("whoami after step-up: %v %+v", err, res)
	}
}

// sdkSession connects the official Go SDK client to srv's /mcp with an OAuth
// handler built from cfg, whose authorization step is a person at a browser
// signing in as user and consenting; seen, if not nil, is told each
// authorization URL first.
func sdkSession(t *testing.T, srv *server, cfg *auth.AuthorizationCodeHandlerConfig, user, password string, seen func(authURL string)) *mcp.ClientSession {
	t.Helper()
	b := newBrowser(t)
	cfg.AuthorizationCodeFetcher = func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		if seen != nil {
			seen(args.URL)
		}
		q := b.authorize(args.URL, user, password).Query()
		if e := q.Get("error"); e != "" {
			return nil, errors.New(e + ": " + q.Get("error_description"))
		}
		return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
	}
	handler, err := auth.NewAuthorizationCodeHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpauth-e2e", Version: "1"}, nil)
	session, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{
		Endpoint:             srv.issuer + "/mcp",
		OAuthHandler:         handler,
		DisableStandaloneSSE: true,
	}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { session.Close() })
	return session
}

func urlQuery(t *testing.T, raw, key string) string {
	t.Helper()
	u, err := http.NewRequest(http.MethodGet, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	return u.URL.Query().Get(key)
}
