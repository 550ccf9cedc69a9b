package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

const usage = `mcpauth — OAuth 2.1 authorization server and MCP resource server

Usage:
  mcpauth serve [--no-migrate]      run the server (configured by MCPAUTH_* variables)
  mcpauth dev                       run with zero configuration: a private PostgreSQL
                                    under ./.mcpauth/, on http://localhost:8080
  mcpauth migrate up|down|status    manage the database schema
  mcpauth keys list|rotate          list or rotate the token signing keys
  mcpauth user add|list|disable|enable|passwd|admin
                                    manage local user accounts
  mcpauth healthcheck [URL]         exit 0 if URL (default /healthz at MCPAUTH_ADDR)
                                    answers 200: for images without curl
  mcpauth client list|show|create|disable|enable|delete
                                    manage OAuth clients
  mcpauth token revoke|create|list  revoke grants and tokens; create and list
                                    personal access tokens
  mcpauth version                   print the version

Commands other than serve use MCPAUTH_DATABASE_URL, or the dev cluster under
./.mcpauth/ when it is unset (starting it if it is not running).
`

// errUsage is returned after the usage text was printed for a bad command line.
var errUsage = errors.New("bad command line (see mcpauth help)")

// run is the whole program: main only adds the process. getenv, stdout and
// stderr are the program's only view of its environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	env := &environment{getenv: getenv, stdout: stdout, stderr: stderr}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return env.serve(ctx, rest)
	case "dev":
		return env.dev(ctx, rest)
	case "migrate":
		return env.migrate(ctx, rest)
	case "keys":
		return env.keys(ctx, rest)
	case "user":
		return env.user(ctx, rest)
	case "healthcheck":
		return env.healthcheck(ctx, rest)
	case "client":
		return env.client(ctx, rest)
	case "token":
		return env.token(ctx, rest)
	case "version", "--version":
		fmt.Fprintln(stdout, "mcpauth", version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
}

// environment is what every command gets from run.
type environment struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// flags returns a flag set for a subcommand that reports to stderr.
func (e *environment) flags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: mcpauth %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; the flag package has already printed what was wrong.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	return nil
}

func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v = strings.TrimSpace(v + " " + s.Value[:12])
		}
	}
	return v
}
