package storage

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// sweepLockKey is the pg_try_advisory_lock key under which one replica at a
// time deletes unused dynamically registered clients ("mcpauth:sweepcl").
const sweepLockKey int64 = 0x6d63_7073_7765_636c

// sweepBatch is how many clients one transaction deletes.
const sweepBatch = 500

// DeleteUnusedClients deletes dynamically registered clients (source 'dcr') and
// clients known by their metadata document (source 'cimd', fetched again on
// their next use) created before createdBefore that were never used
// (last_used_at IS NULL) and have no authorization code, access token, refresh
// token or consent: clients that never obtained a grant (MCP clients that
// re-register on every connection leave many, and anyone can make the server
// store a document). A client with any live grant is never touched, and neither
// is one an administrator created. It returns how many it deleted.
//
// It works in batches, each in its own transaction: the candidates are locked
// FOR UPDATE SKIP LOCKED, which waits for no one and keeps a token or code from
// being inserted for them meanwhile (the foreign-key check of such an insert
// takes a lock that conflicts), then they are deleted by a second statement that
// checks every condition again on a fresh snapshot, so a grant committed just
// before the lock still saves its client. Like Cleanup it runs under an advisory
// lock, so only one replica sweeps at a time; when another holds it, it returns
// (0, nil) at once.
func (db *DB) DeleteUnusedClients(ctx context.Context, createdBefore time.Time) (deleted int64, err error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return 0, dbErr("sweep clients: acquire connection", err)
	}
	defer conn.Release()

	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, sweepLockKey).Scan(&locked); err != nil {
		return 0, dbErr("sweep clients: lock", err)
	}
	if !locked {
		return 0, nil
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, sweepLockKey); uerr != nil {
			_ = conn.Hijack().Close(uctx)
			err = errors.Join(err, dbErr("sweep clients: unlock", uerr))
		}
	}()

	for {
		var selected, n int64
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT c.id FROM oauth_clients c WHERE `+unusedClient+`
				ORDER BY c.created_at LIMIT $2 FOR UPDATE SKIP LOCKED`, createdBefore, sweepBatch)
			if err != nil {
				return err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			selected = int64(len(ids))
			if selected == 0 {
				return nil
			}
			tag, err := tx.Exec(ctx, `DELETE FROM oauth_clients c WHERE c.id = ANY($2) AND `+unusedClient,
				createdBefore, ids)
			if err != nil {
				return err
			}
			n = tag.RowsAffected()
			return nil
		})
		if err != nil {
			return deleted, dbErr("sweep clients", err)
		}
		deleted += n
		if selected < sweepBatch || n == 0 {
			return deleted, nil
		}
	}
}

// unusedClient is the condition on oauth_clients c of DeleteUnusedClients;
// $1 is the creation cutoff.
const unusedClient = `c.source IN ('dcr', 'cimd') AND c.created_at < $1 AND c.last_used_at IS NULL
	AND NOT EXISTS (SELECT 1 FROM oauth_codes t WHERE t.client_id = c.id)
	AND NOT EXISTS (SELECT 1 FROM oauth_access_tokens t WHERE t.client_id = c.id)
	AND NOT EXISTS (SELECT 1 FROM oauth_refresh_tokens t WHERE t.client_id = c.id)
	AND NOT EXISTS (SELECT 1 FROM oauth_consents t WHERE t.client_id = c.id)`
