package resource

import (
	"context"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpauth/mcpauth/authz/oauth"
)

// receivingMiddleware runs inside the go-sdk, after its own decoding, for
// every request: it puts the caller's token in the context for TokenInfo,
// checks every tools/call again (the HTTP guard decided the 403 from its own
// parse; this is the authority that a call runs only with its scopes), and
// filters tools/list to the tools the caller may call unless
// Config.ListAllTools.
func (s *Server) receivingMiddleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		var ti *oauth.TokenInfo
		if extra := req.GetExtra(); extra != nil && extra.TokenInfo != nil {
			ti, _ = extra.TokenInfo.Extra[sdkExtraKey].(*oauth.TokenInfo)
		}
		if ti != nil {
			ctx = withTokenInfo(ctx, ti)
		}
		// The go-sdk runs handlers detached from the HTTP request for
		// protocol revisions before 2026-07-28, and in stateless mode a
		// client's notifications/cancelled arrives in another POST that
		// cannot reach this request. The POST is this request's whole life
		// (stateless), so once its HTTP context ends — the client went
		// away — nobody can receive the result: cancel the handler, which
		// cancels what it does (an upstream gets notifications/cancelled).
		if httpCtx, ok := ctx.Value(httpRequestKey{}).(context.Context); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(httpCtx, cancel)
			defer stop()
		}
		if s.cfg.DisableAuth {
			return next(ctx, method, req)
		}
		switch method {
		case "tools/call":
			params, _ := req.GetParams().(*mcp.CallToolParamsRaw)
			if params == nil {
				break // the go-sdk refuses it
			}
			tp := s.tool(params.Name)
			if tp == nil {
				// Not registered through AddTool (hidden, or added to the
				// go-sdk server directly): it does not exist.
				return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown tool %q", params.Name)}
			}
			if ti == nil || len(tp.missing(ti)) > 0 {
				s.log.ErrorContext(ctx, "tools/call reached the go-sdk without its scopes; the HTTP inspection missed it", "tool", params.Name)
				return nil, &jsonrpc.Error{Code: -32000, Message: "forbidden: insufficient scope"}
			}
		case "tools/list":
			res, err := next(ctx, method, req)
			if lr, ok := res.(*mcp.ListToolsResult); ok && err == nil {
				res = s.filterTools(lr, ti)
			}
			return res, err
		}
		return next(ctx, method, req)
	}
}

// httpRequestKey holds the context of the HTTP request that carries a
// JSON-RPC request (mcpHandler sets it; the go-sdk keeps context values).
type httpRequestKey struct{}

// filterTools keeps the tools registered through AddTool and, unless
// Config.ListAllTools, only those ti may call.
func (s *Server) filterTools(lr *mcp.ListToolsResult, ti *oauth.TokenInfo) *mcp.ListToolsResult {
	out := *lr
	out.Tools = make([]*mcp.Tool, 0, len(lr.Tools))
	for _, t := range lr.Tools {
		tp := s.tool(t.Name)
		if tp == nil || (!s.cfg.ListAllTools && len(tp.missing(ti)) > 0) {
			continue
		}
		out.Tools = append(out.Tools, t)
	}
	return &out
}
