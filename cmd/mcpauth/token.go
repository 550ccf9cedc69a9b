package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mcpauth/mcpauth/authz"
	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/storage"
)

const tokenSynopsis = `token revoke (--token TOKEN|- | --grant ID | --client ID | --user NAME)
       mcpauth token create --user NAME --name NAME --scope "S1 S2" --expires DURATION
       mcpauth token list [--user NAME]`

// token revokes grants and tokens, and creates and lists personal access
// tokens, directly in the database. Running servers refuse what is revoked
// within a second (they listen for revocations).
func (e *environment) token(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "usage: mcpauth", tokenSynopsis)
		return errUsage
	}
	sub := args[0]
	fs := e.flags("token "+sub, tokenSynopsis)
	var tok, grant, client, user, name, scope, expires *string
	switch sub {
	case "revoke":
		tok = fs.String("token", "", "revoke the grant of this token: an access token, a refresh token or a personal access token; - reads it from the first line of standard input (keeps it out of the process list)")
		grant = fs.String("grant", "", "revoke this grant (a grant id, as client show lists them)")
		client = fs.String("client", "", "revoke every grant of this client_id, for every user")
		user = fs.String("user", "", "revoke everything of this user name: grants, personal access tokens, consents")
	case "create":
		user = fs.String("user", "", "the user (or service account) the token acts as (required)")
		name = fs.String("name", "", "a name for the token, shown in lists (required)")
		scope = fs.String("scope", "", `its scopes, space-separated, e.g. "mcp" (required)`)
		expires = fs.String("expires", "", "its lifetime: a duration such as 720h or 30d, at most 366d (required)")
	case "list":
		user = fs.String("user", "", "only the tokens of this user name")
	default:
		fmt.Fprintf(e.stderr, "token: unknown subcommand %q\nusage: mcpauth %s\n", sub, tokenSynopsis)
		return errUsage
	}
	if pos, err := parseInterleaved(fs, args[1:]); err != nil {
		return err
	} else if len(pos) != 0 {
		fs.Usage()
		return errUsage
	}
	var ttl time.Duration
	switch sub {
	case "revoke":
		given := 0
		for _, v := range []string{*tok, *grant, *client, *user} {
			if v != "" {
				given++
			}
		}
		if given != 1 {
			return errors.New("token revoke: pass exactly one of --token, --grant, --client or --user")
		}
		if *tok == "-" {
			t, err := readTokenLine(os.Stdin)
			if err != nil {
				return fmt.Errorf("token revoke: --token - (standard input): %w", err)
			}
			*tok = t
		}
	case "create":
		if *user == "" || *name == "" || *scope == "" || *expires == "" {
			return errors.New("token create: --user, --name, --scope and --expires are required")
		}
		var err error
		if ttl, err = parseLifetime(*expires); err != nil {
			return fmt.Errorf("token create: --expires: %w", err)
		}
	}

	cfg, log, stop, err := e.commandConfig(ctx)
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
		return e.listPATs(ctx, db, *user)
	case "create":
		u, err := findUser(ctx, db, "token create", *user)
		if err != nil {
			return err
		}
		az, _, err := cliServer(ctx, cfg, db, log)
		if err != nil {
			return err
		}
		secret, pat, err := az.CreatePersonalAccessToken(ctx, authz.PATRequest{UserID: u.ID, Name: *name,
			Scopes: strings.Fields(*scope), TTL: ttl, CreatedBy: "cli"})
		if err != nil {
			return fmt.Errorf("token create: %w", err)
		}
		fmt.Fprintf(e.stdout, "created personal access token %q (id %s) for %s, scopes %q, expires %s\n",
			pat.Name, pat.ID, pat.Username, strings.Join(pat.Scopes, " "), stamp(&pat.ExpiresAt))
		fmt.Fprintf(e.stdout, "token: %s\n(shown only now: store it safely; send it as Authorization: Bearer to %s)\n", secret, pat.Audience)
		return nil
	}

	// revoke
	switch {
	case *grant != "":
		return e.revokeGrant(ctx, db, *grant, "")
	case *client != "":
		c, err := db.Client(ctx, *client)
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("token revoke: no client with id %q (see mcpauth client list)", *client)
		} else if err != nil {
			return fmt.Errorf("token revoke: %w", err)
		}
		n, err := db.RevokeClientGrants(ctx, c.ID)
		if err != nil {
			return fmt.Errorf("token revoke: %w", err)
		}
		e.audit(ctx, db, storage.AuditEvent{Event: storage.EventGrantRevoked, ClientID: c.ID, Details: map[string]any{"revoked": n, "by": "client"}})
		fmt.Fprintf(e.stdout, "revoked %d grant(s) of client %s and its remembered consents\n", n, c.ID)
		return nil
	case *user != "":
		u, err := findUser(ctx, db, "token revoke", *user)
		if err != nil {
			return err
		}
		n, err := db.RevokeUserGrants(ctx, u.ID)
		if err != nil {
			return fmt.Errorf("token revoke: %w", err)
		}
		e.audit(ctx, db, storage.AuditEvent{Event: storage.EventGrantRevoked, Subject: u.Username, Details: map[string]any{"revoked": n, "by": "user"}})
		fmt.Fprintf(e.stdout, "revoked %d grant(s) and personal access token(s) of %s, and their remembered consents\n", n, u.Username)
		return nil
	}
	return e.revokeToken(ctx, cfg, db, log, *tok)
}

// revokeToken revokes the grant of an access token (verified with the key
// set), a refresh token or authorization code (found by its hash), or a
// personal access token.
func (e *environment) revokeToken(ctx context.Context, cfg Config, db *storage.DB, log *slog.Logger, tok string) error {
	tok = strings.TrimSpace(tok)
	if strings.HasPrefix(tok, authz.PATPrefix) {
		h := sha256.Sum256([]byte(tok))
		p, err := db.PersonalAccessTokenByHash(ctx, h[:])
		if errors.Is(err, storage.ErrNotFound) {
			return errors.New("token revoke: no such personal access token")
		} else if err != nil {
			return fmt.Errorf("token revoke: %w", err)
		}
		if err := db.RevokePersonalAccessToken(ctx, p.ID, ""); err != nil {
			return fmt.Errorf("token revoke: %w", err)
		}
		e.audit(ctx, db, storage.AuditEvent{Event: storage.EventPATRevoked, Subject: p.Username, Details: map[string]any{"pat_id": p.ID, "name": p.Name}})
		fmt.Fprintf(e.stdout, "revoked personal access token %q (id %s) of %s\n", p.Name, p.ID, p.Username)
		return nil
	}
	if strings.Count(tok, ".") == 2 {
		// An access token: a JWT signed by one of our keys names its grant.
		if len(cfg.Secret) == 0 {
			return errors.New("MCPAUTH_SECRET: required to verify an access token (the signing keys are sealed with it)")
		}
		ks, err := keys.New(ctx, db, cfg.Secret, keys.Options{Logger: log})
		if err != nil {
			return fmt.Errorf("load signing keys: %w", err)
		}
		payload, err := ks.Verify(tok, "at+jwt")
		if err != nil {
			return errors.New("token revoke: not an access token of this server (its signature does not verify)")
		}
		var claims struct {
			GrantID string `json:"grant_id"`
		}
		if err := json.Unmarshal(payload, &claims); err != nil || claims.GrantID == "" {
			return errors.New("token revoke: the access token names no grant")
		}
		return e.revokeGrant(ctx, db, claims.GrantID, "access_token")
	}
	// A refresh token or authorization code: fosite's "prefix_key.signature";
	// the row is keyed by the signature's hash.
	i := strings.LastIndexByte(tok, '.')
	if i < 0 || i == len(tok)-1 {
		return errors.New("token revoke: not a token of this server (an access token, refresh token or personal access token)")
	}
	id, err := db.GrantOfToken(ctx, tok[i+1:])
	if errors.Is(err, storage.ErrNotFound) {
		return errors.New("token revoke: no such token (it may have expired and been deleted)")
	} else if err != nil {
		return fmt.Errorf("token revoke: %w", err)
	}
	return e.revokeGrant(ctx, db, id, "refresh_token")
}

func (e *environment) revokeGrant(ctx context.Context, db *storage.DB, id, via string) error {
	ev := db.GrantRevokedEvent(ctx, id)
	err := db.RevokeGrant(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("token revoke: no grant with id %q (see mcpauth client show ID)", id)
	} else if err != nil {
		return fmt.Errorf("token revoke: %w", err)
	}
	ev.Details["revoked"] = 1
	if via != "" {
		ev.Details["via"] = via
	}
	e.audit(ctx, db, ev)
	fmt.Fprintf(e.stdout, "revoked grant %s: its tokens stop working within a second, and its user will be asked to consent again\n", id)
	return nil
}

func (e *environment) listPATs(ctx context.Context, db *storage.DB, user string) error {
	var userID string
	if user != "" {
		u, err := findUser(ctx, db, "token list", user)
		if err != nil {
			return err
		}
		userID = u.ID
	}
	pats, err := db.ListPersonalAccessTokens(ctx, userID)
	if err != nil {
		return fmt.Errorf("token list: %w", err)
	}
	if len(pats) == 0 {
		fmt.Fprintln(e.stdout, "no personal access tokens")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tNAME\tSCOPES\tCREATED\tEXPIRES\tLAST USED\tREVOKED")
	for _, p := range pats {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Username, oneLine(p.Name), strings.Join(p.Scopes, " "),
			stamp(&p.CreatedAt), stamp(&p.ExpiresAt), stamp(p.LastUsedAt), stamp(p.RevokedAt))
	}
	return tw.Flush()
}

// parseLifetime reads a Go duration or a number of days ("30d").
func parseLifetime(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q is not a number of days", s)
		}
		// Bounded before multiplying: a huge count would overflow into a
		// short or negative duration.
		if maxDays := int(authz.MaxPATTTL / (24 * time.Hour)); n > maxDays {
			return 0, fmt.Errorf("%q is more than %d days", s, maxDays)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (like 720h or 30d)", s)
	}
	return d, nil
}

// cliServer builds the authorization server a command needs for what only
// it knows (personal access tokens are tagged with a key derived from the
// server secret, and checked against the supported scopes). It serves
// nothing.
func cliServer(ctx context.Context, cfg Config, db *storage.DB, log *slog.Logger) (*authz.Server, *keys.Set, error) {
	if len(cfg.Secret) == 0 {
		return nil, nil, errors.New("MCPAUTH_SECRET: required with MCPAUTH_DATABASE_URL (tokens are tied to it)")
	}
	ks, err := keys.New(ctx, db, cfg.Secret, keys.Options{
		PublishAhead: cfg.KeyPublishAhead,
		MaxTokenTTL:  max(cfg.AccessTokenTTL, authz.IDTokenTTL),
		Logger:       log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("load signing keys: %w", err)
	}
	az, err := authz.New(authz.Config{
		Issuer:        cfg.Issuer,
		MCPResource:   cfg.Issuer + mcpPath,
		Secret:        cfg.Secret,
		Scopes:        supportedScopes(cfg.Tools, nil),
		DefaultScopes: []string{defaultScope},
		JWKSMaxAge:    jwksMaxAge,
	}, db, ks, log)
	if err != nil {
		return nil, nil, err
	}
	return az, ks, nil
}

// maxTokenLine bounds what readTokenLine reads: far above any token of
// this server (a personal access token is 59 bytes, an access token a few
// hundred).
const maxTokenLine = 16 << 10

// readTokenLine reads a token from the first line of r (without its line
// ending and surrounding spaces), at most maxTokenLine bytes.
func readTokenLine(r io.Reader) (string, error) {
	br := bufio.NewReaderSize(r, maxTokenLine+2)
	line, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return "", fmt.Errorf("longer than %d bytes", maxTokenLine)
	case err != nil && !errors.Is(err, io.EOF):
		return "", err
	}
	tok := strings.TrimSpace(string(line))
	if len(tok) > maxTokenLine {
		return "", fmt.Errorf("longer than %d bytes", maxTokenLine)
	}
	if tok == "" {
		return "", errors.New("empty (pipe it in: printf '%s\\n' \"$TOKEN\" | mcpauth token revoke --token -)")
	}
	return tok, nil
}
