package authz

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v3"
	"golang.org/x/sync/singleflight"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// CIMDConfig configures Client ID Metadata Documents
// (draft-ietf-oauth-client-id-metadata-document): a client_id that is an
// https URL names a JSON document describing the client, which the server
// fetches (through the guarded fetcher, fetch.go), validates and caches in
// PostgreSQL.
type CIMDConfig struct {
	// Disabled: client_id URLs are not resolved.
	Disabled bool
	// AllowHTTPLoopback allows http:// documents on loopback hosts, and
	// dialling loopback addresses (mcpauth dev, local clients, tests).
	AllowHTTPLoopback bool
	// AllowPrivateNetworks allows loopback, private (RFC 1918, ULA),
	// link-local and other special-purpose targets (tests, private
	// deployments). Multicast and unspecified addresses are never allowed.
	AllowPrivateNetworks bool
	// MinCacheAge and MaxCacheAge clamp the freshness a document's
	// Cache-Control / Expires gives it; defaults 5m and 24h.
	MinCacheAge, MaxCacheAge time.Duration
	// NegativeCacheAge is how long a failed fetch or an invalid document is
	// remembered (and answered without fetching); default 1m.
	NegativeCacheAge time.Duration
	// Allow and Deny are URL prefixes ("https://app.example/clients/") or
	// domains ("example.com" matches it and its subdomains). Deny wins; an
	// empty Allow allows every URL Deny does not name.
	Allow, Deny []string
	// Transport is for tests: e.g. a transport whose TLS config trusts a
	// test CA. Only its TLS settings are used; the guard still applies.
	Transport *http.Transport
	// Resolver is for tests: name resolution of the fetcher's dialler.
	Resolver *net.Resolver

	// allowAddrs are exact addresses the guard lets through (tests in this
	// package: the test server, while every other loopback stays blocked).
	allowAddrs []netip.AddrPort
}

// Defaults of CIMDConfig.
const (
	defaultCIMDMinCacheAge      = 5 * time.Minute
	defaultCIMDMaxCacheAge      = 24 * time.Hour
	defaultCIMDNegativeCacheAge = time.Minute
	maxClientIDURLLen           = 2000
	maxDocRedirectURIs          = 20
	maxDocStringLen             = 1000
	maxDocJWKSKeys              = 16
)

// cimdService is the state of the metadata document feature.
type cimdService struct {
	cfg   CIMDConfig
	fetch *fetcher
	group singleflight.Group // one fetch per URL at a time, per replica
}

func (s *Server) initCIMD() error {
	cfg := s.cfg.CIMD
	if cfg.MinCacheAge <= 0 {
		cfg.MinCacheAge = defaultCIMDMinCacheAge
	}
	if cfg.MaxCacheAge <= 0 {
		cfg.MaxCacheAge = defaultCIMDMaxCacheAge
	}
	if cfg.MaxCacheAge < cfg.MinCacheAge {
		return fmt.Errorf("authz: CIMD MaxCacheAge %s is below MinCacheAge %s", cfg.MaxCacheAge, cfg.MinCacheAge)
	}
	if cfg.NegativeCacheAge <= 0 {
		cfg.NegativeCacheAge = defaultCIMDNegativeCacheAge
	}
	for _, p := range slices.Concat(cfg.Allow, cfg.Deny) {
		if strings.TrimSpace(p) == "" {
			return errors.New("authz: empty entry in the CIMD allow or deny list")
		}
	}
	s.cimd = &cimdService{cfg: cfg, fetch: newFetcher(cfg)}
	return nil
}

// fetcher is the server's one guarded fetcher, for metadata documents and
// clients' jwks_uri.
func (s *Server) fetcher() *fetcher { return s.cimd.fetch }

// isClientIDURL reports whether id has the shape of a metadata document
// client id (CIMD §3): an https URL (or http on a loopback host, which
// metadataClient accepts only when configured to) with a path other than
// "/", no fragment, no user information, no dot segments. Whether it may be
// fetched is metadataClient's business.
func isClientIDURL(id string) bool {
	if len(id) > maxClientIDURLLen || !(strings.HasPrefix(id, "https://") || strings.HasPrefix(id, "http://")) {
		return false
	}
	if strings.ContainsAny(id, "#\\ \t\r\n") || !utf8.ValidString(id) {
		return false
	}
	u, err := url.Parse(id)
	if err != nil || u.User != nil || u.Hostname() == "" || u.Opaque != "" || u.Fragment != "" {
		return false
	}
	if u.Scheme == "http" && !oauth.IsLoopbackHost(u.Hostname()) {
		return false
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return false
		}
	}
	p := u.EscapedPath()
	if p == "" || p == "/" {
		return false
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." || strings.EqualFold(seg, "%2e") || strings.EqualFold(seg, "%2e%2e") ||
			strings.EqualFold(seg, ".%2e") || strings.EqualFold(seg, "%2e.") {
			return false
		}
	}
	return true
}

// metadataClient returns the client a metadata document URL names: the
// cached copy while it is fresh (PostgreSQL, shared by every replica), else
// the document fetched, validated and stored as an oauth_clients row with
// source "cimd" (tokens reference it by foreign key). A bad or unreachable
// document gives an *oauth.Error (invalid_client, with a description safe to
// show), which is remembered for NegativeCacheAge and answered again without
// fetching. A client with this id registered another way (an administrator's
// pre-registration) is returned as it is, never fetched. A client an
// administrator disabled gives invalid_client.
func (s *Server) metadataClient(ctx context.Context, clientID string) (*storage.Client, error) {
	cfg := s.cimd.cfg
	if cfg.Disabled {
		return nil, cimdError("this server does not accept client ID metadata documents", nil)
	}
	if !isClientIDURL(clientID) {
		return nil, cimdError("the client_id is not a valid client ID metadata document URL", nil)
	}
	now := s.cfg.Now()
	c, doc, err := s.db.CIMDClient(ctx, clientID)
	switch {
	case err == nil && doc == nil:
		return c, checkDisabled(c) // pre-registered: the registration wins
	case err == nil && !s.cimdAllowed(clientID):
		return nil, cimdError("this application's metadata document URL is blocked by the server's policy", nil)
	case err == nil && now.Before(doc.ExpiresAt):
		return c, checkDisabled(c)
	case err != nil && !errors.Is(err, storage.ErrNotFound):
		return nil, err
	}
	// Policy first: a blocked URL is never fetched.
	if u, _ := url.Parse(clientID); u.Scheme == "http" && !cfg.AllowHTTPLoopback {
		return nil, cimdError("the client ID metadata document must be served over https", nil)
	}
	if !s.cimdAllowed(clientID) {
		return nil, cimdError("this application's metadata document URL is blocked by the server's policy", nil)
	}
	hash := sha256.Sum256([]byte(clientID))
	if f, err := s.db.CIMDFailure(ctx, hash[:], now); err == nil {
		return nil, &oauth.Error{Code: f.Code, Description: f.Description}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}

	// One fetch per URL at a time: concurrent first requests share it. It
	// runs on a context of its own (the fetcher has its own deadline): one
	// caller going away must fail no other, and the row must not be written
	// in the first caller's transaction, which may roll back.
	ch := s.cimd.group.DoChan(clientID, func() (any, error) {
		return s.refreshMetadataClient(context.Background(), clientID, hash[:])
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		c := *r.Val.(*storage.Client) // a copy per caller
		return &c, checkDisabled(&c)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// refreshMetadataClient fetches and validates the document and stores the
// client, or records the failure in the negative cache.
func (s *Server) refreshMetadataClient(ctx context.Context, clientID string, hash []byte) (*storage.Client, error) {
	now := s.cfg.Now()
	c, expires, err := s.fetchMetadataClient(ctx, clientID, now)
	if err != nil {
		var oe *oauth.Error
		if errors.As(err, &oe) {
			s.log.WarnContext(ctx, "client metadata document refused", "client_id", clientID, "err", err)
			f := storage.CIMDFailure{Code: oe.Code, Description: oe.Description, ExpiresAt: now.Add(s.cimd.cfg.NegativeCacheAge)}
			// Expired entries go on the write path: anyone can add
			// failures (one per URL they make up), so they must not pile up.
			if err := s.db.DeleteCIMDFailures(ctx, nil, now); err != nil {
				s.log.ErrorContext(ctx, "delete expired client metadata document failures", "err", err)
			}
			if err := s.db.SaveCIMDFailure(ctx, hash, f); err != nil {
				s.log.ErrorContext(ctx, "save client metadata document failure", "client_id", clientID, "err", err)
			}
		}
		return nil, err
	}
	if err := s.db.SaveCIMDClient(ctx, c, storage.CIMDDocument{FetchedAt: now, ExpiresAt: expires}); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return nil, cimdError("another client is registered with this client_id", err)
		}
		return nil, err
	}
	if err := s.db.DeleteCIMDFailures(ctx, hash, now); err != nil {
		s.log.ErrorContext(ctx, "delete client metadata document failures", "err", err)
	}
	return c, nil
}

// fetchMetadataClient fetches and validates the document and returns the
// client it describes and until when it is fresh.
func (s *Server) fetchMetadataClient(ctx context.Context, clientID string, now time.Time) (*storage.Client, time.Time, error) {
	body, header, err := s.cimd.fetch.get(ctx, clientID, maxMetadataDocSize)
	if err != nil {
		return nil, time.Time{}, cimdError("the client ID metadata document could not be fetched: "+fetchErrorDescription(err), err)
	}
	doc, err := parseClientDocument(clientID, body)
	if err != nil {
		return nil, time.Time{}, cimdError("the client ID metadata document is invalid: "+err.Error(), nil)
	}
	c, err := s.documentClient(doc)
	if err != nil {
		return nil, time.Time{}, cimdError("the client ID metadata document is invalid: "+err.Error(), nil)
	}
	age := cacheAge(header, now)
	age = max(s.cimd.cfg.MinCacheAge, min(age, s.cimd.cfg.MaxCacheAge))
	return c, now.Add(age), nil
}

func cimdError(desc string, cause error) *oauth.Error {
	return &oauth.Error{Code: oauth.InvalidClient, Description: desc, Status: 400, Err: cause}
}

func checkDisabled(c *storage.Client) error {
	if c.DisabledAt != nil {
		return cimdError("this application was blocked by the server's administrator", nil)
	}
	return nil
}

// cimdAllowed applies the allow and deny lists to a client id URL. An entry
// with "://" is a URL prefix; any other is a domain, matching itself and its
// subdomains. Deny wins; an empty Allow allows everything not denied.
func (s *Server) cimdAllowed(clientID string) bool {
	cfg := s.cimd.cfg
	if slices.ContainsFunc(cfg.Deny, func(p string) bool { return policyMatch(p, clientID) }) {
		return false
	}
	return len(cfg.Allow) == 0 || slices.ContainsFunc(cfg.Allow, func(p string) bool { return policyMatch(p, clientID) })
}

func policyMatch(entry, clientID string) bool {
	if strings.Contains(entry, "://") {
		return strings.HasPrefix(clientID, entry)
	}
	u, err := url.Parse(clientID)
	if err != nil {
		return false
	}
	host := strings.ToLower(u.Hostname())
	domain := strings.ToLower(strings.Trim(entry, "."))
	return host == domain || strings.HasSuffix(host, "."+domain)
}

// cacheAge is the freshness lifetime a response's headers give it (RFC 9111
// §4.2.1): s-maxage or max-age, else Expires minus Date (or now); no-store
// and no-cache give 0. Without any, 0: the caller's minimum applies.
func cacheAge(h http.Header, now time.Time) time.Duration {
	var maxAge, sMaxAge = -1, -1
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			val = strings.Trim(val, `"`)
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return 0
			case "max-age":
				if n, err := strconv.Atoi(val); err == nil && n >= 0 {
					maxAge = n
				}
			case "s-maxage":
				if n, err := strconv.Atoi(val); err == nil && n >= 0 {
					sMaxAge = n
				}
			}
		}
	}
	switch {
	case sMaxAge >= 0:
		return time.Duration(min(sMaxAge, 1<<30)) * time.Second
	case maxAge >= 0:
		return time.Duration(min(maxAge, 1<<30)) * time.Second
	}
	if e := h.Get("Expires"); e != "" {
		exp, err := http.ParseTime(e)
		if err != nil {
			return 0 // RFC 9111 §5.3: an invalid Expires is in the past
		}
		base := now
		if d, err := http.ParseTime(h.Get("Date")); err == nil {
			base = d
		}
		return max(0, exp.Sub(base))
	}
	return 0
}

// clientDocument is a Client ID Metadata Document: RFC 7591 §2 client
// metadata. Unknown fields are ignored.
type clientDocument struct {
	ClientID                    string          `json:"client_id"`
	ClientName                  string          `json:"client_name"`
	RedirectURIs                []string        `json:"redirect_uris"`
	ClientURI                   string          `json:"client_uri,omitempty"`
	LogoURI                     string          `json:"logo_uri,omitempty"`
	TOSURI                      string          `json:"tos_uri,omitempty"`
	PolicyURI                   string          `json:"policy_uri,omitempty"`
	SoftwareID                  string          `json:"software_id,omitempty"`
	SoftwareVersion             string          `json:"software_version,omitempty"`
	Contacts                    []string        `json:"contacts,omitempty"`
	ApplicationType             string          `json:"application_type,omitempty"`
	GrantTypes                  []string        `json:"grant_types,omitempty"`
	ResponseTypes               []string        `json:"response_types,omitempty"`
	Scope                       string          `json:"scope,omitempty"`
	TokenEndpointAuthMethod     string          `json:"token_endpoint_auth_method,omitempty"`
	TokenEndpointAuthSigningAlg string          `json:"token_endpoint_auth_signing_alg,omitempty"`
	JWKSURI                     string          `json:"jwks_uri,omitempty"`
	JWKS                        json.RawMessage `json:"jwks,omitempty"`
	// AuthMethods is the list of methods the client supports, as RP
	// Metadata Choices documents carry it (ChatGPT's offers private_key_jwt
	// and none; peer-lessons §3 item 11).
	AuthMethods []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	// AuthMethodsAlt is the same list under the name some documents use.
	AuthMethodsAlt []string `json:"token_endpoint_auth_methods,omitempty"`
}

// signingAlgs are the token_endpoint_auth_signing_alg values accepted for
// private_key_jwt (RFC 7518 §3.1, no "none", no HMAC).
var signingAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

// parseClientDocument decodes and validates a metadata document fetched from
// url (CIMD §4, RFC 7591 §2). The errors are safe to show.
func parseClientDocument(url string, body []byte) (*clientDocument, error) {
	fields, err := documentFields(body)
	if err != nil {
		return nil, err
	}
	var d clientDocument
	if err := json.Unmarshal(fields, &d); err != nil {
		return nil, errors.New("a field has the wrong type")
	}
	// CIMD §4.1: client_id MUST equal the document's URL, by simple string
	// comparison (RFC 3986 §6.2.1).
	if d.ClientID != url {
		return nil, errors.New("client_id does not equal the document's URL")
	}
	if strings.TrimSpace(d.ClientName) == "" {
		return nil, errors.New("client_name is missing")
	}
	if err := checkDocString("client_name", d.ClientName, 200); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, val string }{
		{"client_uri", d.ClientURI}, {"logo_uri", d.LogoURI}, {"tos_uri", d.TOSURI}, {"policy_uri", d.PolicyURI},
		{"software_id", d.SoftwareID}, {"software_version", d.SoftwareVersion}, {"scope", d.Scope},
	} {
		if err := checkDocString(f.name, f.val, maxDocStringLen); err != nil {
			return nil, err
		}
	}
	if len(d.Contacts) > 10 {
		return nil, errors.New("more than 10 contacts")
	}
	for _, c := range d.Contacts {
		if err := checkDocString("contacts", c, 200); err != nil {
			return nil, err
		}
	}
	if len(d.RedirectURIs) == 0 {
		return nil, errors.New("redirect_uris is missing")
	}
	if len(d.RedirectURIs) > maxDocRedirectURIs {
		return nil, fmt.Errorf("more than %d redirect_uris", maxDocRedirectURIs)
	}
	for _, u := range d.RedirectURIs {
		// Native rules: a metadata document client is typically a desktop
		// or CLI app with a loopback or private-use redirect (RFC 8252).
		if err := oauth.ValidateRedirectURI(u, true); err != nil {
			return nil, fmt.Errorf("redirect URI %s: %s", strconv.QuoteToASCII(truncate(u, 100)), err.Error())
		}
	}
	switch d.ApplicationType {
	case "", "web", "native":
	default:
		return nil, errors.New("application_type must be web or native")
	}
	for _, g := range d.GrantTypes {
		if g != "authorization_code" && g != "refresh_token" {
			return nil, fmt.Errorf("grant type %s is not supported; use authorization_code and refresh_token", strconv.QuoteToASCII(truncate(g, 50)))
		}
	}
	if len(d.GrantTypes) > 0 && !slices.Contains(d.GrantTypes, "authorization_code") {
		return nil, errors.New("grant_types must include authorization_code")
	}
	for _, rt := range d.ResponseTypes {
		if rt != "code" {
			return nil, errors.New("response_types must be code")
		}
	}
	if _, err := oauth.ParseScope(d.Scope); err != nil {
		return nil, errors.New("scope is malformed")
	}
	if _, err := d.authMethod(); err != nil {
		return nil, err
	}
	if d.TokenEndpointAuthSigningAlg != "" && !slices.Contains(signingAlgs, d.TokenEndpointAuthSigningAlg) {
		return nil, errors.New("token_endpoint_auth_signing_alg is not supported")
	}
	hasJWKS := len(d.JWKS) > 0 && string(d.JWKS) != "null"
	if hasJWKS && d.JWKSURI != "" {
		return nil, errors.New("jwks and jwks_uri are mutually exclusive (RFC 7591 §2)")
	}
	if hasJWKS {
		if err := checkDocumentJWKS(d.JWKS); err != nil {
			return nil, err
		}
	}
	if d.JWKSURI != "" {
		u, err := neturlParse(d.JWKSURI)
		if err != nil || u.Scheme != "https" || u.User != nil || u.Hostname() == "" || u.Fragment != "" || len(d.JWKSURI) > maxClientIDURLLen {
			return nil, errors.New("jwks_uri must be an https URL")
		}
	}
	return &d, nil
}

var neturlParse = url.Parse

// documentFields checks that body is one JSON object without duplicate
// members and returns it with only the members clientDocument knows, under
// their exact names: encoding/json matches names case-insensitively and keeps
// the last of duplicates, so {"client_id":A,"CLIENT_ID":B} would otherwise
// be read differently here and by a stricter parser (the client's, a proxy's).
func documentFields(body []byte) ([]byte, error) {
	if !json.Valid(body) {
		return nil, errors.New("not valid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, _ := dec.Token(); tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	known := map[string]json.RawMessage{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("not valid JSON")
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errors.New("not valid JSON")
		}
		if seen[name] {
			return nil, fmt.Errorf("member %s appears twice", strconv.QuoteToASCII(truncate(name, 50)))
		}
		seen[name] = true
		if documentMembers[name] {
			known[name] = v
		}
	}
	return json.Marshal(known)
}

// documentMembers are the JSON names of clientDocument's fields.
var documentMembers = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeFor[clientDocument]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		m[name] = true
	}
	return m
}()

// authMethod chooses the token endpoint authentication method: the
// document's single method, or from the methods it lists as supported
// "none" first (DR-2: ChatGPT's document offers private_key_jwt and none, and
// a public native client needs no key), then private_key_jwt, which needs
// keys. Default none (CIMD clients are public unless they say otherwise).
func (d *clientDocument) authMethod() (string, error) {
	offered := slices.Concat(d.AuthMethods, d.AuthMethodsAlt)
	if d.TokenEndpointAuthMethod != "" {
		offered = append(offered, d.TokenEndpointAuthMethod)
	}
	hasKeys := (len(d.JWKS) > 0 && string(d.JWKS) != "null") || d.JWKSURI != ""
	switch {
	case len(offered) == 0, slices.Contains(offered, storage.AuthMethodNone):
		return storage.AuthMethodNone, nil
	case slices.Contains(offered, storage.AuthMethodPrivateKeyJWT):
		if !hasKeys {
			return "", errors.New("private_key_jwt needs jwks or jwks_uri")
		}
		return storage.AuthMethodPrivateKeyJWT, nil
	}
	return "", errors.New("token_endpoint_auth_method must be none or private_key_jwt")
}

// checkDocumentJWKS validates a document's jwks: a JSON Web Key Set of at
// most maxDocJWKSKeys public signing keys of sensible sizes.
func checkDocumentJWKS(raw json.RawMessage) error {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return errors.New("jwks is not a JSON Web Key Set")
	}
	if len(set.Keys) == 0 || len(set.Keys) > maxDocJWKSKeys {
		return fmt.Errorf("jwks must have 1 to %d keys", maxDocJWKSKeys)
	}
	for _, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() {
			return errors.New("jwks must hold public keys only")
		}
		switch key := k.Key.(type) {
		case *rsa.PublicKey:
			if n := key.N.BitLen(); n < 2048 || n > 8192 {
				return errors.New("jwks RSA keys must have 2048 to 8192 bits")
			}
		case *ecdsa.PublicKey:
			switch key.Curve.Params().Name {
			case "P-256", "P-384", "P-521":
			default:
				return errors.New("jwks EC keys must use P-256, P-384 or P-521")
			}
		case ed25519.PublicKey:
		default:
			return errors.New("jwks has a key of an unsupported type")
		}
	}
	return nil
}

// checkDocString refuses an overlong string or one with control characters
// (the values reach the consent page and logs).
func checkDocString(name, v string, maxLen int) error {
	if len(v) > maxLen {
		return fmt.Errorf("%s is longer than %d bytes", name, maxLen)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%s is not valid UTF-8", name)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%s contains control characters", name)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// documentClient builds the client record a validated document describes.
func (s *Server) documentClient(d *clientDocument) (*storage.Client, error) {
	method, err := d.authMethod()
	if err != nil {
		return nil, err
	}
	c := &storage.Client{
		ID:                      d.ClientID,
		Source:                  storage.SourceCIMD,
		TokenEndpointAuthMethod: method,
		RedirectURIs:            slices.Compact(slices.Clone(d.RedirectURIs)),
		ResponseTypes:           []string{"code"},
		Audiences:               []string{s.cfg.MCPResource},
		Metadata: storage.ClientMetadata{
			ClientName:      d.ClientName,
			ClientURI:       httpsOrEmpty(d.ClientURI),
			LogoURI:         httpsOrEmpty(d.LogoURI),
			TOSURI:          httpsOrEmpty(d.TOSURI),
			PolicyURI:       httpsOrEmpty(d.PolicyURI),
			Contacts:        d.Contacts,
			SoftwareID:      d.SoftwareID,
			SoftwareVersion: d.SoftwareVersion,
			ApplicationType: d.ApplicationType,
		},
	}
	for _, g := range cmpOr(d.GrantTypes, []string{"authorization_code"}) {
		if !slices.Contains(c.GrantTypes, g) {
			c.GrantTypes = append(c.GrantTypes, g)
		}
	}
	if method == storage.AuthMethodPrivateKeyJWT {
		c.TokenEndpointAuthSigningAlg = d.TokenEndpointAuthSigningAlg
		c.JWKSURI = d.JWKSURI
		if len(d.JWKS) > 0 && string(d.JWKS) != "null" {
			c.JWKS = slices.Clone(d.JWKS)
		}
	}
	// The document's scope is a hint, as in registration (DESIGN §4).
	requested, _ := oauth.ParseScope(d.Scope)
	for _, sc := range requested {
		if _, ok := s.scope(sc); ok && !slices.Contains(c.Scopes, sc) {
			c.Scopes = append(c.Scopes, sc)
		}
	}
	if len(c.Scopes) == 0 {
		c.Scopes = slices.Clone(s.cfg.DefaultScopes)
	}
	return c, nil
}

func cmpOr(a, b []string) []string {
	if len(a) > 0 {
		return a
	}
	return b
}

// httpsOrEmpty keeps an https URL and drops anything else: descriptive URLs
// are shown or proxied, never javascript: or plain http.
func httpsOrEmpty(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil {
		return ""
	}
	return raw
}
