package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/mcpauth/mcpauth/authz"
	"github.com/mcpauth/mcpauth/storage"
)

const userSynopsis = `user add NAME [--admin] [--password-stdin]
       mcpauth user list
       mcpauth user disable NAME | enable NAME
       mcpauth user passwd NAME [--password-stdin]
       mcpauth user admin NAME on|off`

// user manages local user accounts: add, list, disable, enable, passwd,
// admin (grant or remove the administrator role).
// Without --password-stdin, add and passwd generate a password and print it
// once; with it they read one line from standard input (a pipe, so that
// the password stays out of the shell history and the process list).
func (e *environment) user(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "usage: mcpauth", userSynopsis)
		return errUsage
	}
	sub := args[0]
	fs := e.flags("user "+sub, userSynopsis)
	var admin, fromStdin *bool
	nargs := 1
	switch sub {
	case "add":
		admin = fs.Bool("admin", false, "give the user the administrator role")
		fromStdin = fs.Bool("password-stdin", false, "read the password from the first line of standard input instead of generating one")
	case "passwd":
		fromStdin = fs.Bool("password-stdin", false, "read the new password from the first line of standard input instead of generating one")
	case "disable", "enable":
	case "admin":
		nargs = 2
	case "list":
		nargs = 0
	default:
		fmt.Fprintf(e.stderr, "user: unknown subcommand %q\nusage: mcpauth %s\n", sub, userSynopsis)
		return errUsage
	}
	names, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(names) != nargs {
		fs.Usage()
		return errUsage
	}
	var name string
	if nargs >= 1 {
		name = names[0]
		if sub == "add" {
			if err := authz.ValidateUsername(name); err != nil {
				return fmt.Errorf("user add: %w", err)
			}
		}
	}

	// Read the password before connecting, so a bad one fails fast.
	var password string
	generated := false
	if fromStdin != nil {
		if *fromStdin {
			if password, err = readPasswordLine(os.Stdin); err != nil {
				return fmt.Errorf("user %s: password from standard input: %w", sub, err)
			}
		} else {
			password, generated = authz.GeneratePassword(), true
		}
	}

	cfg, _, stop, err := e.commandConfig(ctx)
	if err != nil {
		return err
	}
	defer stop()
	db, err := storage.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()

	switch sub {
	case "list":
		return e.listUsers(ctx, db)
	case "add":
		hash, err := authz.HashPassword(password)
		if err != nil {
			return fmt.Errorf("user add: %w", err)
		}
		u := &storage.User{Username: name, PasswordHash: hash, IsAdmin: *admin}
		if err := db.CreateUser(ctx, u); errors.Is(err, storage.ErrConflict) {
			return fmt.Errorf("user add: a user named %q already exists (names are case-insensitive)", name)
		} else if err != nil {
			return fmt.Errorf("user add: %w", err)
		}
		e.audit(ctx, db, storage.AuditEvent{Event: storage.EventUserCreated, Subject: u.Username,
			Details: map[string]any{"user_id": u.ID, "admin": u.IsAdmin}})
		role := ""
		if u.IsAdmin {
			role = " (administrator)"
		}
		fmt.Fprintf(e.stdout, "created user %s%s\n", u.Username, role)
	case "passwd":
		u, err := findUser(ctx, db, sub, name)
		if err != nil {
			return err
		}
		hash, err := authz.HashPassword(password)
		if err != nil {
			return fmt.Errorf("user passwd: %w", err)
		}
		if err := db.SetUserPassword(ctx, u.ID, hash); err != nil {
			return fmt.Errorf("user passwd: %w", err)
		}
		e.audit(ctx, db, storage.AuditEvent{Event: storage.EventUserPasswordReset, Subject: u.Username,
			Details: map[string]any{"user_id": u.ID}})
		fmt.Fprintf(e.stdout, "changed the password of %s and signed them out of every browser\n", u.Username)
	case "disable", "enable":
		u, err := findUser(ctx, db, sub, name)
		if err != nil {
			return err
		}
		if err := db.SetUserDisabled(ctx, u.ID, sub == "disable"); err != nil {
			return fmt.Errorf("user %s: %w", sub, err)
		}
		if sub == "disable" {
			e.audit(ctx, db, storage.AuditEvent{Event: storage.EventUserDisabled, Subject: u.Username, Details: map[string]any{"user_id": u.ID}})
			fmt.Fprintf(e.stdout, "disabled %s: they cannot sign in; their browser sessions are ended and every grant and personal access token of theirs is revoked\n", u.Username)
		} else {
			e.audit(ctx, db, storage.AuditEvent{Event: storage.EventUserEnabled, Subject: u.Username, Details: map[string]any{"user_id": u.ID}})
			fmt.Fprintf(e.stdout, "enabled %s (what was revoked stays revoked)\n", u.Username)
		}
	case "admin":
		var on bool
		switch names[1] {
		case "on":
			on = true
		case "off":
		default:
			return fmt.Errorf("user admin: say on or off, not %q", names[1])
		}
		u, err := findUser(ctx, db, sub, name)
		if err != nil {
			return err
		}
		// The admin-only scopes of the same configuration serve reads.
		var adminOnly []string
		for _, sc := range supportedScopes(cfg.Tools, nil) {
			if sc.AdminOnly {
				adminOnly = append(adminOnly, sc.Name)
			}
		}
		if err := db.SetUserAdmin(ctx, u.ID, on, adminOnly); err != nil {
			return fmt.Errorf("user admin: %w", err)
		}
		e.audit(ctx, db, storage.AuditEvent{Event: storage.EventUserAdminChanged, Subject: u.Username,
			Details: map[string]any{"user_id": u.ID, "admin": on}})
		if on {
			fmt.Fprintf(e.stdout, "%s is now an administrator\n", u.Username)
		} else {
			fmt.Fprintf(e.stdout, "%s is no longer an administrator: their grants and personal access tokens holding an admin-only scope (%s) are revoked\n",
				u.Username, strings.Join(adminOnly, ", "))
		}
	}
	if generated {
		fmt.Fprintf(e.stdout, "password: %s\n(shown only now: store it or hand it over safely)\n", password)
	}
	return nil
}

func findUser(ctx context.Context, db *storage.DB, sub, name string) (*storage.User, error) {
	u, err := db.UserByName(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("user %s: no user named %q (see mcpauth user list)", sub, name)
	}
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", sub, err)
	}
	return u, nil
}

func (e *environment) listUsers(ctx context.Context, db *storage.DB) error {
	users, err := db.ListUsers(ctx)
	if err != nil {
		return fmt.Errorf("user list: %w", err)
	}
	if len(users) == 0 {
		fmt.Fprintln(e.stdout, "no users; add one with: mcpauth user add NAME [--admin]")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADMIN\tDISABLED\tCREATED")
	for _, u := range users {
		isAdmin := "no"
		if u.IsAdmin {
			isAdmin = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Username, isAdmin, stamp(u.DisabledAt), stamp(&u.CreatedAt))
	}
	return tw.Flush()
}

// parseInterleaved parses flags placed before, between or after the
// positional arguments (mcpauth user add alice --admin) and returns the
// positional ones. "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// readPasswordLine reads the first line of r (without its line ending).
// It stops at the newline, so a terminal does not have to send EOF.
func readPasswordLine(r io.Reader) (string, error) {
	br := bufio.NewReaderSize(r, authz.MaxPasswordBytes+2)
	line, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return "", fmt.Errorf("longer than %d bytes", authz.MaxPasswordBytes)
	case err != nil && !errors.Is(err, io.EOF):
		return "", err
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(line) == 0 {
		return "", errors.New("empty (pipe it in: printf '%s\\n' \"$PASSWORD\" | mcpauth user ...)")
	}
	pw := string(line)
	if err := authz.ValidatePassword(pw); err != nil {
		return "", err
	}
	return pw, nil
}

// createFirstAdmin creates the user "admin", with the administrator role
// and a generated password, when the database has no user at all (the first
// start of mcpauth dev). It is safe against two servers starting at once:
// one of them creates the user. It returns the name and the password to
// print once, or created false when users already exist.
func createFirstAdmin(ctx context.Context, db *storage.DB) (username, password string, created bool, err error) {
	users, err := db.ListUsers(ctx)
	if err != nil {
		return "", "", false, fmt.Errorf("first administrator: %w", err)
	}
	if len(users) > 0 {
		return "", "", false, nil // skip the hashing on every later start
	}
	password = authz.GeneratePassword()
	hash, err := authz.HashPassword(password)
	if err != nil {
		return "", "", false, fmt.Errorf("first administrator: %w", err)
	}
	created, err = db.CreateFirstUser(ctx, &storage.User{Username: "admin", PasswordHash: hash, IsAdmin: true})
	if err != nil || !created {
		if err != nil {
			err = fmt.Errorf("first administrator: %w", err)
		}
		return "", "", false, err
	}
	if err := db.InsertAuditEvents(ctx, []storage.AuditEvent{{Event: storage.EventUserCreated, Actor: "system",
		Subject: "admin", Details: map[string]any{"admin": true, "first_user": true}}}); err != nil {
		return "", "", false, fmt.Errorf("first administrator: audit: %w", err)
	}
	return "admin", password, true, nil
}
