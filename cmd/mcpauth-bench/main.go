// Command mcpauth-bench measures mcpauth against the performance targets of
// DESIGN §7. It starts a throwaway PostgreSQL cluster (or uses
// -database-url), runs `mcpauth serve` on a loopback port as a child
// process, sets up what each scenario needs over HTTP (clients, a user,
// authorization codes minted through the real /authorize flow), and then
// times only the scenario: fixed concurrency, fixed duration, keep-alive
// connections. Besides the token endpoints and /mcp it serves /mcp with
// authentication off itself (-serve-noauth, a child process of its own) for
// the auth-on/auth-off ratio, times revocation propagation between two serve
// instances on one database, runs the Go benchmark of the cached auth check,
// and with -seed-rows COPYs rows into the token tables and repeats the
// token scenarios. It prints one table (the median of -runs runs per
// scenario) and writes the same as JSON; -profile also records the server's
// pprof profiles, its SQL statements and the CPU per request by process.
//
//	go run ./cmd/mcpauth-bench -bin bin/mcpauth -json bench-results/latest.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mcpauth-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	bin         string
	databaseURL string
	duration    time.Duration
	runs        int
	codes       int
	jsonPath    string
	only        []string
	profileDir  string
	seedRows    int
	revocations int
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("mcpauth-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "", "the mcpauth binary; empty: build ./cmd/mcpauth into a temporary directory")
	fs.StringVar(&o.databaseURL, "database-url", "", "a PostgreSQL database to use (migrated first); empty: a throwaway cluster")
	fs.DurationVar(&o.duration, "duration", 6*time.Second, "how long each run of a scenario lasts")
	fs.IntVar(&o.runs, "runs", 3, "runs per scenario; the table shows the median")
	fs.IntVar(&o.codes, "codes", 12000, "authorization codes minted before each run of the code-exchange scenario (the run ends when they are used up)")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.IntVar(&o.revocations, "revocations", 100, "revocations timed by revocation_propagation")
	fs.IntVar(&o.seedRows, "seed-rows", 0, "after the scenarios, COPY this many rows into the token tables (DESIGN §7: 10000000) and run the token scenarios again; 0: not")
	serveNoAuthAddr := fs.String("serve-noauth", "", "internal: serve /mcp without authentication on this address (the auth-off baseline, run by the bench as its own child process)")
	noauthPprof := fs.String("noauth-pprof", "", "internal: with -serve-noauth, serve pprof on this loopback address")
	only := fs.String("scenarios", "", "comma-separated scenario names to run; empty: all")
	fs.StringVar(&o.profileDir, "profile", "", "after each scenario's measured runs, one more run (not counted) during which the server's CPU and allocation profiles (pprof) and its SQL statements (pg_stat_statements; throwaway cluster only) are recorded into this directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *serveNoAuthAddr != "" {
		return serveNoAuth(ctx, *serveNoAuthAddr, *noauthPprof)
	}
	if *only != "" {
		o.only = strings.Split(*only, ",")
	}
	if o.runs < 1 || o.duration <= 0 || o.codes < 1 || o.revocations < 1 || o.seedRows < 0 {
		return fmt.Errorf("-runs, -duration and -codes must be positive, -seed-rows not negative")
	}
	// Whatever happens, the bench stops by itself.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }

	if o.bin == "" {
		dir, err := os.MkdirTemp("", "mcpauth-bench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.bin = filepath.Join(dir, "mcpauth")
		logf("building %s", o.bin)
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", o.bin, "./cmd/mcpauth")
		build.Stdout, build.Stderr = stderr, stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build mcpauth: %w", err)
		}
	}
	if o.profileDir != "" && o.databaseURL != "" {
		return fmt.Errorf("-profile needs the throwaway cluster (it loads pg_stat_statements): drop -database-url")
	}
	if o.databaseURL == "" {
		logf("starting a throwaway PostgreSQL cluster")
		u, stopDB, err := throwawayDatabase(ctx, o.profileDir != "")
		if err != nil {
			return err
		}
		defer stopDB()
		o.databaseURL = u
	}
	var extraEnv []string
	var prof *profiler
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		extraEnv = append(extraEnv, "MCPAUTH_DEBUG_PPROF_ADDR="+addr)
		prof = &profiler{dir: o.profileDir, server: procTarget{pprofBase: "http://" + addr}, databaseURL: o.databaseURL, logf: logf}
	}
	srv, err := startServer(ctx, o.bin, o.databaseURL, randomString(), extraEnv...)
	if err != nil {
		return err
	}
	defer srv.stop()
	logf("mcpauth serve on %s", srv.base)
	if prof != nil {
		prof.server.pid = srv.cmd.Process.Pid
	}

	b, err := newBench(ctx, srv, o)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer b.close()
	var selected []scenario
	for _, sc := range b.scenarios() {
		if len(o.only) == 0 || slices.Contains(o.only, sc.name) {
			selected = append(selected, sc)
		}
	}
	report, err := b.runAll(ctx, selected, prof, logf)
	if err != nil {
		return err
	}
	if o.seedRows > 0 {
		logf("seeding %d rows into the token tables with COPY", o.seedRows)
		took, err := seedTokens(ctx, o.databaseURL, o.seedRows, logf)
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		logf("seeded %d rows in %s", o.seedRows, took.Round(time.Second))
		seeded, err := b.runAll(ctx, b.seededScenarios(selected, report, o.seedRows, took), prof, logf)
		if err != nil {
			return err
		}
		report = append(report, seeded...)
	}
	judgeNoAuthRatio(report)
	if o.seedRows == 0 && len(o.only) == 0 {
		// Every DESIGN §7 figure has its row, measured or not.
		report = append(report, scenarioReport{
			Name: "token_scenarios@10M", Target: "within 80 % of the empty-database figures",
			Note: "seeding takes about 9 minutes: make bench-10m (-seed-rows 10000000)",
		})
	}
	printTable(stdout, report)
	if o.jsonPath != "" {
		out := benchReport{
			Date:      time.Now().UTC().Format(time.RFC3339),
			Duration:  o.duration.String(),
			Runs:      o.runs,
			Machine:   describeMachine(),
			Scenarios: report,
		}
		raw, _ := json.MarshalIndent(out, "", "  ")
		if err := os.MkdirAll(filepath.Dir(o.jsonPath), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonPath, append(raw, '\n'), 0o644); err != nil {
			return err
		}
		logf("wrote %s", o.jsonPath)
	}
	return nil
}

// target is a DESIGN §7 figure: at least MinRPS, and a p99 of at most
// MaxP99 when set.
type target struct {
	MinRPS float64
	MaxP99 time.Duration
	Text   string
}

func (t target) met(r result) bool {
	return r.RPS >= t.MinRPS && (t.MaxP99 == 0 || r.P99 <= t.MaxP99)
}

// A latency-only scenario (revocation propagation) has no req/s: its
// result carries the samples' percentiles, and Requests is the count.

type scenarioReport struct {
	Name        string   `json:"name"`
	Concurrency int      `json:"concurrency"`
	Runs        []result `json:"runs,omitempty"`
	Median      *result  `json:"median,omitempty"`
	Target      string   `json:"target"`
	Met         *bool    `json:"met,omitempty"`
	// Ratio is, for mcp_whoami, its median req/s over mcp_whoami_noauth's.
	Ratio *float64 `json:"auth_on_off_ratio,omitempty"`
	Note  string   `json:"note,omitempty"`
}

type benchReport struct {
	Date      string           `json:"date"`
	Duration  string           `json:"duration_per_run"`
	Runs      int              `json:"runs"`
	Machine   machine          `json:"machine"`
	Scenarios []scenarioReport `json:"scenarios"`
}

func printTable(w io.Writer, report []scenarioReport) {
	fmt.Fprintf(w, "%-26s %5s %10s %9s %9s %7s  %-40s %s\n", "scenario", "conc", "req/s", "p50", "p99", "errors", "target (DESIGN §7)", "met")
	for _, r := range report {
		if r.Median == nil {
			fmt.Fprintf(w, "%-26s %5d %10s %9s %9s %7s  %-40s %s\n", r.Name, r.Concurrency, "-", "-", "-", "-", r.Target, "not measured: "+r.Note)
			continue
		}
		met := "-"
		if r.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*r.Met]
		}
		if r.Note != "" && (r.Ratio != nil || r.Met == nil) {
			met += " (" + r.Note + ")"
		}
		errs := 0
		for _, run := range r.Runs {
			errs += run.Errors
		}
		rps := fmt.Sprintf("%.0f", r.Median.RPS)
		if r.Median.RPS == 0 {
			rps = fmt.Sprintf("n=%d", r.Median.Requests) // latency samples or benchmark iterations
		}
		fmt.Fprintf(w, "%-26s %5d %10s %9s %9s %7d  %-40s %s\n", r.Name, r.Concurrency, rps, ms(r.Median.P50), ms(r.Median.P99), errs, r.Target, met)
	}
}

func ms(d time.Duration) string {
	if d > 0 && d < 100*time.Microsecond {
		return fmt.Sprintf("%.2fµs", float64(d)/float64(time.Microsecond))
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}
