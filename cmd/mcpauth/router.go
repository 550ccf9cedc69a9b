package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcpauth/mcpauth/resource/upstream"
)

// routerDeps is what the router mounts.
type routerDeps struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	ready   func(context.Context) error // nil error: ready to serve
	// upstreams, if not nil, is the state of the upstream MCP servers, shown
	// by /readyz; an upstream that is down does not make mcpauth unready.
	upstreams func() []upstream.Status
	authz     http.Handler // the authorization server's Routes(), at the root
	// resource is the resource server's Routes(), at the MCP endpoint's
	// path and the protected resource metadata paths (RFC 9728 §3.1).
	resource     http.Handler
	resourcePath string
}

// newRouter builds the one router of the process: operations endpoints and
// every package's routes behind the common middleware.
func newRouter(d routerDeps) http.Handler {
	r := chi.NewRouter()
	if len(d.cfg.TrustedProxies) > 0 {
		prefixes := make([]string, len(d.cfg.TrustedProxies))
		for i, p := range d.cfg.TrustedProxies {
			prefixes[i] = p.String()
		}
		r.Use(middleware.ClientIPFromXFF(prefixes...))
	} else {
		r.Use(middleware.ClientIPFromRemoteAddr)
	}
	r.Use(withRequestID, instrument(d.log, d.metrics), recoverPanic(d.log), middleware.GetHead)

	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
	r.Get("/readyz", handleReady(d.log, d.ready, d.upstreams))
	r.Handle("/metrics", promhttp.HandlerFor(d.metrics.registry, promhttp.HandlerOpts{}))
	if d.resource != nil {
		const prm = "/.well-known/oauth-protected-resource"
		r.Handle(d.resourcePath, d.resource)
		r.Handle(prm, d.resource)
		r.Handle(prm+d.resourcePath, d.resource)
	}
	r.With(readDeadline(readBodyTimeout)).Mount("/", d.authz)
	return r
}

// readBodyTimeout bounds how long the authorization server's endpoints
// wait for a request body (slow-body attacks); their bodies are small.
const readBodyTimeout = 30 * time.Second

// readDeadline sets a read deadline on the connection for one request, so a
// client that trickles its body cannot hold the handler. It is not applied
// to /mcp, whose tool calls may run long: net/http's background read would
// hit the deadline and cancel them.
func readDeadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Body != nil && r.Body != http.NoBody {
				_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
			}
			next.ServeHTTP(w, r)
		})
	}
}

// clientIP is the client's address as the ClientIP middleware established
// it: the peer, or the last untrusted hop of X-Forwarded-For when the peer is
// a trusted proxy.
func clientIP(ctx context.Context) string { return middleware.GetClientIP(ctx) }

// withRequestID gives every request a fresh random id, in the context (for
// the logs) and in the X-Request-Id response header. An id sent by the client
// is not trusted: it would let anyone write into our logs.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := rand.Text()[:16]
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

// recoverPanic turns a panic into a bare 500; the stack goes to the log only.
func recoverPanic(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.ErrorContext(r.Context(), "panic serving request", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("Cache-Control", "no-store")
					w.WriteHeader(http.StatusInternalServerError)
					fmt.Fprintln(w, `{"error":"server_error","error_description":"internal error"}`)
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// instrument records every request in the metrics and in one access-log
// line. It logs the path, never the query: a query can carry a code or state.
func instrument(log *slog.Logger, m *metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			elapsed := time.Since(start)
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			route := "unmatched"
			if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
				route = rc.RoutePattern()
			}
			m.requests.WithLabelValues(route, r.Method, strconv.Itoa(status)).Inc()
			m.duration.WithLabelValues(route, r.Method).Observe(elapsed.Seconds())
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelError
			}
			log.Log(r.Context(), level, "request",
				"method", r.Method, "path", r.URL.Path, "route", route, "status", status,
				"bytes", ww.BytesWritten(), "duration_ms", float64(elapsed.Microseconds())/1000)
		})
	}
}

// handleReady answers 200 while ready reports no problem, 503 otherwise.
// Details go to the log, not to the (unauthenticated) caller. The state of
// each upstream MCP server is listed (transport, state, tool count,
// restarts; never an error text) but does not decide readiness: the other
// tools still work while one upstream is down.
func handleReady(log *slog.Logger, ready func(context.Context) error, upstreams func() []upstream.Status) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		status, body := http.StatusOK, map[string]any{"status": "ready", "database": "ok"}
		if err := ready(ctx); err != nil {
			log.WarnContext(r.Context(), "not ready", "err", err)
			w.Header().Set("Retry-After", "1")
			status, body = http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "database": "unreachable"}
		}
		if upstreams != nil {
			if list := upstreams(); len(list) > 0 {
				m := make(map[string]upstream.Status, len(list))
				for _, u := range list {
					m[u.Name] = u
				}
				body["upstreams"] = m
			}
		}
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	}
}

// metrics are the Prometheus metrics of the process, on their own registry.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(extra ...prometheus.Collector) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpauth_http_requests_total",
			Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mcpauth_http_request_duration_seconds",
			Help:    "HTTP request latency by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
	}
	m.registry.MustRegister(m.requests, m.duration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.registry.MustRegister(extra...)
	return m
}
