package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// User is a local user account. Usernames are unique regardless of case.
type User struct {
	ID           string // uuid
	Username     string
	PasswordHash string // argon2id PHC string; never logged
	IsAdmin      bool
	DisabledAt   *time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// LogValue implements slog.LogValuer: no password hash in logs.
func (u *User) LogValue() slog.Value {
	if u == nil {
		return slog.StringValue("none")
	}
	return slog.GroupValue(slog.String("user_id", u.ID), slog.String("username", u.Username))
}

const userColumns = `u.id::text, u.username, u.password_hash, u.is_admin, u.disabled_at, u.created_at, u.updated_at`

func (u *User) dest() []any {
	return []any{&u.ID, &u.Username, &u.PasswordHash, &u.IsAdmin, &u.DisabledAt, &u.CreatedAt, &u.UpdatedAt}
}

func (u *User) utc() *User {
	u.CreatedAt, u.UpdatedAt, u.DisabledAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC(), utcPtr(u.DisabledAt)
	return u
}

// CreateUser inserts u and sets its ID, CreatedAt and UpdatedAt. A username
// that exists in any letter case gives ErrConflict.
func (db *DB) CreateUser(ctx context.Context, u *User) error {
	if u.Username == "" || u.PasswordHash == "" {
		return fmt.Errorf("create user %q: username and password hash are required", u.Username)
	}
	err := db.q(ctx).QueryRow(ctx, `
		INSERT INTO users (username, password_hash, is_admin, disabled_at)
		VALUES ($1, $2, $3, $4)
		RETURNING id::text, created_at, updated_at`,
		u.Username, u.PasswordHash, u.IsAdmin, u.DisabledAt,
	).Scan(&u.ID, &u.CreatedAt, &u.UpdatedAt)
	if err != nil {
		return dbErr(fmt.Sprintf("create user %q", u.Username), err)
	}
	u.utc()
	return nil
}

// firstUserLockKey is the transaction-level advisory lock under which
// CreateFirstUser checks that the table is empty ("mcpauth:firstusr").
const firstUserLockKey int64 = 0x6d63_7066_7573_7231

// CreateFirstUser inserts u only when there is no user at all, and reports
// whether it did. Two servers starting at once against an empty database
// create one user between them: the check and the insert run in one
// transaction under an advisory lock.
func (db *DB) CreateFirstUser(ctx context.Context, u *User) (created bool, err error) {
	err = db.InTx(ctx, func(ctx context.Context) error {
		if _, err := db.q(ctx).Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, firstUserLockKey); err != nil {
			return dbErr("create first user: lock", err)
		}
		var exists bool
		if err := db.q(ctx).QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users)`).Scan(&exists); err != nil {
			return dbErr("create first user", err)
		}
		if exists {
			return nil
		}
		if err := db.CreateUser(ctx, u); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return created, nil
}

// UserByName returns the user with this username in any letter case,
// disabled or not.
func (db *DB) UserByName(ctx context.Context, username string) (*User, error) {
	var u User
	err := db.q(ctx).QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE lower(u.username) = lower($1)`,
		username).Scan(u.dest()...)
	if err != nil {
		return nil, dbErr(fmt.Sprintf("get user %q", username), err)
	}
	return u.utc(), nil
}

// UserByID returns the user with this id, disabled or not. An id that is
// not a UUID is not found.
func (db *DB) UserByID(ctx context.Context, id string) (*User, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, dbErr(fmt.Sprintf("get user %q", id), pgx.ErrNoRows)
	}
	var u User
	err := db.q(ctx).QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.id = $1`, id).Scan(u.dest()...)
	if err != nil {
		return nil, dbErr(fmt.Sprintf("get user %q", id), err)
	}
	return u.utc(), nil
}

// ListUsers returns every user, in username order (case-insensitive).
func (db *DB) ListUsers(ctx context.Context) ([]*User, error) {
	rows, err := db.q(ctx).Query(ctx, `SELECT `+userColumns+` FROM users u ORDER BY lower(u.username)`)
	if err != nil {
		return nil, dbErr("list users", err)
	}
	defer rows.Close()
	var out []*User
	for rows.Next() {
		var u User
		if err := rows.Scan(u.dest()...); err != nil {
			return nil, dbErr("list users", err)
		}
		out = append(out, u.utc())
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr("list users", err)
	}
	return out, nil
}

// SetUserDisabled disables or re-enables a user. Disabling ends every
// browser session and revokes every grant of the user in the same
// transaction. Disabling a disabled user keeps the original DisabledAt. A
// missing user gives ErrNotFound.
func (db *DB) SetUserDisabled(ctx context.Context, id string, disabled bool) error {
	op := fmt.Sprintf("set user %q disabled", id)
	return db.InTx(ctx, func(ctx context.Context) error {
		if err := db.updateUser(ctx, op, id,
			`UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END, updated_at = now()
			 WHERE id = $1`, disabled); err != nil {
			return err
		}
		if !disabled {
			return nil
		}
		// A disabled user keeps nothing: no browser session, and no grant
		// (their access tokens stop working at /mcp on every replica and their
		// refresh tokens are dead), in the same transaction.
		if _, err := db.DeleteUserBrowserSessions(ctx, id); err != nil {
			return err
		}
		_, err := db.RevokeUserGrants(ctx, id)
		return err
	})
}

// SetUserPassword replaces a user's password hash and ends every browser
// session of the user in the same transaction. A missing user gives
// ErrNotFound.
func (db *DB) SetUserPassword(ctx context.Context, id, passwordHash string) error {
	op := fmt.Sprintf("set user %q password", id)
	if passwordHash == "" {
		return fmt.Errorf("%s: empty password hash", op)
	}
	return db.InTx(ctx, func(ctx context.Context) error {
		if err := db.updateUser(ctx, op, id,
			`UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1`, passwordHash); err != nil {
			return err
		}
		_, err := db.DeleteUserBrowserSessions(ctx, id)
		return err
	})
}

// RehashUserPassword replaces a user's password hash with a new hash of the
// same password (stronger parameters), only if the stored hash is still
// oldHash; sessions are kept. It reports whether it replaced the hash.
func (db *DB) RehashUserPassword(ctx context.Context, id, oldHash, newHash string) (bool, error) {
	if _, err := uuid.Parse(id); err != nil || newHash == "" {
		return false, nil
	}
	tag, err := db.q(ctx).Exec(ctx,
		`UPDATE users SET password_hash = $3, updated_at = now() WHERE id = $1 AND password_hash = $2`,
		id, oldHash, newHash)
	if err != nil {
		return false, dbErr(fmt.Sprintf("rehash user %q password", id), err)
	}
	return tag.RowsAffected() == 1, nil
}

// SetUserAdmin grants or removes the admin role. Removing it also revokes,
// in the same transaction and published to every replica, each grant of the
// user and each personal access token of theirs that holds one of
// adminOnlyScopes (the scopes only administrators may hold): a token must
// not outlive the role that let it be issued. A missing user gives
// ErrNotFound.
func (db *DB) SetUserAdmin(ctx context.Context, id string, admin bool, adminOnlyScopes []string) error {
	op := fmt.Sprintf("set user %q admin", id)
	return db.InTx(ctx, func(ctx context.Context) error {
		if err := db.updateUser(ctx, op, id,
			`UPDATE users SET is_admin = $2, updated_at = now() WHERE id = $1`, admin); err != nil {
			return err
		}
		if admin || len(adminOnlyScopes) == 0 {
			return nil
		}
		rows, err := db.q(ctx).Query(ctx, `
			SELECT request_id::text FROM oauth_refresh_tokens WHERE subject = $1 AND granted_scopes && $2 AND active AND expires_at > now()
			UNION SELECT request_id::text FROM oauth_access_tokens WHERE subject = $1 AND granted_scopes && $2 AND expires_at > now()
			UNION SELECT request_id::text FROM oauth_codes WHERE subject = $1 AND granted_scopes && $2 AND active AND expires_at > now()`,
			id, adminOnlyScopes)
		if err != nil {
			return dbErr(op, err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return dbErr(op, err)
		}
		if _, err := db.revokeGrants(ctx, op, ids); err != nil {
			return err
		}
		_, err = db.revokePATs(ctx, op, "user_id = $1 AND scopes && $2", id, adminOnlyScopes)
		return err
	})
}

// updateUser runs an UPDATE of one user by id ($1) with one more argument
// ($2); no row is ErrNotFound.
func (db *DB) updateUser(ctx context.Context, op, id, sql string, arg any) error {
	if _, err := uuid.Parse(id); err != nil {
		return dbErr(op, pgx.ErrNoRows)
	}
	tag, err := db.q(ctx).Exec(ctx, sql, id, arg)
	if err != nil {
		return dbErr(op, err)
	}
	if tag.RowsAffected() == 0 {
		return dbErr(op, pgx.ErrNoRows)
	}
	return nil
}

// ErrNotAdmin is wrapped by Administrator's refusals; the text after it says
// why and is safe to show to the caller.
var ErrNotAdmin = errors.New("not an administrator")

// Administrator decides whether the holder of a token may administer the
// server, whatever the token's scopes say (the callers check the admin
// scope): for a user's token (subject a user id), the user must be an
// enabled administrator now — a token outlives a demotion by up to its
// lifetime; for a client's own token (client_credentials: subject "" or the
// client id), the client must be enabled and created by an administrator.
// It returns the user (nil for a client), or an error wrapping ErrNotAdmin;
// other errors are database failures. The admin console, the admin API and
// the admin MCP tools all ask here.
func (db *DB) Administrator(ctx context.Context, subject, clientID string) (*User, error) {
	if subject == "" || subject == clientID {
		c, err := db.Client(ctx, clientID)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil, fmt.Errorf("%w: the calling client no longer exists", ErrNotAdmin)
		case err != nil:
			return nil, err
		case c.DisabledAt != nil || c.Source != SourceAdmin:
			return nil, fmt.Errorf("%w: only a client created by an administrator may administer on its own behalf", ErrNotAdmin)
		}
		return nil, nil
	}
	u, err := db.UserByID(ctx, subject)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("%w: the calling user no longer exists", ErrNotAdmin)
	case err != nil:
		return nil, err
	case u.DisabledAt != nil || !u.IsAdmin:
		return nil, fmt.Errorf("%w: the calling user is not an administrator", ErrNotAdmin)
	}
	return u, nil
}
