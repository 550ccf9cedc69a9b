package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/mcpauth/mcpauth/authz"
	"github.com/mcpauth/mcpauth/storage"
)

const clientSynopsis = `client list [--source dcr|cimd|admin] [--query TEXT]
       mcpauth client show ID
       mcpauth client create --name NAME [--redirect-uri URI]... [--grant-type TYPE]... [--scope "S1 S2"] [--public]
       mcpauth client disable ID | enable ID
       mcpauth client delete ID --yes`

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// client manages OAuth clients directly in the database: list, show,
// create (source "admin"), disable, enable, delete.
func (e *environment) client(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "usage: mcpauth", clientSynopsis)
		return errUsage
	}
	sub := args[0]
	fs := e.flags("client "+sub, clientSynopsis)
	var (
		source, query, name, scope *string
		public, yes                *bool
		redirects, grants          listFlag
	)
	nargs := 1
	switch sub {
	case "list":
		nargs = 0
		source = fs.String("source", "", "only clients from this source: dcr (registered), cimd (metadata document) or admin (created by an administrator)")
		query = fs.String("query", "", "only clients whose id or name contains this text")
	case "create":
		nargs = 0
		name = fs.String("name", "", "the client's name, shown to users on the consent page (required)")
		fs.Var(&redirects, "redirect-uri", "a redirect URI (repeat for several); required for authorization_code")
		fs.Var(&grants, "grant-type", "authorization_code, refresh_token or client_credentials (repeat for several; default authorization_code and refresh_token)")
		scope = fs.String("scope", "", `the scopes it may ask for, space-separated (e.g. "mcp admin"; admin-created clients may get admin)`)
		public = fs.Bool("public", false, "a public client (no secret), for apps that cannot keep one")
	case "delete":
		yes = fs.Bool("yes", false, "confirm: delete the client, revoke its grants and delete its consents")
	case "show", "disable", "enable":
	default:
		fmt.Fprintf(e.stderr, "client: unknown subcommand %q\nusage: mcpauth %s\n", sub, clientSynopsis)
		return errUsage
	}
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != nargs {
		fs.Usage()
		return errUsage
	}
	var id string
	if nargs == 1 {
		id = pos[0]
	}
	if sub == "list" {
		switch *source {
		case "", storage.SourceDCR, storage.SourceCIMD, storage.SourceAdmin:
		default:
			return fmt.Errorf("client list: --source must be dcr, cimd or admin, not %q", *source)
		}
	}
	if sub == "delete" && !*yes {
		return fmt.Errorf("client delete: this deletes client %q, revokes every grant of it and deletes its consents; add --yes to confirm", id)
	}
	var newClient *storage.Client
	var secret string
	cfg, _, stop, err := e.commandConfig(ctx)
	if err != nil {
		return err
	}
	defer stop()
	if sub == "create" {
		var scopes []string
		if *scope != "" {
			scopes = strings.Fields(*scope)
		}
		newClient, secret, err = authz.NewAdminClient(authz.AdminClientRequest{Name: *name, RedirectURIs: redirects,
			GrantTypes: grants, Scopes: scopes, Public: *public}, cfg.Issuer+mcpPath)
		if err != nil {
			return fmt.Errorf("client create: %w", err)
		}
	}
	db, err := storage.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()

	switch sub {
	case "list":
		return e.listClients(ctx, db, storage.ClientFilter{Source: *source, Query: *query})
	case "create":
		if err := db.CreateClient(ctx, newClient); err != nil {
			return fmt.Errorf("client create: %w", err)
		}
		e.audit(ctx, db, storage.AuditEvent{Event: storage.EventClientRegistered, ClientID: newClient.ID,
			Details: map[string]any{"client_name": newClient.Metadata.ClientName, "source": storage.SourceAdmin,
				"grant_types": newClient.GrantTypes, "scopes": newClient.Scopes, "redirect_uris": newClient.RedirectURIs}})
		fmt.Fprintf(e.stdout, "created client %q\nclient_id: %s\n", newClient.Metadata.ClientName, newClient.ID)
		if secret != "" {
			fmt.Fprintf(e.stdout, "client_secret: %s\n(shown only now: store it safely; authenticate with HTTP Basic, client_secret_basic)\n", secret)
		} else {
			fmt.Fprintln(e.stdout, "public client: no secret (PKCE protects its authorization codes)")
		}
		return nil
	}
	c, err := db.Client(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("client %s: no client with id %q (see mcpauth client list)", sub, id)
	} else if err != nil {
		return fmt.Errorf("client %s: %w", sub, err)
	}
	switch sub {
	case "show":
		return e.showClient(ctx, db, c)
	case "disable", "enable":
		n, err := db.SetClientDisabled(ctx, c.ID, sub == "disable")
		if err != nil {
			return fmt.Errorf("client %s: %w", sub, err)
		}
		if sub == "disable" {
			e.audit(ctx, db, storage.AuditEvent{Event: storage.EventClientDisabled, ClientID: c.ID, Details: map[string]any{"revoked": n}})
			fmt.Fprintf(e.stdout, "disabled client %s: it can no longer authorize or obtain tokens; %d grant(s) revoked\n", c.ID, n)
		} else {
			e.audit(ctx, db, storage.AuditEvent{Event: storage.EventClientEnabled, ClientID: c.ID})
			fmt.Fprintf(e.stdout, "enabled client %s (its revoked grants stay revoked)\n", c.ID)
		}
	case "delete":
		if err := db.DeleteClient(ctx, c.ID); err != nil {
			return fmt.Errorf("client delete: %w", err)
		}
		e.audit(ctx, db, storage.AuditEvent{Event: storage.EventClientDeleted, ClientID: c.ID,
			Details: map[string]any{"client_name": c.Metadata.ClientName}})
		fmt.Fprintf(e.stdout, "deleted client %s: its grants are revoked and its consents deleted\n", c.ID)
	}
	return nil
}

func (e *environment) listClients(ctx context.Context, db *storage.DB, f storage.ClientFilter) error {
	f.Limit = storage.MaxClientLimit
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT_ID\tNAME\tSOURCE\tGRANTS\tLAST USED\tDISABLED")
	n := 0
	for {
		page, err := db.ListClientSummaries(ctx, f)
		if err != nil {
			return fmt.Errorf("client list: %w", err)
		}
		for _, s := range page {
			c := s.Client
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", c.ID, oneLine(c.Metadata.ClientName), sourceName(c.Source),
				s.LiveGrants, stamp(c.LastUsedAt), stamp(c.DisabledAt))
			n++
		}
		if len(page) < f.Limit {
			break
		}
		f.After = page[len(page)-1].Client.ID
	}
	if n == 0 {
		fmt.Fprintln(e.stdout, "no clients")
		return nil
	}
	return tw.Flush()
}

func (e *environment) showClient(ctx context.Context, db *storage.DB, c *storage.Client) error {
	grants, err := db.ListGrants(ctx, storage.GrantFilter{ClientID: c.ID, Limit: storage.MaxGrantLimit})
	if err != nil {
		return fmt.Errorf("client show: %w", err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("client_id", c.ID)
	row("name", oneLine(c.Metadata.ClientName))
	row("source", sourceName(c.Source))
	row("auth method", c.TokenEndpointAuthMethod)
	row("grant types", strings.Join(c.GetGrantTypes(), " "))
	row("redirect URIs", strings.Join(c.RedirectURIs, " "))
	row("scopes", strings.Join(c.Scopes, " "))
	row("created", stamp(&c.CreatedAt))
	row("last used", stamp(c.LastUsedAt))
	row("disabled", stamp(c.DisabledAt))
	row("live grants", fmt.Sprint(len(grants)))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(grants) == 0 {
		return nil
	}
	fmt.Fprintln(e.stdout)
	return e.printGrants(ctx, db, grants)
}

// printGrants prints grants with their users' names.
func (e *environment) printGrants(ctx context.Context, db *storage.DB, grants []storage.Grant) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GRANT_ID\tCLIENT_ID\tUSER\tSCOPES\tCREATED\tEXPIRES")
	names := map[string]string{}
	for _, g := range grants {
		user := "-"
		if g.Subject != "" {
			if n, ok := names[g.Subject]; ok {
				user = n
			} else if u, err := db.UserByID(ctx, g.Subject); err == nil {
				user, names[g.Subject] = u.Username, u.Username
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.ClientID, user, strings.Join(g.Scopes, " "), stamp(&g.CreatedAt), stamp(&g.ExpiresAt))
	}
	return tw.Flush()
}

func sourceName(s string) string {
	switch s {
	case storage.SourceDCR:
		return "registered"
	case storage.SourceCIMD:
		return "metadata document"
	case storage.SourceAdmin:
		return "created by admin"
	}
	return s
}

// oneLine keeps a client-chosen name from breaking the table or the
// terminal: C0 and C1 controls and bidi overrides become spaces.
func oneLine(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r < ' ' || r == 0x7f, // C0 controls and DEL
			r >= 0x80 && r <= 0x9f,     // C1 controls (CSI U+009B starts a terminal escape)
			r >= 0x202a && r <= 0x202e, // bidi embeddings and overrides
			r >= 0x2066 && r <= 0x2069: // bidi isolates
			return ' '
		}
		return r
	}, s)
}

// audit records an administrator's action made with the CLI (actor "cli").
// The action has happened: a failure to record it is reported, not fatal.
func (e *environment) audit(ctx context.Context, db *storage.DB, ev storage.AuditEvent) {
	ev.Actor = "cli"
	if err := db.InsertAuditEvents(ctx, []storage.AuditEvent{ev}); err != nil {
		fmt.Fprintf(e.stderr, "warning: the audit log did not record this action: %v\n", err)
	}
}

var _ flag.Value = (*listFlag)(nil)
