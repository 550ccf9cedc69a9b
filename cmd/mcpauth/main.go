// Command mcpauth is an OAuth 2.1 authorization server and MCP resource
// server in one binary. main stays thin: everything happens in run, which is
// also what the end-to-end tests call.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mcpauth:", err)
		os.Exit(1)
	}
}
