package authz

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// Dynamic client registration (RFC 7591) and management (RFC 7592):
//
//	POST   /register              register; open, or with the initial access token
//	GET    /register/{client_id}  read     } authenticated by the registration
//	PUT    /register/{client_id}  replace  } access token returned at registration
//	DELETE /register/{client_id}  delete   } (Authorization: Bearer)
//
// plus the sweeper that deletes registered clients that never obtained a grant.

const (
	defaultUnusedClientTTL  = 7 * 24 * time.Hour
	defaultClientSweepEvery = time.Hour

	// Limits on client metadata. Real clients stay far below them; they keep
	// one registration from filling the database or the consent page.
	maxRedirectURIs    = 32
	maxContacts        = 10
	maxMetadataText    = 256 // client_name, software_id, software_version, a contact
	maxMetadataURI     = 2000
	maxClientIDInPath  = 512
	maxBearerTokenSize = 1024
)

// registration is the state of dynamic client registration.
type registration struct {
	// initialTokenHash is SHA-256 of Config.RegistrationToken, the RFC 7591
	// §3 initial access token; nil means open registration.
	initialTokenHash []byte
	// unusedClientTTL is how old a never-used registered client gets before
	// the sweeper deletes it; negative disables the sweeper.
	unusedClientTTL time.Duration
	// supported is the set of scope names the server supports.
	supported map[string]bool
	// noToken stands in for the stored hash when a client does not exist or
	// has no registration access token, so that the comparison takes the same
	// time and matches nothing: it is the hash of a random value never issued.
	noToken []byte
}

func (s *Server) initRegistration() error {
	reg := &registration{
		unusedClientTTL: s.cfg.UnusedClientTTL,
		supported:       make(map[string]bool, len(s.cfg.Scopes)),
		noToken:         regTokenHash(rand.Text()),
	}
	if reg.unusedClientTTL == 0 {
		reg.unusedClientTTL = defaultUnusedClientTTL
	}
	if s.cfg.RegistrationToken != "" {
		reg.initialTokenHash = regTokenHash(s.cfg.RegistrationToken)
	}
	for _, sc := range s.cfg.Scopes {
		reg.supported[sc.Name] = true
	}
	for _, sc := range s.cfg.DefaultScopes {
		if !reg.supported[sc] {
			return fmt.Errorf("authz: default scope %q is not among the supported scopes", sc)
		}
	}
	s.reg = reg
	return nil
}

func (s *Server) registrationRoutes(r chi.Router) {
	r.Group(func(r chi.Router) {
		// Browser-based clients (the MCP Inspector) register from any origin.
		r.Use(openCORS)
		preflight := func(http.ResponseWriter, *http.Request) {} // openCORS answers OPTIONS
		r.Post("/register", s.handle(s.handleRegister))
		r.Options("/register", preflight)
		r.Get("/register/{client_id}", s.handle(s.handleClientRead))
		r.Put("/register/{client_id}", s.handle(s.handleClientUpdate))
		r.Delete("/register/{client_id}", s.handle(s.handleClientDelete))
		r.Options("/register/{client_id}", preflight)
	})
}

// handleRegister is the client registration endpoint (RFC 7591 §3).
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if err := s.allow(ctx, w, s.limits.register, "register", clientIP(r)); err != nil {
		return err
	}
	if s.reg.initialTokenHash != nil {
		// RFC 7591 §3: the initial access token is an OAuth 2.0 bearer token
		// (RFC 6750); compare hashes, which have equal length, in constant time.
		tok, _ := bearerToken(r)
		if subtle.ConstantTimeCompare(regTokenHash(tok), s.reg.initialTokenHash) != 1 {
			return regInvalidToken(w, "registration requires a valid initial access token (Authorization: Bearer)")
		}
	}
	m, err := readClientMetadata(w, r)
	if err != nil {
		return err
	}
	c, err := s.clientFromMetadata(m)
	if err != nil {
		return err
	}
	if err := s.checkGrantPolicy(c); err != nil {
		return err
	}
	// RFC 7591 §3.2.1: a unique identifier; 130 random bits, base32.
	c.ID = rand.Text()
	c.Source = storage.SourceDCR
	c.Audiences = []string{s.cfg.MCPResource}
	var secret string
	if c.TokenEndpointAuthMethod != storage.AuthMethodNone {
		secret = s.setNewClientSecret(ctx, c)
	}
	regToken := newRegistrationToken()
	c.RegistrationTokenHash = regTokenHash(regToken)
	if err := s.db.CreateClient(ctx, c); err != nil {
		return fmt.Errorf("register client: %w", err)
	}
	s.log.InfoContext(ctx, "client registered", "client", c, "client_name", c.Metadata.ClientName,
		"application_type", c.Metadata.ApplicationType, "client_ip", clientIP(r))
	s.audit(r, storage.AuditEvent{Event: storage.EventClientRegistered, Actor: "client:" + c.ID, ClientID: c.ID,
		Details: clientAuditDetails(c)})
	return s.writeClientInformation(w, http.StatusCreated, c, secret, regToken)
}

// handleClientRead is the RFC 7592 §2.1 read request. The secret is not
// returned (only its hash is stored), nor a new registration access token.
func (s *Server) handleClientRead(w http.ResponseWriter, r *http.Request) error {
	c, _, err := s.registeredClient(w, r)
	if err != nil {
		return err
	}
	return s.writeClientInformation(w, http.StatusOK, c, "", "")
}

// handleClientUpdate is the RFC 7592 §2.2 update request: the metadata sent
// replaces the registered metadata (what is left out takes its default), and
// the registration access token is rotated.
func (s *Server) handleClientUpdate(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	old, tokHash, err := s.registeredClient(w, r)
	if err != nil {
		return err
	}
	m, err := readClientMetadata(w, r)
	if err != nil {
		return err
	}
	// RFC 7592 §2.2: the request carries the current client_id, and a
	// client_secret, if sent, must be the current one: a client cannot choose
	// its own secret.
	if m.ClientID != old.ID {
		return metadataError(oauth.InvalidClientMetadata, "client_id must be present and equal the client's identifier")
	}
	if m.ClientSecret != nil {
		if old.SecretHash == nil || (clientSecretHasher{}).Compare(ctx, old.SecretHash, []byte(*m.ClientSecret)) != nil {
			return metadataError(oauth.InvalidClientMetadata, "client_secret does not match the current secret; leave it out, a client cannot set its secret")
		}
	}
	c, err := s.clientFromMetadata(m)
	if err != nil {
		return err
	}
	if err := s.checkGrantPolicy(c); err != nil {
		return err
	}
	c.ID, c.Source, c.Audiences = old.ID, old.Source, old.Audiences
	c.LastUsedAt, c.DisabledAt = old.LastUsedAt, old.DisabledAt
	var secret string
	switch {
	case c.TokenEndpointAuthMethod == storage.AuthMethodNone:
		// Now public: the secret is dropped (the schema forbids one).
	case old.SecretHash != nil:
		// Still confidential: the secret stays.
		c.SecretHash, c.SecretHashAlg = old.SecretHash, old.SecretHashAlg
		c.RotatedSecretHashes, c.SecretExpiresAt = old.RotatedSecretHashes, old.SecretExpiresAt
	default:
		// Public until now: issue its first secret, shown in this response only.
		secret = s.setNewClientSecret(ctx, c)
	}
	regToken := newRegistrationToken()
	c.RegistrationTokenHash = regTokenHash(regToken)
	if err := s.db.UpdateRegisteredClient(ctx, c, tokHash); errors.Is(err, storage.ErrNotFound) {
		// Deleted, or a concurrent update already rotated the token.
		return regInvalidToken(w, regTokenProblem)
	} else if err != nil {
		return fmt.Errorf("update registered client: %w", err)
	}
	s.log.InfoContext(ctx, "registered client updated", "client", c)
	s.audit(r, storage.AuditEvent{Event: storage.EventClientUpdated, Actor: "client:" + c.ID, ClientID: c.ID,
		Details: clientAuditDetails(c)})
	return s.writeClientInformation(w, http.StatusOK, c, secret, regToken)
}

// handleClientDelete is the RFC 7592 §2.3 delete request. The client's codes,
// tokens and consents go with it (foreign keys cascade).
func (s *Server) handleClientDelete(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c, _, err := s.registeredClient(w, r)
	if err != nil {
		return err
	}
	if err := s.db.DeleteClient(ctx, c.ID); errors.Is(err, storage.ErrNotFound) {
		return regInvalidToken(w, regTokenProblem)
	} else if err != nil {
		return fmt.Errorf("delete registered client: %w", err)
	}
	s.log.InfoContext(ctx, "registered client deleted", "client", c)
	s.audit(r, storage.AuditEvent{Event: storage.EventClientDeleted, Actor: "client:" + c.ID, ClientID: c.ID,
		Details: map[string]any{"client_name": c.Metadata.ClientName}})
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// regTokenProblem is the one description of every failed RFC 7592
// authentication, whatever failed.
const regTokenProblem = "invalid or missing registration access token"

// registeredClient authenticates an RFC 7592 request: the client named in the
// path and the registration access token in the Authorization header. It
// returns the client and the hash of the token. An unknown client, a client
// without a registration access token (created by an administrator), a
// disabled one and a wrong or missing token all give the same 401 after the
// same work (RFC 7592 §2: an unknown client is 401, like a bad token, so
// client ids cannot be probed).
func (s *Server) registeredClient(w http.ResponseWriter, r *http.Request) (*storage.Client, []byte, error) {
	ctx := r.Context()
	id := chi.URLParam(r, "client_id")
	tok, hasToken := bearerToken(r)
	given := regTokenHash(tok)

	var c *storage.Client
	// A client id is text; bytes PostgreSQL would refuse are no client.
	if len(id) <= maxClientIDInPath && utf8.ValidString(id) && !strings.ContainsRune(id, 0) {
		var err error
		c, err = s.db.Client(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			c = nil
		} else if err != nil {
			return nil, nil, fmt.Errorf("registration management: %w", err)
		}
	}
	stored := s.reg.noToken
	if c != nil && len(c.RegistrationTokenHash) == len(given) && c.DisabledAt == nil {
		stored = c.RegistrationTokenHash
	}
	// RFC 6750 §3.1 and RFC 7592 §2: compared in constant time.
	if subtle.ConstantTimeCompare(given, stored) != 1 || !hasToken || c == nil {
		return nil, nil, regInvalidToken(w, regTokenProblem)
	}
	return c, given, nil
}

// bearerToken returns the RFC 6750 §2.1 bearer token of the request's
// Authorization header (scheme case-insensitive, RFC 9110 §11.1), or false
// when there is none or it is not a b64token.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	// RFC 7235 §2.1: the scheme is case-insensitive.
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || len(tok) > maxBearerTokenSize {
		return "", false
	}
	// RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0) {
			return "", false
		}
	}
	return tok, true
}

// regInvalidToken is the RFC 6750 §3.1 answer to a missing or wrong bearer
// token on the registration endpoints: 401 with WWW-Authenticate.
func regInvalidToken(w http.ResponseWriter, description string) error {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	return &oauth.Error{Code: oauth.InvalidToken, Description: description, Status: http.StatusUnauthorized}
}

// setNewClientSecret gives c a fresh secret and returns it, to be shown once.
func (s *Server) setNewClientSecret(ctx context.Context, c *storage.Client) string {
	secret := newClientSecret()
	c.SecretHash, _ = clientSecretHasher{}.Hash(ctx, []byte(secret)) // SHA-256 cannot fail
	c.SecretHashAlg = clientSecretHashAlg
	c.RotatedSecretHashes, c.SecretExpiresAt = nil, nil
	return secret
}

// clientMetadataRequest is the RFC 7591 §2 client metadata a client sends.
// Fields not listed are ignored (RFC 7591 §2: "The authorization server MUST
// ignore any client metadata sent by the client that it does not
// understand"), and so is software_statement, which this server does not
// verify. A JSON null is the same as an absent field.
type clientMetadataRequest struct {
	RedirectURIs            []string        `json:"redirect_uris"`
	TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method"`
	GrantTypes              []string        `json:"grant_types"`
	ResponseTypes           []string        `json:"response_types"`
	ApplicationType         string          `json:"application_type"`
	ClientName              string          `json:"client_name"`
	ClientURI               string          `json:"client_uri"`
	LogoURI                 string          `json:"logo_uri"`
	Scope                   string          `json:"scope"`
	Contacts                []string        `json:"contacts"`
	TOSURI                  string          `json:"tos_uri"`
	PolicyURI               string          `json:"policy_uri"`
	SoftwareID              string          `json:"software_id"`
	SoftwareVersion         string          `json:"software_version"`
	JWKSURI                 string          `json:"jwks_uri"`
	JWKS                    json.RawMessage `json:"jwks"`

	// RFC 7592 §2.2, in an update only.
	ClientID     string  `json:"client_id"`
	ClientSecret *string `json:"client_secret"`
}

// readClientMetadata reads the JSON body of a registration or update request.
func readClientMetadata(w http.ResponseWriter, r *http.Request) (*clientMetadataRequest, error) {
	// RFC 7591 §3.1: the metadata is sent as application/json. A wrong type is
	// a registration error, which RFC 7591 §3.2.2 answers with 400.
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, metadataError(oauth.InvalidClientMetadata, "the request body must be client metadata as JSON (Content-Type: application/json)")
	}
	return decodeClientMetadata(http.MaxBytesReader(w, r.Body, maxFormBytes))
}

// decodeClientMetadata decodes one JSON object and nothing after it.
func decodeClientMetadata(body io.Reader) (*clientMetadataRequest, error) {
	dec := json.NewDecoder(body)
	var m clientMetadataRequest
	err := dec.Decode(&m)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = terr
			if err == nil {
				err = errors.New("data after the JSON object")
			}
		}
	}
	if err == nil {
		return &m, nil
	}
	var (
		tooBig    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooBig):
		return nil, err // handle answers 413
	case errors.Is(err, io.EOF):
		return nil, &oauth.Error{Code: oauth.InvalidClientMetadata, Description: "empty request body; send the client metadata as a JSON object", Err: err}
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return nil, &oauth.Error{Code: oauth.InvalidClientMetadata, Description: "the client metadata must be a JSON object", Err: err}
	case errors.As(err, &typeErr):
		return nil, &oauth.Error{Code: oauth.InvalidClientMetadata, Err: err,
			Description: regSanitize(fmt.Sprintf("%s: %s where %s was expected", typeErr.Field, typeErr.Value, jsonKind(typeErr.Type)))}
	case errors.As(err, &syntaxErr):
		return nil, &oauth.Error{Code: oauth.InvalidClientMetadata, Err: err,
			Description: fmt.Sprintf("malformed JSON at byte %d", syntaxErr.Offset)}
	default:
		return nil, &oauth.Error{Code: oauth.InvalidClientMetadata, Description: "malformed JSON", Err: err}
	}
}

// jsonKind names the JSON type a Go type decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array of strings"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	default:
		return "a JSON " + t.Kind().String()
	}
}

// clientFromMetadata validates the metadata a client sent and turns it into a
// client record (without id, secret or registration token).
// checkGrantPolicy refuses what this server does not let a registration
// have. A client_credentials token involves no user: with open
// registration anyone on the network could mint one and call the tools, so
// only registrations authenticated by the initial access token (RFC 7591 §3)
// may have the grant; otherwise administrators create such clients.
func (s *Server) checkGrantPolicy(c *storage.Client) error {
	if slices.Contains(c.GrantTypes, "client_credentials") && s.reg.initialTokenHash == nil {
		return metadataError(oauth.InvalidClientMetadata,
			"the client_credentials grant is available only when registration requires an initial access token; ask the administrator for a client")
	}
	return nil
}

func (s *Server) clientFromMetadata(m *clientMetadataRequest) (*storage.Client, error) {
	// jwks, jwks_uri and private_key_jwt arrive with another feature.
	if len(m.JWKS) > 0 && string(m.JWKS) != "null" {
		return nil, metadataError(oauth.InvalidClientMetadata, "jwks is not supported by this server")
	}
	if m.JWKSURI != "" {
		return nil, metadataError(oauth.InvalidClientMetadata, "jwks_uri is not supported by this server")
	}

	c := &storage.Client{}

	// OpenID Connect Registration §2 / MCP: application_type, default web.
	switch m.ApplicationType {
	case "", "web":
		c.Metadata.ApplicationType = "web"
	case "native":
		c.Metadata.ApplicationType = "native"
	default:
		return nil, metadataError(oauth.InvalidClientMetadata, "application_type must be web or native, not %s", regQuote(m.ApplicationType))
	}
	native := c.Metadata.ApplicationType == "native"

	// RFC 7591 §2: token_endpoint_auth_method, default client_secret_basic.
	switch m.TokenEndpointAuthMethod {
	case "":
		c.TokenEndpointAuthMethod = storage.AuthMethodClientSecretBasic
	case storage.AuthMethodNone, storage.AuthMethodClientSecretBasic, storage.AuthMethodClientSecretPost:
		c.TokenEndpointAuthMethod = m.TokenEndpointAuthMethod
	default:
		return nil, metadataError(oauth.InvalidClientMetadata,
			"token_endpoint_auth_method %s is not supported; use none, client_secret_basic or client_secret_post", regQuote(m.TokenEndpointAuthMethod))
	}
	public := c.TokenEndpointAuthMethod == storage.AuthMethodNone

	// RFC 7591 §2: grant_types, default authorization_code. OAuth 2.1 has no
	// implicit or password grant.
	grants := m.GrantTypes
	if len(grants) == 0 {
		grants = []string{"authorization_code"}
	}
	for _, g := range grants {
		switch g {
		case "authorization_code", "refresh_token", "client_credentials":
			if !slices.Contains(c.GrantTypes, g) {
				c.GrantTypes = append(c.GrantTypes, g)
			}
		default:
			return nil, metadataError(oauth.InvalidClientMetadata,
				"grant type %s is not supported; use authorization_code, refresh_token or client_credentials", regQuote(g))
		}
	}
	codeGrant := slices.Contains(c.GrantTypes, "authorization_code")
	if slices.Contains(c.GrantTypes, "refresh_token") && !codeGrant {
		return nil, metadataError(oauth.InvalidClientMetadata, "the refresh_token grant needs the authorization_code grant, which issues refresh tokens")
	}
	// OAuth 2.1 §4.2: client credentials only for confidential clients.
	if public && slices.Contains(c.GrantTypes, "client_credentials") {
		return nil, metadataError(oauth.InvalidClientMetadata,
			"the client_credentials grant needs a confidential client (token_endpoint_auth_method client_secret_basic or client_secret_post)")
	}

	// RFC 7591 §2 and §2.1: response_types, default code, consistent with
	// the grant types.
	for _, rt := range m.ResponseTypes {
		if rt != "code" {
			return nil, metadataError(oauth.InvalidClientMetadata, "response type %s is not supported; use code", regQuote(rt))
		}
	}
	switch {
	case len(m.ResponseTypes) > 0 && !codeGrant:
		return nil, metadataError(oauth.InvalidClientMetadata, "response type code needs the authorization_code grant (RFC 7591 §2.1)")
	case codeGrant:
		c.ResponseTypes = []string{"code"}
	}

	// Redirect URIs: OAuth 2.1 §2.3.1 and RFC 8252 (see oauth.ValidateRedirectURI).
	if codeGrant && len(m.RedirectURIs) == 0 {
		return nil, metadataError(oauth.InvalidRedirectURI, "redirect_uris is required for the authorization_code grant")
	}
	if len(m.RedirectURIs) > maxRedirectURIs {
		return nil, metadataError(oauth.InvalidRedirectURI, "more than %d redirect_uris", maxRedirectURIs)
	}
	for _, u := range m.RedirectURIs {
		if err := oauth.ValidateRedirectURI(u, native); err != nil {
			return nil, metadataError(oauth.InvalidRedirectURI, "redirect URI %s: %s", regQuote(u), err.Error())
		}
		if !slices.Contains(c.RedirectURIs, u) {
			c.RedirectURIs = append(c.RedirectURIs, u)
		}
	}

	// The registered scope is a hint, not an allow-list (DESIGN §4): what the
	// server does not support is dropped, not refused (DR-4); nothing left
	// means the default scopes.
	requested, err := oauth.ParseScope(m.Scope)
	if err != nil {
		return nil, metadataError(oauth.InvalidClientMetadata, "scope: %s", err.Error())
	}
	for _, sc := range requested {
		if s.reg.supported[sc] {
			c.Scopes = append(c.Scopes, sc)
		}
	}
	if len(c.Scopes) == 0 {
		c.Scopes = slices.Clone(s.cfg.DefaultScopes)
	}

	// Descriptive metadata, shown to people on the consent page.
	for _, f := range []struct {
		name string
		val  string
		dst  *string
	}{
		{"client_name", m.ClientName, &c.Metadata.ClientName},
		{"software_id", m.SoftwareID, &c.Metadata.SoftwareID},
		{"software_version", m.SoftwareVersion, &c.Metadata.SoftwareVersion},
	} {
		if err := checkMetadataText(f.name, f.val); err != nil {
			return nil, err
		}
		*f.dst = f.val
	}
	for _, f := range []struct {
		name string
		val  string
		dst  *string
	}{
		{"client_uri", m.ClientURI, &c.Metadata.ClientURI},
		{"logo_uri", m.LogoURI, &c.Metadata.LogoURI},
		{"tos_uri", m.TOSURI, &c.Metadata.TOSURI},
		{"policy_uri", m.PolicyURI, &c.Metadata.PolicyURI},
	} {
		if err := checkMetadataURI(f.name, f.val); err != nil {
			return nil, err
		}
		*f.dst = f.val
	}
	if len(m.Contacts) > maxContacts {
		return nil, metadataError(oauth.InvalidClientMetadata, "more than %d contacts", maxContacts)
	}
	for _, ct := range m.Contacts {
		if ct == "" {
			return nil, metadataError(oauth.InvalidClientMetadata, "contacts: empty entry")
		}
		if err := checkMetadataText("contacts", ct); err != nil {
			return nil, err
		}
		if !slices.Contains(c.Metadata.Contacts, ct) {
			c.Metadata.Contacts = append(c.Metadata.Contacts, ct)
		}
	}
	return c, nil
}

// checkMetadataText checks a human-readable metadata string: bounded, and no
// control or bidirectional-override characters, which could disguise the
// client's name on the consent page.
func checkMetadataText(field, v string) error {
	if len(v) > maxMetadataText {
		return metadataError(oauth.InvalidClientMetadata, "%s is longer than %d bytes", field, maxMetadataText)
	}
	for _, r := range v {
		if unicode.IsControl(r) || isBidiControl(r) {
			return metadataError(oauth.InvalidClientMetadata, "%s contains a control character", field)
		}
	}
	return nil
}

func isBidiControl(r rune) bool {
	return r == '\u061c' || r == '\u200e' || r == '\u200f' ||
		r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069'
}

// checkMetadataURI checks client_uri, logo_uri, tos_uri and policy_uri: an
// absolute https URL, or http on a loopback host (like redirect URIs), with
// no user information. Empty means absent.
func checkMetadataURI(field, v string) error {
	if v == "" {
		return nil
	}
	bad := func(why string) error {
		return metadataError(oauth.InvalidClientMetadata, "%s %s", field, why)
	}
	if len(v) > maxMetadataURI {
		return bad(fmt.Sprintf("is longer than %d bytes", maxMetadataURI))
	}
	for _, r := range v {
		if r <= ' ' || r >= 0x7f || r == '\\' {
			return bad("contains white space, control, non-ASCII or backslash characters; percent-encode them")
		}
	}
	u, err := url.Parse(v)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Hostname() == "" {
		return bad("must be an absolute https URL")
	}
	if u.User != nil {
		return bad("must not contain user information")
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !oauth.IsLoopbackHost(u.Hostname()) {
			return bad("must use https (http only on a loopback host)")
		}
	default:
		return bad("must be an https URL")
	}
	return nil
}

// clientInformation is the RFC 7591 §3.2.1 / RFC 7592 §3 client information
// response. Absent optional metadata is left out, never sent as "", null or
// [] (the MCP TypeScript SDK rejects "client_uri": "" and "contacts": null).
// redirect_uris is always present: that SDK's schema requires the array.
type clientInformation struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at,omitempty"`
	RegistrationAccessToken string   `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string   `json:"registration_client_uri"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	// The descriptive metadata, inline, each member omitted when absent.
	storage.ClientMetadata
}

// writeClientInformation writes the client information response; secret and
// regToken are included when not empty (they are shown once, when issued).
func (s *Server) writeClientInformation(w http.ResponseWriter, status int, c *storage.Client, secret, regToken string) error {
	info := clientInformation{
		ClientID:                c.ID,
		ClientSecret:            secret,
		ClientIDIssuedAt:        c.CreatedAt.Unix(),
		RegistrationAccessToken: regToken,
		RegistrationClientURI:   s.cfg.Issuer + "/register/" + url.PathEscape(c.ID),
		RedirectURIs:            c.RedirectURIs,
		TokenEndpointAuthMethod: c.TokenEndpointAuthMethod,
		GrantTypes:              c.GetGrantTypes(),
		ResponseTypes:           c.ResponseTypes,
		Scope:                   oauth.FormatScope(c.Scopes),
		ClientMetadata:          c.Metadata,
	}
	if info.RedirectURIs == nil {
		info.RedirectURIs = []string{}
	}
	if c.SecretHash != nil {
		// RFC 7591 §3.2.1: REQUIRED when a secret is issued; 0 = never expires.
		var exp int64
		if c.SecretExpiresAt != nil {
			exp = c.SecretExpiresAt.Unix()
		}
		info.ClientSecretExpiresAt = &exp
	}
	body, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("encode client information: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// RFC 7591 §3.2.1 / RFC 6749 §5.1: the response carries credentials.
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

// metadataError is a registration error (RFC 7591 §3.2.2) whose description
// is made safe to send.
func metadataError(code, format string, args ...any) *oauth.Error {
	return &oauth.Error{Code: code, Description: regSanitize(fmt.Sprintf(format, args...))}
}

// regQuote quotes a value sent by the client for an error description,
// shortened so a long value does not come back whole.
func regQuote(v string) string {
	const max = 80
	if len(v) > max {
		v = v[:max] + "..."
	}
	return "'" + v + "'"
}

// regSanitize keeps an error description within the characters RFC 6749
// §5.2 allows (%x20-21 / %x23-5B / %x5D-7E): double quotes become single
// quotes, anything else outside the set becomes '?'. It also bounds the length.
func regSanitize(d string) string {
	const max = 400
	b := make([]byte, 0, min(len(d), max))
	for i := 0; i < len(d) && len(b) < max; i++ {
		switch c := d[i]; {
		case c == '"':
			b = append(b, '\'')
		case c < 0x20 || c > 0x7e || c == '\\':
			b = append(b, '?')
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// RunClientSweeper deletes, now and then every interval (an hour if every <=
// 0), the dynamically registered clients older than Config.UnusedClientTTL
// (default 7 days) that never obtained a grant, until ctx is done. Clients
// with live codes, tokens or consents, or marked used, are never touched
// (storage.DeleteUnusedClients). A negative UnusedClientTTL disables it.
func (s *Server) RunClientSweeper(ctx context.Context, every time.Duration) {
	if s.reg.unusedClientTTL < 0 {
		return
	}
	if every <= 0 {
		every = defaultClientSweepEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := s.db.DeleteUnusedClients(ctx, s.cfg.Now().Add(-s.reg.unusedClientTTL))
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			s.log.ErrorContext(ctx, "sweep of unused clients failed", "err", err)
		case n > 0:
			s.log.InfoContext(ctx, "deleted unused registered clients", "clients", n, "unused_for", s.reg.unusedClientTTL.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
