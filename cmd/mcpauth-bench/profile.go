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

// procTarget is a server process to profile: its pprof listener
// (http://127.0.0.1:PORT) and its process id.
type procTarget struct {
	pprofBase string
	pid       int
}

// profiler takes, during one extra run of a scenario (after its measured
// runs, not counted in the table), a CPU profile and an allocation profile
// of the server process from its pprof listener (MCPAUTH_DEBUG_PPROF_ADDR),
// and counts the SQL statements the run sent with pg_stat_statements.
type profiler struct {
	dir         string
	server      procTarget // mcpauth serve
	databaseURL string
	logf        func(string, ...any)
}

// profile runs workers for d while the profiles are taken, and writes
// DIR/NAME.cpu.pb.gz, NAME.allocs.pb.gz, their `go tool pprof -top` as
// .txt, and NAME.sql.txt: every statement with its calls per request.
func (p *profiler) profile(ctx context.Context, name string, workers []op, d time.Duration, at procTarget) (result, error) {
	secs := max(1, int(d/time.Second))
	if err := p.sql(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
		return result{}, fmt.Errorf("pg_stat_statements: %w", err)
	}
	errc := make(chan error, 2)
	for _, kind := range []string{"profile", "allocs"} {
		go func() {
			file := filepath.Join(p.dir, name+map[string]string{"profile": ".cpu.pb.gz", "allocs": ".allocs.pb.gz"}[kind])
			errc <- p.fetch(ctx, fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", at.pprofBase, kind, secs), file)
		}()
	}
	before, cpuErr := p.cpu(at.pid)
	r := load(ctx, workers, d)
	after, err := p.cpu(at.pid)
	if cpuErr == nil && err == nil {
		n := time.Duration(max(1, r.Requests+r.Errors))
		line := fmt.Sprintf("%s: %.0f req/s; CPU per request: server %s, PostgreSQL %s, load generator %s; the three used %.2f of the machine's cores",
			name, r.RPS, us((after.server-before.server)/n), us((after.postgres-before.postgres)/n), us((after.bench-before.bench)/n),
			float64(after.server-before.server+after.postgres-before.postgres+after.bench-before.bench)/float64(r.Elapsed))
		p.logf("%s", line)
		if err := os.WriteFile(filepath.Join(p.dir, name+".cpusplit.txt"), []byte(line+"\n"), 0o644); err != nil {
			return r, err
		}
	}
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

// cpuTimes is the CPU time (user + system) used so far by the server, by
// the PostgreSQL cluster (the postmaster the bench started, its live
// backends and the ones it has reaped) and by the bench itself, from
// /proc (Linux). It shows where the two cores went during a run.
type cpuTimes struct{ server, postgres, bench time.Duration }

func (p *profiler) cpu(serverPID int) (cpuTimes, error) {
	var t cpuTimes
	self := os.Getpid()
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return t, err
	}
	type stat struct {
		pid, ppid int
		comm      string
		own, kids time.Duration
	}
	var all []stat
	for _, e := range procs {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid … utime(14) stime(15) cutime(16) cstime(17)
		s := string(raw)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		f := strings.Fields(s[closing+1:])
		if len(f) < 15 {
			continue
		}
		var ppid int
		var ut, st, cut, cst int64
		fmt.Sscan(f[1], &ppid)
		fmt.Sscan(f[11], &ut)
		fmt.Sscan(f[12], &st)
		fmt.Sscan(f[13], &cut)
		fmt.Sscan(f[14], &cst)
		all = append(all, stat{pid: pid, ppid: ppid, comm: s[open+1 : closing], own: ticks(ut + st), kids: ticks(cut + cst)})
	}
	postmasters := map[int]bool{}
	for _, s := range all {
		switch {
		case s.pid == self:
			t.bench = s.own
		case s.pid == serverPID:
			t.server = s.own
		case s.ppid == self && s.comm == "postgres":
			postmasters[s.pid] = true
			t.postgres += s.own + s.kids
		}
	}
	for _, s := range all {
		if postmasters[s.ppid] {
			t.postgres += s.own
		}
	}
	return t, nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond)) }

// ticks converts clock ticks (USER_HZ, 100 on Linux) to a duration.
func ticks(n int64) time.Duration { return time.Duration(n) * 10 * time.Millisecond }
