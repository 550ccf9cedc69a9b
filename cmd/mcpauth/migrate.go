package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/mcpauth/mcpauth/migrations"
)

// commandConfig is the configuration of a command run next to a server:
// MCPAUTH_DATABASE_URL, or the dev cluster (started if needed; stop stops it
// again if this command started it). Log output is text on stderr.
func (e *environment) commandConfig(ctx context.Context) (cfg Config, log *slog.Logger, stop func(), err error) {
	cfg = DefaultConfig()
	cfg.LogFormat = "text"
	cfg.LogLevel = slog.LevelWarn
	if err := cfg.load(e.getenv); err != nil {
		return cfg, nil, nil, configError(err)
	}
	log = newLogger(e.stderr, cfg)
	stop, err = e.useDatabase(ctx, &cfg, log)
	return cfg, log, stop, err
}

// migrate applies, reverts or reports the database schema migrations.
func (e *environment) migrate(ctx context.Context, args []string) error {
	const synopsis = "migrate up | down [N|all] | status"
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "usage: mcpauth", synopsis)
		return errUsage
	}
	steps := 1
	switch args[0] {
	case "up", "status":
		if len(args) != 1 {
			fmt.Fprintln(e.stderr, "usage: mcpauth", synopsis)
			return errUsage
		}
	case "down":
		switch {
		case len(args) == 1:
		case len(args) == 2 && args[1] == "all":
			steps = -1
		case len(args) == 2:
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 1 {
				fmt.Fprintf(e.stderr, "migrate down: want a positive number of steps or \"all\", got %q\n", args[1])
				return errUsage
			}
			steps = n
		default:
			fmt.Fprintln(e.stderr, "usage: mcpauth", synopsis)
			return errUsage
		}
	default:
		fmt.Fprintf(e.stderr, "migrate: unknown subcommand %q\nusage: mcpauth %s\n", args[0], synopsis)
		return errUsage
	}

	cfg, _, stop, err := e.commandConfig(ctx)
	if err != nil {
		return err
	}
	defer stop()
	switch args[0] {
	case "up":
		err = migrations.Up(ctx, cfg.DatabaseURL)
	case "down":
		err = migrations.Down(ctx, cfg.DatabaseURL, steps)
	}
	if err != nil {
		return fmt.Errorf("migrate %s: %w", args[0], err)
	}
	st, err := migrations.CurrentStatus(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("migration status: %w", err)
	}
	dirty := ""
	if st.Dirty {
		dirty = " (dirty: that migration failed part-way; repair the schema by hand, then set dirty = false in schema_migrations)"
	}
	fmt.Fprintf(e.stdout, "schema version %d of %d%s\n", st.Version, st.Latest, dirty)
	return nil
}
