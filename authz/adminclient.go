package authz

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// Clients an administrator creates (issue 6: mcpauth client create): source
// "admin", so they may obtain administrator-only scopes with
// client_credentials (clientCredentialsScope) and introspect any token.

// AdminClientRequest describes a client an administrator creates.
type AdminClientRequest struct {
	Name         string   // client_name, shown on the consent page; required
	RedirectURIs []string // https, loopback http, or a private-use scheme
	GrantTypes   []string // authorization_code, refresh_token, client_credentials; default the first two
	Scopes       []string // the scopes it may ask for; default none beyond the server's defaults
	Public       bool     // no secret (token_endpoint_auth_method none); no client_credentials
}

// ErrAdminClient wraps every refusal of an AdminClientRequest; the text
// after it is safe to show.
var ErrAdminClient = errors.New("invalid client")

// NewAdminClient validates req and returns the client to store for it, with
// the MCP endpoint mcpResource as its audience, and its secret (empty for a
// public client), which exists only in this return value: only its hash is
// in the record.
func NewAdminClient(req AdminClientRequest, mcpResource string) (*storage.Client, string, error) {
	bad := func(format string, a ...any) (*storage.Client, string, error) {
		return nil, "", fmt.Errorf("%w: %s", ErrAdminClient, fmt.Sprintf(format, a...))
	}
	name := strings.TrimSpace(req.Name)
	if name == "" {
		return bad("a name is required")
	}
	if err := checkMetadataText("client_name", name); err != nil {
		return bad("%s", errorText(err))
	}
	grants := req.GrantTypes
	if len(grants) == 0 {
		grants = []string{grantAuthorizationCode, grantRefreshToken}
	}
	var gt []string
	for _, g := range grants {
		switch g {
		case grantAuthorizationCode, grantRefreshToken, grantClientCredentials:
		default:
			return bad("unsupported grant type %q (authorization_code, refresh_token, client_credentials)", g)
		}
		if !slices.Contains(gt, g) {
			gt = append(gt, g)
		}
	}
	code := slices.Contains(gt, grantAuthorizationCode)
	switch {
	case code && len(req.RedirectURIs) == 0:
		return bad("authorization_code needs at least one redirect URI")
	case !code && len(req.RedirectURIs) > 0:
		return bad("redirect URIs are only for the authorization_code grant")
	case slices.Contains(gt, grantRefreshToken) && !code:
		return bad("refresh_token comes with authorization_code")
	case req.Public && slices.Contains(gt, grantClientCredentials):
		return bad("a public client cannot use client_credentials (it has no secret)")
	}
	var redirects []string
	for _, u := range req.RedirectURIs {
		if err := oauth.ValidateRedirectURI(u, true); err != nil {
			return bad("redirect URI %q: %s", u, errorText(err))
		}
		if !slices.Contains(redirects, u) {
			redirects = append(redirects, u)
		}
	}
	scopes, err := oauth.ParseScope(strings.Join(req.Scopes, " "))
	if err != nil {
		return bad("scope: %s", errorText(err))
	}
	c := &storage.Client{
		ID:                      rand.Text(),
		TokenEndpointAuthMethod: storage.AuthMethodClientSecretBasic,
		RedirectURIs:            redirects,
		GrantTypes:              gt,
		Scopes:                  scopes,
		Audiences:               []string{mcpResource},
		Metadata:                storage.ClientMetadata{ClientName: name},
		Source:                  storage.SourceAdmin,
	}
	if code {
		c.ResponseTypes = []string{"code"}
	}
	if req.Public {
		c.TokenEndpointAuthMethod = storage.AuthMethodNone
		return c, "", nil
	}
	secret := newClientSecret()
	c.SecretHash, _ = clientSecretHasher{}.Hash(context.Background(), []byte(secret)) // SHA-256 cannot fail
	c.SecretHashAlg = clientSecretHashAlg
	return c, secret, nil
}

// errorText is an error's message, or that of the *oauth.Error's description.
func errorText(err error) string {
	var oe *oauth.Error
	if errors.As(err, &oe) && oe.Description != "" {
		return oe.Description
	}
	return err.Error()
}
