package storage

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/uuid"
)

// BrowserSession is a user's sign-in in a browser. The cookie carries a
// random id; the table keeps only its sha256, so a dump of the database
// signs nobody in.
type BrowserSession struct {
	UserID     string
	User       *User // the signed-in user, filled by BrowserSession
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time
	IP         string // client IP at sign-in; "" or unparsable: not stored
	UserAgent  string // capped at maxUserAgent bytes
}

const maxUserAgent = 512

// CreateBrowserSession stores a session under id (the random value of the
// cookie; only its sha256 is kept) and sets CreatedAt and LastSeenAt.
func (db *DB) CreateBrowserSession(ctx context.Context, id string, s *BrowserSession) error {
	if id == "" {
		return fmt.Errorf("create browser session: empty id")
	}
	if _, err := uuid.Parse(s.UserID); err != nil {
		return fmt.Errorf("create browser session: user id %q: %w", s.UserID, ErrNotFound)
	}
	var ip *netip.Addr
	if a, err := netip.ParseAddr(s.IP); err == nil {
		a = a.WithZone("")
		ip = &a
	}
	ua := s.UserAgent
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	err := db.q(ctx).QueryRow(ctx, `
		INSERT INTO browser_sessions (id_hash, user_id, expires_at, ip, user_agent)
		VALUES ($1, $2, $3, $4, $5)
		RETURNING created_at, last_seen_at`,
		sigHash(id), s.UserID, s.ExpiresAt, ip, nullString(ua),
	).Scan(&s.CreatedAt, &s.LastSeenAt)
	if err != nil {
		return dbErr("create browser session", err)
	}
	s.CreatedAt, s.LastSeenAt = s.CreatedAt.UTC(), s.LastSeenAt.UTC()
	return nil
}

// BrowserSession returns the session with this id, joined with its user.
// An unknown or expired session, or one of a disabled user, is ErrNotFound.
func (db *DB) BrowserSession(ctx context.Context, id string) (*BrowserSession, error) {
	var (
		s  BrowserSession
		u  User
		ip *netip.Addr
		ua *string
	)
	err := db.q(ctx).QueryRow(ctx, `
		SELECT s.created_at, s.last_seen_at, s.expires_at, s.ip, s.user_agent, `+userColumns+`
		FROM browser_sessions s JOIN users u ON u.id = s.user_id
		WHERE s.id_hash = $1 AND s.expires_at > now() AND u.disabled_at IS NULL`,
		sigHash(id),
	).Scan(append([]any{&s.CreatedAt, &s.LastSeenAt, &s.ExpiresAt, &ip, &ua}, u.dest()...)...)
	if err != nil {
		// The id is a credential: never in an error message.
		return nil, dbErr("get browser session", err)
	}
	s.User = u.utc()
	s.UserID = u.ID
	if ip != nil {
		s.IP = ip.String()
	}
	s.UserAgent = deref(ua)
	s.CreatedAt, s.LastSeenAt, s.ExpiresAt = s.CreatedAt.UTC(), s.LastSeenAt.UTC(), s.ExpiresAt.UTC()
	return &s, nil
}

// TouchBrowserSession records that the session was used, unless that was
// already recorded less than every ago, so that a busy browser costs one
// write a minute, not one per request. It reports whether it wrote.
func (db *DB) TouchBrowserSession(ctx context.Context, id string, every time.Duration) (bool, error) {
	tag, err := db.q(ctx).Exec(ctx, `
		UPDATE browser_sessions SET last_seen_at = now()
		WHERE id_hash = $1 AND last_seen_at <= now() - make_interval(secs => $2)`,
		sigHash(id), every.Seconds())
	if err != nil {
		return false, dbErr("touch browser session", err)
	}
	return tag.RowsAffected() == 1, nil
}

// DeleteBrowserSession ends one session. Ending an unknown session is not an
// error (sign-out must always succeed).
func (db *DB) DeleteBrowserSession(ctx context.Context, id string) error {
	_, err := db.q(ctx).Exec(ctx, `DELETE FROM browser_sessions WHERE id_hash = $1`, sigHash(id))
	return dbErr("delete browser session", err)
}

// DeleteUserBrowserSessions ends every session of a user (when the user is
// disabled or changes password) and returns how many there were.
func (db *DB) DeleteUserBrowserSessions(ctx context.Context, userID string) (int64, error) {
	if _, err := uuid.Parse(userID); err != nil {
		return 0, nil // no such user, so no session
	}
	tag, err := db.q(ctx).Exec(ctx, `DELETE FROM browser_sessions WHERE user_id = $1`, userID)
	if err != nil {
		return 0, dbErr(fmt.Sprintf("delete browser sessions of user %q", userID), err)
	}
	return tag.RowsAffected(), nil
}
