package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// runAll runs each scenario -runs times (consecutive scenarios of one
// group alternately, run 1 of each, then run 2 of each…, so that both see
// the same moments of a shared machine), takes the median, profiles it
// when prof is set, and judges it against its target.
func (b *bench) runAll(ctx context.Context, list []scenario, prof *profiler, logf func(string, ...any)) ([]scenarioReport, error) {
	var report []scenarioReport
	for i := 0; i < len(list); {
		j := i + 1
		for j < len(list) && list[i].group != "" && list[j].group == list[i].group {
			j++
		}
		group := list[i:j]
		reps := make([]scenarioReport, len(group))
		for k, sc := range group {
			reps[k] = scenarioReport{Name: sc.name, Concurrency: sc.concurrency, Target: sc.target.Text, Note: sc.note}
		}
		runs := b.opts.runs
		for run := range runs {
			for k, sc := range group {
				var r result
				switch {
				case sc.measure != nil:
					if run > 0 {
						continue // one measurement of many samples
					}
					var err error
					if r, err = sc.measure(ctx); err != nil {
						return nil, fmt.Errorf("%s: %w", sc.name, err)
					}
				case sc.newWorkers != nil:
					workers, err := sc.newWorkers(ctx)
					if err != nil {
						return nil, fmt.Errorf("%s: setup of run %d: %w", sc.name, run+1, err)
					}
					r = load(ctx, workers, b.opts.duration)
				default:
					continue
				}
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if sc.measure != nil {
					logf("%-26s %d samples: p50 %-9s p99 %-9s", sc.name, r.Requests, ms(r.P50), ms(r.P99))
				} else {
					logf("%-26s run %d: %8.0f req/s  p50 %-9s p99 %-9s errors %d", sc.name, run+1, r.RPS, ms(r.P50), ms(r.P99), r.Errors)
				}
				reps[k].Runs = append(reps[k].Runs, r)
			}
		}
		for k, sc := range group {
			rep := &reps[k]
			if len(rep.Runs) == 0 {
				continue
			}
			m := median(rep.Runs)
			rep.Median = &m
			if prof != nil && sc.profiled && sc.newWorkers != nil {
				workers, err := sc.newWorkers(ctx)
				if err != nil {
					return nil, fmt.Errorf("%s: setup of the profiled run: %w", sc.name, err)
				}
				at := prof.server
				if sc.profileAt != nil {
					at = sc.profileAt()
				}
				r, err := prof.profile(ctx, sc.name, workers, b.opts.duration, at)
				if err != nil {
					return nil, fmt.Errorf("%s: profile: %w", sc.name, err)
				}
				logf("%-26s profiled: %8.0f req/s (not counted)", sc.name, r.RPS)
			}
			if sc.target.MinRPS > 0 || sc.target.MaxP99 > 0 {
				met := sc.target.met(m)
				rep.Met = &met
			}
		}
		report = append(report, reps...)
		i = j
	}
	return report, nil
}

// judgeNoAuthRatio completes the /mcp target: ≥ 3,700 req/s and ≥ 90 % of
// the auth-off throughput. Their runs alternate, so run i of each saw the
// same moment of the machine: the ratio is the median of the per-round
// ratios, which a busy moment shared by both cancels out of.
func judgeNoAuthRatio(report []scenarioReport) {
	var on, off *scenarioReport
	for i := range report {
		switch report[i].Name {
		case "mcp_whoami":
			on = &report[i]
		case "mcp_whoami_noauth":
			off = &report[i]
		}
	}
	if on == nil || off == nil || on.Median == nil || len(on.Runs) != len(off.Runs) {
		return
	}
	var ratios []float64
	for i := range on.Runs {
		if off.Runs[i].RPS > 0 {
			ratios = append(ratios, on.Runs[i].RPS/off.Runs[i].RPS)
		}
	}
	if len(ratios) == 0 {
		return
	}
	slices.Sort(ratios)
	ratio := ratios[(len(ratios)-1)/2]
	on.Ratio = &ratio
	each := make([]string, len(ratios))
	for i, r := range ratios {
		each[i] = fmt.Sprintf("%.0f", 100*r)
	}
	on.Note = fmt.Sprintf("auth on / auth off = %.0f %%, median of the interleaved rounds (%s %%)", 100*ratio, strings.Join(each, ", "))
	met := on.Median.RPS >= 3700 && ratio >= 0.9
	on.Met = &met
}

// seededScenarios are the token scenarios again, on the seeded tables,
// each judged against 80 % of its own empty-database median (DESIGN §7).
func (b *bench) seededScenarios(selected []scenario, empty []scenarioReport, rows int, took time.Duration) []scenario {
	base := map[string]*result{}
	for _, r := range empty {
		base[r.Name] = r.Median
	}
	var out []scenario
	for _, sc := range selected {
		if !sc.tokenTable || sc.newWorkers == nil {
			continue
		}
		m := base[sc.name]
		if m == nil {
			continue
		}
		sc.name = fmt.Sprintf("%s@%s", sc.name, rowsLabel(rows))
		sc.target = target{MinRPS: 0.8 * m.RPS, Text: fmt.Sprintf("≥ 80 %% of empty: ≥ %.0f req/s", 0.8*m.RPS)}
		sc.note = fmt.Sprintf("after COPY of %d rows into the token tables (%s)", rows, took.Round(time.Second))
		sc.group = ""
		out = append(out, sc)
	}
	return out
}

func rowsLabel(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
