// Package storage is mcpauth's PostgreSQL layer (pgx/v5): it implements fosite's
// storage interfaces (clients, authorization codes with PKCE, access and refresh
// tokens, revocation, client-assertion JTIs, transactions) over the schema in
// migrations/, plus the client records and the expired-row cleanup loop.
//
// Only hashes of tokens are stored: every token row is keyed by sha256 of fosite's
// signature. Single-use transitions (code invalidation, refresh rotation) are
// conditional UPDATEs, so the database serialises concurrent uses.
//
// storage imports nothing of mcpauth's and no net/http; callers (authz, cmd) import it.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"
	fositestorage "github.com/ory/fosite/storage"
)

var (
	// ErrNotFound reports a missing row. It is fosite.ErrNotFound itself, so fosite's
	// handlers recognise it with errors.Is (a missing code or refresh token becomes
	// invalid_grant, a missing client invalid_client).
	ErrNotFound error = fosite.ErrNotFound
	// ErrConflict reports a unique-constraint violation (SQLSTATE 23505), e.g. a
	// client id that already exists.
	ErrConflict error = errors.New("already exists")
	// ErrCodeUsed is returned by InvalidateAuthorizeCodeSession when the code was
	// already invalidated (or does not exist): another exchange of the same code won
	// the race. The token endpoint must map it to invalid_grant (RFC 6749 §4.1.2:
	// a code is single-use) and revoke the tokens of the code's request id.
	ErrCodeUsed = errors.New("authorization code already used")
	// ErrUnavailable reports that PostgreSQL could not be reached or dropped
	// the connection (refused, reset, shut down, too many connections): the
	// operation did not happen, or, for a COMMIT, its outcome is unknown. It
	// is transient: the pool reconnects by itself once the server is back.
	// The HTTP layers answer it with 503 and Retry-After, never 500.
	ErrUnavailable = errors.New("database unavailable")
	// ErrRefreshTokenReused accompanies fosite.ErrInactiveToken from
	// GetRefreshTokenSession when the token was rotated before (not merely
	// revoked): someone presented a spent refresh token (RFC 9700 §4.14.2).
	ErrRefreshTokenReused = errors.New("refresh token reused")
	// ErrInvalidInput reports a value PostgreSQL cannot store or compare as
	// text: invalid UTF-8 or a NUL byte (SQLSTATE 22021
	// character_not_in_repertoire, 22P05 untranslatable_character). It is
	// the caller's input, not a server failure: the HTTP layers answer 400.
	ErrInvalidInput = errors.New("invalid input: not valid text")
)

// DB is mcpauth's PostgreSQL store. It is safe for concurrent use.
type DB struct {
	pool           *pgxpool.Pool
	auditRetention atomic.Int64 // time.Duration; 0 keeps audit events forever
}

var (
	_ fosite.Storage              = (*DB)(nil)
	_ fosite.ClientManager        = (*DB)(nil)
	_ fositestorage.Transactional = (*DB)(nil)
)

// DefaultConnectTimeout bounds the whole connection set-up (TCP, TLS,
// authentication) when the database URL sets no connect_timeout.
const DefaultConnectTimeout = 5 * time.Second

// Open connects a pool to the PostgreSQL database at url (postgres:// or
// postgresql://, or a key=value DSN) and pings it. Pool settings given in the URL
// (pool_max_conns, pool_max_conn_idle_time, ...) and connect_timeout win over
// the defaults set here.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors may quote the connection string, password included.
		return nil, errors.New("open database: cannot parse the database URL (want postgres://user:pass@host:port/db)")
	}
	set := poolSettings(url)
	if !set["pool_max_conns"] {
		// The token endpoint holds a connection for one short transaction; a few per
		// core keeps PostgreSQL busy without queueing inside it.
		cfg.MaxConns = int32(max(8, 4*runtime.GOMAXPROCS(0)))
	}
	if !set["pool_max_conn_idle_time"] {
		cfg.MaxConnIdleTime = 5 * time.Minute
	}
	if !set["pool_health_check_period"] {
		cfg.HealthCheckPeriod = 30 * time.Second
	}
	if !set["connect_timeout"] {
		// A server that accepts TCP but never answers (a partition, a
		// stopped host behind a live proxy) must fail the connect, not hang
		// it: pgx has no timeout of its own.
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "mcpauth"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db := &DB{pool: pool}
	if err := db.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	return db, nil
}

// poolSettings reports which pool_* parameters the URL or DSN sets.
func poolSettings(dsn string) map[string]bool {
	set := map[string]bool{}
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		for k := range u.Query() {
			set[k] = true
		}
		return set
	}
	for _, f := range strings.Fields(dsn) {
		if k, _, ok := strings.Cut(f, "="); ok {
			set[k] = true
		}
	}
	return set
}

// Close closes every connection of the pool.
func (db *DB) Close() { db.pool.Close() }

// Ping checks that the database answers (for /readyz).
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// Stat returns the pool's statistics (for /metrics).
func (db *DB) Stat() *pgxpool.Stat { return db.pool.Stat() }

// Pool returns the underlying pool, for sibling files and tests. Code outside this
// package should prefer DB's methods.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// querier is what both *pgxpool.Pool and pgx.Tx provide.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// txKey is the context key of the transaction started by BeginTX.
type txKey struct{}

// q returns the transaction carried by ctx (fosite's Transactional), or the pool.
func (db *DB) q(ctx context.Context) querier {
	if tx, ok := ctx.Value(txKey{}).(pgx.Tx); ok {
		return tx
	}
	return db.pool
}

// dbErr translates a pgx error and wraps it with the operation:
// pgx.ErrNoRows → ErrNotFound, SQLSTATE 23505 → ErrConflict,
// 40001/40P01 → fosite.ErrSerializationFailure (which fosite's token handlers turn
// into a "retry" answer instead of a server error), a connection failure →
// ErrUnavailable. nil stays nil.
func dbErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%s: %w: %w", op, ErrConflict, err)
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return fmt.Errorf("%s: %w: %w", op, fosite.ErrSerializationFailure, err)
		case "22021", "22P05": // character_not_in_repertoire, untranslatable_character
			return fmt.Errorf("%s: %w: %w", op, ErrInvalidInput, err)
		}
	}
	if connectionFailure(err) {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// IsUnavailable reports whether err means that the database could not be
// reached: ErrUnavailable (what dbErr makes of a connection failure), or one
// of pgx's own connection errors that did not pass through dbErr (Open,
// Ping). A network error of anything else (an HTTP fetch) is not one.
func IsUnavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var connectErr *pgconn.ConnectError
	return errors.Is(err, ErrUnavailable) || errors.As(err, &connectErr) ||
		errors.Is(err, pgconn.ErrConnClosed) || unavailableCode(err)
}

// unavailableCode reports whether err is a PostgreSQL error saying that the
// server cannot serve: a connection exception, a shutdown or start-up in
// progress, or no connection slot left.
func unavailableCode(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "57P01", "57P02", "57P03": // admin_shutdown, crash_shutdown, cannot_connect_now
		return true
	case "53300": // too_many_connections
		return true
	}
	return strings.HasPrefix(pgErr.Code, "08") // connection_exception class
}

// connectionFailure reports whether err, returned by pgx, is PostgreSQL
// being unreachable rather than a problem with the statement: a failed
// dial, a connection closed or reset under the query, a server shutting
// down or starting up, out of connection slots, or not answering before the
// caller's deadline (context.DeadlineExceeded: the query or the wait for a
// pooled connection outlived it). A caller's own cancellation is not one. Only dbErr calls it: every network error in a
// pgx call is the database's.
func connectionFailure(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return unavailableCode(err)
	}
	var netErr net.Error
	switch {
	case IsUnavailable(err), errors.As(err, &netErr):
		return true
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	return pgconn.Timeout(err)
}

// BeginTX starts a transaction and returns a context carrying it; every DB method
// called with that context runs inside it. If ctx already carries a transaction,
// a nested one (a savepoint) is started. It implements fosite's storage.Transactional.
func (db *DB) BeginTX(ctx context.Context) (context.Context, error) {
	var (
		tx  pgx.Tx
		err error
	)
	if outer, ok := ctx.Value(txKey{}).(pgx.Tx); ok {
		tx, err = outer.Begin(ctx)
	} else {
		tx, err = db.pool.Begin(ctx)
	}
	if err != nil {
		return ctx, dbErr("begin transaction", err)
	}
	return context.WithValue(ctx, txKey{}, tx), nil
}

// Commit commits the transaction carried by ctx.
func (db *DB) Commit(ctx context.Context) error {
	tx, ok := ctx.Value(txKey{}).(pgx.Tx)
	if !ok {
		return errors.New("commit: no transaction in context")
	}
	return dbErr("commit", tx.Commit(ctx))
}

// Rollback rolls back the transaction carried by ctx. Rolling back a transaction
// that is already committed or rolled back is not an error (fosite calls Rollback
// after a failed Commit).
func (db *DB) Rollback(ctx context.Context) error {
	tx, ok := ctx.Value(txKey{}).(pgx.Tx)
	if !ok {
		return errors.New("rollback: no transaction in context")
	}
	// Roll back even when the request context is already cancelled, so the
	// connection goes back to the pool clean.
	err := tx.Rollback(context.WithoutCancel(ctx))
	if errors.Is(err, pgx.ErrTxClosed) {
		return nil
	}
	return dbErr("rollback", err)
}

// InTx runs fn in a transaction (nested in ctx's transaction if there is one),
// committing if fn returns nil and rolling back otherwise.
func (db *DB) InTx(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	txCtx, err := db.BeginTX(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if rbErr := db.Rollback(txCtx); rbErr != nil {
				err = errors.Join(err, rbErr)
			}
		}
	}()
	if err = fn(txCtx); err != nil {
		return err
	}
	return db.Commit(txCtx)
}
