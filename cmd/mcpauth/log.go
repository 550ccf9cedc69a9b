package main

import (
	"context"
	"io"
	"log/slog"
)

// newLogger builds the one logger of the process. Every record logged with a
// request's context carries that request's id and client IP.
func newLogger(w io.Writer, cfg Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(requestHandler{h})
}

type ctxKey int

const (
	requestIDKey ctxKey = iota
)

// requestHandler adds request_id and client_ip from the context (dex's
// cmd/dex/logger.go idea).
type requestHandler struct{ slog.Handler }

func (h requestHandler) Handle(ctx context.Context, r slog.Record) error {
	if id, ok := ctx.Value(requestIDKey).(string); ok {
		r.AddAttrs(slog.String("request_id", id))
	}
	if ip := clientIP(ctx); ip != "" {
		r.AddAttrs(slog.String("client_ip", ip))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestHandler{h.Handler.WithAttrs(as)}
}

func (h requestHandler) WithGroup(name string) slog.Handler {
	return requestHandler{h.Handler.WithGroup(name)}
}
