package storage

import (
	"context"
	"fmt"
)

// liveGrantsOfClient counts the live grants of the client row c: request ids
// with an active unexpired refresh token, an unexpired access token or an
// active unexpired authorization code. It is a scalar subquery over c.id.
const liveGrantsOfClient = `(SELECT count(*) FROM (
			SELECT request_id FROM oauth_refresh_tokens WHERE client_id = c.id AND active AND expires_at > now()
			UNION SELECT request_id FROM oauth_access_tokens WHERE client_id = c.id AND expires_at > now()
			UNION SELECT request_id FROM oauth_codes WHERE client_id = c.id AND active AND expires_at > now()) g)`

// CountLiveGrants returns the number of live grants of a client, counted
// as ListClientSummaries counts them; ErrNotFound if there is no such client.
func (db *DB) CountLiveGrants(ctx context.Context, clientID string) (int, error) {
	var n int
	err := db.q(ctx).QueryRow(ctx, `SELECT `+liveGrantsOfClient+` FROM oauth_clients c WHERE c.id = $1`, clientID).Scan(&n)
	if err != nil {
		return 0, dbErr(fmt.Sprintf("count live grants of client %q", clientID), err)
	}
	return n, nil
}
