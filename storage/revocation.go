package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Grants and their revocation (DESIGN §4). A grant is one fosite request id:
// the authorization code, every refresh token and every access token issued
// from one authorization (or one client_credentials request) carry it, and
// access tokens name it in their grant_id claim. Revoking a grant, by any
// path, does in one transaction: the grant's code and refresh tokens become
// inactive (the rows stay, so a later use is detected as reuse), its access
// token rows go, a revoked_grants row records it until its last access token
// has expired, and pg_notify tells every replica (delivered on commit), which
// then refuses its access tokens without asking the database.

// RevocationChannel is the PostgreSQL NOTIFY channel of revocations; the
// payload is the revoked grant's id.
const RevocationChannel = "mcpauth_revocations"

// RevokedGrantRetention is how long a revoked_grants row is kept after the
// grant's last access token expired: longer than the clock leeway any
// verifier allows on exp, so no token of the grant can pass after its row
// is gone.
const RevokedGrantRetention = time.Minute

func init() {
	// The cleanup loop deletes expired revoked_grants rows with the other
	// expiring tables (cleanup.go).
	cleanupTables = append(cleanupTables, struct {
		table string
		grace time.Duration
	}{"revoked_grants", RevokedGrantRetention})
}

// lockGrantsSQL take the row locks that token issuance takes, for every
// active code and refresh token of the grants $1: a code exchange or refresh
// rotation of one of them that is in flight commits first, and its new
// tokens are then visible to revokeGrantsSQL, a later statement (READ
// COMMITTED takes a new snapshot per statement); one that starts later finds
// its code or refresh token inactive and fails. Without them a refresh racing
// the revocation would leave its new tokens alive.
var lockGrantsSQL = []string{
	`SELECT 1 FROM oauth_codes WHERE request_id = ANY($1) AND active FOR UPDATE`,
	`SELECT 1 FROM oauth_refresh_tokens WHERE request_id = ANY($1) AND active FOR UPDATE`,
}

// revokeGrantsSQL revokes the grants $1 (distinct ids), records them with
// the latest expiry of their access tokens (now when none is left; a record
// that exists keeps the later expiry) and notifies RevocationChannel once
// per grant. The grant's newest access token always has a row while the
// grant lives (rotation deletes only the previous one), and it expires last.
//
// It also revokes the remembered consent of every (user, client) whose grant
// it revokes (issue 6 §8), so the next authorization asks the user again.
const revokeGrantsSQL = `
WITH codes AS (
	UPDATE oauth_codes SET active = false WHERE request_id = ANY($1) AND active RETURNING subject, client_id
), refresh AS (
	UPDATE oauth_refresh_tokens SET active = false WHERE request_id = ANY($1) AND active RETURNING subject, client_id
), access AS (
	DELETE FROM oauth_access_tokens WHERE request_id = ANY($1) RETURNING request_id, expires_at, subject, client_id
), pairs AS (
	SELECT subject, client_id FROM codes UNION SELECT subject, client_id FROM refresh
	UNION SELECT subject, client_id FROM access
), consent AS (
	UPDATE oauth_consents c SET revoked_at = now(), updated_at = now()
	FROM pairs p WHERE p.subject <> '' AND c.user_id::text = p.subject AND c.client_id = p.client_id
		AND c.revoked_at IS NULL
), rec AS (
	INSERT INTO revoked_grants (grant_id, expires_at)
	SELECT g.id, coalesce((SELECT max(a.expires_at) FROM access a WHERE a.request_id = g.id), now())
	FROM unnest($1::uuid[]) AS g(id)
	ON CONFLICT (grant_id) DO UPDATE SET expires_at = greatest(revoked_grants.expires_at, EXCLUDED.expires_at)
	RETURNING grant_id
)
SELECT count(pg_notify('` + RevocationChannel + `', grant_id::text)) FROM rec`

// revokeGrants revokes the grants ids (UUIDs; duplicates allowed) in one
// transaction (a savepoint inside the caller's) and returns how many it
// recorded.
func (db *DB) revokeGrants(ctx context.Context, op string, ids []string) (int, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	if len(ids) == 0 {
		return 0, nil
	}
	var n int
	err := db.InTx(ctx, func(ctx context.Context) error {
		for _, q := range lockGrantsSQL {
			if _, err := db.q(ctx).Exec(ctx, q, ids); err != nil {
				return dbErr(op+": lock", err)
			}
		}
		return dbErr(op, db.q(ctx).QueryRow(ctx, revokeGrantsSQL, ids).Scan(&n))
	})
	return n, err
}

// RevokeGrant revokes every code, refresh token and access token of the
// grant grantID and publishes the revocation. A grant with no token left
// that was never revoked, or an id that is not a UUID, is ErrNotFound;
// revoking a revoked grant again is not an error.
func (db *DB) RevokeGrant(ctx context.Context, grantID string) error {
	op := fmt.Sprintf("revoke grant %q", grantID)
	if _, err := uuid.Parse(grantID); err != nil {
		return dbErr(op, pgx.ErrNoRows)
	}
	return db.InTx(ctx, func(ctx context.Context) error {
		var known bool
		err := db.q(ctx).QueryRow(ctx, `SELECT
			EXISTS (SELECT 1 FROM oauth_access_tokens WHERE request_id = $1) OR
			EXISTS (SELECT 1 FROM oauth_refresh_tokens WHERE request_id = $1) OR
			EXISTS (SELECT 1 FROM oauth_codes WHERE request_id = $1) OR
			EXISTS (SELECT 1 FROM revoked_grants WHERE grant_id = $1)`, grantID).Scan(&known)
		if err != nil {
			return dbErr(op, err)
		}
		if !known {
			return dbErr(op, pgx.ErrNoRows)
		}
		_, err = db.revokeGrants(ctx, op, []string{grantID})
		return err
	})
}

// GrantParties returns the client of the grant grantID and, for a user's
// grant, the user's id and name (both "" for a client's own grant, or a
// user since deleted): what the audit log records of a revoked grant. Call
// it before revoking (revoking deletes the access tokens). ErrNotFound
// when no token of the grant is stored.
func (db *DB) GrantParties(ctx context.Context, grantID string) (clientID, userID, username string, err error) {
	op := fmt.Sprintf("get the parties of grant %q", grantID)
	if _, err := uuid.Parse(grantID); err != nil {
		return "", "", "", dbErr(op, pgx.ErrNoRows)
	}
	var uid, name *string
	err = db.q(ctx).QueryRow(ctx, `
		WITH g AS (
			SELECT client_id, subject FROM oauth_refresh_tokens WHERE request_id = $1
			UNION ALL SELECT client_id, subject FROM oauth_access_tokens WHERE request_id = $1
			UNION ALL SELECT client_id, subject FROM oauth_codes WHERE request_id = $1
			LIMIT 1
		)
		SELECT g.client_id, u.id::text, u.username FROM g
		LEFT JOIN users u ON u.id = CASE WHEN g.subject ~ '^[0-9a-fA-F-]{36}$' THEN g.subject::uuid END`, grantID).Scan(&clientID, &uid, &name)
	if err != nil {
		return "", "", "", dbErr(op, err)
	}
	if uid != nil && name != nil {
		userID, username = *uid, *name
	}
	return clientID, userID, username, nil
}

// liveGrantsSQL selects the ids of the grants with a live token (an active,
// unexpired code or refresh token, or an unexpired access token) whose
// column %[1]s is $1.
const liveGrantsSQL = `
	SELECT request_id::text FROM oauth_refresh_tokens WHERE %[1]s = $1 AND active AND expires_at > now()
	UNION SELECT request_id::text FROM oauth_access_tokens WHERE %[1]s = $1 AND expires_at > now()
	UNION SELECT request_id::text FROM oauth_codes WHERE %[1]s = $1 AND active AND expires_at > now()`

// RevokeClientGrants revokes every live grant of the client clientID (as
// RevokeGrant does) and every remembered consent for it, and returns how
// many grants there were.
func (db *DB) RevokeClientGrants(ctx context.Context, clientID string) (int, error) {
	op := fmt.Sprintf("revoke grants of client %q", clientID)
	var n int
	err := db.InTx(ctx, func(ctx context.Context) error {
		var err error
		if n, err = db.revokeWhere(ctx, op, "client_id", clientID); err != nil {
			return err
		}
		_, err = db.q(ctx).Exec(ctx, `UPDATE oauth_consents SET revoked_at = now(), updated_at = now()
			WHERE client_id = $1 AND revoked_at IS NULL`, clientID)
		return dbErr(op+": consents", err)
	})
	return n, err
}

// RevokeUserGrants revokes everything of the user userID: every live grant
// (as RevokeGrant does), every personal access token and every remembered
// consent. It returns how many grants and tokens there were. An id that is
// not a UUID has none.
func (db *DB) RevokeUserGrants(ctx context.Context, userID string) (int, error) {
	if _, err := uuid.Parse(userID); err != nil {
		return 0, nil
	}
	op := fmt.Sprintf("revoke grants of user %q", userID)
	var n int
	err := db.InTx(ctx, func(ctx context.Context) error {
		grants, err := db.revokeWhere(ctx, op, "subject", userID)
		if err != nil {
			return err
		}
		pats, err := db.revokePATs(ctx, op, "user_id = $1", userID)
		if err != nil {
			return err
		}
		n = grants + pats
		_, err = db.q(ctx).Exec(ctx, `UPDATE oauth_consents SET revoked_at = now(), updated_at = now()
			WHERE user_id = $1 AND revoked_at IS NULL`, userID)
		return dbErr(op+": consents", err)
	})
	return n, err
}

// RevokeUserClientGrants revokes every live grant of the user userID for the
// client clientID (as RevokeGrant does) and the user's remembered consent for
// it, and returns how many grants there were: the "Revoke" of a connected
// app. An id that is not a UUID has none.
func (db *DB) RevokeUserClientGrants(ctx context.Context, userID, clientID string) (int, error) {
	if _, err := uuid.Parse(userID); err != nil || clientID == "" {
		return 0, nil
	}
	op := fmt.Sprintf("revoke grants of user %q for client %q", userID, clientID)
	var n int
	err := db.InTx(ctx, func(ctx context.Context) error {
		rows, err := db.q(ctx).Query(ctx, `
			SELECT request_id::text FROM oauth_refresh_tokens WHERE subject = $1 AND client_id = $2 AND active AND expires_at > now()
			UNION SELECT request_id::text FROM oauth_access_tokens WHERE subject = $1 AND client_id = $2 AND expires_at > now()
			UNION SELECT request_id::text FROM oauth_codes WHERE subject = $1 AND client_id = $2 AND active AND expires_at > now()`,
			userID, clientID)
		if err != nil {
			return dbErr(op, err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return dbErr(op, err)
		}
		if n, err = db.revokeGrants(ctx, op, ids); err != nil {
			return err
		}
		_, err = db.q(ctx).Exec(ctx, `UPDATE oauth_consents SET revoked_at = now(), updated_at = now()
			WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL`, userID, clientID)
		return dbErr(op+": consent", err)
	})
	return n, err
}

// GrantOfToken returns the grant id of the refresh token, access token or
// authorization code whose fosite signature is signature (the part after
// the last '.'), live or not. ErrNotFound when no row has it.
func (db *DB) GrantOfToken(ctx context.Context, signature string) (string, error) {
	var id string
	err := db.q(ctx).QueryRow(ctx, `
		SELECT request_id::text FROM oauth_refresh_tokens WHERE sig_hash = $1
		UNION ALL SELECT request_id::text FROM oauth_access_tokens WHERE sig_hash = $1
		UNION ALL SELECT request_id::text FROM oauth_codes WHERE sig_hash = $1
		LIMIT 1`, sigHash(signature)).Scan(&id)
	if err != nil {
		return "", dbErr("find the grant of a token", err)
	}
	return id, nil
}

// revokeWhere revokes the live grants whose column is value.
func (db *DB) revokeWhere(ctx context.Context, op, column, value string) (int, error) {
	if value == "" {
		return 0, nil
	}
	var n int
	err := db.InTx(ctx, func(ctx context.Context) error {
		// column is one of two constants, never input.
		rows, err := db.q(ctx).Query(ctx, fmt.Sprintf(liveGrantsSQL, column), value)
		if err != nil {
			return dbErr(op, err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return dbErr(op, err)
		}
		n, err = db.revokeGrants(ctx, op, ids)
		return err
	})
	return n, err
}

// RevokedGrants returns the revoked grants whose access tokens may not all
// have expired yet (within RevokedGrantRetention), with the latest expiry of
// their access tokens: the set a verifier must refuse.
func (db *DB) RevokedGrants(ctx context.Context) (map[string]time.Time, error) {
	rows, err := db.q(ctx).Query(ctx,
		`SELECT grant_id::text, expires_at FROM revoked_grants WHERE expires_at > now() - make_interval(secs => $1)`,
		RevokedGrantRetention.Seconds())
	if err != nil {
		return nil, dbErr("list revoked grants", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var (
			id  string
			exp pgtype.Timestamptz
		)
		if err := rows.Scan(&id, &exp); err != nil {
			return nil, dbErr("list revoked grants", err)
		}
		out[id] = timestamp(exp)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr("list revoked grants", err)
	}
	return out, nil
}

// farFuture stands for 'infinity' (a token fosite gave no expiry).
var farFuture = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

func timestamp(t pgtype.Timestamptz) time.Time {
	switch t.InfinityModifier {
	case pgtype.Infinity:
		return farFuture
	case pgtype.NegativeInfinity:
		return time.Time{}
	}
	return t.Time.UTC()
}

// ---- listing grants (the administrator's tools) ----

// Grant is a live grant: one authorization of a client by a user (or one
// client_credentials request), with its tokens.
type Grant struct {
	ID          string     // the grant id: fosite's request id, the access tokens' grant_id
	ClientID    string     // the client it was granted to
	Subject     string     // the user's id; "" for client_credentials
	Scopes      []string   // the scopes of its newest token
	CreatedAt   time.Time  // when its first token was issued
	RefreshedAt *time.Time // its last refresh; nil if never refreshed
	ExpiresAt   time.Time  // when the last of its live tokens expires
}

// GrantFilter selects grants: by user, by client, or both (an empty field
// does not filter), at most Limit of them (DefaultGrantLimit when 0,
// MaxGrantLimit at most).
type GrantFilter struct {
	UserID   string
	ClientID string
	Limit    int
}

// Bounds of GrantFilter.Limit.
const (
	DefaultGrantLimit = 100
	MaxGrantLimit     = 1000
)

// listGrantsSQL lists the live grants (as liveGrantsSQL; not revoked),
// newest first. $1 client id and $2 subject filter when not empty.
const listGrantsSQL = `
WITH t AS (
	SELECT request_id, client_id, subject, granted_scopes, requested_at, expires_at, used_at,
		active AND expires_at > now() AS live
	FROM oauth_refresh_tokens WHERE ($1 = '' OR client_id = $1) AND ($2 = '' OR subject = $2)
	UNION ALL
	SELECT request_id, client_id, subject, granted_scopes, requested_at, expires_at, NULL,
		expires_at > now()
	FROM oauth_access_tokens WHERE ($1 = '' OR client_id = $1) AND ($2 = '' OR subject = $2)
), g AS (
	SELECT request_id, min(requested_at) AS created, max(used_at) AS refreshed,
		max(expires_at) FILTER (WHERE live) AS expires
	FROM t GROUP BY request_id HAVING bool_or(live)
)
SELECT g.request_id::text, n.client_id, n.subject, n.granted_scopes, g.created, g.refreshed, g.expires
FROM g
CROSS JOIN LATERAL (
	SELECT client_id, subject, granted_scopes FROM t
	WHERE t.request_id = g.request_id ORDER BY requested_at DESC LIMIT 1
) n
WHERE NOT EXISTS (SELECT 1 FROM revoked_grants r WHERE r.grant_id = g.request_id)
ORDER BY g.created DESC, g.request_id
LIMIT $3`

// ListGrants returns the live grants that f selects, newest first. A user id
// that is not a UUID selects none.
func (db *DB) ListGrants(ctx context.Context, f GrantFilter) ([]Grant, error) {
	if f.UserID != "" {
		if _, err := uuid.Parse(f.UserID); err != nil {
			return nil, nil
		}
	}
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = DefaultGrantLimit
	case limit > MaxGrantLimit:
		limit = MaxGrantLimit
	}
	rows, err := db.q(ctx).Query(ctx, listGrantsSQL, f.ClientID, f.UserID, limit)
	if err != nil {
		return nil, dbErr("list grants", err)
	}
	defer rows.Close()
	var out []Grant
	for rows.Next() {
		var (
			g   Grant
			exp pgtype.Timestamptz
		)
		if err := rows.Scan(&g.ID, &g.ClientID, &g.Subject, &g.Scopes, &g.CreatedAt, &g.RefreshedAt, &exp); err != nil {
			return nil, dbErr("list grants", err)
		}
		g.CreatedAt, g.RefreshedAt, g.ExpiresAt = g.CreatedAt.UTC(), utcPtr(g.RefreshedAt), timestamp(exp)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr("list grants", err)
	}
	return out, nil
}

// ---- listening ----

// RevocationListener receives the revocations published on
// RevocationChannel, on a connection of its own (outside the pool). It is
// not safe for concurrent use.
type RevocationListener struct {
	conn *pgx.Conn
}

// ListenRevocations opens a connection with the pool's settings and LISTENs
// on RevocationChannel. Notifications sent while no listener is connected
// are lost: after connecting, a caller reloads RevokedGrants.
func (db *DB) ListenRevocations(ctx context.Context) (*RevocationListener, error) {
	cfg := db.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "mcpauth revocations"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("listen for revocations: %w", err)
	}
	if _, err := conn.Exec(ctx, `LISTEN `+RevocationChannel); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, dbErr("listen for revocations", err)
	}
	return &RevocationListener{conn: conn}, nil
}

// Next waits for the next revoked grant id. Payloads that are not grant ids
// (a NOTIFY by someone else) are skipped. An error means the connection is
// unusable (or ctx is done): Close it and listen again.
func (l *RevocationListener) Next(ctx context.Context) (string, error) {
	for {
		n, err := l.conn.WaitForNotification(ctx)
		if err != nil {
			return "", fmt.Errorf("wait for revocations: %w", err)
		}
		if n.Channel != RevocationChannel {
			continue
		}
		if _, err := uuid.Parse(n.Payload); err != nil {
			continue
		}
		return n.Payload, nil
	}
}

// PID is the listening connection's backend process id.
func (l *RevocationListener) PID() uint32 { return l.conn.PgConn().PID() }

// Close closes the connection.
func (l *RevocationListener) Close(ctx context.Context) error {
	if err := l.conn.Close(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close revocation listener: %w", err)
	}
	return nil
}
