package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"
)

// Client sources.
const (
	SourceDCR   = "dcr"   // RFC 7591 dynamic registration
	SourceAdmin = "admin" // created by an administrator (console, API, CLI)
	SourceCIMD  = "cimd"  // Client ID Metadata Document
)

// Token endpoint authentication methods (RFC 7591 §2).
const (
	AuthMethodNone              = "none"
	AuthMethodClientSecretBasic = "client_secret_basic"
	AuthMethodClientSecretPost  = "client_secret_post"
	AuthMethodPrivateKeyJWT     = "private_key_jwt"
)

// ClientMetadata is the descriptive RFC 7591 §2 metadata of a client, stored as
// jsonb. Absent values are omitted, never sent as "" or null.
type ClientMetadata struct {
	ClientName        string   `json:"client_name,omitempty"`
	ClientURI         string   `json:"client_uri,omitempty"`
	LogoURI           string   `json:"logo_uri,omitempty"`
	Contacts          []string `json:"contacts,omitempty"`
	TOSURI            string   `json:"tos_uri,omitempty"`
	PolicyURI         string   `json:"policy_uri,omitempty"`
	SoftwareID        string   `json:"software_id,omitempty"`
	SoftwareVersion   string   `json:"software_version,omitempty"`
	SoftwareStatement string   `json:"software_statement,omitempty"`
	ApplicationType   string   `json:"application_type,omitempty"` // "web" | "native"
}

// Client is an OAuth client record (RFC 7591 / 7592 metadata plus ours). It
// implements fosite.Client, fosite.OpenIDConnectClient (so fosite enforces
// token_endpoint_auth_method) and fosite.ClientWithSecretRotation.
type Client struct {
	ID                          string
	SecretHash                  []byte     // nil for AuthMethodNone
	SecretHashAlg               string     // how SecretHash was made, e.g. "sha256"
	RotatedSecretHashes         [][]byte   // still accepted after the primary hash fails
	SecretExpiresAt             *time.Time // RFC 7591 client_secret_expires_at; nil = never
	TokenEndpointAuthMethod     string
	TokenEndpointAuthSigningAlg string // for private_key_jwt; "" = RS256 (fosite's default)
	RedirectURIs                []string
	GrantTypes                  []string
	ResponseTypes               []string
	Scopes                      []string
	Audiences                   []string        // allowed RFC 8707 resources
	JWKS                        json.RawMessage // RFC 7591 jwks, a JSON Web Key Set; nil if none
	JWKSURI                     string
	Metadata                    ClientMetadata
	RegistrationTokenHash       []byte // sha256 of the RFC 7592 registration_access_token
	Source                      string // SourceDCR, SourceAdmin or SourceCIMD
	CreatedAt                   time.Time
	UpdatedAt                   time.Time
	LastUsedAt                  *time.Time
	DisabledAt                  *time.Time

	secretExpired bool                // set when loaded: SecretExpiresAt has passed (database clock)
	jwks          *jose.JSONWebKeySet // JWKS parsed when loaded
}

var (
	_ fosite.Client                   = (*Client)(nil)
	_ fosite.OpenIDConnectClient      = (*Client)(nil)
	_ fosite.ClientWithSecretRotation = (*Client)(nil)
)

// GetID implements fosite.Client.
func (c *Client) GetID() string { return c.ID }

// GetHashedSecret implements fosite.Client. An expired secret (RFC 7591
// client_secret_expires_at) yields nil, so authentication with it fails.
func (c *Client) GetHashedSecret() []byte {
	if c.secretExpired {
		return nil
	}
	return c.SecretHash
}

// GetRotatedHashes implements fosite.ClientWithSecretRotation.
func (c *Client) GetRotatedHashes() [][]byte {
	if c.secretExpired {
		return nil
	}
	return c.RotatedSecretHashes
}

// GetRedirectURIs implements fosite.Client.
func (c *Client) GetRedirectURIs() []string { return c.RedirectURIs }

// GetGrantTypes implements fosite.Client. RFC 7591 §2: if omitted, the default is
// "authorization_code".
func (c *Client) GetGrantTypes() fosite.Arguments {
	if len(c.GrantTypes) == 0 {
		return fosite.Arguments{"authorization_code"}
	}
	return c.GrantTypes
}

// GetResponseTypes implements fosite.Client. RFC 7591 §2: if omitted, the default
// is "code".
func (c *Client) GetResponseTypes() fosite.Arguments {
	if len(c.ResponseTypes) == 0 {
		return fosite.Arguments{"code"}
	}
	return c.ResponseTypes
}

// GetScopes implements fosite.Client.
func (c *Client) GetScopes() fosite.Arguments { return c.Scopes }

// IsPublic implements fosite.Client: a client that authenticates with "none" is public.
func (c *Client) IsPublic() bool { return c.TokenEndpointAuthMethod == AuthMethodNone }

// GetAudience implements fosite.Client: the resources the client may ask for.
func (c *Client) GetAudience() fosite.Arguments { return c.Audiences }

// GetRequestURIs implements fosite.OpenIDConnectClient; request objects are not supported.
func (c *Client) GetRequestURIs() []string { return nil }

// GetJSONWebKeys implements fosite.OpenIDConnectClient (for private_key_jwt).
func (c *Client) GetJSONWebKeys() *jose.JSONWebKeySet { return c.jwks }

// GetJSONWebKeysURI implements fosite.OpenIDConnectClient.
func (c *Client) GetJSONWebKeysURI() string { return c.JWKSURI }

// GetRequestObjectSigningAlgorithm implements fosite.OpenIDConnectClient; request
// objects are not supported.
func (c *Client) GetRequestObjectSigningAlgorithm() string { return "" }

// GetTokenEndpointAuthMethod implements fosite.OpenIDConnectClient. fosite enforces
// it only because Client implements that interface.
func (c *Client) GetTokenEndpointAuthMethod() string { return c.TokenEndpointAuthMethod }

// GetTokenEndpointAuthSigningAlgorithm implements fosite.OpenIDConnectClient.
func (c *Client) GetTokenEndpointAuthSigningAlgorithm() string {
	if c.TokenEndpointAuthSigningAlg == "" {
		return "RS256"
	}
	return c.TokenEndpointAuthSigningAlg
}

// LogValue implements slog.LogValuer: no secret hashes in logs.
func (c *Client) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("client_id", c.ID),
		slog.String("source", c.Source),
		slog.String("token_endpoint_auth_method", c.TokenEndpointAuthMethod),
	)
}

// validate checks what the schema would reject, with readable messages.
func (c *Client) validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("client id is empty"))
	}
	switch c.TokenEndpointAuthMethod {
	case AuthMethodNone:
		if len(c.SecretHash) > 0 {
			errs = append(errs, errors.New(`a client with token_endpoint_auth_method "none" has no secret`))
		}
	case AuthMethodClientSecretBasic, AuthMethodClientSecretPost, AuthMethodPrivateKeyJWT:
	default:
		errs = append(errs, fmt.Errorf("unsupported token_endpoint_auth_method %q", c.TokenEndpointAuthMethod))
	}
	switch c.Source {
	case SourceDCR, SourceAdmin, SourceCIMD:
	default:
		errs = append(errs, fmt.Errorf("unknown client source %q", c.Source))
	}
	if len(c.JWKS) > 0 {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(c.JWKS, &set); err != nil {
			errs = append(errs, fmt.Errorf("jwks is not a JSON Web Key Set: %w", err))
		}
	}
	return errors.Join(errs...)
}

const clientColumns = `c.id, c.secret_hash, c.secret_hash_alg, c.rotated_secret_hashes, c.secret_expires_at,
	c.secret_expires_at IS NOT NULL AND c.secret_expires_at <= now(),
	c.token_endpoint_auth_method, c.token_endpoint_auth_signing_alg, c.redirect_uris, c.grant_types,
	c.response_types, c.scopes, c.audiences, c.jwks, c.jwks_uri, c.metadata, c.registration_token_hash,
	c.source, c.created_at, c.updated_at, c.last_used_at, c.disabled_at`

// clientScan holds the scan targets of clientColumns.
type clientScan struct {
	c          Client
	hashAlg    *string
	signingAlg *string
	jwksURI    *string
	metadata   []byte
	jwks       []byte
}

func (s *clientScan) dest() []any {
	c := &s.c
	return []any{&c.ID, &c.SecretHash, &s.hashAlg, &c.RotatedSecretHashes, &c.SecretExpiresAt,
		&c.secretExpired,
		&c.TokenEndpointAuthMethod, &s.signingAlg, &c.RedirectURIs, &c.GrantTypes,
		&c.ResponseTypes, &c.Scopes, &c.Audiences, &s.jwks, &s.jwksURI, &s.metadata, &c.RegistrationTokenHash,
		&c.Source, &c.CreatedAt, &c.UpdatedAt, &c.LastUsedAt, &c.DisabledAt}
}

// client finishes a scanned row into a Client.
func (s *clientScan) client() (*Client, error) {
	c := s.c
	c.SecretHashAlg = deref(s.hashAlg)
	c.TokenEndpointAuthSigningAlg = deref(s.signingAlg)
	c.JWKSURI = deref(s.jwksURI)
	if len(s.metadata) > 0 {
		if err := json.Unmarshal(s.metadata, &c.Metadata); err != nil {
			return nil, fmt.Errorf("client %q: decode metadata: %w", c.ID, err)
		}
	}
	if len(s.jwks) > 0 {
		c.JWKS = json.RawMessage(s.jwks)
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(s.jwks, &set); err != nil {
			return nil, fmt.Errorf("client %q: decode jwks: %w", c.ID, err)
		}
		c.jwks = &set
	}
	c.CreatedAt = c.CreatedAt.UTC()
	c.UpdatedAt = c.UpdatedAt.UTC()
	c.SecretExpiresAt = utcPtr(c.SecretExpiresAt)
	c.LastUsedAt = utcPtr(c.LastUsedAt)
	c.DisabledAt = utcPtr(c.DisabledAt)
	return &c, nil
}

// GetClient implements fosite.ClientManager. A disabled client is reported as
// not found, so fosite refuses it everywhere (invalid_client).
func (db *DB) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := db.Client(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.DisabledAt != nil {
		return nil, fmt.Errorf("get client %q: disabled: %w", id, ErrNotFound)
	}
	return c, nil
}

// Client returns the client record with this id, disabled or not.
func (db *DB) Client(ctx context.Context, id string) (*Client, error) {
	var s clientScan
	err := db.q(ctx).QueryRow(ctx, `SELECT `+clientColumns+` FROM oauth_clients c WHERE c.id = $1`, id).Scan(s.dest()...)
	if err != nil {
		return nil, dbErr(fmt.Sprintf("get client %q", id), err)
	}
	return s.client()
}

// ListClients returns every client, oldest first.
func (db *DB) ListClients(ctx context.Context) ([]*Client, error) {
	rows, err := db.q(ctx).Query(ctx, `SELECT `+clientColumns+` FROM oauth_clients c ORDER BY c.created_at, c.id`)
	if err != nil {
		return nil, dbErr("list clients", err)
	}
	defer rows.Close()
	var out []*Client
	for rows.Next() {
		var s clientScan
		if err := rows.Scan(s.dest()...); err != nil {
			return nil, dbErr("list clients", err)
		}
		c, err := s.client()
		if err != nil {
			return nil, fmt.Errorf("list clients: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr("list clients", err)
	}
	return out, nil
}

// CreateClient inserts c. CreatedAt and UpdatedAt are set from the database.
// A duplicate id gives ErrConflict.
func (db *DB) CreateClient(ctx context.Context, c *Client) error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("create client %q: %w", c.ID, err)
	}
	md, err := json.Marshal(c.Metadata)
	if err != nil {
		return fmt.Errorf("create client %q: encode metadata: %w", c.ID, err)
	}
	err = db.q(ctx).QueryRow(ctx, `
		INSERT INTO oauth_clients (id, secret_hash, secret_hash_alg, rotated_secret_hashes, secret_expires_at,
			token_endpoint_auth_method, token_endpoint_auth_signing_alg, redirect_uris, grant_types,
			response_types, scopes, audiences, jwks, jwks_uri, metadata, registration_token_hash,
			source, last_used_at, disabled_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
		RETURNING created_at, updated_at, secret_expires_at IS NOT NULL AND secret_expires_at <= now()`,
		c.ID, c.SecretHash, nullString(c.SecretHashAlg), nonNilHashes(c.RotatedSecretHashes), c.SecretExpiresAt,
		c.TokenEndpointAuthMethod, nullString(c.TokenEndpointAuthSigningAlg), nonNil(c.RedirectURIs), nonNil(c.GrantTypes),
		nonNil(c.ResponseTypes), nonNil(c.Scopes), nonNil(c.Audiences), nullJSON(c.JWKS), nullString(c.JWKSURI), md,
		c.RegistrationTokenHash, c.Source, c.LastUsedAt, c.DisabledAt,
	).Scan(&c.CreatedAt, &c.UpdatedAt, &c.secretExpired)
	if err != nil {
		return dbErr(fmt.Sprintf("create client %q", c.ID), err)
	}
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return c.parseJWKS()
}

// UpdateClient replaces every field of the client with c.ID except CreatedAt and
// sets UpdatedAt. A missing client gives ErrNotFound.
func (db *DB) UpdateClient(ctx context.Context, c *Client) error {
	return db.updateClient(ctx, c, nil)
}

// UpdateRegisteredClient is UpdateClient on the condition that the stored
// registration_token_hash still equals tokenHash, the hash of the registration
// access token the update was authenticated with (RFC 7592 §2.2). Of two
// concurrent updates made with the same token, which both rotate it, only the
// first succeeds; the other, like a missing client, gives ErrNotFound. An empty
// tokenHash never matches.
func (db *DB) UpdateRegisteredClient(ctx context.Context, c *Client, tokenHash []byte) error {
	if len(tokenHash) == 0 {
		return fmt.Errorf("update client %q: no registration token hash: %w", c.ID, ErrNotFound)
	}
	return db.updateClient(ctx, c, tokenHash)
}

// updateClient replaces the client's fields; a non-nil tokenHash must equal the
// stored registration_token_hash.
func (db *DB) updateClient(ctx context.Context, c *Client, tokenHash []byte) error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("update client %q: %w", c.ID, err)
	}
	md, err := json.Marshal(c.Metadata)
	if err != nil {
		return fmt.Errorf("update client %q: encode metadata: %w", c.ID, err)
	}
	err = db.q(ctx).QueryRow(ctx, `
		UPDATE oauth_clients SET secret_hash = $2, secret_hash_alg = $3, rotated_secret_hashes = $4,
			secret_expires_at = $5, token_endpoint_auth_method = $6, token_endpoint_auth_signing_alg = $7,
			redirect_uris = $8, grant_types = $9, response_types = $10, scopes = $11, audiences = $12,
			jwks = $13, jwks_uri = $14, metadata = $15, registration_token_hash = $16, source = $17,
			last_used_at = $18, disabled_at = $19, updated_at = now()
		WHERE id = $1 AND ($20::bytea IS NULL OR registration_token_hash = $20)
		RETURNING created_at, updated_at, secret_expires_at IS NOT NULL AND secret_expires_at <= now()`,
		c.ID, c.SecretHash, nullString(c.SecretHashAlg), nonNilHashes(c.RotatedSecretHashes), c.SecretExpiresAt,
		c.TokenEndpointAuthMethod, nullString(c.TokenEndpointAuthSigningAlg), nonNil(c.RedirectURIs), nonNil(c.GrantTypes),
		nonNil(c.ResponseTypes), nonNil(c.Scopes), nonNil(c.Audiences), nullJSON(c.JWKS), nullString(c.JWKSURI), md,
		c.RegistrationTokenHash, c.Source, c.LastUsedAt, c.DisabledAt, tokenHash,
	).Scan(&c.CreatedAt, &c.UpdatedAt, &c.secretExpired)
	if err != nil {
		return dbErr(fmt.Sprintf("update client %q", c.ID), err)
	}
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return c.parseJWKS()
}

// TouchClient records that the client was just used (a token was issued to
// it), for the sweeper of unused clients. It writes at most once a minute per
// client, so calling it on every token response costs a primary-key lookup
// that changes nothing most of the time. A missing client is not an error.
func (db *DB) TouchClient(ctx context.Context, id string) error {
	_, err := db.q(ctx).Exec(ctx, `
		UPDATE oauth_clients SET last_used_at = now()
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`, id)
	if err != nil {
		return dbErr(fmt.Sprintf("touch client %q", id), err)
	}
	return nil
}

// DeleteClient revokes every grant of the client (published to every replica)
// and deletes it and, by cascade, its codes, tokens and consents.
// A missing client gives ErrNotFound.
func (db *DB) DeleteClient(ctx context.Context, id string) error {
	op := fmt.Sprintf("delete client %q", id)
	return db.InTx(ctx, func(ctx context.Context) error {
		// Its tokens go with it (foreign keys), but access tokens are JWTs
		// that /mcp checks without the database: revoke its grants first,
		// so that every replica refuses them (revoked_grants outlives the
		// client).
		if _, err := db.revokeWhere(ctx, op, "client_id", id); err != nil {
			return err
		}
		tag, err := db.q(ctx).Exec(ctx, `DELETE FROM oauth_clients WHERE id = $1`, id)
		if err != nil {
			return dbErr(op, err)
		}
		if tag.RowsAffected() == 0 {
			return dbErr(op, pgx.ErrNoRows)
		}
		return nil
	})
}

func (c *Client) parseJWKS() error {
	c.jwks = nil
	if len(c.JWKS) == 0 {
		return nil
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(c.JWKS, &set); err != nil {
		return fmt.Errorf("client %q: decode jwks: %w", c.ID, err)
	}
	c.jwks = &set
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return []byte(b)
}

// nonNil turns nil into an empty slice: pgx sends a nil slice as NULL, and the
// array columns are NOT NULL.
func nonNil[S ~[]string](s S) []string {
	if s == nil {
		return []string{}
	}
	return []string(s)
}

func nonNilHashes(h [][]byte) [][]byte {
	if h == nil {
		return [][]byte{}
	}
	return h
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// ClientSummary is a client with the number of its live grants, for the
// administrator's list.
type ClientSummary struct {
	Client     *Client
	LiveGrants int
}

// ClientFilter selects clients for ListClientSummaries, in id order. Empty
// fields do not filter.
type ClientFilter struct {
	Source string // SourceDCR, SourceCIMD or SourceAdmin
	Query  string // a substring (any letter case) of the id or client_name
	Limit  int    // DefaultClientLimit when 0, MaxClientLimit at most
	After  string // keyset paging: ids greater than After
}

// Bounds of ClientFilter.Limit.
const (
	DefaultClientLimit = 100
	MaxClientLimit     = 1000
)

// ListClientSummaries returns the clients f selects, in id order, each with
// its number of live grants (as RevokeClientGrants would count them).
func (db *DB) ListClientSummaries(ctx context.Context, f ClientFilter) ([]ClientSummary, error) {
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = DefaultClientLimit
	case limit > MaxClientLimit:
		limit = MaxClientLimit
	}
	// The query is matched literally: LIKE's wildcards are escaped.
	pattern := ""
	if f.Query != "" {
		pattern = "%" + likeEscaper.Replace(f.Query) + "%"
	}
	rows, err := db.q(ctx).Query(ctx, `SELECT `+clientColumns+`, `+liveGrantsOfClient+`
		FROM oauth_clients c
		WHERE ($1 = '' OR c.source = $1)
		  AND ($2 = '' OR c.id ILIKE $2 OR c.metadata->>'client_name' ILIKE $2)
		  AND c.id > $3
		ORDER BY c.id LIMIT $4`, f.Source, pattern, f.After, limit)
	if err != nil {
		return nil, dbErr("list clients", err)
	}
	defer rows.Close()
	var out []ClientSummary
	for rows.Next() {
		var (
			s    clientScan
			live int
		)
		if err := rows.Scan(append(s.dest(), &live)...); err != nil {
			return nil, dbErr("list clients", err)
		}
		c, err := s.client()
		if err != nil {
			return nil, fmt.Errorf("list clients: %w", err)
		}
		out = append(out, ClientSummary{Client: c, LiveGrants: live})
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr("list clients", err)
	}
	return out, nil
}

// likeEscaper escapes LIKE's wildcards and its escape character.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// SetClientDisabled disables or re-enables the client id. Disabling revokes
// every grant of the client and every remembered consent for it in the same
// transaction (published to every replica) and returns how many grants it
// revoked; a disabled client is not found by GetClient, so it can neither
// authorize nor obtain or refresh tokens. Enabling revives nothing. Disabling
// a disabled client keeps the original DisabledAt. A missing client gives
// ErrNotFound.
func (db *DB) SetClientDisabled(ctx context.Context, id string, disabled bool) (revoked int, err error) {
	op := fmt.Sprintf("set client %q disabled", id)
	err = db.InTx(ctx, func(ctx context.Context) error {
		tag, err := db.q(ctx).Exec(ctx, `UPDATE oauth_clients
			SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END, updated_at = now()
			WHERE id = $1`, id, disabled)
		if err != nil {
			return dbErr(op, err)
		}
		if tag.RowsAffected() == 0 {
			return dbErr(op, pgx.ErrNoRows)
		}
		if !disabled {
			return nil
		}
		revoked, err = db.RevokeClientGrants(ctx, id)
		return err
	})
	return revoked, err
}
