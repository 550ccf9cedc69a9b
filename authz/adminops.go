package authz

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// The administrator's operations, shared by the console (admin.go) and the
// JSON API (adminapi.go): each checks its input, changes the database and
// records an audit event with the administrator as actor. Errors are
// *oauth.Error values whose Description is safe to show.

// AdminScope is the scope an access token needs for the admin API. The
// server grants it only to administrators and to clients an administrator
// created.
const AdminScope = "admin"

// Error codes of the admin API beyond RFC 6749's.
const (
	adminNotFound = "not_found"
	adminConflict = "conflict"
)

// maxAdminArgLen bounds every identifier the admin pages and API accept:
// longer is no user name, client id, grant id or token id.
const maxAdminArgLen = 256

// adminCaller is who acts in the console or the API.
type adminCaller struct {
	user  *storage.User    // the administrator; nil for a client acting on its own behalf
	token *oauth.TokenInfo // the bearer token; nil for a browser session
}

// actor is the audit log's name for the caller: the administrator's user
// name, or "client:<client_id>" for a client's own token.
func (c *adminCaller) actor() string {
	if c.user != nil {
		return c.user.Username
	}
	return "client:" + c.token.ClientID
}

// ErrNotAdmin is wrapped by AuthorizeAdmin's refusals.
var ErrNotAdmin = storage.ErrNotAdmin

// AuthorizeAdmin decides whether a verified access token may administer the
// server: it carries AdminScope, and storage.Administrator accepts its
// holder. It returns the user (nil for a client), or an error wrapping
// ErrNotAdmin; other errors are database failures.
func (s *Server) AuthorizeAdmin(ctx context.Context, ti *oauth.TokenInfo) (*storage.User, error) {
	if ti == nil || !ti.HasScope(AdminScope) {
		return nil, fmt.Errorf("%w: the token lacks the %q scope", ErrNotAdmin, AdminScope)
	}
	return s.db.Administrator(ctx, ti.Subject, ti.ClientID)
}

func badRequest(format string, a ...any) error {
	return &oauth.Error{Code: oauth.InvalidRequest, Description: fmt.Sprintf(format, a...)}
}

func notFound(format string, a ...any) error {
	return &oauth.Error{Code: adminNotFound, Description: fmt.Sprintf(format, a...), Status: http.StatusNotFound}
}

// checkAdminArg checks an identifier from a path, form or JSON body.
func checkAdminArg(name, v string) error {
	switch {
	case v == "":
		return badRequest("%s is empty", name)
	case len(v) > maxAdminArgLen:
		return badRequest("%s is longer than %d bytes", name, maxAdminArgLen)
	case strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return badRequest("%s contains a control character", name)
	}
	return nil
}

// adminAudit records an administrator's action.
func (s *Server) adminAudit(r *http.Request, c *adminCaller, e storage.AuditEvent) {
	e.Actor = c.actor()
	if c.user != nil && c.token != nil {
		// The client that held the administrator's token (a PAT's is "pat:<id>").
		d := map[string]any{"via_client": c.token.ClientID}
		for k, v := range e.Details {
			d[k] = v
		}
		e.Details = d
	}
	s.audit(r, e)
}

// lookupUser finds a user by id (a UUID, as the console's links carry) or
// by user name (as the API's paths carry).
func (s *Server) lookupUser(ctx context.Context, ref string) (*storage.User, error) {
	ref = strings.TrimSpace(ref)
	if err := checkAdminArg("user", ref); err != nil {
		return nil, err
	}
	var (
		u   *storage.User
		err error
	)
	if _, perr := uuid.Parse(ref); perr == nil {
		u, err = s.db.UserByID(ctx, ref)
	} else {
		u, err = s.db.UserByName(ctx, ref)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notFound("no user %q", ref)
	}
	return u, err
}

// lookupClient finds a client by id.
func (s *Server) lookupClient(ctx context.Context, id string) (*storage.Client, error) {
	if err := checkAdminArg("client_id", id); err != nil {
		return nil, err
	}
	c, err := s.db.Client(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notFound("no client %q", id)
	}
	return c, err
}

// ---- users ----

// opCreateUser adds a user with a generated password, returned once.
func (s *Server) opCreateUser(r *http.Request, c *adminCaller, name string, admin bool) (*storage.User, string, error) {
	name = strings.TrimSpace(name)
	if err := ValidateUsername(name); err != nil {
		return nil, "", badRequest("%s", err.Error())
	}
	password := GeneratePassword()
	hash, err := HashPassword(password)
	if err != nil {
		return nil, "", err
	}
	u := &storage.User{Username: name, PasswordHash: hash, IsAdmin: admin}
	if err := s.db.CreateUser(r.Context(), u); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return nil, "", &oauth.Error{Code: adminConflict, Description: fmt.Sprintf("a user named %q exists already", name), Status: http.StatusConflict}
		}
		return nil, "", err
	}
	s.adminAudit(r, c, storage.AuditEvent{Event: storage.EventUserCreated, Subject: u.Username, Details: map[string]any{"user_id": u.ID, "admin": admin}})
	return u, password, nil
}

// opSetUserDisabled disables a user (ending their sessions, grants and
// personal access tokens) or enables them again; an administrator cannot
// disable themselves.
func (s *Server) opSetUserDisabled(r *http.Request, c *adminCaller, u *storage.User, disabled bool) error {
	if disabled && c.user != nil && c.user.ID == u.ID {
		return badRequest("you cannot disable yourself")
	}
	if err := s.db.SetUserDisabled(r.Context(), u.ID, disabled); err != nil {
		return err
	}
	event := storage.EventUserEnabled
	if disabled {
		event = storage.EventUserDisabled
	}
	s.adminAudit(r, c, storage.AuditEvent{Event: event, Subject: u.Username, Details: map[string]any{"user_id": u.ID}})
	return nil
}

// opResetPassword gives a user a new generated password, returned once,
// and ends their browser sessions.
func (s *Server) opResetPassword(r *http.Request, c *adminCaller, u *storage.User) (string, error) {
	password := GeneratePassword()
	hash, err := HashPassword(password)
	if err != nil {
		return "", err
	}
	if err := s.db.SetUserPassword(r.Context(), u.ID, hash); err != nil {
		return "", err
	}
	s.adminAudit(r, c, storage.AuditEvent{Event: storage.EventUserPasswordReset, Subject: u.Username, Details: map[string]any{"user_id": u.ID}})
	return password, nil
}

// opSetUserAdmin grants or removes the admin role; an administrator cannot
// remove their own.
func (s *Server) opSetUserAdmin(r *http.Request, c *adminCaller, u *storage.User, admin bool) error {
	if !admin && c.user != nil && c.user.ID == u.ID {
		return badRequest("you cannot remove your own admin role")
	}
	if err := s.db.SetUserAdmin(r.Context(), u.ID, admin, s.AdminOnlyScopes()); err != nil {
		return err
	}
	s.adminAudit(r, c, storage.AuditEvent{Event: storage.EventUserAdminChanged, Subject: u.Username, Details: map[string]any{"user_id": u.ID, "admin": admin}})
	return nil
}

// ---- grants ----

// revokeTarget names what to revoke: exactly one field is set.
type revokeTarget struct {
	GrantID  string `json:"grant_id,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	User     string `json:"user,omitempty"`  // a user name or id
	Token    string `json:"token,omitempty"` // an access, refresh or personal access token
}

// opRevoke revokes one grant, every grant of a client or every grant of a
// user, with their tokens and remembered consents (issue 6 §8), and says
// how many grants it revoked.
func (s *Server) opRevoke(r *http.Request, c *adminCaller, t revokeTarget) (int, error) {
	ctx := r.Context()
	given := 0
	for _, v := range []string{t.GrantID, t.ClientID, t.User, t.Token} {
		if v != "" {
			given++
		}
	}
	if given != 1 {
		return 0, badRequest("name exactly one of grant_id, client_id, user or token")
	}
	switch {
	case t.Token != "":
		return s.opRevokeToken(r, c, strings.TrimSpace(t.Token))
	case t.GrantID != "":
		if err := checkAdminArg("grant_id", t.GrantID); err != nil {
			return 0, err
		}
		ev := s.db.GrantRevokedEvent(ctx, t.GrantID)
		switch err := s.db.RevokeGrant(ctx, t.GrantID); {
		case errors.Is(err, storage.ErrNotFound):
			return 0, notFound("no grant %q", t.GrantID)
		case err != nil:
			return 0, err
		}
		ev.Details["revoked"] = 1
		s.adminAudit(r, c, ev)
		return 1, nil
	case t.ClientID != "":
		cl, err := s.lookupClient(ctx, t.ClientID)
		if err != nil {
			return 0, err
		}
		n, err := s.db.RevokeClientGrants(ctx, cl.ID)
		if err != nil {
			return 0, err
		}
		s.adminAudit(r, c, storage.AuditEvent{Event: storage.EventGrantRevoked, ClientID: cl.ID, Details: map[string]any{"revoked": n}})
		return n, nil
	default:
		u, err := s.lookupUser(ctx, t.User)
		if err != nil {
			return 0, err
		}
		n, err := s.db.RevokeUserGrants(ctx, u.ID)
		if err != nil {
			return 0, err
		}
		s.adminAudit(r, c, storage.AuditEvent{Event: storage.EventGrantRevoked, Subject: u.Username, Details: map[string]any{"user_id": u.ID, "revoked": n}})
		return n, nil
	}
}

// opRevokeToken revokes one token: a personal access token itself, or the
// grant of an access token (a JWT this server signed, even expired) or of
// a refresh token, with everything of that grant. The token is never
// logged or audited.
func (s *Server) opRevokeToken(r *http.Request, c *adminCaller, tok string) (int, error) {
	ctx := r.Context()
	if len(tok) > maxAccessTokenLen || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return 0, badRequest("token: not a token of this server")
	}
	noToken := notFound("no such token: not a live access, refresh or personal access token of this server")
	if strings.HasPrefix(tok, PATPrefix) {
		h := sha256.Sum256([]byte(tok))
		p, err := s.db.PersonalAccessTokenByHash(ctx, h[:])
		if errors.Is(err, storage.ErrNotFound) {
			return 0, noToken
		} else if err != nil {
			return 0, err
		}
		if err := s.db.RevokePersonalAccessToken(ctx, p.ID, ""); err != nil {
			return 0, err
		}
		s.adminAudit(r, c, storage.AuditEvent{Event: storage.EventPATRevoked, Subject: p.Username, Details: map[string]any{"token_id": p.ID}})
		return 1, nil
	}
	var grantID, via string
	if strings.Count(tok, ".") == 2 {
		// An access token: a JWT signed by one of our keys names its grant.
		payload, err := s.keys.Verify(tok, "at+jwt")
		if err != nil {
			return 0, noToken
		}
		var claims struct {
			GrantID string `json:"grant_id"`
		}
		if json.Unmarshal(payload, &claims) != nil || claims.GrantID == "" {
			return 0, noToken
		}
		grantID, via = claims.GrantID, "access_token"
	} else {
		// A refresh token: fosite's "key.signature", stored by the
		// signature's hash.
		i := strings.LastIndexByte(tok, '.')
		if i < 0 || i == len(tok)-1 {
			return 0, noToken
		}
		id, err := s.db.GrantOfToken(ctx, tok[i+1:])
		if errors.Is(err, storage.ErrNotFound) {
			return 0, noToken
		} else if err != nil {
			return 0, err
		}
		grantID, via = id, "refresh_token"
	}
	ev := s.db.GrantRevokedEvent(ctx, grantID)
	switch err := s.db.RevokeGrant(ctx, grantID); {
	case errors.Is(err, storage.ErrNotFound):
		return 0, noToken
	case err != nil:
		return 0, err
	}
	ev.Details["revoked"], ev.Details["via"] = 1, via
	s.adminAudit(r, c, ev)
	return 1, nil
}

// grantView is a live grant with its client's and user's names.
type grantView struct {
	GrantID    string     `json:"grant_id"`
	ClientID   string     `json:"client_id"`
	ClientName string     `json:"client_name,omitempty"`
	User       string     `json:"user,omitempty"`
	UserID     string     `json:"user_id,omitempty"`
	Scopes     []string   `json:"scopes"`
	Created    time.Time  `json:"created"`
	Refreshed  *time.Time `json:"refreshed,omitempty"`
	Expiry     time.Time  `json:"expiry"`
}

// LastUsed is the grant's latest activity: its last refresh, else its creation.
func (g grantView) LastUsed() time.Time {
	if g.Refreshed != nil && g.Refreshed.After(g.Created) {
		return *g.Refreshed
	}
	return g.Created
}

// Bounds of a grant listing.
const (
	adminGrantLimit    = 100
	adminMaxGrantLimit = 1000
)

// listGrants lists the live grants of a user and/or a client (names or
// ids; empty: all), newest first, at most limit, and whether there are more.
func (s *Server) listGrants(ctx context.Context, user, clientID string, limit int) ([]grantView, bool, error) {
	switch {
	case limit == 0:
		limit = adminGrantLimit
	case limit < 1 || limit > adminMaxGrantLimit:
		return nil, false, badRequest("limit must be between 1 and %d", adminMaxGrantLimit)
	}
	f := storage.GrantFilter{Limit: limit + 1}
	if user != "" {
		u, err := s.lookupUser(ctx, user)
		if err != nil {
			return nil, false, err
		}
		f.UserID = u.ID
	}
	if clientID != "" {
		if err := checkAdminArg("client_id", clientID); err != nil {
			return nil, false, err
		}
		f.ClientID = clientID
	}
	grants, err := s.db.ListGrants(ctx, f)
	if err != nil {
		return nil, false, err
	}
	more := len(grants) > limit
	if more {
		grants = grants[:limit]
	}
	out, err := s.grantViews(ctx, grants)
	return out, more, err
}

// grantViews resolves the names of the grants' clients and users.
func (s *Server) grantViews(ctx context.Context, grants []storage.Grant) ([]grantView, error) {
	out := make([]grantView, 0, len(grants))
	users := map[string]string{}   // user id → name
	clients := map[string]string{} // client id → name
	for _, g := range grants {
		v := grantView{
			GrantID: g.ID, ClientID: g.ClientID, Scopes: g.Scopes,
			Created: g.CreatedAt, Refreshed: g.RefreshedAt, Expiry: g.ExpiresAt,
		}
		if v.Scopes == nil {
			v.Scopes = []string{}
		}
		if name, ok := clients[g.ClientID]; ok {
			v.ClientName = name
		} else if c, err := s.db.Client(ctx, g.ClientID); err == nil {
			v.ClientName, clients[g.ClientID] = c.Metadata.ClientName, c.Metadata.ClientName
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		if g.Subject != "" && g.Subject != g.ClientID {
			v.UserID = g.Subject
			if name, ok := users[g.Subject]; ok {
				v.User = name
			} else if u, err := s.db.UserByID(ctx, g.Subject); err == nil {
				v.User, users[g.Subject] = u.Username, u.Username
			} else if !errors.Is(err, storage.ErrNotFound) {
				return nil, err
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// ---- signing keys ----

// opRotateKey adds a signing key: it signs after the publish-ahead delay,
// or at once when immediate (after a key compromise).
func (s *Server) opRotateKey(r *http.Request, c *adminCaller, immediate bool) (string, error) {
	kid, err := s.keys.Rotate(r.Context(), immediate)
	if err != nil {
		return "", err
	}
	s.adminAudit(r, c, storage.AuditEvent{Event: storage.EventKeyRotated, Details: map[string]any{"kid": kid, "immediate": immediate}})
	return kid, nil
}

// ---- clients ----

// opSetClientDisabled disables a client (revoking every grant and consent
// it has; it can no longer authorize or obtain tokens) or enables it again
// (reviving nothing). It returns how many grants it revoked.
func (s *Server) opSetClientDisabled(r *http.Request, c *adminCaller, id string, disabled bool) (int, error) {
	cl, err := s.lookupClient(r.Context(), id)
	if err != nil {
		return 0, err
	}
	n, err := s.db.SetClientDisabled(r.Context(), cl.ID, disabled)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, notFound("no client %q", id)
	}
	if err != nil {
		return 0, err
	}
	e := storage.AuditEvent{Event: storage.EventClientEnabled, ClientID: cl.ID}
	if disabled {
		e = storage.AuditEvent{Event: storage.EventClientDisabled, ClientID: cl.ID, Details: map[string]any{"revoked": n}}
	}
	s.adminAudit(r, c, e)
	return n, nil
}

// opDeleteClient deletes a client with everything it holds: its grants are
// revoked (on every replica), its consents and tokens deleted.
func (s *Server) opDeleteClient(r *http.Request, c *adminCaller, id string) error {
	cl, err := s.lookupClient(r.Context(), id)
	if err != nil {
		return err
	}
	err = s.db.DeleteClient(r.Context(), cl.ID)
	if errors.Is(err, storage.ErrNotFound) {
		return notFound("no client %q", id)
	}
	if err != nil {
		return err
	}
	s.adminAudit(r, c, storage.AuditEvent{Event: storage.EventClientDeleted, ClientID: cl.ID, Details: map[string]any{"source": cl.Source}})
	return nil
}

// apiClient is a client as the admin API shows it: its metadata, never a
// secret or a hash.
type apiClient struct {
	ClientID                string     `json:"client_id"`
	ClientName              string     `json:"client_name,omitempty"`
	Source                  string     `json:"source"`
	TokenEndpointAuthMethod string     `json:"token_endpoint_auth_method"`
	RedirectURIs            []string   `json:"redirect_uris"`
	GrantTypes              []string   `json:"grant_types"`
	Scopes                  []string   `json:"scopes"`
	ClientURI               string     `json:"client_uri,omitempty"`
	CreatedAt               time.Time  `json:"created_at"`
	LastUsedAt              *time.Time `json:"last_used_at,omitempty"`
	DisabledAt              *time.Time `json:"disabled_at,omitempty"`
	LiveGrants              *int       `json:"live_grants,omitempty"`
}

func apiClientOf(cl *storage.Client, live *int) apiClient {
	return apiClient{
		ClientID: cl.ID, ClientName: cl.Metadata.ClientName, Source: cl.Source,
		TokenEndpointAuthMethod: cl.TokenEndpointAuthMethod,
		RedirectURIs:            nonNilStrings(cl.RedirectURIs), GrantTypes: nonNilStrings(cl.GrantTypes), Scopes: nonNilStrings(cl.Scopes),
		ClientURI: cl.Metadata.ClientURI, CreatedAt: cl.CreatedAt, LastUsedAt: cl.LastUsedAt, DisabledAt: cl.DisabledAt,
		LiveGrants: live,
	}
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ---- personal access tokens ----

// patView is a personal access token as the console and the API show it
// (never the token: it is shown once, when created).
type patView struct {
	ID        string     `json:"id"`
	User      string     `json:"user"`
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by,omitempty"`
	ExpiresAt time.Time  `json:"expires_at"`
	LastUsed  *time.Time `json:"last_used_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	State     string     `json:"state"` // active, expired or revoked
}

func (s *Server) patViews(pats []storage.PersonalAccessToken) []patView {
	now := s.cfg.Now()
	out := make([]patView, 0, len(pats))
	for _, p := range pats {
		v := patView{ID: p.ID, User: p.Username, Name: p.Name, Scopes: nonNilStrings(p.Scopes), CreatedAt: p.CreatedAt,
			CreatedBy: p.CreatedBy, ExpiresAt: p.ExpiresAt, LastUsed: p.LastUsedAt, RevokedAt: p.RevokedAt, State: "active"}
		switch {
		case p.RevokedAt != nil:
			v.State = "revoked"
		case !now.Before(p.ExpiresAt):
			v.State = "expired"
		}
		out = append(out, v)
	}
	return out
}

// opRevokePAT revokes a personal access token: of the user userID, or of
// anyone when userID is "".
func (s *Server) opRevokePAT(r *http.Request, c *adminCaller, id, userID string) error {
	if err := checkAdminArg("token id", id); err != nil {
		return err
	}
	err := s.db.RevokePersonalAccessToken(r.Context(), id, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return notFound("no personal access token %q", id)
	}
	if err != nil {
		return err
	}
	s.adminAudit(r, c, storage.AuditEvent{Event: storage.EventPATRevoked, Details: map[string]any{"token_id": id}})
	return nil
}

// ---- audit log ----

// auditView is an audit event as the console and the API show it.
type auditView struct {
	ID       int64          `json:"id"`
	At       time.Time      `json:"at"`
	Event    string         `json:"event"`
	Actor    string         `json:"actor,omitempty"`
	Subject  string         `json:"subject,omitempty"`
	ClientID string         `json:"client_id,omitempty"`
	ClientIP string         `json:"client_ip,omitempty"`
	Details  map[string]any `json:"details,omitempty"`
}

// DetailText is Details as "k=v" pairs, in key order, for the console.
func (v auditView) DetailText() string {
	keys := make([]string, 0, len(v.Details))
	for k := range v.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%v", k, v.Details[k])
	}
	return b.String()
}

func auditViews(events []storage.AuditEvent) []auditView {
	out := make([]auditView, 0, len(events))
	for _, e := range events {
		out = append(out, auditView{ID: e.ID, At: e.At, Event: e.Event, Actor: e.Actor, Subject: e.Subject,
			ClientID: e.ClientID, ClientIP: e.ClientIP, Details: e.Details})
	}
	return out
}

// auditTimeLayouts are the forms a since/until bound may take: RFC 3339, or
// what an HTML datetime-local or date input sends (read as UTC).
var auditTimeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"}

func parseAuditTime(name, v string) (time.Time, error) {
	for _, l := range auditTimeLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, badRequest("%s: not a time (use RFC 3339, e.g. 2026-01-02T15:04:05Z)", name)
}

// auditFilterOf reads an audit filter from query parameters: user,
// client_id, event, since, until, before (an event id: the page after) and
// limit.
func auditFilterOf(q url.Values) (storage.AuditFilter, error) {
	f := storage.AuditFilter{User: queryValue(q, "user"), ClientID: queryValue(q, "client_id"), Event: queryValue(q, "event")}
	if f.Event != "" && !slices.Contains(storage.AuditEvents, f.Event) {
		return f, badRequest("unknown event %q", f.Event)
	}
	var err error
	if v := queryValue(q, "since"); v != "" {
		if f.Since, err = parseAuditTime("since", v); err != nil {
			return f, err
		}
	}
	if v := queryValue(q, "until"); v != "" {
		if f.Until, err = parseAuditTime("until", v); err != nil {
			return f, err
		}
	}
	if v := queryValue(q, "before"); v != "" {
		if f.Before, err = strconv.ParseInt(v, 10, 64); err != nil || f.Before <= 0 {
			return f, badRequest("before: not an event id")
		}
	}
	if v := queryValue(q, "limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 || f.Limit > storage.MaxAuditLimit {
			return f, badRequest("limit must be between 1 and %d", storage.MaxAuditLimit)
		}
	}
	return f, nil
}

// opCreatePAT mints a personal access token and returns it, once.
// CreatePersonalAccessToken validates the name, scopes and lifetime and
// records pat.created with req.CreatedBy as actor.
func (s *Server) opCreatePAT(r *http.Request, req PATRequest) (string, *storage.PersonalAccessToken, error) {
	req.ClientIP = clientIP(r)
	token, pat, err := s.CreatePersonalAccessToken(r.Context(), req)
	switch {
	case errors.Is(err, ErrPATRequest):
		return "", nil, badRequest("%s", strings.TrimPrefix(err.Error(), ErrPATRequest.Error()+": "))
	case errors.Is(err, storage.ErrNotFound):
		return "", nil, notFound("no such user")
	case err != nil:
		return "", nil, err
	}
	return token, pat, nil
}
