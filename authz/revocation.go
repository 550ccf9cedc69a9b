package authz

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpauth/mcpauth/storage"
)

// The revocation fan-out (DESIGN §4): every replica keeps the set of revoked
// grants whose access tokens may not all have expired yet, so that
// VerifyAccessToken refuses their tokens without a database round trip. The
// set is loaded by New, kept current by RunRevocations from the
// mcpauth_revocations LISTEN channel that every revocation notifies in its
// own transaction (storage/revocation.go), reloaded whole after every
// (re)connect because notifications sent while disconnected are lost, and
// reconciled with the database periodically as the backstop.

const (
	// revocationReconcileEvery is how often the set is reloaded even though
	// the LISTEN connection is up.
	revocationReconcileEvery = 30 * time.Second
	// revocationLoadTimeout bounds New's first load of the set.
	revocationLoadTimeout = 30 * time.Second
	// Reconnection backoff: a connection that stayed up at least
	// revocationStableAfter is retried at once (a restart of PostgreSQL,
	// pg_terminate_backend); further failures wait from revocationBackoffMin
	// up to revocationBackoffMax, doubling.
	revocationStableAfter = 10 * time.Second
	revocationBackoffMin  = 100 * time.Millisecond
	revocationBackoffMax  = 10 * time.Second
)

// revocations is the in-memory set of revoked grants. Readers (the hot
// path) only Load; the one writer is RunRevocations's loop, so a reload can
// never drop a revocation that was applied before it.
type revocations struct {
	db  *storage.DB
	log *slog.Logger

	// grants maps a revoked grant id to the latest expiry of its access
	// tokens (zero when it came from a notification; the next reload fills
	// it in). A reload swaps in a new map.
	grants atomic.Pointer[sync.Map]

	// running is set while RunRevocations runs (it must run only once).
	running atomic.Bool
	// pid is the listening connection's backend pid (0 when disconnected).
	pid atomic.Uint32

	// Test hooks, set before RunRevocations starts: beforeListen runs
	// before every connection attempt; reconcileEvery replaces
	// revocationReconcileEvery when not zero.
	beforeListen   func(context.Context)
	reconcileEvery time.Duration
}

func newRevocations(db *storage.DB, log *slog.Logger) *revocations {
	r := &revocations{db: db, log: log}
	r.grants.Store(new(sync.Map))
	return r
}

// revoked reports whether the grant is revoked. It takes no lock.
func (r *revocations) revoked(grantID string) bool {
	_, ok := r.grants.Load().Load(grantID)
	return ok
}

// reload replaces the set with the database's.
func (r *revocations) reload(ctx context.Context) error {
	set, err := r.db.RevokedGrants(ctx)
	if err != nil {
		return err
	}
	m := new(sync.Map)
	for id, exp := range set {
		m.Store(id, exp)
	}
	r.grants.Store(m)
	return nil
}

// add records one revoked grant.
func (r *revocations) add(grantID string) {
	r.grants.Load().LoadOrStore(grantID, time.Time{})
}

// RunRevocations keeps the server's set of revoked grants current until ctx
// is done: it LISTENs for revocations on a connection of its own, reloads the
// whole set after every (re)connect and every 30 s, and reconnects with
// backoff. cmd/mcpauth starts it once per process, next to the HTTP server;
// without it a revocation made elsewhere (another replica, the CLI, the
// admin tools) reaches this server's VerifyAccessToken only on restart.
func (s *Server) RunRevocations(ctx context.Context) {
	r := s.oauth.revoked
	if r.db == nil {
		s.log.ErrorContext(ctx, "revocations: no database")
		return
	}
	if !r.running.CompareAndSwap(false, true) {
		s.log.ErrorContext(ctx, "revocations: RunRevocations is already running")
		return
	}
	defer r.running.Store(false)
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		if r.beforeListen != nil {
			r.beforeListen(ctx)
		}
		start := time.Now()
		err := r.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case time.Since(start) >= revocationStableAfter:
			backoff = 0
		case backoff == 0:
			backoff = revocationBackoffMin
		default:
			backoff = min(2*backoff, revocationBackoffMax)
		}
		s.log.WarnContext(ctx, "revocations: listener disconnected; reconnecting", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// listen runs one connection: LISTEN, reload the set (notifications from
// then on are queued), then apply notifications and reconcile periodically
// until the connection fails or ctx is done.
func (r *revocations) listen(ctx context.Context) error {
	l, err := r.db.ListenRevocations(ctx)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	ids := make(chan string, 256)
	done := make(chan error, 1)
	defer func() {
		cancel()
		<-done // the receiver has stopped using the connection
		r.pid.Store(0)
		_ = l.Close(context.WithoutCancel(ctx))
	}()
	go func() {
		for {
			id, err := l.Next(lctx)
			if err != nil {
				done <- err
				return
			}
			select {
			case ids <- id:
			case <-lctx.Done():
				done <- lctx.Err()
				return
			}
		}
	}()
	if err := r.reload(ctx); err != nil {
		return err
	}
	r.pid.Store(l.PID())

	every := r.reconcileEvery
	if every <= 0 {
		every = revocationReconcileEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case id := <-ids:
			r.add(id)
		case <-tick.C:
			if err := r.reload(ctx); err != nil && ctx.Err() == nil {
				r.log.WarnContext(ctx, "revocations: reconcile failed", "err", err)
			}
		case err := <-done:
			done <- err // for the deferred wait
			if err == nil {
				err = errors.New("revocation listener stopped")
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
