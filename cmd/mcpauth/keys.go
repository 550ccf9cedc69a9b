package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/mcpauth/mcpauth/authz"
	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/storage"
)

// keys lists or rotates the token signing keys. Running servers pick up a
// rotation on their next reload (MCPAUTH_KEY_RELOAD_INTERVAL).
func (e *environment) keys(ctx context.Context, args []string) error {
	const synopsis = "keys list | rotate [--now]"
	if len(args) == 0 || (args[0] != "list" && args[0] != "rotate") {
		fmt.Fprintln(e.stderr, "usage: mcpauth", synopsis)
		return errUsage
	}
	fs := e.flags("keys "+args[0], synopsis)
	now := fs.Bool("now", false, "rotate: sign with the new key at once (after a key compromise) instead of after MCPAUTH_KEY_PUBLISH_AHEAD; verifiers that cached the JWKS reject the new tokens until their cache expires")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 || (*now && args[0] != "rotate") {
		fs.Usage()
		return errUsage
	}

	cfg, log, stop, err := e.commandConfig(ctx)
	if err != nil {
		return err
	}
	defer stop()
	if len(cfg.Secret) == 0 {
		return errors.New("MCPAUTH_SECRET: required with MCPAUTH_DATABASE_URL: the signing keys are sealed with it")
	}
	db, err := storage.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	ks, err := keys.New(ctx, db, cfg.Secret, keys.Options{
		PublishAhead: cfg.KeyPublishAhead,
		MaxTokenTTL:  max(cfg.AccessTokenTTL, authz.IDTokenTTL),
		Logger:       log,
	})
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}

	if args[0] == "rotate" {
		kid, err := ks.Rotate(ctx, *now)
		if err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		e.audit(ctx, db, storage.AuditEvent{Event: storage.EventKeyRotated, Subject: kid, Details: map[string]any{"immediate": *now}})
		for _, k := range ks.List() {
			if k.KID == kid {
				fmt.Fprintf(e.stdout, "new signing key %s: published now, signs from %s\n", kid, k.ActiveFrom.Local().Format(time.DateTime))
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tCREATED\tSIGNS FROM\tRETIRES\tLEAVES JWKS")
	for _, k := range ks.List() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.KID, k.Alg, k.State,
			stamp(&k.CreatedAt), stamp(&k.ActiveFrom), stamp(k.RetireAt), stamp(k.RemoveAt))
	}
	return tw.Flush()
}

func stamp(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}
