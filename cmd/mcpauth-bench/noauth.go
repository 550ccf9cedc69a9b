package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ulule/limiter/v3"

	"github.com/mcpauth/mcpauth/resource"
)

// The auth-off baseline of DESIGN §7's /mcp target ("≥ 90 % of the same
// server's throughput with auth switched off"). `mcpauth serve` has no
// switch to turn authentication off, and gets none for the bench: the bench
// binary serves it itself, in a child process of its own
// (mcpauth-bench -serve-noauth ADDR), built from the same parts as serve's
// /mcp:
//
//   - resource.New with serve's resource.Config, but DisableAuth set (no
//     bearer check, no scope checks, no rate limits) and no Verify; the
//     Origin check, the body cap and the go-sdk Streamable HTTP handler
//     (stateless) are the same;
//   - a whoami tool with the same name, annotations, input and output
//     (resource.WhoamiOutput): with authentication off there is no token, so
//     the built-in one (hidden here by a policy rule) would only answer an
//     error; this one answers the identity the bench's user token carries,
//     built the same way;
//   - the same middleware chain as cmd/mcpauth's router, copied (a command
//     cannot import another): client IP, request id, Prometheus counter and
//     histogram and access log (at level warn, as the bench runs serve),
//     panic recovery, GET-for-HEAD. What is not there: the authorization
//     server's routes, the database pool (unused by /mcp), the pprof
//     listener and the background loops (key reload, cleanup, revocation
//     polling), none of which /mcp touches per request.

// serveNoAuth serves /mcp without authentication on addr until ctx is done.
// With pprofAddr, it serves net/http/pprof there (for -profile).
func serveNoAuth(ctx context.Context, addr, pprofAddr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if pprofAddr != "" {
		if host, _, err := net.SplitHostPort(pprofAddr); err != nil || !net.ParseIP(host).IsLoopback() {
			return fmt.Errorf("-noauth-pprof: want a loopback IP and port, got %q", pprofAddr)
		}
		pl, err := net.Listen("tcp", pprofAddr)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(pl)
	}
	base := "http://" + ln.Addr().String()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rs, err := resource.New(resource.Config{
		Resource:    base + "/mcp",
		Issuer:      base,
		DisableAuth: true,
		Scopes:      []string{"mcp"},
		Policy:      resource.Policy{Rules: []resource.ToolRule{{Match: "whoami", Hide: true}}},
		RateLimit:   limiter.Rate{Period: time.Second, Limit: 100_000_000},
		Version:     "bench",
	}, log)
	if err != nil {
		return err
	}
	expiry := time.Now().Add(time.Hour).UTC()
	mcp.AddTool(rs.MCP(), &mcp.Tool{
		Name:        "whoami",
		Title:       "Who am I",
		Description: "Describe the caller's access token (auth-off bench baseline: a fixed identity).",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true, OpenWorldHint: new(false)},
	}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, resource.WhoamiOutput, error) {
		return nil, resource.WhoamiOutput{
			Subject: "bench-user", ClientID: "bench-client", Scopes: []string{"mcp"},
			ExpiresAt: expiry, ExpiresIn: max(0, int64(time.Until(expiry)/time.Second)),
		}, nil
	})

	r := chi.NewRouter()
	r.Use(middleware.ClientIPFromRemoteAddr)
	r.Use(noauthRequestID, noauthInstrument(log, newNoauthMetrics()), noauthRecover(log), middleware.GetHead)
	r.Handle("/mcp", rs.Routes())
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Fprintf(os.Stdout, "serving %s\n", base)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// noauthRequestID is cmd/mcpauth's withRequestID.
func noauthRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := rand.Text()[:16]
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), noauthRequestIDKey{}, id)))
	})
}

type noauthRequestIDKey struct{}

// noauthRecover is cmd/mcpauth's recoverPanic.
func noauthRecover(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.ErrorContext(r.Context(), "panic serving request", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
					w.WriteHeader(http.StatusInternalServerError)
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

type noauthMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newNoauthMetrics are cmd/mcpauth's request metrics.
func newNoauthMetrics() *noauthMetrics {
	m := &noauthMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpauth_http_requests_total", Help: "HTTP requests."}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mcpauth_http_request_duration_seconds", Help: "HTTP request latency.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
	}
	prometheus.NewRegistry().MustRegister(m.requests, m.duration)
	return m
}

// noauthInstrument is cmd/mcpauth's instrument.
func noauthInstrument(log *slog.Logger, m *noauthMetrics) func(http.Handler) http.Handler {
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

// noauthServer is the -serve-noauth child process.
type noauthServer struct {
	base   string
	cmd    *exec.Cmd
	exited chan error
}

// startNoAuth starts this program with -serve-noauth on a free loopback
// port and waits until /mcp answers.
func startNoAuth(ctx context.Context, pprofAddr string) (*noauthServer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"-serve-noauth", addr}
	if pprofAddr != "" {
		args = append(args, "-noauth-pprof", pprofAddr)
	}
	s := &noauthServer{base: "http://" + addr, cmd: exec.Command(self, args...), exited: make(chan error, 1)}
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.exited <- s.cmd.Wait() }()
	deadline := time.After(30 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return s, nil
		}
		select {
		case err := <-s.exited:
			return nil, fmt.Errorf("mcpauth-bench -serve-noauth exited: %v", err)
		case <-deadline:
			s.stop()
			return nil, errors.New("mcpauth-bench -serve-noauth did not listen within 30s")
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *noauthServer) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}
