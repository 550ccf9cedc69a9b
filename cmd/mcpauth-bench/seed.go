package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// The mix of seeded rows, as a busy server's tables hold them between two
// cleanups (expired rows are deleted every MCPAUTH_CLEANUP_INTERVAL, so
// what stays is what has not expired yet):
//
//   - oauth_refresh_tokens, 70 %: 30-day refresh tokens, most of them rotated
//     (inactive, kept until they expire so that a replay is detected), one in
//     six still active; expiries spread over the next 30 days;
//   - oauth_access_tokens, 29 %: expiries spread over the next hour (a
//     deployment with 1-hour access tokens keeps an hour's worth);
//   - oauth_codes, 1 %: used codes within their lifetime (the next 10 min).
//
// Every row belongs to one of 1,000 seeded clients and 100,000 subjects,
// has a random 32-byte key and a random uuid grant id, and carries a
// session of the size fosite stores (~250 bytes of JSON).
//
// Bulk-load practice, for speed (row by row into the indexed tables ran at
// about 6,000 rows/s here, 30 minutes for 10 million): the load session
// skips the foreign-key triggers (session_replication_role = replica; every
// client_id exists), the three tables' indexes and primary keys are dropped
// before COPY and rebuilt after it from their own definitions (pg_indexes,
// pg_get_constraintdef), and ANALYZE runs at the end as autovacuum would.
// The tables end up exactly as the migrations define them, with freshly
// built, unbloated indexes (a live system's would be somewhat larger).
const (
	seedClients  = 1000
	seedSubjects = 100_000
)

// seedTokens COPYs rows rows into the token tables of databaseURL and
// returns how long it took (the clients, COPY and ANALYZE).
func seedTokens(ctx context.Context, databaseURL string, rows int, logf func(string, ...any)) (time.Duration, error) {
	start := time.Now()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO oauth_clients (id, token_endpoint_auth_method, redirect_uris, grant_types, response_types, scopes, source, last_used_at)
		SELECT 'seed-client-' || i, 'none', ARRAY['http://127.0.0.1/cb'], ARRAY['authorization_code','refresh_token'], ARRAY['code'], ARRAY['mcp'], 'dcr', now()
		FROM generate_series(1, $1) AS i ON CONFLICT DO NOTHING`, seedClients); err != nil {
		return 0, fmt.Errorf("seed clients: %w", err)
	}
	tables := []string{"oauth_refresh_tokens", "oauth_access_tokens", "oauth_codes"}
	rebuild, err := dropIndexes(ctx, conn, tables)
	if err != nil {
		return 0, err
	}
	if _, err := conn.Exec(ctx, "SET session_replication_role = replica"); err != nil {
		return 0, err
	}
	refresh := rows * 70 / 100
	codes := rows / 100
	access := rows - refresh - codes
	now := time.Now().UTC()
	rng := rand.New(rand.NewChaCha8([32]byte{7}))
	session := `{"sub":"%s","username":"seed","client_id":"%s","grant_id":"%s","expires_at":{"access_token":"%s","refresh_token":"%s"},"id_token_claims":{"sub":"%s","rat":%d,"auth_time":%d},"id_token_headers":{}}`
	common := func(within time.Duration) []any {
		sig := make([]byte, 32)
		for i := range sig {
			sig[i] = byte(rng.Uint32())
		}
		var id [16]byte
		for i := range id {
			id[i] = byte(rng.Uint32())
		}
		id[6] = id[6]&0x0f | 0x40
		id[8] = id[8]&0x3f | 0x80
		client := fmt.Sprintf("seed-client-%d", 1+rng.IntN(seedClients))
		subject := fmt.Sprintf("seed-user-%d", rng.IntN(seedSubjects))
		exp := now.Add(time.Minute + time.Duration(rng.Int64N(int64(within))))
		req := exp.Add(-within)
		grant := fmt.Sprintf("%x-%x-%x-%x-%x", id[0:4], id[4:6], id[6:8], id[8:10], id[10:])
		sess := fmt.Sprintf(session, subject, client, grant, exp.Format(time.RFC3339), exp.Format(time.RFC3339), subject, req.Unix(), req.Unix())
		return []any{sig, id, client, subject, req, exp, sess}
	}
	scopes, aud := []string{"mcp"}, []string{"http://127.0.0.1/mcp"}
	copyRows := func(table string, cols []string, n int, row func() []any) error {
		t0 := time.Now()
		done := 0
		src := pgx.CopyFromFunc(func() ([]any, error) {
			if done == n {
				return nil, nil
			}
			done++
			return row(), nil
		})
		got, err := conn.CopyFrom(ctx, pgx.Identifier{table}, cols, src)
		if err != nil {
			return fmt.Errorf("COPY %s: %w", table, err)
		}
		logf("COPY %s: %d rows in %s", table, got, time.Since(t0).Round(time.Second))
		return nil
	}
	base := []string{"sig_hash", "request_id", "client_id", "subject", "requested_at", "expires_at", "session"}
	err = copyRows("oauth_refresh_tokens", append(base, "active", "used_at", "access_sig_hash", "requested_scopes", "granted_scopes", "requested_aud", "granted_aud"), refresh, func() []any {
		r := common(30 * 24 * time.Hour)
		active := rng.IntN(6) == 0
		var used *time.Time
		if !active {
			u := r[4].(time.Time).Add(time.Duration(rng.Int64N(int64(time.Hour))))
			used = &u
		}
		ash := make([]byte, 32)
		for i := range ash {
			ash[i] = byte(rng.Uint32())
		}
		return append(r, active, used, ash, scopes, scopes, aud, aud)
	})
	if err == nil {
		err = copyRows("oauth_access_tokens", append(base, "requested_scopes", "granted_scopes", "requested_aud", "granted_aud"), access, func() []any {
			return append(common(time.Hour), scopes, scopes, aud, aud)
		})
	}
	if err == nil {
		err = copyRows("oauth_codes", append(base, "active", "used_at", "requested_scopes", "granted_scopes", "requested_aud", "granted_aud", "redirect_uri", "code_challenge", "code_challenge_method"), codes, func() []any {
			r := common(10 * time.Minute)
			used := r[4].(time.Time).Add(5 * time.Second)
			return append(r, false, &used, scopes, scopes, aud, aud, "http://127.0.0.1/cb", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "S256")
		})
	}
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if _, err := conn.Exec(ctx, "SET session_replication_role = DEFAULT; SET maintenance_work_mem = '256MB'"); err != nil {
		return 0, err
	}
	for _, stmt := range rebuild {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return 0, fmt.Errorf("rebuild: %s: %w", stmt, err)
		}
	}
	logf("indexes and primary keys rebuilt: %s", time.Since(t0).Round(time.Second))
	t0 = time.Now()
	if _, err := conn.Exec(ctx, "ANALYZE oauth_refresh_tokens, oauth_access_tokens, oauth_codes"); err != nil {
		return 0, fmt.Errorf("analyze: %w", err)
	}
	logf("ANALYZE: %s", time.Since(t0).Round(time.Second))
	return time.Since(start), nil
}

// dropIndexes drops the primary keys and indexes of tables and returns the
// statements that recreate them as they were.
func dropIndexes(ctx context.Context, conn *pgx.Conn, tables []string) ([]string, error) {
	var drop, rebuild []string
	rows, err := conn.Query(ctx, `SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
		FROM pg_constraint WHERE contype = 'p' AND conrelid::regclass::text = ANY($1)`, tables)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var table, name, def string
		if err := rows.Scan(&table, &name, &def); err != nil {
			return nil, err
		}
		drop = append(drop, fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", table, name))
		rebuild = append(rebuild, fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", table, name, def))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = conn.Query(ctx, `SELECT i.indexname, i.indexdef FROM pg_indexes i
		WHERE i.schemaname = current_schema() AND i.tablename = ANY($1)
		  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)`, tables)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			return nil, err
		}
		drop = append(drop, "DROP INDEX "+name)
		rebuild = append(rebuild, def)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, stmt := range drop {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return rebuild, nil
}
