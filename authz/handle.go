package authz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/memory"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// maxFormBytes caps every form or JSON body the server reads.
const maxFormBytes = 64 << 10

// handle adapts a handler that returns an error: an *oauth.Error is written
// as the OAuth error JSON; the database being unreachable is
// temporarily_unavailable/503 with Retry-After; anything else becomes
// server_error/500, logged with its cause and never shown. A body over the
// cap is 413.
func (s *Server) handle(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var tooBig *http.MaxBytesError
		var oe *oauth.Error
		switch {
		case errors.As(err, &tooBig):
			err = &oauth.Error{Code: oauth.InvalidRequest, Description: "request body too large", Status: http.StatusRequestEntityTooLarge, Err: err}
		case storage.IsUnavailable(err) && (!errors.As(err, &oe) || oe.HTTPStatus() >= 500) &&
			(oe == nil || oe.HTTPStatus() != http.StatusServiceUnavailable):
			// A server error caused by the outage is the outage; a client
			// error (400, 401) stays what it is, and a 503 is one already.
			err = unavailable(w, err)
		}
		switch status := oauth.WriteError(w, err); {
		case status == http.StatusServiceUnavailable:
			s.log.WarnContext(r.Context(), "request failed: database unavailable", "path", r.URL.Path, "err", err)
		case status >= 500:
			s.log.ErrorContext(r.Context(), "request failed", "path", r.URL.Path, "err", err)
		}
	}
}

// touchTimeout bounds the client's last-used update after a token response.
const touchTimeout = 2 * time.Second

// unavailableRetryAfter is the Retry-After (seconds) of an answer given
// while the database is unreachable: long enough not to hammer a recovering
// server, short enough for a restart or failover.
const unavailableRetryAfter = "5"

// unavailable is the answer to a request that needed the database while it
// was unreachable: temporarily_unavailable with 503 and Retry-After (RFC
// 6749 §4.1.2.1 and §5.2 use the code for a server that cannot handle the
// request for now; RFC 9110 §15.6.4 gives 503 its Retry-After). Nothing was
// issued: a token is written to the client only after its rows committed.
func unavailable(w http.ResponseWriter, err error) *oauth.Error {
	w.Header().Set("Retry-After", unavailableRetryAfter)
	return &oauth.Error{Code: oauth.TemporarilyUnavailable, Description: "the service is temporarily unavailable; retry later", Status: http.StatusServiceUnavailable, Err: err}
}

// problemUnavailable is checkClientAndRedirect's problem when the client
// could not be looked up because the database is unreachable.
const problemUnavailable = "The service is temporarily unavailable. Please try again in a moment."

// unavailablePage answers a browser page that needed the database while it
// was unreachable: 503 with Retry-After and a plain message.
func (s *Server) unavailablePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", unavailableRetryAfter)
	s.authorizePage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable", problemUnavailable)
}

// serverErrorPage is the status and message of a browser page for an error
// of the server's own: 503 with Retry-After while the database is
// unreachable (reloading the page later will work), 500 otherwise.
func serverErrorPage(w http.ResponseWriter, err error) (int, string) {
	if storage.IsUnavailable(err) {
		w.Header().Set("Retry-After", unavailableRetryAfter)
		return http.StatusServiceUnavailable, problemUnavailable
	}
	return http.StatusInternalServerError, "Something went wrong on our side. Please try again."
}

// openCORS lets browser-based clients (the MCP Inspector, web agents) call an
// endpoint from any origin without credentials (Fetch standard, CORS
// protocol): metadata, JWKS, registration, token and revocation. OPTIONS,
// preflight or not, is answered here, before any handler or rate limit.
func openCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Expose-Headers", "WWW-Authenticate, Retry-After, RateLimit, RateLimit-Policy")
		if r.Method == http.MethodOptions {
			h.Set("Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE, OPTIONS")
			// Clients send MCP-Protocol-Version on discovery, Authorization
			// and Content-Type on the token endpoint.
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// limits holds one limiter per budget, all on one store.
type limits struct {
	register, token, authorize, loginIP, loginUser *limiter.Limiter
}

// DefaultRateLimits are the budgets used where RateLimits leaves a zero
// Rate. Per client or IP, they are generous enough for many users behind
// one hosted client's egress, and tight on guessing passwords.
func DefaultRateLimits() RateLimits {
	return RateLimits{
		Register:     limiter.Rate{Period: time.Hour, Limit: 60},
		Token:        limiter.Rate{Period: time.Minute, Limit: 600},
		Authorize:    limiter.Rate{Period: time.Minute, Limit: 120},
		LoginPerIP:   limiter.Rate{Period: time.Minute, Limit: 30},
		LoginPerUser: limiter.Rate{Period: time.Hour, Limit: 20},
	}
}

func newLimits(rl RateLimits, store limiter.Store) *limits {
	if store == nil {
		store = memory.NewStore()
	}
	def := DefaultRateLimits()
	mk := func(r limiter.Rate, def limiter.Rate) *limiter.Limiter {
		if r.Limit == 0 {
			r = def
		}
		return limiter.New(store, r)
	}
	return &limits{
		register:  mk(rl.Register, def.Register),
		token:     mk(rl.Token, def.Token),
		authorize: mk(rl.Authorize, def.Authorize),
		loginIP:   mk(rl.LoginPerIP, def.LoginPerIP),
		loginUser: mk(rl.LoginPerUser, def.LoginPerUser),
	}
}

// errRateLimited is returned by allow when the budget is spent; the 429 and
// its headers are already written into the response headers.
var errRateLimited = &oauth.Error{Code: oauth.TemporarilyUnavailable, Description: "too many requests; retry later", Status: http.StatusTooManyRequests}

// allow spends one request of l's budget for key (prefixed by kind so that
// budgets never share counters). Over budget it sets Retry-After and the
// RateLimit headers and returns errRateLimited. A failing store (Redis down)
// lets the request through: rate limiting must not take the server down.
func (s *Server) allow(ctx context.Context, w http.ResponseWriter, l *limiter.Limiter, kind, key string) error {
	lc, err := l.Get(ctx, kind+":"+key)
	if err != nil {
		s.log.WarnContext(ctx, "rate limiter unavailable", "err", err)
		return nil
	}
	reset := time.Until(time.Unix(lc.Reset, 0))
	secs := max(1, int(reset.Round(time.Second)/time.Second))
	h := w.Header()
	h.Set("RateLimit-Policy", strconv.FormatInt(lc.Limit, 10)+";w="+strconv.Itoa(int(l.Rate.Period/time.Second)))
	h.Set("RateLimit", "limit="+strconv.FormatInt(lc.Limit, 10)+", remaining="+strconv.FormatInt(lc.Remaining, 10)+", reset="+strconv.Itoa(secs))
	if lc.Reached {
		h.Set("Retry-After", strconv.Itoa(secs))
		return errRateLimited
	}
	return nil
}

// spent is allow for budgets that are charged separately (Increment): it
// spends nothing, and answers errRateLimited with Retry-After when nothing
// is left.
func (s *Server) spent(ctx context.Context, w http.ResponseWriter, l *limiter.Limiter, key string) error {
	lc, err := l.Peek(ctx, key)
	if err != nil {
		s.log.WarnContext(ctx, "rate limiter unavailable", "err", err)
		return nil
	}
	if lc.Remaining > 0 && !lc.Reached {
		return nil
	}
	secs := max(1, int(time.Until(time.Unix(lc.Reset, 0)).Round(time.Second)/time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return errRateLimited
}

// clientIP is the client's address as cmd/mcpauth's trusted-proxy-aware
// ClientIP middleware established it, or the TCP peer when the handler runs
// without that middleware (tests).
func clientIP(r *http.Request) string {
	if ip := middleware.GetClientIP(r.Context()); ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// audience maps the RFC 8707 resource parameters of a request to the
// audience of the token: each must name the MCP endpoint (compared in
// canonical form, so a trailing slash or upper-case host does not matter);
// none means the MCP endpoint, because several real clients send none. The
// result is the configured resource string, byte for byte. Anything else is
// invalid_target (RFC 8707 §2).
func (s *Server) audience(resources []string) ([]string, error) {
	want, err := oauth.CanonicalResource(s.cfg.MCPResource)
	if err != nil {
		return nil, fmt.Errorf("configured MCP resource: %w", err)
	}
	for _, res := range resources {
		got, err := oauth.CanonicalResource(res)
		if err != nil {
			return nil, &oauth.Error{Code: oauth.InvalidTarget, Description: "invalid resource: " + err.Error()}
		}
		if got != want {
			return nil, &oauth.Error{Code: oauth.InvalidTarget, Description: "unknown resource; this server issues tokens for " + s.cfg.MCPResource}
		}
	}
	return []string{s.cfg.MCPResource}, nil
}
