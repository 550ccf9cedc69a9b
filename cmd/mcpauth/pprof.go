package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// servePprof serves net/http/pprof on addr (a loopback address, checked by
// Validate), on a listener and server of its own: the profiles never reach
// the public listener or its router. It is off unless
// MCPAUTH_DEBUG_PPROF_ADDR is set; make bench -profile sets it to take CPU
// and allocation profiles of the server under load. stop closes it.
// (Importing net/http/pprof also registers its handlers on
// http.DefaultServeMux, which mcpauth never serves.)
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("MCPAUTH_DEBUG_PPROF_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Warn("serving pprof profiles: a debugging aid, not for production", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
