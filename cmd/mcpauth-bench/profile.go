package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// profiler takes, during one extra run of a scenario (after its measured
// runs, not counted in the table), a CPU profile and an allocation profile
// of the server process from its pprof listener (MCPAUTH_DEBUG_PPROF_ADDR),
// and counts the SQL statements the run sent with pg_stat_statements.
type profiler struct {
	dir         string
	pprofBase   string // http://127.0.0.1:PORT
	databaseURL string
	logf        func(string, ...any)
}

// profile runs workers for d while the profiles are taken, and writes
// DIR/NAME.cpu.pb.gz, NAME.allocs.pb.gz, their `go tool pprof -top` as
// .txt, and NAME.sql.txt: every statement with its calls per request.
func (p *profiler) profile(ctx context.Context, name string, workers []op, d time.Duration) (result, error) {
	secs := max(1, int(d/time.Second))
	if err := p.sql(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
		return result{}, fmt.Errorf("pg_stat_statements: %w", err)
	}
	errc := make(chan error, 2)
	for _, kind := range []string{"profile", "allocs"} {
		go func() {
			file := filepath.Join(p.dir, name+map[string]string{"profile": ".cpu.pb.gz", "allocs": ".allocs.pb.gz"}[kind])
			errc <- p.fetch(ctx, fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", p.pprofBase, kind, secs), file)
		}()
	}
	r := load(ctx, workers, d)
	for range 2 {
		if err := <-errc; err != nil {
			return r, err
		}
	}
	for _, f := range []string{".cpu", ".allocs"} {
		args := []string{"tool", "pprof", "-top", "-nodecount=40"}
		if f == ".allocs" {
			args = append(args, "-sample_index=alloc_space")
		}
		out, err := exec.CommandContext(ctx, "go", append(args, filepath.Join(p.dir, name+f+".pb.gz"))...).CombinedOutput()
		if err != nil {
			return r, fmt.Errorf("go tool pprof: %v: %s", err, out)
		}
		if err := os.WriteFile(filepath.Join(p.dir, name+f+".txt"), out, 0o644); err != nil {
			return r, err
		}
	}
	return r, p.statements(ctx, name, r)
}

func (p *profiler) fetch(ctx context.Context, u, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s %s", u, resp.Status, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (p *profiler) sql(ctx context.Context, stmt string) error {
	conn, err := pgx.Connect(ctx, p.databaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, stmt)
	return err
}

// statements writes the statements of the run, most called first, with
// calls per successful request, and logs the total per request.
func (p *profiler) statements(ctx context.Context, name string, r result) error {
	conn, err := pgx.Connect(ctx, p.databaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT calls, total_exec_time, query FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND query NOT LIKE '%pg_stat_statements%'
		ORDER BY calls DESC`)
	if err != nil {
		return err
	}
	var b strings.Builder
	var total int64
	perReq := func(n int64) float64 { return float64(n) / float64(max(1, r.Requests+r.Errors)) }
	for rows.Next() {
		var calls int64
		var ms float64
		var q string
		if err := rows.Scan(&calls, &ms, &q); err != nil {
			return err
		}
		total += calls
		fmt.Fprintf(&b, "%8.2f/req %8d calls %10.1f ms  %s\n", perReq(calls), calls, ms, strings.Join(strings.Fields(q), " "))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	head := fmt.Sprintf("%s: %d requests (%d errors), %.2f SQL statements per request (BEGIN/COMMIT included)\n", name, r.Requests, r.Errors, perReq(total))
	p.logf("%s", strings.TrimSpace(head))
	return os.WriteFile(filepath.Join(p.dir, name+".sql.txt"), []byte(head+b.String()), 0o644)
}

// enableStatementStats loads pg_stat_statements into the throwaway cluster
// (a restart: shared_preload_libraries) and creates the extension.
func enableStatementStats(ctx context.Context, adminURL string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
	return err
}
