package storage

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// CountLivePersonalAccessTokens counts the user's personal access tokens
// that still work at now: neither revoked nor expired. A user id that is not
// a UUID has none.
func (db *DB) CountLivePersonalAccessTokens(ctx context.Context, userID string, now time.Time) (int, error) {
	if _, err := uuid.Parse(userID); err != nil {
		return 0, nil
	}
	var n int
	err := db.q(ctx).QueryRow(ctx, `SELECT count(*) FROM personal_access_tokens
		WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2`, userID, now).Scan(&n)
	if err != nil {
		return 0, dbErr("count live personal access tokens", err)
	}
	return n, nil
}
