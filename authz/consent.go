package authz

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// consentView is what the consent page shows.
type consentView struct {
	ClientName     string
	ClientID       string
	ClientHost     string // host of the client's own web site, if it gave one
	RedirectHost   string // where the browser goes next: shown prominently (MCP: MUST)
	LoopbackOnly   bool   // every redirect URI is on this computer
	SelfRegistered bool   // dynamically registered: nobody vouched for the name
	// A client identified by a Client ID Metadata Document: the host its
	// client_id URL is on (which vouches for the document, and so for the
	// name), and whether the browser is sent somewhere else (CIMD §6.4).
	MetadataDocument bool
	ClientIDHost     string
	HostMismatch     bool
	User             string
	Scopes           []consentScope
	Unavailable      []consentScope
	Hidden           []hiddenField
	CSRF             string
}

type consentScope struct {
	Name        string
	Description string
	Tools       []string
}

type hiddenField struct{ Name, Value string }

// renderConsent shows the consent page: who asks, where the browser goes
// next, and each scope with the tools it unlocks, every one ticked; the
// user may untick any (the grant is narrowed) and then allow or deny.
// Everything of the original request goes back in hidden fields, so no
// state is kept before the decision.
func (s *Server) renderConsent(w http.ResponseWriter, r *http.Request, client *storage.Client, redirectURI string, user *storage.User, grantable, unavailable []string) {
	v := consentView{
		ClientName:     client.Metadata.ClientName,
		ClientID:       client.ID,
		RedirectHost:   hostOf(redirectURI),
		LoopbackOnly:   loopbackOnly(client.RedirectURIs),
		SelfRegistered: client.Source != storage.SourceAdmin,
		User:           user.Username,
		CSRF:           s.csrfToken(r),
	}
	if v.ClientName == "" {
		v.ClientName = client.ID
	}
	if client.Source == storage.SourceCIMD {
		// The document's logo_uri is not shown: an image fetched by the
		// user's browser from wherever the document says would tell that
		// host who is signing in, and nothing checked what it shows. The
		// name is shown with the host that vouches for it instead.
		v.MetadataDocument, v.SelfRegistered = true, false
		v.ClientIDHost = hostOf(client.ID)
		// Any loopback redirect is warned about, not only when all are.
		v.LoopbackOnly = v.LoopbackOnly || loopbackOnly([]string{redirectURI})
		v.HostMismatch = !oauth.IsLoopbackHost(hostnameOf(redirectURI)) && !strings.EqualFold(hostnameOf(client.ID), hostnameOf(redirectURI))
	}
	if client.Metadata.ClientURI != "" {
		v.ClientHost = hostOf(client.Metadata.ClientURI)
	}
	for _, name := range grantable {
		sc, _ := s.scope(name)
		v.Scopes = append(v.Scopes, consentScope{Name: sc.Name, Description: sc.Description, Tools: sc.Tools})
	}
	for _, name := range unavailable {
		sc, _ := s.scope(name)
		v.Unavailable = append(v.Unavailable, consentScope{Name: sc.Name, Description: sc.Description, Tools: sc.Tools})
	}
	for name, values := range carried(r.Form) {
		for _, val := range values {
			v.Hidden = append(v.Hidden, hiddenField{name, val})
		}
	}
	s.render(w, r, http.StatusOK, "consent", v)
}

// authorizePage shows a problem with an authorization request to the user.
func (s *Server) authorizePage(w http.ResponseWriter, r *http.Request, status int, title, message string) {
	s.render(w, r, status, "message", struct{ Title, Message string }{title, message})
}

// hostnameOf is the host of a URL without its port, "" if it has none.
func hostnameOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if u.Host != "" {
		return u.Host
	}
	return u.Scheme + ":" // a private-use scheme of a native app
}

// loopbackOnly reports whether every redirect URI is on the user's own
// computer, which the consent page warns about (MCP security best practice:
// anything on the machine can listen there).
func loopbackOnly(uris []string) bool {
	if len(uris) == 0 {
		return false
	}
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" || !oauth.IsLoopbackHost(u.Hostname()) {
			return false
		}
	}
	return true
}
