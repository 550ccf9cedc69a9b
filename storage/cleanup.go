package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// cleanupLockKey is the pg_try_advisory_lock key under which one replica at a time
// deletes expired rows ("mcpauth:cleanup" as a number).
const cleanupLockKey int64 = 0x6d63_7061_636c_6e75

// cleanupBatch is how many rows one DELETE removes, so no statement holds locks
// on a large part of a hot table for long.
const cleanupBatch = 5000

// usedCodeRetention keeps an authorization code this long after it expires, so a
// replay of a used code within that window is still recognised and revokes the
// tokens it issued (RFC 6749 §4.1.2) instead of being a plain "not found".
const usedCodeRetention = time.Hour

// cleanupTables lists every table with an expires_at column and how long a row is
// kept after it. Inactive (rotated or revoked) refresh tokens stay until their own
// expires_at, which keeps refresh-token reuse detection working for as long as the
// token could have been used.
var cleanupTables = []struct {
	table string
	grace time.Duration
}{
	{"oauth_codes", usedCodeRetention},
	{"oauth_access_tokens", 0},
	{"oauth_refresh_tokens", 0},
	{"oauth_jti", 0},
	{"oauth_consents", 0}, // expires_at NULL = never: not matched
	{"browser_sessions", 0},
}

// SetAuditRetention makes Cleanup delete audit events older than keep; 0
// (the default) keeps them forever.
func (db *DB) SetAuditRetention(keep time.Duration) { db.auditRetention.Store(int64(max(keep, 0))) }

// Cleanup deletes expired rows from every table that has expires_at, and audit
// events older than the audit retention, in batches, and returns how many it
// deleted. It runs under a PostgreSQL advisory lock so that
// only one replica cleans at a time; when another holds the lock it returns (0, nil)
// at once.
func (db *DB) Cleanup(ctx context.Context) (deleted int64, err error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return 0, dbErr("cleanup: acquire connection", err)
	}
	defer conn.Release()

	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, cleanupLockKey).Scan(&locked); err != nil {
		return 0, dbErr("cleanup: lock", err)
	}
	if !locked {
		return 0, nil
	}
	defer func() {
		// Unlock even if ctx is cancelled; if that fails, close the connection,
		// which releases the session-level lock.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, cleanupLockKey); uerr != nil {
			_ = conn.Hijack().Close(uctx)
			err = errors.Join(err, dbErr("cleanup: unlock", uerr))
		}
	}()

	if keep := time.Duration(db.auditRetention.Load()); keep > 0 {
		n, err := db.PruneAuditEvents(ctx, time.Now().Add(-keep))
		deleted += n
		if err != nil {
			return deleted, err
		}
	}
	for _, t := range cleanupTables {
		// The table name comes from the constant list above, never from input.
		q := fmt.Sprintf(`DELETE FROM %[1]s WHERE ctid = ANY(ARRAY(
			SELECT ctid FROM %[1]s WHERE expires_at < now() - make_interval(secs => $1) LIMIT $2))`, t.table)
		for {
			tag, err := conn.Exec(ctx, q, t.grace.Seconds(), cleanupBatch)
			if err != nil {
				return deleted, dbErr("cleanup "+t.table, err)
			}
			deleted += tag.RowsAffected()
			if tag.RowsAffected() < cleanupBatch {
				break
			}
		}
	}
	return deleted, nil
}

// RunCleanup calls Cleanup now and then every interval (a minute if every <= 0)
// until ctx is done, logging what it deleted and any error.
func (db *DB) RunCleanup(ctx context.Context, every time.Duration, log *slog.Logger) {
	if every <= 0 {
		every = time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := db.Cleanup(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			log.ErrorContext(ctx, "cleanup of expired rows failed", "err", err)
		case n > 0:
			log.InfoContext(ctx, "deleted expired rows", "rows", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
