package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// CIMDDocument is what the cache knows of a Client ID Metadata Document: when
// it was fetched and until when the stored client built from it is fresh.
type CIMDDocument struct {
	FetchedAt time.Time
	ExpiresAt time.Time
}

// CIMDFailure is a negatively cached document: an OAuth error code and a
// description safe to show, answered again until ExpiresAt.
type CIMDFailure struct {
	Code        string
	Description string
	ExpiresAt   time.Time
}

// CIMDClient returns the client with this id and, when it was built from a
// metadata document, the document's cache entry (nil for a client of another
// source). A missing client gives ErrNotFound.
func (db *DB) CIMDClient(ctx context.Context, id string) (*Client, *CIMDDocument, error) {
	var (
		s                  clientScan
		fetched, expiresAt *time.Time
	)
	err := db.q(ctx).QueryRow(ctx, `SELECT `+clientColumns+`, d.fetched_at, d.expires_at
		FROM oauth_clients c LEFT JOIN cimd_documents d ON d.client_id = c.id WHERE c.id = $1`, id).
		Scan(append(s.dest(), &fetched, &expiresAt)...)
	if err != nil {
		return nil, nil, dbErr(fmt.Sprintf("get metadata document client %q", id), err)
	}
	c, err := s.client()
	if err != nil {
		return nil, nil, err
	}
	if fetched == nil || expiresAt == nil {
		return c, nil, nil
	}
	return c, &CIMDDocument{FetchedAt: fetched.UTC(), ExpiresAt: expiresAt.UTC()}, nil
}

// SaveCIMDClient stores a client built from a freshly fetched metadata
// document (c.Source must be SourceCIMD), with its cache entry, in one
// transaction. A first fetch inserts the client; a refetch replaces what the
// document says (redirect URIs, name, keys, …) and keeps what the server
// knows of it (created_at, last_used_at, disabled_at: a client blocked by an
// administrator stays blocked). An existing client of another source with the
// same id is never overwritten: ErrConflict.
func (db *DB) SaveCIMDClient(ctx context.Context, c *Client, doc CIMDDocument) error {
	if c.Source != SourceCIMD {
		return fmt.Errorf("save metadata document client %q: source %q, want %q", c.ID, c.Source, SourceCIMD)
	}
	if err := c.validate(); err != nil {
		return fmt.Errorf("save metadata document client %q: %w", c.ID, err)
	}
	md, err := json.Marshal(c.Metadata)
	if err != nil {
		return fmt.Errorf("save metadata document client %q: encode metadata: %w", c.ID, err)
	}
	return db.InTx(ctx, func(ctx context.Context) error {
		err := db.q(ctx).QueryRow(ctx, `
			INSERT INTO oauth_clients (id, token_endpoint_auth_method, token_endpoint_auth_signing_alg,
				redirect_uris, grant_types, response_types, scopes, audiences, jwks, jwks_uri, metadata, source)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'cimd')
			ON CONFLICT (id) DO UPDATE SET token_endpoint_auth_method = EXCLUDED.token_endpoint_auth_method,
				token_endpoint_auth_signing_alg = EXCLUDED.token_endpoint_auth_signing_alg,
				redirect_uris = EXCLUDED.redirect_uris, grant_types = EXCLUDED.grant_types,
				response_types = EXCLUDED.response_types, scopes = EXCLUDED.scopes,
				audiences = EXCLUDED.audiences, jwks = EXCLUDED.jwks, jwks_uri = EXCLUDED.jwks_uri,
				metadata = EXCLUDED.metadata, updated_at = now()
			WHERE oauth_clients.source = 'cimd'
			RETURNING created_at, updated_at, last_used_at, disabled_at`,
			c.ID, c.TokenEndpointAuthMethod, nullString(c.TokenEndpointAuthSigningAlg),
			nonNil(c.RedirectURIs), nonNil(c.GrantTypes), nonNil(c.ResponseTypes), nonNil(c.Scopes),
			nonNil(c.Audiences), nullJSON(c.JWKS), nullString(c.JWKSURI), md,
		).Scan(&c.CreatedAt, &c.UpdatedAt, &c.LastUsedAt, &c.DisabledAt)
		if errors.Is(dbErr("", err), ErrNotFound) {
			// The conflicting row is not a metadata document client.
			return fmt.Errorf("save metadata document client %q: a client of another source has this id: %w", c.ID, ErrConflict)
		}
		if err != nil {
			return dbErr(fmt.Sprintf("save metadata document client %q", c.ID), err)
		}
		c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
		c.LastUsedAt, c.DisabledAt = utcPtr(c.LastUsedAt), utcPtr(c.DisabledAt)
		_, err = db.q(ctx).Exec(ctx, `
			INSERT INTO cimd_documents (client_id, fetched_at, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (client_id) DO UPDATE SET fetched_at = EXCLUDED.fetched_at, expires_at = EXCLUDED.expires_at`,
			c.ID, doc.FetchedAt, doc.ExpiresAt)
		if err != nil {
			return dbErr(fmt.Sprintf("save metadata document of %q", c.ID), err)
		}
		return c.parseJWKS()
	})
}

// CIMDFailure returns the unexpired negative cache entry of the document
// whose URL hashes to urlHash (sha256), or ErrNotFound. now is the caller's
// clock, so that expiry follows the same clock that set it.
func (db *DB) CIMDFailure(ctx context.Context, urlHash []byte, now time.Time) (*CIMDFailure, error) {
	var f CIMDFailure
	err := db.q(ctx).QueryRow(ctx, `SELECT code, description, expires_at FROM cimd_failures
		WHERE url_hash = $1 AND expires_at > $2`, urlHash, now).Scan(&f.Code, &f.Description, &f.ExpiresAt)
	if err != nil {
		return nil, dbErr("get metadata document failure", err)
	}
	f.ExpiresAt = f.ExpiresAt.UTC()
	return &f, nil
}

// SaveCIMDFailure records (or replaces) the negative cache entry of a document.
func (db *DB) SaveCIMDFailure(ctx context.Context, urlHash []byte, f CIMDFailure) error {
	_, err := db.q(ctx).Exec(ctx, `
		INSERT INTO cimd_failures (url_hash, code, description, expires_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (url_hash) DO UPDATE SET code = EXCLUDED.code, description = EXCLUDED.description,
			expires_at = EXCLUDED.expires_at`, urlHash, f.Code, f.Description, f.ExpiresAt)
	if err != nil {
		return dbErr("save metadata document failure", err)
	}
	return nil
}

// DeleteCIMDFailures forgets the negative cache entry of a document (after a
// successful fetch; nil urlHash: none) and every entry expired by now.
// Entries are short-lived, so cleaning them on the write path needs no
// sweeper.
func (db *DB) DeleteCIMDFailures(ctx context.Context, urlHash []byte, now time.Time) error {
	_, err := db.q(ctx).Exec(ctx, `DELETE FROM cimd_failures WHERE url_hash = $1 OR expires_at <= $2`, urlHash, now)
	if err != nil {
		return dbErr("delete metadata document failures", err)
	}
	return nil
}
