package authz

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// metadata is the authorization server metadata of RFC 8414 §2, which OpenID
// Connect Discovery 1.0 §3 extends. Fields are omitted when empty: a document
// lists only endpoints and capabilities that exist.
type metadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint                     string   `json:"token_endpoint,omitempty"`
	JWKSURI                           string   `json:"jwks_uri"`
	RegistrationEndpoint              string   `json:"registration_endpoint,omitempty"`
	ScopesSupported                   []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ResponseModesSupported            []string `json:"response_modes_supported,omitempty"`
	GrantTypesSupported               []string `json:"grant_types_supported,omitempty"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	// RFC 8414 §2: the algorithms a private_key_jwt assertion may be
	// signed with (RFC 7523 §3), those fosite verifies.
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	RevocationEndpoint                         string   `json:"revocation_endpoint,omitempty"`
	RevocationAuthMethodsSupported             []string `json:"revocation_endpoint_auth_methods_supported,omitempty"`
	RevocationAuthSigningAlgValuesSupported    []string `json:"revocation_endpoint_auth_signing_alg_values_supported,omitempty"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint,omitempty"`
	IntrospectionAuthMethodsSupported          []string `json:"introspection_endpoint_auth_methods_supported,omitempty"`
	UserinfoEndpoint                           string   `json:"userinfo_endpoint,omitempty"`
	// RFC 7636 §6.2; MCP clients refuse to proceed without it, and only
	// S256 is offered (OAuth 2.1 §7.5.2).
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
	// RFC 9207 §3: every authorization response carries iss.
	AuthorizationResponseISSParameterSupported bool `json:"authorization_response_iss_parameter_supported"`
	// draft-ietf-oauth-client-id-metadata-document §4 (MCP 2025-11-25:
	// clients use a URL client_id only when this is true).
	ClientIDMetadataDocumentSupported bool `json:"client_id_metadata_document_supported,omitempty"`

	// OpenID Connect Discovery 1.0 §3; only in openid-configuration.
	SubjectTypesSupported            []string `json:"subject_types_supported,omitempty"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported,omitempty"`
	ClaimsSupported                  []string `json:"claims_supported,omitempty"`
}

// clientAssertionAlgs are the JWS algorithms fosite verifies a
// client_assertion with (fosite client_authentication.go): RSA, RSA-PSS and
// ECDSA; never HMAC (client_secret_jwt) or none.
var clientAssertionAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

// renderMetadata renders both discovery documents once, at start.
func (s *Server) renderMetadata() (as, oidc []byte, err error) {
	iss := s.cfg.Issuer
	scopes := make([]string, len(s.cfg.Scopes))
	for i, sc := range s.cfg.Scopes {
		scopes[i] = sc.Name
	}
	// Public clients authenticate with none; confidential ones with their
	// secret (RFC 7591 §2) or, like metadata-document clients with keys,
	// with a JWT signed by their key (RFC 7523 §2.2). MCP clients pick
	// none only if it is listed (peer-lessons §3 item 11).
	clientAuth := []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}
	md := metadata{
		Issuer:                            iss,
		AuthorizationEndpoint:             iss + "/authorize",
		TokenEndpoint:                     iss + "/token",
		JWKSURI:                           iss + "/jwks.json",
		RegistrationEndpoint:              iss + "/register",
		ScopesSupported:                   scopes,
		ResponseTypesSupported:            []string{"code"},
		ResponseModesSupported:            []string{"query"},
		GrantTypesSupported:               []string{"authorization_code", "refresh_token", "client_credentials"},
		TokenEndpointAuthMethodsSupported: clientAuth,
		TokenEndpointAuthSigningAlgValuesSupported: clientAssertionAlgs,
		RevocationEndpoint:                         iss + "/revoke",
		RevocationAuthMethodsSupported:             clientAuth,
		RevocationAuthSigningAlgValuesSupported:    clientAssertionAlgs,
		IntrospectionEndpoint:                      iss + "/introspect",
		// RFC 7662 §2.1: only confidential clients may introspect.
		IntrospectionAuthMethodsSupported:          []string{"client_secret_basic", "client_secret_post"},
		CodeChallengeMethodsSupported:              []string{"S256"},
		AuthorizationResponseISSParameterSupported: true,
		ClientIDMetadataDocumentSupported:          !s.cfg.CIMD.Disabled,
	}
	if as, err = json.Marshal(md); err != nil {
		return nil, nil, fmt.Errorf("render metadata: %w", err)
	}
	md.UserinfoEndpoint = iss + "/userinfo"
	md.SubjectTypesSupported = []string{"public"}
	md.IDTokenSigningAlgValuesSupported = []string{"ES256"}
	md.ClaimsSupported = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "preferred_username"}
	if oidc, err = json.Marshal(md); err != nil {
		return nil, nil, fmt.Errorf("render openid-configuration: %w", err)
	}
	return as, oidc, nil
}

func (s *Server) handleASMetadata(w http.ResponseWriter, r *http.Request) {
	writeDocument(w, s.asMetadata, "public, max-age=300")
}

func (s *Server) handleOIDCMetadata(w http.ResponseWriter, r *http.Request) {
	writeDocument(w, s.oidcMetadata, "public, max-age=300")
}

// handleJWKS serves the public keys, cacheable for JWKSMaxAge, which stays
// below the time a rotated-in key is published before it signs.
func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	writeDocument(w, s.keys.JWKS(), fmt.Sprintf("public, max-age=%d", int(s.cfg.JWKSMaxAge.Seconds())))
}

func writeDocument(w http.ResponseWriter, doc []byte, cacheControl string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", cacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(doc)
}
