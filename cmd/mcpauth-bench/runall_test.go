package main

import (
	"strings"
	"testing"
)

// TestJudgeNoAuthRatio: the ratio is the median of the per-round ratios of
// the interleaved runs, and the /mcp target needs both halves.
func TestJudgeNoAuthRatio(t *testing.T) {
	rep := func(name string, rps ...float64) scenarioReport {
		r := scenarioReport{Name: name}
		for _, x := range rps {
			r.Runs = append(r.Runs, result{RPS: x})
		}
		m := median(r.Runs)
		r.Median = &m
		return r
	}
	for _, tc := range []struct {
		on, off []float64
		ratio   float64
		met     bool
	}{
		// A busy moment (round 2) hits both and cancels out.
		{[]float64{4000, 1000, 3900}, []float64{4200, 1100, 4100}, 3900.0 / 4100, true},
		{[]float64{4000, 4000, 4000}, []float64{5000, 5000, 5000}, 0.8, false},
		{[]float64{1000, 1000, 1000}, []float64{1000, 1000, 1000}, 1, false}, // < 3,700 req/s
	} {
		report := []scenarioReport{rep("mcp_whoami", tc.on...), rep("mcp_whoami_noauth", tc.off...)}
		judgeNoAuthRatio(report)
		on := report[0]
		if on.Ratio == nil || *on.Ratio < tc.ratio-1e-9 || *on.Ratio > tc.ratio+1e-9 {
			t.Errorf("%v / %v: ratio %v, want %v", tc.on, tc.off, on.Ratio, tc.ratio)
		}
		if on.Met == nil || *on.Met != tc.met {
			t.Errorf("%v / %v: met %v, want %v", tc.on, tc.off, on.Met, tc.met)
		}
		if !strings.Contains(on.Note, "interleaved") {
			t.Errorf("note %q", on.Note)
		}
	}
}
