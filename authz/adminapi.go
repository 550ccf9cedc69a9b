package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// The JSON admin API, /admin/api/v1/ (docs/admin-api.md): the console's
// operations for programs. A caller authenticates with EITHER
//   - an access token of this server (or a personal access token) as an
//     RFC 6750 §2.1 Bearer token, carrying the admin scope, of an enabled
//     administrator or of a client an administrator created
//     (AuthorizeAdmin); or
//   - the browser session of an enabled administrator, plus, on every
//     request that changes something, the session's CSRF token in the
//     X-CSRF-Token header and a same-origin request (the console's CSRF
//     rules; a header a cross-site page cannot set without a CORS
//     preflight, which this API never allows).
//
// It is not under open CORS: no Access-Control-Allow-Origin, so no other
// origin can read an answer. Bodies are JSON, at most 64 KiB, decoded
// strictly (an unknown member is 400); errors are the OAuth error JSON
// {"error", "error_description"} with the status that fits.

// csrfHeader carries the CSRF token of a session-authenticated API call.
const csrfHeader = "X-CSRF-Token"

func (s *Server) adminAPIRoutes(r chi.Router) {
	r.Get("/clients", s.api(s.handleAPIClients))
	r.Get("/clients/{id}", s.api(s.handleAPIClient))
	r.Post("/clients/{id}/disable", s.api(s.handleAPIClientDisable))
	r.Post("/clients/{id}/enable", s.api(s.handleAPIClientEnable))
	r.Delete("/clients/{id}", s.api(s.handleAPIClientDelete))
	r.Get("/users", s.api(s.handleAPIUsers))
	r.Post("/users", s.api(s.handleAPIUserCreate))
	r.Get("/users/{name}", s.api(s.handleAPIUser))
	r.Post("/users/{name}/disable", s.api(s.handleAPIUserDisable))
	r.Post("/users/{name}/enable", s.api(s.handleAPIUserEnable))
	r.Post("/users/{name}/reset-password", s.api(s.handleAPIUserPassword))
	r.Post("/users/{name}/admin", s.api(s.handleAPIUserAdmin))
	r.Get("/grants", s.api(s.handleAPIGrants))
	r.Post("/grants/revoke", s.api(s.handleAPIRevoke))
	r.Get("/tokens", s.api(s.handleAPITokens))
	r.Post("/tokens", s.api(s.handleAPITokenCreate))
	r.Post("/tokens/{id}/revoke", s.api(s.handleAPITokenRevoke))
	r.Get("/keys", s.api(s.handleAPIKeys))
	r.Post("/keys/rotate", s.api(s.handleAPIRotate))
	r.Get("/audit", s.api(s.handleAPIAudit))
	r.NotFound(s.handle(func(http.ResponseWriter, *http.Request) error {
		return notFound("no such admin API operation")
	}))
	r.MethodNotAllowed(s.handle(func(w http.ResponseWriter, req *http.Request) error {
		// RFC 9110 §15.5.6: a 405 carries Allow, the path's methods.
		if allow := allowedMethods(r, req); allow != "" {
			w.Header().Set("Allow", allow)
		}
		return &oauth.Error{Code: oauth.InvalidRequest, Description: "method not allowed", Status: http.StatusMethodNotAllowed}
	}))
}

// allowedMethods lists the methods routes has for the path req was routed
// on (chi's RoutePath, relative to routes' mount point), for Allow.
func allowedMethods(routes chi.Routes, req *http.Request) string {
	path := req.URL.RawPath
	if path == "" {
		path = req.URL.Path
	}
	if rctx := chi.RouteContext(req.Context()); rctx != nil && rctx.RoutePath != "" {
		path = rctx.RoutePath
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if routes.Match(chi.NewRouteContext(), m, path) {
			allow = append(allow, m)
		}
	}
	return strings.Join(allow, ", ")
}

// api wraps an admin API handler: it authenticates the caller and writes
// errors as OAuth error JSON.
func (s *Server) api(h func(http.ResponseWriter, *http.Request, *adminCaller) error) http.HandlerFunc {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		c, err := s.apiCaller(w, r)
		if err != nil {
			return err
		}
		if err := checkRequestInputs(r); err != nil {
			return err
		}
		return inputError(h(w, r, c))
	})
}

// apiCaller authenticates an admin API request (see the top of this file).
func (s *Server) apiCaller(w http.ResponseWriter, r *http.Request) (*adminCaller, error) {
	ctx := r.Context()
	challenge := `Bearer realm="` + s.cfg.Issuer + `"`
	if len(r.Header.Values("Authorization")) > 0 {
		token, ok := bearerToken(r)
		if !ok || len(r.Header.Values("Authorization")) > 1 {
			// RFC 6750 §3.1: a malformed request is invalid_request.
			w.Header().Set("WWW-Authenticate", challenge+`, error="invalid_request"`)
			return nil, &oauth.Error{Code: oauth.InvalidRequest, Description: "send one access token as a Bearer token in the Authorization header", Status: http.StatusUnauthorized}
		}
		ti, err := s.VerifyAccessToken(ctx, token)
		if err != nil {
			if !errors.Is(err, oauth.ErrInvalidToken) {
				return nil, err
			}
			// RFC 6750 §3.1 invalid_token: expired, revoked, malformed…
			w.Header().Set("WWW-Authenticate", challenge+`, error="invalid_token", error_description="the access token is invalid, expired or revoked"`)
			return nil, &oauth.Error{Code: oauth.InvalidToken, Description: "the access token is invalid, expired or revoked", Status: http.StatusUnauthorized}
		}
		if !ti.HasScope(AdminScope) {
			// RFC 6750 §3.1 insufficient_scope, naming the scope needed.
			w.Header().Set("WWW-Authenticate", challenge+`, error="insufficient_scope", scope="`+AdminScope+`"`)
			return nil, &oauth.Error{Code: oauth.InsufficientScope, Description: "the admin API needs a token with the admin scope", Status: http.StatusForbidden}
		}
		u, err := s.AuthorizeAdmin(ctx, ti)
		if err != nil {
			if !errors.Is(err, ErrNotAdmin) {
				return nil, err
			}
			s.log.InfoContext(ctx, "admin API refused", "client_id", ti.ClientID, "err", err)
			return nil, &oauth.Error{Code: oauth.AccessDenied, Description: strings.TrimPrefix(err.Error(), ErrNotAdmin.Error()+": "), Status: http.StatusForbidden}
		}
		if u != nil {
			if err := s.apiUserTokenClient(ctx, ti.ClientID); err != nil {
				s.log.InfoContext(ctx, "admin API refused: user token of a client not created by an administrator", "client_id", ti.ClientID)
				return nil, err
			}
		}
		return &adminCaller{user: u, token: ti}, nil
	}

	user, err := s.currentUser(r)
	if err != nil {
		return nil, err
	}
	if user == nil {
		// RFC 6750 §3.1: no credentials at all, no error code.
		w.Header().Set("WWW-Authenticate", challenge)
		return nil, &oauth.Error{Code: oauth.InvalidToken, Description: "authenticate with a Bearer access token carrying the admin scope, or an administrator's browser session", Status: http.StatusUnauthorized}
	}
	if !user.IsAdmin {
		return nil, &oauth.Error{Code: oauth.AccessDenied, Description: "the signed-in user is not an administrator", Status: http.StatusForbidden}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// The console's two CSRF checks, with the token in a header.
		if err := s.sessions.origin.Check(r); err != nil {
			return nil, errCSRF(err)
		}
		if err := s.checkCSRFToken(r, r.Header.Get(csrfHeader), "session", s.sessions.cookie); err != nil {
			return nil, err
		}
	}
	return &adminCaller{user: user}, nil
}

// apiUserTokenClient decides whether an administrator's token held by
// clientID may use the admin API: only a personal access token or a token
// of an enabled client an administrator created. A self-registered client
// (dynamic registration or a metadata document) can obtain the admin scope
// for /mcp's admin tools on consent, but consent never shows it the API's
// powers (passwords, administrators, tokens for anyone), so its token is
// refused here (RFC 6749 §3.3: the server may fully or partially ignore the
// scope the client requested; RFC 6750 §3.1 insufficient privileges → 403).
// It returns nil or an *oauth.Error; other errors are database failures.
func (s *Server) apiUserTokenClient(ctx context.Context, clientID string) error {
	if strings.HasPrefix(clientID, PATClientPrefix) {
		return nil
	}
	refuse := &oauth.Error{Code: oauth.AccessDenied, Status: http.StatusForbidden,
		Description: "the admin API accepts a user's token only from an enabled client an administrator created, or a personal access token; this token's client is not one"}
	cl, err := s.db.Client(ctx, clientID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return refuse
	case err != nil:
		return err
	case cl.Source != storage.SourceAdmin || cl.DisabledAt != nil:
		return refuse
	}
	return nil
}

// decodeJSON reads a JSON request body into v: Content-Type
// application/json, at most maxFormBytes, one value, no unknown members.
// An empty body leaves v as it is.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return nil
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return &oauth.Error{Code: oauth.InvalidRequest, Description: "the body must be application/json", Status: http.StatusUnsupportedMediaType}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		return badRequest("malformed JSON body: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("malformed JSON body: more than one value")
	}
	return nil
}

// jsonProblem describes a decoding error without echoing much input.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at offset %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("%s must be a %s", typ.Field, typ.Type)
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}

// intParam reads an optional integer query parameter within [lo, hi].
func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("%s must be an integer from %d to %d", name, lo, hi)
	}
	return n, nil
}

// ---- clients ----

func (s *Server) handleAPIClients(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	q := r.URL.Query()
	limit, err := intParam(r, "limit", storage.DefaultClientLimit, 1, storage.MaxClientLimit)
	if err != nil {
		return err
	}
	f := storage.ClientFilter{Source: queryValue(q, "source"), Query: queryValue(q, "q"), After: queryValue(q, "after"), Limit: limit + 1}
	if err := checkClientSource(f.Source); err != nil {
		return err
	}
	list, err := s.db.ListClientSummaries(r.Context(), f)
	if err != nil {
		return err
	}
	out := struct {
		Clients []apiClient `json:"clients"`
		Next    string      `json:"next,omitempty"`
	}{Clients: []apiClient{}}
	if len(list) > limit {
		list = list[:limit]
		out.Next = list[len(list)-1].Client.ID
	}
	for _, cs := range list {
		out.Clients = append(out.Clients, apiClientOf(cs.Client, &cs.LiveGrants))
	}
	return writeJSON(w, http.StatusOK, out)
}

// clientParam is the {id} of the path, percent-decoded: a client id that
// is a URL (a metadata document's) is sent percent-encoded, slashes too.
func clientParam(r *http.Request) string { return pathParam(r, "id") }

// pathParam is a path parameter, percent-decoded (chi matches the raw path,
// so that an encoded "/" stays inside one parameter); "" if malformed.
func pathParam(r *http.Request, name string) string {
	v, err := url.PathUnescape(chi.URLParam(r, name))
	if err != nil {
		return ""
	}
	return v
}

func (s *Server) handleAPIClient(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	cl, err := s.lookupClient(r.Context(), clientParam(r))
	if err != nil {
		return err
	}
	grants, more, err := s.listGrants(r.Context(), "", cl.ID, adminGrantLimit)
	if err != nil {
		return err
	}
	n := len(grants)
	return writeJSON(w, http.StatusOK, struct {
		apiClient
		Grants     []grantView `json:"grants"`
		MoreGrants bool        `json:"more_grants"`
	}{apiClientOf(cl, &n), grants, more})
}

func (s *Server) handleAPIClientDisable(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	if err := decodeJSON(w, r, &struct{}{}); err != nil {
		return err
	}
	n, err := s.opSetClientDisabled(r, c, clientParam(r), true)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"disabled": true, "revoked": n})
}

func (s *Server) handleAPIClientEnable(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	if err := decodeJSON(w, r, &struct{}{}); err != nil {
		return err
	}
	if _, err := s.opSetClientDisabled(r, c, clientParam(r), false); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"disabled": false})
}

func (s *Server) handleAPIClientDelete(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	if err := s.opDeleteClient(r, c, clientParam(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- users ----

// userView is a user as the API shows it (never the password hash).
type userView struct {
	ID         string     `json:"id"`
	Username   string     `json:"username"`
	Admin      bool       `json:"admin"`
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
}

func userViewOf(u *storage.User) userView {
	return userView{ID: u.ID, Username: u.Username, Admin: u.IsAdmin, DisabledAt: u.DisabledAt, CreatedAt: u.CreatedAt}
}

func (s *Server) handleAPIUsers(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	users, err := s.db.ListUsers(r.Context())
	if err != nil {
		return err
	}
	out := struct {
		Users []userView `json:"users"`
	}{Users: make([]userView, 0, len(users))}
	for _, u := range users {
		out.Users = append(out.Users, userViewOf(u))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleAPIUser(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	u, err := s.lookupUser(r.Context(), pathParam(r, "name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, userViewOf(u))
}

func (s *Server) handleAPIUserCreate(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	var in struct {
		Username string `json:"username"`
		Admin    bool   `json:"admin"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	u, password, err := s.opCreateUser(r, c, in.Username, in.Admin)
	if err != nil {
		return err
	}
	// The generated password is in this answer only (Cache-Control: no-store).
	return writeJSON(w, http.StatusCreated, struct {
		userView
		Password string `json:"password"`
	}{userViewOf(u), password})
}

func (s *Server) apiUser(w http.ResponseWriter, r *http.Request, in any) (*storage.User, error) {
	if err := decodeJSON(w, r, in); err != nil {
		return nil, err
	}
	return s.lookupUser(r.Context(), pathParam(r, "name"))
}

func (s *Server) handleAPIUserDisable(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	return s.apiUserDisabled(w, r, c, true)
}

func (s *Server) handleAPIUserEnable(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	return s.apiUserDisabled(w, r, c, false)
}

func (s *Server) apiUserDisabled(w http.ResponseWriter, r *http.Request, c *adminCaller, disabled bool) error {
	u, err := s.apiUser(w, r, &struct{}{})
	if err != nil {
		return err
	}
	if err := s.opSetUserDisabled(r, c, u, disabled); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"username": u.Username, "disabled": disabled})
}

func (s *Server) handleAPIUserPassword(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	u, err := s.apiUser(w, r, &struct{}{})
	if err != nil {
		return err
	}
	password, err := s.opResetPassword(r, c, u)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"username": u.Username, "password": password})
}

func (s *Server) handleAPIUserAdmin(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	var in struct {
		Admin *bool `json:"admin"`
	}
	u, err := s.apiUser(w, r, &in)
	if err != nil {
		return err
	}
	if in.Admin == nil {
		return badRequest(`the body must be {"admin": true} or {"admin": false}`)
	}
	if err := s.opSetUserAdmin(r, c, u, *in.Admin); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"username": u.Username, "admin": *in.Admin})
}

// ---- grants ----

func (s *Server) handleAPIGrants(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	q := r.URL.Query()
	limit, err := intParam(r, "limit", adminGrantLimit, 1, adminMaxGrantLimit)
	if err != nil {
		return err
	}
	grants, more, err := s.listGrants(r.Context(), queryValue(q, "user"), queryValue(q, "client_id"), limit)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"grants": grants, "more": more})
}

func (s *Server) handleAPIRevoke(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	var in revokeTarget
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	n, err := s.opRevoke(r, c, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"revoked": n})
}

// ---- personal access tokens ----

func (s *Server) handleAPITokens(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	userID := ""
	if name := queryValue(r.URL.Query(), "user"); name != "" {
		u, err := s.lookupUser(r.Context(), name)
		if err != nil {
			return err
		}
		userID = u.ID
	}
	pats, err := s.db.ListPersonalAccessTokens(r.Context(), userID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"tokens": s.patViews(pats)})
}

func (s *Server) handleAPITokenCreate(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	var in struct {
		User      string   `json:"user"`
		Name      string   `json:"name"`
		Scopes    []string `json:"scopes"`
		ExpiresIn int64    `json:"expires_in"` // seconds
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	u, err := s.lookupUser(r.Context(), in.User)
	if err != nil {
		return err
	}
	if in.ExpiresIn <= 0 || in.ExpiresIn > int64(MaxPATTTL/time.Second) {
		return badRequest("expires_in must be from 1 to %d seconds", int64(MaxPATTTL/time.Second))
	}
	token, pat, err := s.opCreatePAT(r, PATRequest{UserID: u.ID, Name: in.Name, Scopes: in.Scopes,
		TTL: time.Duration(in.ExpiresIn) * time.Second, CreatedBy: c.actor()})
	if err != nil {
		return err
	}
	// The token is in this answer only (Cache-Control: no-store).
	views := s.patViews([]storage.PersonalAccessToken{*pat})
	return writeJSON(w, http.StatusCreated, struct {
		patView
		Token string `json:"token"`
	}{views[0], token})
}

func (s *Server) handleAPITokenRevoke(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	if err := decodeJSON(w, r, &struct{}{}); err != nil {
		return err
	}
	if err := s.opRevokePAT(r, c, chi.URLParam(r, "id"), ""); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"revoked": true})
}

// ---- signing keys ----

func (s *Server) handleAPIKeys(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	ks := s.keys.List()
	if ks == nil {
		ks = []keys.KeyInfo{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"keys": ks})
}

func (s *Server) handleAPIRotate(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	var in struct {
		Immediate bool `json:"immediate"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	kid, err := s.opRotateKey(r, c, in.Immediate)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"kid": kid, "keys": s.keys.List()})
}

// ---- audit log ----

func (s *Server) handleAPIAudit(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	f, err := auditFilterOf(r.URL.Query())
	if err != nil {
		return err
	}
	limit := f.Limit
	if limit == 0 {
		limit = storage.DefaultAuditLimit
	}
	f.Limit = limit + 1
	events, err := s.db.ListAuditEvents(r.Context(), f)
	if err != nil {
		return err
	}
	out := struct {
		Events []auditView `json:"events"`
		Before int64       `json:"next_before,omitempty"`
	}{}
	if len(events) > limit {
		events = events[:limit]
		out.Before = events[len(events)-1].ID
	}
	out.Events = auditViews(events)
	return writeJSON(w, http.StatusOK, out)
}
