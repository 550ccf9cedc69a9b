package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Personal access tokens (issue 6 §6): a user's named bearer token for /mcp
// with chosen scopes and an expiry. Only sha256 of the token is stored. The
// token's id is its grant id: revoking it records the id in revoked_grants
// and notifies every replica, exactly as revoking a grant does, so the
// verifiers' in-memory revocation set covers both.

// PersonalAccessToken is a stored personal access token (never the token).
type PersonalAccessToken struct {
	ID         string // uuid; the grant id of the tokens it authenticates
	UserID     string
	Username   string // the owner's user name (read from users)
	Name       string
	Scopes     []string
	Audience   string // the resource it is bound to (the MCP endpoint)
	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
	CreatedBy  string // who created it: the user's name, an admin's, "cli"

	// The owner's state, read with the token by PersonalAccessTokenByHash.
	UserDisabled bool
	UserIsAdmin  bool
}

// MaxPersonalAccessTokens bounds ListPersonalAccessTokens.
const MaxPersonalAccessTokens = 1000

// PersonalAccessTokenRetention is how long an expired token stays listed
// before the cleanup loop deletes it.
const PersonalAccessTokenRetention = 7 * 24 * time.Hour

func init() {
	cleanupTables = append(cleanupTables, struct {
		table string
		grace time.Duration
	}{"personal_access_tokens", PersonalAccessTokenRetention})
}

const patColumns = `p.id::text, p.user_id::text, u.username, p.name, p.scopes, p.audience, p.created_at,
	p.expires_at, p.last_used_at, p.revoked_at, p.created_by, u.disabled_at IS NOT NULL, u.is_admin`

func (p *PersonalAccessToken) dest() []any {
	return []any{&p.ID, &p.UserID, &p.Username, &p.Name, &p.Scopes, &p.Audience, &p.CreatedAt,
		&p.ExpiresAt, &p.LastUsedAt, &p.RevokedAt, &p.CreatedBy, &p.UserDisabled, &p.UserIsAdmin}
}

func (p *PersonalAccessToken) utc() *PersonalAccessToken {
	p.CreatedAt, p.ExpiresAt = p.CreatedAt.UTC(), p.ExpiresAt.UTC()
	p.LastUsedAt, p.RevokedAt = utcPtr(p.LastUsedAt), utcPtr(p.RevokedAt)
	return p
}

// CreatePersonalAccessToken stores p with tokenHash (sha256 of the token,
// 32 bytes) and sets its ID, CreatedAt and Username. A missing user is
// ErrNotFound.
func (db *DB) CreatePersonalAccessToken(ctx context.Context, p *PersonalAccessToken, tokenHash []byte) error {
	op := fmt.Sprintf("create personal access token %q", p.Name)
	switch {
	case len(tokenHash) != 32:
		return fmt.Errorf("%s: token hash is not 32 bytes", op)
	case p.Name == "" || p.Audience == "" || p.ExpiresAt.IsZero():
		return fmt.Errorf("%s: name, audience and expiry are required", op)
	}
	if _, err := uuid.Parse(p.UserID); err != nil {
		return dbErr(op, pgx.ErrNoRows)
	}
	err := db.q(ctx).QueryRow(ctx, `
		WITH ins AS (
			INSERT INTO personal_access_tokens (token_hash, user_id, name, scopes, audience, expires_at, created_by)
			SELECT $1, u.id, $3, $4, $5, $6, $7 FROM users u WHERE u.id = $2
			RETURNING id, created_at, user_id
		)
		SELECT ins.id::text, ins.created_at, u.username, u.disabled_at IS NOT NULL, u.is_admin
		FROM ins JOIN users u ON u.id = ins.user_id`,
		tokenHash, p.UserID, p.Name, nonNil(p.Scopes), p.Audience, p.ExpiresAt, p.CreatedBy,
	).Scan(&p.ID, &p.CreatedAt, &p.Username, &p.UserDisabled, &p.UserIsAdmin)
	if err != nil {
		return dbErr(op, err)
	}
	p.CreatedAt = p.CreatedAt.UTC()
	return nil
}

// PersonalAccessTokenByHash returns the token whose sha256 is tokenHash,
// revoked, expired or not, with its owner's state. ErrNotFound when none.
func (db *DB) PersonalAccessTokenByHash(ctx context.Context, tokenHash []byte) (*PersonalAccessToken, error) {
	var p PersonalAccessToken
	err := db.q(ctx).QueryRow(ctx, `SELECT `+patColumns+`
		FROM personal_access_tokens p JOIN users u ON u.id = p.user_id WHERE p.token_hash = $1`,
		tokenHash).Scan(p.dest()...)
	if err != nil {
		return nil, dbErr("get personal access token", err)
	}
	return p.utc(), nil
}

// PersonalAccessToken returns the token with this id. ErrNotFound when none.
func (db *DB) PersonalAccessToken(ctx context.Context, id string) (*PersonalAccessToken, error) {
	op := fmt.Sprintf("get personal access token %q", id)
	if _, err := uuid.Parse(id); err != nil {
		return nil, dbErr(op, pgx.ErrNoRows)
	}
	var p PersonalAccessToken
	err := db.q(ctx).QueryRow(ctx, `SELECT `+patColumns+`
		FROM personal_access_tokens p JOIN users u ON u.id = p.user_id WHERE p.id = $1`, id).Scan(p.dest()...)
	if err != nil {
		return nil, dbErr(op, err)
	}
	return p.utc(), nil
}

// listPATsSQL lists every user's tokens; listUserPATsSQL one user's, by
// the index on (user_id, created_at): two statements, not one with
// "$2 IS NULL OR", so that a generic plan cannot fall back to a scan.
const (
	listPATsSQL = `SELECT ` + patColumns + `
		FROM personal_access_tokens p JOIN users u ON u.id = p.user_id
		ORDER BY p.created_at DESC, p.id LIMIT $1`
	listUserPATsSQL = `SELECT ` + patColumns + `
		FROM personal_access_tokens p JOIN users u ON u.id = p.user_id
		WHERE p.user_id = $2
		ORDER BY p.created_at DESC, p.id LIMIT $1`
)

// ListPersonalAccessTokens returns the tokens of the user userID ("" = of
// every user), revoked and expired ones included, newest first, at most
// MaxPersonalAccessTokens. An id that is not a UUID has none.
func (db *DB) ListPersonalAccessTokens(ctx context.Context, userID string) ([]PersonalAccessToken, error) {
	if userID != "" {
		if _, err := uuid.Parse(userID); err != nil {
			return nil, nil
		}
	}
	q, args := listPATsSQL, []any{MaxPersonalAccessTokens}
	if userID != "" {
		q, args = listUserPATsSQL, append(args, userID)
	}
	rows, err := db.q(ctx).Query(ctx, q, args...)
	if err != nil {
		return nil, dbErr("list personal access tokens", err)
	}
	defer rows.Close()
	var out []PersonalAccessToken
	for rows.Next() {
		var p PersonalAccessToken
		if err := rows.Scan(p.dest()...); err != nil {
			return nil, dbErr("list personal access tokens", err)
		}
		out = append(out, *p.utc())
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr("list personal access tokens", err)
	}
	return out, nil
}

// RevokePersonalAccessToken revokes the token id of the user userID ("" =
// of any user) and publishes the revocation like a grant's. A token that is
// not the user's, or no token, is ErrNotFound; revoking a revoked token
// again is not an error.
func (db *DB) RevokePersonalAccessToken(ctx context.Context, id, userID string) error {
	op := fmt.Sprintf("revoke personal access token %q", id)
	if _, err := uuid.Parse(id); err != nil {
		return dbErr(op, pgx.ErrNoRows)
	}
	if userID != "" {
		if _, err := uuid.Parse(userID); err != nil {
			return dbErr(op, pgx.ErrNoRows)
		}
	}
	return db.InTx(ctx, func(ctx context.Context) error {
		var exists bool
		err := db.q(ctx).QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM personal_access_tokens
			WHERE id = $1 AND ($2 = '' OR user_id::text = $2))`, id, userID).Scan(&exists)
		if err != nil {
			return dbErr(op, err)
		}
		if !exists {
			return dbErr(op, pgx.ErrNoRows)
		}
		_, err = db.revokePATs(ctx, op, "id = $1", id)
		return err
	})
}

// revokePATs revokes the unrevoked, unexpired tokens matching where (a
// condition on personal_access_tokens with the parameters args), records each
// in revoked_grants until it expires and notifies RevocationChannel. where
// is a constant of the caller, never input.
func (db *DB) revokePATs(ctx context.Context, op, where string, args ...any) (int, error) {
	var n int
	err := db.q(ctx).QueryRow(ctx, `
		WITH r AS (
			UPDATE personal_access_tokens SET revoked_at = now()
			WHERE `+where+` AND revoked_at IS NULL AND expires_at > now()
			RETURNING id, expires_at
		), rec AS (
			INSERT INTO revoked_grants (grant_id, expires_at) SELECT id, expires_at FROM r
			ON CONFLICT (grant_id) DO UPDATE SET expires_at = greatest(revoked_grants.expires_at, EXCLUDED.expires_at)
			RETURNING grant_id
		)
		SELECT count(pg_notify('`+RevocationChannel+`', grant_id::text)) FROM rec`, args...).Scan(&n)
	if err != nil {
		return 0, dbErr(op, err)
	}
	return n, nil
}

// TouchPersonalAccessToken records that the token id was just used, at most
// once a minute per token. A missing token is not an error.
func (db *DB) TouchPersonalAccessToken(ctx context.Context, id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return nil
	}
	_, err := db.q(ctx).Exec(ctx, `
		UPDATE personal_access_tokens SET last_used_at = now()
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`, id)
	return dbErr(fmt.Sprintf("touch personal access token %q", id), err)
}
