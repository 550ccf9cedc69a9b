package authz

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// The signed-in user's own page (/account), issue 6: the applications they
// connected (each with a Revoke button that ends its grants and forgets the
// consent) and their personal access tokens (create, shown once; list;
// revoke). The page follows the console's rules (admin.go): no JavaScript,
// every change a POST with both CSRF checks, answered with 303 and a flash
// message — except a new token, shown once on the answer to its POST with
// Cache-Control: no-store and never again.

// accountRoutes adds /account.
func (s *Server) accountRoutes(r chi.Router) {
	r.Get("/account", s.accountPage(s.handleAccount))
	r.Post("/account/apps/revoke", s.accountPage(s.handleAccountRevokeApp))
	r.Post("/account/tokens", s.accountPage(s.handleAccountTokenCreate))
	r.Post("/account/tokens/{id}/revoke", s.accountPage(s.handleAccountTokenRevoke))
}

// accountPage wraps an /account handler: a signed-in user (else the login
// page), CSRF checked on POST, failures shown as a page.
func (s *Server) accountPage(h func(http.ResponseWriter, *http.Request, *storage.User) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user := s.signedInUser(w, r, "account", false, "/account")
		if user == nil {
			return
		}
		ctx := r.Context()
		if err := inputError(h(w, r, user)); err != nil {
			var oe *oauth.Error
			if errors.As(err, &oe) && oe.HTTPStatus() < 500 {
				s.setFlash(w, true, oe.Description)
				seeOther(w, "/account")
				return
			}
			s.log.ErrorContext(ctx, "account page failed", "path", r.URL.Path, "err", err)
			s.consoleMessage(w, r, http.StatusInternalServerError, "Something went wrong", "Something went wrong on our side. Please try again.")
		}
	}
}

// appView is one connected application on /account: the user's live grants
// to one client, together.
type appView struct {
	ClientID string
	Name     string
	Scopes   []string
	LastUsed time.Time
	Grants   int
}

// patExpiries are the expiry choices of the token form, in days.
var patExpiries = []int{7, 30, 90, 365}

// accountView is the data of account.html.
type accountView struct {
	User     *storage.User
	CSRF     string
	Flash    *flash
	Apps     []appView
	Tokens   []patView
	Scopes   []Scope
	Expiries []int
}

func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request, u *storage.User) error {
	ctx := r.Context()
	grants, err := s.db.ListGrants(ctx, storage.GrantFilter{UserID: u.ID, Limit: storage.MaxGrantLimit})
	if err != nil {
		return err
	}
	views, err := s.grantViews(ctx, grants)
	if err != nil {
		return err
	}
	pats, err := s.db.ListPersonalAccessTokens(ctx, u.ID)
	if err != nil {
		return err
	}
	v := accountView{User: u, CSRF: s.csrfToken(r), Flash: s.takeFlash(w, r), Apps: connectedApps(views),
		Tokens: s.patViews(pats), Scopes: s.PATScopes(u), Expiries: patExpiries}
	s.render(w, r, http.StatusOK, "account", v)
	return nil
}

// connectedApps groups grants by client, the most recently used first.
func connectedApps(grants []grantView) []appView {
	var apps []appView
	index := map[string]int{}
	for _, g := range grants {
		i, ok := index[g.ClientID]
		if !ok {
			name := g.ClientName
			if name == "" {
				name = g.ClientID
			}
			i = len(apps)
			index[g.ClientID] = i
			apps = append(apps, appView{ClientID: g.ClientID, Name: name})
		}
		a := &apps[i]
		a.Grants++
		for _, sc := range g.Scopes {
			if !slices.Contains(a.Scopes, sc) {
				a.Scopes = append(a.Scopes, sc)
			}
		}
		if lu := g.LastUsed(); lu.After(a.LastUsed) {
			a.LastUsed = lu
		}
	}
	slices.SortStableFunc(apps, func(a, b appView) int { return b.LastUsed.Compare(a.LastUsed) })
	return apps
}

// handleAccountRevokeApp disconnects an application: every grant of the
// user for it ends (tokens stop working within a second on every replica)
// and the remembered consent is forgotten, so it must ask again.
func (s *Server) handleAccountRevokeApp(w http.ResponseWriter, r *http.Request, u *storage.User) error {
	clientID := r.PostForm.Get("client_id")
	if err := checkAdminArg("client_id", clientID); err != nil {
		return err
	}
	n, err := s.db.RevokeUserClientGrants(r.Context(), u.ID, clientID)
	if err != nil {
		return err
	}
	s.audit(r, storage.AuditEvent{Event: storage.EventConsentRevoked, Actor: u.Username, Subject: u.Username, ClientID: clientID,
		Details: map[string]any{"user_id": u.ID, "revoked": n}})
	s.setFlash(w, false, "Disconnected "+clientID+": it can no longer act for you and must ask again.")
	seeOther(w, "/account")
	return nil
}

// tokenShownView is the data of account_token.html: a new token, shown once.
type tokenShownView struct {
	Token string
	PAT   patView
}

func (s *Server) handleAccountTokenCreate(w http.ResponseWriter, r *http.Request, u *storage.User) error {
	days, err := strconv.Atoi(r.PostForm.Get("expires_days"))
	if err != nil || !slices.Contains(patExpiries, days) {
		return badRequest("choose an expiry from the list")
	}
	req := PATRequest{UserID: u.ID, Name: r.PostForm.Get("name"), Scopes: r.PostForm["scope"],
		TTL: time.Duration(days) * 24 * time.Hour, CreatedBy: u.Username}
	token, pat, err := s.opCreatePAT(r, req)
	if err != nil {
		return err
	}
	// The token is on this page only: never stored, never shown again, and
	// no cache may keep the page (Cache-Control: no-store, set above).
	s.render(w, r, http.StatusOK, "account_token", tokenShownView{Token: token, PAT: s.patViews([]storage.PersonalAccessToken{*pat})[0]})
	return nil
}

func (s *Server) handleAccountTokenRevoke(w http.ResponseWriter, r *http.Request, u *storage.User) error {
	if err := s.opRevokePAT(r, &adminCaller{user: u}, chi.URLParam(r, "id"), u.ID); err != nil {
		return err
	}
	s.setFlash(w, false, "Token revoked: it stops working within a second.")
	seeOther(w, "/account")
	return nil
}
