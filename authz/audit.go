package authz

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/storage"
)

// The audit log (issue 6 §7): what happened, who did it, to whom, from where.
//
// Events are written by a batching writer (RunAudit): a request hands its
// event to a bounded queue and goes on; the writer inserts what has queued
// up every auditFlushEvery, or as soon as auditBatch events wait, in one
// COPY. So the token endpoint pays a channel send per event, not a database
// round trip. An event's details are encoded before it is queued, at most
// storage.MaxAuditDetailsBytes, and the queue is bounded in bytes too
// (auditQueueBytes), so a database stall pins a bounded amount of memory.
// When the queue is full a request waits up to auditQueueWait for room (in
// events; none in bytes) and only then drops the event, counted in
// AuditDropped and logged. An event whose details cannot be encoded is
// dropped alone, counted and logged. When RunAudit is not running (tests, the CLI), events are written
// at once, synchronously. When RunAudit's context ends, it writes every
// event still queued before returning: a clean shutdown (requests drained
// first) loses nothing.

const (
	auditQueueSize  = 16 << 10
	auditBatch      = 1000
	auditFlushEvery = 100 * time.Millisecond
	auditQueueWait  = 100 * time.Millisecond
	// auditQueueBytes bounds the bytes queued (auditEventSize).
	auditQueueBytes = 8 << 20
	// auditWriteTimeout bounds one insert (a batch, or a synchronous event).
	auditWriteTimeout = 10 * time.Second
)

// auditLog is the writer's state.
type auditLog struct {
	queue   chan storage.AuditEvent
	mu      sync.RWMutex // held for reading while sending to queue, for writing to stop
	running bool
	queued  atomic.Int64 // bytes in queue (auditEventSize of each)
	dropped atomic.Uint64
	lastLog atomic.Int64 // unix nanoseconds of the last "dropped" warning
}

// auditEventSize is about what a queued event holds in memory.
func auditEventSize(e *storage.AuditEvent) int64 {
	return int64(128 + len(e.Event) + len(e.Actor) + len(e.Subject) + len(e.ClientID) + len(e.ClientIP) + len(e.EncodedDetails))
}

// initAudit prepares the audit log.
func (s *Server) initAudit() error {
	s.auditLog = &auditLog{queue: make(chan storage.AuditEvent, auditQueueSize)}
	return nil
}

// audit records an event with the request's client IP and the time. It does
// not wait for the database while RunAudit runs (see above). Callers never
// put a secret in e.Details.
func (s *Server) audit(r *http.Request, e storage.AuditEvent) {
	var ctx context.Context = context.Background()
	if r != nil {
		ctx = r.Context()
		if e.ClientIP == "" {
			e.ClientIP = clientIP(r)
		}
	}
	s.recordAudit(ctx, e)
}

// RecordAudit records e like the server's own events: with the client IP
// of ctx (set by cmd/mcpauth's router) when e has none, through the
// batching writer while RunAudit runs. For the resource server's admin
// tools.
func (s *Server) RecordAudit(ctx context.Context, e storage.AuditEvent) { s.recordAudit(ctx, e) }

// recordAudit records e (see audit) for callers without a request.
func (s *Server) recordAudit(ctx context.Context, e storage.AuditEvent) {
	if s.db == nil {
		return
	}
	if e.ClientIP == "" {
		e.ClientIP = middleware.GetClientIP(ctx) // set by cmd/mcpauth's router
	}
	if e.At.IsZero() {
		e.At = s.cfg.Now()
	}
	a := s.auditLog
	if err := storage.EncodeAuditDetails(&e); err != nil {
		a.dropped.Add(1)
		s.log.ErrorContext(ctx, "audit event not written", "event", e.Event, "err", err)
		return
	}
	a.mu.RLock()
	if a.running {
		size := auditEventSize(&e)
		if a.queued.Add(size) <= auditQueueBytes {
			select {
			case a.queue <- e:
				a.mu.RUnlock()
				return
			default:
			}
			t := time.NewTimer(auditQueueWait)
			select {
			case a.queue <- e:
				t.Stop()
				a.mu.RUnlock()
				return
			case <-t.C:
			}
		}
		a.queued.Add(-size)
		a.mu.RUnlock()
		n := a.dropped.Add(1)
		now := time.Now().UnixNano()
		if last := a.lastLog.Load(); now-last > int64(10*time.Second) && a.lastLog.CompareAndSwap(last, now) {
			s.log.WarnContext(ctx, "audit queue full: events dropped", "dropped_total", n)
		}
		return
	}
	a.mu.RUnlock()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditWriteTimeout)
	defer cancel()
	if err := s.db.InsertAuditEvents(wctx, []storage.AuditEvent{e}); err != nil {
		a.dropped.Add(1)
		s.log.ErrorContext(ctx, "audit event not written", "event", e.Event, "err", err)
	}
}

// AuditDropped is how many audit events were lost: queue full for longer
// than auditQueueWait, or the database refused them.
func (s *Server) AuditDropped() uint64 { return s.auditLog.dropped.Load() }

// RunAudit runs the batching audit writer until ctx is done, then writes
// whatever is still queued and returns. Run it once per Server.
func (s *Server) RunAudit(ctx context.Context) {
	if s.db == nil {
		return
	}
	a := s.auditLog
	a.mu.Lock()
	a.running = true
	a.mu.Unlock()

	batch := make([]storage.AuditEvent, 0, auditBatch)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditWriteTimeout)
		defer cancel()
		if err := s.db.InsertAuditEvents(wctx, batch); err != nil {
			a.dropped.Add(uint64(len(batch)))
			s.log.ErrorContext(ctx, "audit events not written", "events", len(batch), "err", err)
		}
		clear(batch)
		batch = batch[:0]
	}
	t := time.NewTicker(auditFlushEvery)
	defer t.Stop()
	for {
		select {
		case e := <-a.queue:
			a.queued.Add(-auditEventSize(&e))
			batch = append(batch, e)
			if len(batch) == auditBatch {
				flush()
			}
		case <-t.C:
			flush()
		case <-ctx.Done():
			// Stop taking events (senders in flight finish first), then
			// write everything queued.
			a.mu.Lock()
			a.running = false
			a.mu.Unlock()
			for {
				select {
				case e := <-a.queue:
					a.queued.Add(-auditEventSize(&e))
					batch = append(batch, e)
					if len(batch) == auditBatch {
						flush()
					}
					continue
				default:
				}
				break
			}
			flush()
			s.pats.touches.Wait()
			s.log.Log(context.WithoutCancel(ctx), slog.LevelDebug, "audit writer stopped")
			return
		}
	}
}

// clientAuditDetails describes a client for the audit log: its metadata,
// never a secret or a hash.
func clientAuditDetails(c *storage.Client) map[string]any {
	return map[string]any{
		"client_name":                c.Metadata.ClientName,
		"source":                     c.Source,
		"redirect_uris":              c.RedirectURIs,
		"grant_types":                c.GrantTypes,
		"scopes":                     c.Scopes,
		"token_endpoint_auth_method": c.TokenEndpointAuthMethod,
	}
}

// requestClientID is the client_id a token-endpoint-style request names (HTTP
// Basic or the form), for the audit log of a request fosite authenticated.
func requestClientID(r *http.Request) string {
	if u, _, ok := r.BasicAuth(); ok {
		if id, err := url.QueryUnescape(u); err == nil {
			return id
		}
	}
	return r.PostForm.Get("client_id")
}

// auditCodeReuse records that the used authorization code of req was
// presented again.
func (s *Server) auditCodeReuse(ctx context.Context, req fosite.Requester) {
	e := storage.AuditEvent{Event: storage.EventTokenReuseDetected,
		Details: map[string]any{"token": "authorization_code", "grant_id": req.GetID()}}
	if c := req.GetClient(); c != nil {
		e.ClientID = c.GetID()
		e.Actor = "client:" + e.ClientID
	}
	s.recordAudit(ctx, e)
}
