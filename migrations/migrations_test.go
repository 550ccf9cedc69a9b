package migrations_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/mcpauth/mcpauth/migrations"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

// allTables is every table the migrations create.
var allTables = []string{
	"audit_events", "browser_sessions", "cimd_documents", "cimd_failures", "oauth_access_tokens", "oauth_clients", "oauth_codes",
	"oauth_consents", "oauth_jti", "oauth_refresh_tokens", "personal_access_tokens", "revoked_grants", "signing_keys",
	"users",
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// tables lists the application tables of the public schema (not schema_migrations).
func tables(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(t.Context(), `SELECT table_name::text FROM information_schema.tables
		WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations'
		ORDER BY 1`)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	return names
}

// schema is a textual fingerprint of the public schema: columns, indexes,
// constraints and storage options, sorted.
func schema(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(t.Context(), `
		SELECT x FROM (
			SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' ||
				coalesce(column_default, '') AS x
			FROM information_schema.columns WHERE table_schema = 'public'
			UNION ALL
			SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
			UNION ALL
			SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
			FROM pg_constraint WHERE connamespace = 'public'::regnamespace
			UNION ALL
			SELECT relname || ' ' || coalesce(array_to_string(reloptions, ','), '')
			FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
		) s ORDER BY x`)
	if err != nil {
		t.Fatalf("read schema: %v", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read schema: %v", err)
	}
	return out
}

func status(t *testing.T, url string) migrations.Status {
	t.Helper()
	st, err := migrations.CurrentStatus(t.Context(), url)
	if err != nil {
		t.Fatalf("CurrentStatus: %v", err)
	}
	return st
}

func latest(t *testing.T) uint {
	t.Helper()
	st, err := migrations.CurrentStatus(t.Context(), storagetest.EmptyURL(t))
	if err != nil {
		t.Fatalf("CurrentStatus: %v", err)
	}
	return st.Latest
}

func TestUpDownUpEmpty(t *testing.T) {
	url := storagetest.EmptyURL(t)
	conn := connect(t, url)
	ctx := t.Context()

	if got := status(t, url); got.Version != 0 || got.Dirty || got.Latest == 0 {
		t.Fatalf("status before Up = %+v, want version 0, clean, latest > 0", got)
	}
	if err := migrations.Up(ctx, url); err != nil {
		t.Fatalf("Up: %v", err)
	}
	st := status(t, url)
	if want := (migrations.Status{Version: st.Latest, Latest: st.Latest}); st != want {
		t.Fatalf("status after Up = %+v, want %+v", st, want)
	}
	if diff := cmp.Diff(allTables, tables(t, conn)); diff != "" {
		t.Fatalf("tables after Up (-want +got):\n%s", diff)
	}
	first := schema(t, conn)

	if err := migrations.Up(ctx, url); err != nil {
		t.Fatalf("second Up (want no-op): %v", err)
	}
	if diff := cmp.Diff(first, schema(t, conn)); diff != "" {
		t.Fatalf("schema changed by a second Up (-first +second):\n%s", diff)
	}

	if err := migrations.Down(ctx, url, -1); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if got := tables(t, conn); len(got) != 0 {
		t.Fatalf("tables after Down = %v, want none", got)
	}
	if got := status(t, url); got.Version != 0 || got.Dirty {
		t.Fatalf("status after Down = %+v, want version 0, clean", got)
	}
	if err := migrations.Down(ctx, url, -1); err != nil {
		t.Fatalf("Down on an empty schema (want no-op): %v", err)
	}
	if err := migrations.Down(ctx, url, 1); err != nil {
		t.Fatalf("Down 1 on an empty schema (want no-op): %v", err)
	}

	if err := migrations.Up(ctx, url); err != nil {
		t.Fatalf("Up after Down: %v", err)
	}
	if diff := cmp.Diff(first, schema(t, conn)); diff != "" {
		t.Fatalf("schema after up→down→up differs (-first +again):\n%s", diff)
	}
}

func TestUpDownUpWithRows(t *testing.T) {
	url := storagetest.EmptyURL(t)
	conn := connect(t, url)
	ctx := t.Context()
	if err := migrations.Up(ctx, url); err != nil {
		t.Fatalf("Up: %v", err)
	}
	first := schema(t, conn)

	// One row in every table.
	_, err := conn.Exec(ctx, `
		INSERT INTO oauth_clients (id, token_endpoint_auth_method, redirect_uris, grant_types, response_types,
			scopes, source) VALUES ('c1', 'none', '{https://a.example/cb}', '{authorization_code}', '{code}', '{mcp}', 'dcr');
		INSERT INTO oauth_codes (sig_hash, request_id, client_id, subject, requested_at, expires_at,
			requested_scopes, granted_scopes, requested_aud, granted_aud, session)
			VALUES (sha256('code'), gen_random_uuid(), 'c1', 'u', now(), now() + interval '1 minute',
			'{mcp}', '{mcp}', '{}', '{}', '{}');
		INSERT INTO oauth_access_tokens (sig_hash, request_id, client_id, subject, requested_at, expires_at,
			requested_scopes, granted_scopes, requested_aud, granted_aud, session)
			VALUES (sha256('at'), gen_random_uuid(), 'c1', 'u', now(), now() + interval '10 minutes',
			'{mcp}', '{mcp}', '{}', '{}', '{}');
		INSERT INTO oauth_refresh_tokens (sig_hash, request_id, client_id, subject, requested_at, expires_at,
			requested_scopes, granted_scopes, requested_aud, granted_aud, session)
			VALUES (sha256('rt'), gen_random_uuid(), 'c1', 'u', now(), now() + interval '30 days',
			'{mcp}', '{mcp}', '{}', '{}', '{}');
		INSERT INTO oauth_jti (jti_hash, expires_at) VALUES (sha256('jti'), now() + interval '1 hour');
		INSERT INTO users (id, username, password_hash) VALUES ('00000000-0000-4000-8000-000000000001', 'Alice', '$argon2id$x');
		INSERT INTO oauth_consents (user_id, client_id, scopes, audiences)
			VALUES ('00000000-0000-4000-8000-000000000001', 'c1', '{mcp}', '{https://as.example/mcp}');
		INSERT INTO browser_sessions (id_hash, user_id, expires_at, ip, user_agent)
			VALUES (sha256('sess'), '00000000-0000-4000-8000-000000000001', now() + interval '1 day', '192.0.2.1', 'test');
		INSERT INTO audit_events (event, actor, client_ip, details) VALUES ('login', 'Alice', '192.0.2.1', '{"ok": true}');
		INSERT INTO signing_keys (kid, alg, private_key, public_jwk, active_from)
			VALUES ('k1', 'ES256', '\x00', '{"kty": "EC"}', now());
		INSERT INTO revoked_grants (grant_id, expires_at) VALUES (gen_random_uuid(), now() + interval '10 minutes');
		INSERT INTO cimd_documents (client_id, fetched_at, expires_at) VALUES ('c1', now(), now() + interval '5 minutes');
		INSERT INTO cimd_failures (url_hash, code, description, expires_at)
			VALUES (sha256('https://a.example/client.json'), 'invalid_client', 'unreachable', now() + interval '1 minute');
		INSERT INTO personal_access_tokens (token_hash, user_id, name, scopes, audience, expires_at, created_by)
			VALUES (sha256('mcpat_x'), '00000000-0000-4000-8000-000000000001', 'ci', '{mcp}', 'https://as.example/mcp',
			now() + interval '30 days', 'cli');`)
	if err != nil {
		t.Fatalf("insert rows: %v", err)
	}
	for _, table := range allTables {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%s: %d rows, err %v; want 1 row", table, n, err)
		}
	}

	if err := migrations.Down(ctx, url, -1); err != nil {
		t.Fatalf("Down with rows: %v", err)
	}
	if got := tables(t, conn); len(got) != 0 {
		t.Fatalf("tables after Down = %v, want none", got)
	}
	if err := migrations.Up(ctx, url); err != nil {
		t.Fatalf("Up after Down: %v", err)
	}
	if diff := cmp.Diff(first, schema(t, conn)); diff != "" {
		t.Fatalf("schema after up→rows→down→up differs (-first +again):\n%s", diff)
	}
	for _, table := range allTables {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%s after Down/Up: %d rows, err %v; want empty", table, n, err)
		}
	}
}

func TestDownSteps(t *testing.T) {
	url := storagetest.EmptyURL(t)
	ctx := t.Context()
	if err := migrations.Up(ctx, url); err != nil {
		t.Fatalf("Up: %v", err)
	}
	if err := migrations.Down(ctx, url, 0); err == nil {
		t.Fatal("Down(0) = nil, want an error")
	}
	before := status(t, url)
	if err := migrations.Down(ctx, url, 1); err != nil {
		t.Fatalf("Down(1): %v", err)
	}
	if got := status(t, url); got.Version != before.Version-1 {
		t.Fatalf("version after Down(1) = %d, want %d", got.Version, before.Version-1)
	}
	// More steps than applied migrations: everything is reverted, no error.
	if err := migrations.Up(ctx, url); err != nil {
		t.Fatalf("Up: %v", err)
	}
	if err := migrations.Down(ctx, url, 100); err != nil {
		t.Fatalf("Down(100): %v", err)
	}
	if got := status(t, url); got.Version != 0 {
		t.Fatalf("version after Down(100) = %d, want 0", got.Version)
	}
}

// TestConcurrentUp starts several migrators on one empty database at once, as
// replicas do: golang-migrate's advisory lock must let exactly one apply the
// schema and the others find nothing to do.
func TestConcurrentUp(t *testing.T) {
	url := storagetest.EmptyURL(t)
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = migrations.Up(t.Context(), url)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Up #%d: %v", i, err)
		}
	}
	st := status(t, url)
	if st.Version != st.Latest || st.Dirty {
		t.Fatalf("status after concurrent Up = %+v, want latest and clean", st)
	}
	if diff := cmp.Diff(allTables, tables(t, connect(t, url))); diff != "" {
		t.Fatalf("tables (-want +got):\n%s", diff)
	}
}

func TestDirty(t *testing.T) {
	url := storagetest.EmptyURL(t)
	ctx := t.Context()
	if err := migrations.Up(ctx, url); err != nil {
		t.Fatalf("Up: %v", err)
	}
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, `UPDATE schema_migrations SET dirty = true`); err != nil {
		t.Fatalf("mark dirty: %v", err)
	}
	if st := status(t, url); !st.Dirty {
		t.Fatalf("status = %+v, want dirty", st)
	}
	err := migrations.Up(ctx, url)
	if !errors.Is(err, migrations.ErrDirty) {
		t.Fatalf("Up on a dirty database = %v, want ErrDirty", err)
	}
	if !strings.Contains(err.Error(), "schema_migrations") {
		t.Errorf("dirty error %q does not tell the operator what to do", err)
	}
	if err := migrations.Force(ctx, url, latest(t)); err != nil {
		t.Fatalf("Force: %v", err)
	}
	if st := status(t, url); st.Dirty || st.Version != st.Latest {
		t.Fatalf("status after Force = %+v, want clean at latest", st)
	}
	if err := migrations.Up(ctx, url); err != nil {
		t.Fatalf("Up after Force: %v", err)
	}
}

func TestURLSchemes(t *testing.T) {
	url := storagetest.EmptyURL(t)
	urls := []string{url}
	if rest, ok := strings.CutPrefix(url, "postgres://"); ok {
		urls = append(urls, "postgresql://"+rest)
	}
	for _, u := range urls {
		if _, err := migrations.CurrentStatus(t.Context(), u); err != nil {
			t.Errorf("CurrentStatus(%s…): %v", u[:12], err)
		}
	}
	// pgxpool settings in the shared database URL must not reach the migration driver.
	withPool := url + "?pool_max_conns=3"
	if strings.Contains(url, "?") {
		withPool = url + "&pool_max_conns=3"
	}
	if err := migrations.Up(t.Context(), withPool); err != nil {
		t.Errorf("Up with pool_max_conns in the URL: %v", err)
	}
	if _, err := migrations.CurrentStatus(t.Context(), "mysql://x@localhost/db"); err == nil {
		t.Error("CurrentStatus with a mysql:// URL = nil error, want one")
	}
}

// TestAdminMigrationDownWithRows reverts 0007 (and any later migration) with a personal access
// token stored, and applies it again.
func TestAdminMigrationDownWithRows(t *testing.T) {
	url := storagetest.EmptyURL(t)
	conn := connect(t, url)
	ctx := t.Context()
	if err := migrations.Up(ctx, url); err != nil {
		t.Fatalf("Up: %v", err)
	}
	steps := int(status(t, url).Latest) - 6 // down to 0006, 0007 included
	first := schema(t, conn)
	_, err := conn.Exec(ctx, `
		INSERT INTO users (id, username, password_hash) VALUES ('00000000-0000-4000-8000-000000000001', 'Alice', '$argon2id$x');
		INSERT INTO personal_access_tokens (token_hash, user_id, name, scopes, audience, expires_at)
			VALUES (sha256('mcpat_x'), '00000000-0000-4000-8000-000000000001', 'ci', '{mcp}', 'https://as.example/mcp',
			now() + interval '30 days');`)
	if err != nil {
		t.Fatalf("insert rows: %v", err)
	}
	// The hash is unique: a second token with the same hash is refused.
	_, err = conn.Exec(ctx, `INSERT INTO personal_access_tokens (token_hash, user_id, name, scopes, audience, expires_at)
		VALUES (sha256('mcpat_x'), '00000000-0000-4000-8000-000000000001', 'again', '{mcp}', 'a', now())`)
	if err == nil {
		t.Fatal("duplicate token hash accepted")
	}
	if err := migrations.Down(ctx, url, steps); err != nil {
		t.Fatalf("Down(%d) with rows: %v", steps, err)
	}
	if slices.Contains(tables(t, conn), "personal_access_tokens") {
		t.Fatal("personal_access_tokens still exists after reverting 0007")
	}
	if err := migrations.Up(ctx, url); err != nil {
		t.Fatalf("Up after Down: %v", err)
	}
	if diff := cmp.Diff(first, schema(t, conn)); diff != "" {
		t.Fatalf("schema after down→up differs (-first +again):\n%s", diff)
	}
	// Deleting the user deletes their tokens.
	if _, err := conn.Exec(ctx, `INSERT INTO personal_access_tokens (token_hash, user_id, name, scopes, audience, expires_at)
		VALUES (sha256('mcpat_y'), '00000000-0000-4000-8000-000000000001', 'ci', '{mcp}', 'a', now() + interval '1 day');
		DELETE FROM users`); err != nil {
		t.Fatalf("insert and delete user: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM personal_access_tokens`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("tokens after deleting their user: %d, %v; want 0", n, err)
	}
}
