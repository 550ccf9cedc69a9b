package resource

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// AdminScope is the scope the administrator's tools need. The authorization
// server grants it only to users with the admin role, and to clients an
// administrator created.
const AdminScope = "admin"

// Bounds of admin_list_grants' limit.
const (
	adminDefaultGrantLimit = 50
	adminMaxGrantLimit     = 200
)

// maxAdminArgLen bounds every string argument of the admin tools: longer
// is no user name, client id or grant id.
const maxAdminArgLen = 256

// AddAdminTools registers the administrator's tools, both needing
// AdminScope: admin_list_grants (the live grants, by user or client) and
// admin_revoke (one grant, or every grant of a client or of a user).
//
// Whatever the policy says about their scopes, the tools themselves also
// require a token carrying AdminScope whose user is still an enabled
// administrator (or, for client_credentials, whose client an administrator
// created): a policy rule can narrow them, never open them.
//
// audit records what admin_revoke did: cmd passes the authorization
// server's batching writer (authz.Server.RecordAudit), which takes the
// client IP from ctx (the request's, set by the router) and does not make
// the tool call wait for the database. nil writes the event synchronously,
// without a client IP.
func AddAdminTools(s *Server, db *storage.DB, audit func(context.Context, storage.AuditEvent)) {
	if audit == nil {
		audit = func(ctx context.Context, ev storage.AuditEvent) {
			if err := db.InsertAuditEvents(ctx, []storage.AuditEvent{ev}); err != nil {
				s.log.ErrorContext(ctx, "admin tool: audit event not written", "err", err)
			}
		}
	}
	a := &adminTools{s: s, db: db, audit: audit}
	AddTool(s, &mcp.Tool{
		Name:  "admin_list_grants",
		Title: "List connected applications (grants)",
		Description: "List the live grants of this mcpauth server, newest first. A grant is one " +
			"authorization of an application (an OAuth client) by a user, with the tokens issued " +
			"for it; it stays live until it expires or is revoked. Each entry gives the grant_id, " +
			"the client (id and name), the user name (absent for a client acting on its own " +
			"behalf), the granted scopes, when it was created and last refreshed, and when its " +
			"tokens expire. Filter by `user` (a user name) and/or `client_id`; with neither, every " +
			"grant is listed. At most `limit` entries are returned (default 50, at most 200); " +
			"`more` is true when there are further matches. Use admin_revoke with a grant_id, " +
			"client_id or user from this list to end access.",
		InputSchema: adminListGrantsSchema(),
		Annotations: &mcp.ToolAnnotations{
			Title:         "List connected applications (grants)",
			ReadOnlyHint:  true,
			OpenWorldHint: new(false),
		},
	}, a.listGrants, AdminScope)
	AddTool(s, &mcp.Tool{
		Name:  "admin_revoke",
		Title: "Revoke grants",
		Description: "Revoke access, at once and on every server replica: pass exactly one of " +
			"`grant_id` (end one grant, as listed by admin_list_grants), `client_id` (end every " +
			"live grant of that application, for all users) or `user` (end every live grant and " +
			"personal access token of that user name, in all applications). The grants' access " +
			"and refresh tokens stop working within a second, and the users' remembered consent " +
			"for those applications is revoked: the application must send its user through " +
			"authorization, and the consent page, again. Users and clients themselves are not " +
			"deleted or disabled. Returns how many grants (and tokens) were revoked. Revoking an " +
			"already revoked grant is not an error.",
		Annotations: &mcp.ToolAnnotations{
			Title:           "Revoke grants",
			DestructiveHint: new(true),
			IdempotentHint:  true,
			OpenWorldHint:   new(false),
		},
	}, a.revoke, AdminScope)
}

type adminTools struct {
	s     *Server
	db    *storage.DB
	audit func(context.Context, storage.AuditEvent)
}

type adminListGrantsIn struct {
	User     string `json:"user,omitempty" jsonschema:"only the grants of this user, by user name (as they sign in); omit for every user"`
	ClientID string `json:"client_id,omitempty" jsonschema:"only the grants of this OAuth client_id; omit for every client"`
	Limit    int    `json:"limit,omitempty" jsonschema:"the most grants to return, newest first: 1 to 200 (default 50)"`
}

type adminListGrantsOut struct {
	Grants []adminGrant `json:"grants" jsonschema:"the live grants, newest first"`
	More   bool         `json:"more" jsonschema:"true when more grants match than were returned: narrow the filter or raise limit"`
}

type adminGrant struct {
	GrantID    string     `json:"grant_id" jsonschema:"the grant's id: pass it to admin_revoke to end this grant alone"`
	ClientID   string     `json:"client_id" jsonschema:"the OAuth client the grant was given to"`
	ClientName string     `json:"client_name,omitempty" jsonschema:"the client's name, as it registered it (a claim, not verified)"`
	User       string     `json:"user,omitempty" jsonschema:"the user name of the user who granted it; absent for a client's own (client_credentials) grant"`
	UserID     string     `json:"user_id,omitempty" jsonschema:"the user's id (the tokens' sub)"`
	Scopes     []string   `json:"scopes" jsonschema:"the scopes granted"`
	Created    time.Time  `json:"created" jsonschema:"when the grant was created"`
	Refreshed  *time.Time `json:"refreshed,omitempty" jsonschema:"when its tokens were last refreshed; absent if never"`
	Expiry     time.Time  `json:"expiry" jsonschema:"when its last live token expires, unless refreshed before"`
}

// adminListGrantsSchema is the inferred input schema with limit's bounds,
// which struct tags cannot express.
func adminListGrantsSchema() *jsonschema.Schema {
	sch, err := jsonschema.For[adminListGrantsIn](nil)
	if err != nil {
		panic(fmt.Sprintf("resource: admin_list_grants schema: %v", err)) // a programming error
	}
	if p := sch.Properties["limit"]; p != nil {
		p.Minimum, p.Maximum = new(1.0), new(float64(adminMaxGrantLimit))
	}
	return sch
}

func (a *adminTools) listGrants(ctx context.Context, _ *mcp.CallToolRequest, in adminListGrantsIn) (*mcp.CallToolResult, adminListGrantsOut, error) {
	var out adminListGrantsOut
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	caller, err := a.authorize(ctx)
	if err != nil {
		return nil, out, err
	}
	limit := in.Limit
	switch {
	case limit == 0:
		limit = adminDefaultGrantLimit
	case limit < 1 || limit > adminMaxGrantLimit:
		return nil, out, fmt.Errorf("limit must be between 1 and %d, got %d", adminMaxGrantLimit, limit)
	}
	f := storage.GrantFilter{Limit: limit + 1} // one more says whether there are more
	if in.User != "" {
		u, err := a.user(ctx, in.User)
		if err != nil {
			return nil, out, err
		}
		f.UserID = u.ID
	}
	if in.ClientID != "" {
		c, err := a.client(ctx, in.ClientID)
		if err != nil {
			return nil, out, err
		}
		f.ClientID = c.ID
	}
	grants, err := a.db.ListGrants(ctx, f)
	if err != nil {
		return nil, out, a.internal(ctx, "list grants", err)
	}
	if len(grants) > limit {
		grants, out.More = grants[:limit], true
	}
	out.Grants = make([]adminGrant, 0, len(grants))
	users := map[string]string{}   // user id → name
	clients := map[string]string{} // client id → name
	for _, g := range grants {
		v := adminGrant{
			GrantID:   g.ID,
			ClientID:  g.ClientID,
			UserID:    g.Subject,
			Scopes:    g.Scopes,
			Created:   g.CreatedAt,
			Refreshed: g.RefreshedAt,
			Expiry:    g.ExpiresAt,
		}
		if v.Scopes == nil {
			v.Scopes = []string{}
		}
		if name, ok := clients[g.ClientID]; ok {
			v.ClientName = name
		} else if c, err := a.db.Client(ctx, g.ClientID); err == nil {
			v.ClientName, clients[g.ClientID] = c.Metadata.ClientName, c.Metadata.ClientName
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, adminListGrantsOut{}, a.internal(ctx, "list grants", err)
		}
		if g.Subject != "" {
			if name, ok := users[g.Subject]; ok {
				v.User = name
			} else if u, err := a.db.UserByID(ctx, g.Subject); err == nil {
				v.User, users[g.Subject] = u.Username, u.Username
			} else if !errors.Is(err, storage.ErrNotFound) {
				return nil, adminListGrantsOut{}, a.internal(ctx, "list grants", err)
			}
		}
		out.Grants = append(out.Grants, v)
	}
	a.s.log.InfoContext(ctx, "admin listed grants", "by_subject", caller.Subject, "by_client_id", caller.ClientID,
		"filter_user", in.User, "filter_client_id", in.ClientID, "count", len(out.Grants))
	return nil, out, nil
}

type adminRevokeIn struct {
	GrantID  string `json:"grant_id,omitempty" jsonschema:"revoke this one grant (a grant_id from admin_list_grants)"`
	ClientID string `json:"client_id,omitempty" jsonschema:"revoke every live grant of this OAuth client_id, for every user"`
	User     string `json:"user,omitempty" jsonschema:"revoke every live grant of the user with this user name, in every application"`
}

type adminRevokeOut struct {
	Revoked int `json:"revoked" jsonschema:"how many grants were revoked"`
}

func (a *adminTools) revoke(ctx context.Context, _ *mcp.CallToolRequest, in adminRevokeIn) (*mcp.CallToolResult, adminRevokeOut, error) {
	var out adminRevokeOut
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	caller, err := a.authorize(ctx)
	if err != nil {
		return nil, out, err
	}
	ev := storage.AuditEvent{Event: storage.EventGrantRevoked, Actor: a.actor(ctx, caller)}
	given := 0
	for _, v := range []string{in.GrantID, in.ClientID, in.User} {
		if v != "" {
			given++
		}
	}
	if given != 1 {
		return nil, out, errors.New("pass exactly one of grant_id, client_id or user")
	}
	var target []any
	switch {
	case in.GrantID != "":
		if err := checkAdminArg("grant_id", in.GrantID); err != nil {
			return nil, out, err
		}
		grantEv := a.db.GrantRevokedEvent(ctx, in.GrantID)
		switch err := a.db.RevokeGrant(ctx, in.GrantID); {
		case errors.Is(err, storage.ErrNotFound):
			return nil, out, fmt.Errorf("no grant with grant_id %q (admin_list_grants lists them)", in.GrantID)
		case err != nil:
			return nil, out, a.internal(ctx, "revoke grant", err)
		}
		out.Revoked = 1
		target = []any{"grant_id", in.GrantID}
		ev.Subject, ev.ClientID, ev.Details = grantEv.Subject, grantEv.ClientID, grantEv.Details
		ev.Details["by"] = "grant"
	case in.ClientID != "":
		c, err := a.client(ctx, in.ClientID)
		if err != nil {
			return nil, out, err
		}
		if out.Revoked, err = a.db.RevokeClientGrants(ctx, c.ID); err != nil {
			return nil, out, a.internal(ctx, "revoke client grants", err)
		}
		target = []any{"client_id", c.ID}
		ev.ClientID, ev.Details = c.ID, map[string]any{"by": "client"}
	default:
		u, err := a.user(ctx, in.User)
		if err != nil {
			return nil, out, err
		}
		if out.Revoked, err = a.db.RevokeUserGrants(ctx, u.ID); err != nil {
			return nil, out, a.internal(ctx, "revoke user grants", err)
		}
		target = []any{"user_id", u.ID, "username", u.Username}
		ev.Subject, ev.Details = u.Username, map[string]any{"by": "user", "user_id": u.ID}
	}
	ev.Details["revoked"], ev.Details["via"] = out.Revoked, "admin_revoke tool"
	a.audit(ctx, ev)
	a.s.log.InfoContext(ctx, "admin revoked grants", append([]any{
		"by_subject", caller.Subject, "by_client_id", caller.ClientID, "revoked", out.Revoked}, target...)...)
	return nil, out, nil
}

// authorize returns the caller's token if the caller may use the admin
// tools: the token carries AdminScope (which the authorization server
// grants only to administrators) and its user is still an enabled
// administrator — a token outlives a demotion by up to its lifetime, and a
// policy rule could have replaced the tools' scopes. For a client's own
// token (client_credentials: the subject is the client), the client must
// be enabled and created by an administrator.
func (a *adminTools) authorize(ctx context.Context) (*oauth.TokenInfo, error) {
	ti := TokenInfo(ctx)
	if ti == nil {
		return nil, errors.New("permission denied: the admin tools need an authenticated administrator")
	}
	if !ti.HasScope(AdminScope) {
		return nil, fmt.Errorf("permission denied: the token lacks the %q scope", AdminScope)
	}
	switch _, err := a.db.Administrator(ctx, ti.Subject, ti.ClientID); {
	case errors.Is(err, storage.ErrNotAdmin):
		return nil, fmt.Errorf("permission denied: %s", strings.TrimPrefix(err.Error(), storage.ErrNotAdmin.Error()+": "))
	case err != nil:
		return nil, a.internal(ctx, "check caller", err)
	}
	return ti, nil
}

// actor names the caller for the audit log: the user's name, or
// "client:<id>" for a client acting on its own behalf.
func (a *adminTools) actor(ctx context.Context, ti *oauth.TokenInfo) string {
	if ti.Subject == "" || ti.Subject == ti.ClientID {
		return "client:" + ti.ClientID
	}
	if u, err := a.db.UserByID(ctx, ti.Subject); err == nil {
		return u.Username
	}
	return ti.Subject
}

// user looks up a user by name; the name is trimmed as the login form does.
func (a *adminTools) user(ctx context.Context, name string) (*storage.User, error) {
	name = strings.TrimSpace(name)
	if err := checkAdminArg("user", name); err != nil {
		return nil, err
	}
	u, err := a.db.UserByName(ctx, name)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("no user named %q", name)
	case err != nil:
		return nil, a.internal(ctx, "look up user", err)
	}
	return u, nil
}

func (a *adminTools) client(ctx context.Context, id string) (*storage.Client, error) {
	if err := checkAdminArg("client_id", id); err != nil {
		return nil, err
	}
	c, err := a.db.Client(ctx, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("no client with client_id %q", id)
	case err != nil:
		return nil, a.internal(ctx, "look up client", err)
	}
	return c, nil
}

func checkAdminArg(name, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%s is empty", name)
	case len(v) > maxAdminArgLen:
		return fmt.Errorf("%s is longer than %d bytes", name, maxAdminArgLen)
	case strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Errorf("%s contains a control character", name)
	}
	return nil
}

// internal logs a storage failure and gives the caller a tool error that
// says nothing about the database.
func (a *adminTools) internal(ctx context.Context, op string, err error) error {
	if storage.IsUnavailable(err) {
		// A JSON-RPC error, not a tool result: the call can be repeated
		// once the database is back (revoking twice is harmless).
		a.s.log.WarnContext(ctx, "admin tool failed: database unavailable", "op", op, "err", err)
		return errUnavailable
	}
	a.s.log.ErrorContext(ctx, "admin tool failed", "op", op, "err", err)
	return fmt.Errorf("%s failed: internal error (see the server log)", op)
}

// adminTimeout is the deadline of an admin tool's database work: a database
// that stops answering makes the call the errUnavailable error when it
// passes, not a hang.
const adminTimeout = 10 * time.Second

// errUnavailable answers a call that needed the database while it was
// unreachable: a JSON-RPC server error (JSON-RPC 2.0 §5.1 reserves -32000
// to -32099 for them), which the go-sdk passes on as the call's error.
var errUnavailable = &jsonrpc.Error{Code: -32000, Message: "temporarily unavailable: the database is unreachable; retry later"}
