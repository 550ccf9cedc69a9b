package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/resource"
)

// CodeUpstream is the JSON-RPC error code (the implementation-defined
// server-error range of JSON-RPC 2.0 §5.1) of a call mcpauth could not
// complete with the upstream: not connected, connection lost, no answer in
// time, result too large. Errors the upstream itself returns are passed on
// with their own code.
const CodeUpstream = -32000

// An upstream's JSON-RPC error is passed on only up to these sizes: its
// message, and the whole error as JSON (with its data).
const (
	maxErrorMessage = 4 << 10
	maxErrorBytes   = 16 << 10
)

// progressSink is where an upstream's progress for one call goes: the
// downstream request's session and context, under the client's own token.
// Notifications wait in a small buffer that run writes out, so that a
// client that stops reading holds up only its own progress: the go-sdk
// client handles an upstream's notifications one at a time, and a blocked
// write would hold up every later one (other callers' progress, list
// changes).
type progressSink struct {
	ctx     context.Context
	session *mcp.ServerSession
	token   any
	queue   chan *mcp.ProgressNotificationParams
}

// progressBuffer is how many progress notifications of one call wait for
// a slow client; more are dropped (progress is advisory, MCP "Progress").
const progressBuffer = 16

// run writes the sink's notifications to the client until ctx ends.
func (p *progressSink) run(log *slog.Logger) {
	for {
		select {
		case <-p.ctx.Done():
			return
		case n := <-p.queue:
			if err := p.session.NotifyProgress(p.ctx, n); err != nil {
				log.Debug("progress not forwarded", "err", err)
			}
		}
	}
}

// handler proxies tools/call of the upstream tool name to the upstream.
func (u *upstream) handler(name string) mcp.ToolHandler {
	prefixed := u.cfg.Prefix + name
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		start := time.Now()
		res, outcome, err := u.call(ctx, name, req)
		u.m.observe(u.cfg.Name, u.label(prefixed), outcome, time.Since(start))
		return res, err
	}
}

func (u *upstream) upstreamError(format string, args ...any) *jsonrpc.Error {
	return &jsonrpc.Error{Code: CodeUpstream, Message: "upstream " + u.cfg.Name + ": " + fmt.Sprintf(format, args...)}
}

// call forwards one tools/call and reports its outcome.
func (u *upstream) call(ctx context.Context, name string, req *mcp.CallToolRequest) (*mcp.CallToolResult, string, error) {
	s := u.current()
	if s == nil {
		return nil, OutcomeUnavailable, u.upstreamError("unavailable; retry later")
	}
	params := &mcp.CallToolParams{
		Name:           name,
		Meta:           u.meta(ctx, req.Params.Meta),
		InputResponses: req.Params.InputResponses,
		RequestState:   req.Params.RequestState,
	}
	if len(req.Params.Arguments) > 0 {
		params.Arguments = req.Params.Arguments
	}
	// Progress (MCP "Progress"): the upstream gets a token of ours, unique
	// across clients, and its notifications go back to this request's
	// stream under the client's token. No token, no progress.
	if tok := req.Params.GetProgressToken(); tok != nil && req.Session != nil {
		id := u.cfg.Name + "-" + strconv.FormatUint(u.progressID.Add(1), 10)
		pctx, stop := context.WithCancel(ctx)
		sink := &progressSink{ctx: pctx, session: req.Session, token: tok, queue: make(chan *mcp.ProgressNotificationParams, progressBuffer)}
		go sink.run(u.log)
		u.progress.Store(id, sink)
		defer func() {
			u.progress.Delete(id)
			stop()
		}()
		if params.Meta == nil {
			params.Meta = mcp.Meta{}
		}
		params.Meta["progressToken"] = id
	}

	cctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	if u.cfg.IdentityHeaders {
		cctx = withIdentity(cctx, resource.TokenInfo(ctx))
	}
	// A cancelled ctx (the client went away, or cancelled) makes the go-sdk
	// send notifications/cancelled to the upstream.
	res, err := s.CallTool(cctx, params)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, OutcomeCancelled, ctx.Err()
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		return nil, OutcomeTimeout, u.upstreamError("no answer within %s", u.cfg.Timeout)
	case errors.Is(err, mcp.ErrConnectionClosed):
		u.log.WarnContext(ctx, "upstream connection lost during a call", "tool", name, "err", err)
		return nil, OutcomeError, u.upstreamError("connection lost during the call; retry later")
	default:
		var rpcErr *jsonrpc.Error
		// -32003 and -32004 are the go-sdk's own "closing" errors, not the
		// upstream's.
		if errors.As(err, &rpcErr) && rpcErr.Code != 0 && rpcErr.Code != -32003 && rpcErr.Code != -32004 {
			// The upstream's own error, unchanged, unless it is too large.
			if b, err := json.Marshal(rpcErr); err != nil || len(rpcErr.Message) > maxErrorMessage || len(b) > min(maxErrorBytes, u.cfg.MaxResultBytes) {
				u.log.WarnContext(ctx, "upstream error too large", "tool", name, "bytes", len(b))
				return nil, OutcomeError, u.upstreamError("error too large")
			}
			return nil, OutcomeError, rpcErr
		}
		u.log.WarnContext(ctx, "upstream call failed", "tool", name, "err", err)
		return nil, OutcomeError, u.upstreamError("the call failed; the details are in mcpauth's log")
	}
	if res == nil {
		return nil, OutcomeError, u.upstreamError("empty result")
	}
	b, err := json.Marshal(res)
	if err != nil {
		u.log.WarnContext(ctx, "upstream result cannot be encoded", "tool", name, "err", err)
		return nil, OutcomeError, u.upstreamError("malformed result")
	}
	if len(b) > u.cfg.MaxResultBytes {
		u.log.WarnContext(ctx, "upstream result too large", "tool", name, "bytes", len(b), "max", u.cfg.MaxResultBytes)
		return nil, OutcomeTooLarge, u.upstreamError("result too large (%d bytes, at most %d)", len(b), u.cfg.MaxResultBytes)
	}
	if res.IsError {
		return res, OutcomeToolError, nil
	}
	return res, OutcomeOK, nil
}

// meta is the _meta forwarded upstream: the client's, without any key of
// mcpauth's own prefix (a client cannot forge an identity) and without its
// progress token (call sets ours), plus the caller's identity when
// configured.
func (u *upstream) meta(ctx context.Context, in mcp.Meta) mcp.Meta {
	out := mcp.Meta{}
	for k, v := range in {
		if strings.HasPrefix(k, MetaPrefix) || k == "progressToken" || reservedMeta(k) {
			continue
		}
		out[k] = v
	}
	if u.cfg.IdentityMeta {
		if ti := resource.TokenInfo(ctx); ti != nil {
			out[MetaSubject] = ti.Subject
			out[MetaClientID] = ti.ClientID
			out[MetaScope] = strings.Join(ti.Scopes, " ")
		}
	}
	if len(out) == 0 {
		return nil
	}
	return maps.Clone(out)
}

// reservedMeta reports whether a _meta key belongs to the MCP protocol
// itself: a prefix with a label modelcontextprotocol or mcp (MCP 2025-11-25
// "_meta" reserves modelcontextprotocol.io/, mcp.dev/…; the 2026-07-28
// revision uses io.modelcontextprotocol/protocolVersion and the like).
// Those describe the client's hop to mcpauth (its protocol version, client
// info and capabilities under 2026-07-28); the upstream connection has its
// own, which the go-sdk client sets.
func reservedMeta(key string) bool {
	prefix, _, ok := strings.Cut(key, "/")
	if !ok {
		return false
	}
	for l := range strings.SplitSeq(prefix, ".") {
		if l == "modelcontextprotocol" || l == "mcp" {
			return true
		}
	}
	return false
}

// forwardProgress passes an upstream's progress notification to the client
// whose call it belongs to, without waiting for it: others (unknown or
// finished calls), and those past a slow client's buffer, are dropped.
func (u *upstream) forwardProgress(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
	if req == nil || req.Params == nil {
		return
	}
	id, ok := req.Params.ProgressToken.(string)
	if !ok {
		return
	}
	v, ok := u.progress.Load(id)
	if !ok {
		return
	}
	sink := v.(*progressSink)
	select {
	case sink.queue <- &mcp.ProgressNotificationParams{
		ProgressToken: sink.token,
		Progress:      req.Params.Progress,
		Total:         req.Params.Total,
		Message:       truncate(req.Params.Message, 1000),
	}:
	default:
		u.log.Debug("progress dropped: the client is not reading", "token", id)
	}
}

type identityKey struct{}

// withIdentity puts the caller's identity where the HTTP transport finds it
// (identity headers).
func withIdentity(ctx context.Context, ti *oauth.TokenInfo) context.Context {
	if ti == nil {
		return ctx
	}
	return context.WithValue(ctx, identityKey{}, ti)
}

func identity(ctx context.Context) *oauth.TokenInfo {
	ti, _ := ctx.Value(identityKey{}).(*oauth.TokenInfo)
	return ti
}
