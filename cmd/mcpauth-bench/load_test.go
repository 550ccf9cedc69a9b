package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var out []time.Duration
		for _, v := range n {
			out = append(out, time.Duration(v)*time.Millisecond)
		}
		return out
	}
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{hundred, 99, 99 * time.Millisecond},
		{hundred, 100, 100 * time.Millisecond},
		{hundred, 0, 1 * time.Millisecond},
	} {
		if got := percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tc.in, tc.p, got, tc.want)
		}
	}
}

func TestMedian(t *testing.T) {
	runs := []result{{RPS: 30, P99: 3}, {RPS: 10, P99: 1}, {RPS: 20, P99: 2}}
	if m := median(runs); m.RPS != 20 || m.P99 != 2 {
		t.Errorf("median = %+v, want the run with 20 req/s", m)
	}
	if m := median(runs[:2]); m.RPS != 10 {
		t.Errorf("median of two = %+v, want the lower", m)
	}
}

// TestLoadStops: load ends when every worker is done, long before the
// duration, and counts successes and errors apart.
func TestLoadStops(t *testing.T) {
	left := 10
	w := func(context.Context) (bool, error) {
		left--
		switch {
		case left < 0:
			return true, nil
		case left%5 == 0:
			return false, errors.New("boom")
		}
		return false, nil
	}
	start := time.Now()
	r := load(t.Context(), []op{w}, time.Minute)
	if time.Since(start) > 10*time.Second {
		t.Fatalf("load ran %s after its workers were done", time.Since(start))
	}
	if r.Requests != 8 || r.Errors != 2 {
		t.Errorf("requests %d errors %d, want 8 and 2", r.Requests, r.Errors)
	}
}

func TestTargetMet(t *testing.T) {
	for _, tc := range []struct {
		target target
		rps    float64
		p99    time.Duration
		want   bool
	}{
		{target{MinRPS: 2500, MaxP99: 25 * time.Millisecond}, 3000, 20 * time.Millisecond, true},
		{target{MinRPS: 2500, MaxP99: 25 * time.Millisecond}, 3000, 30 * time.Millisecond, false},
		{target{MinRPS: 1500}, 1400, time.Millisecond, false},
		{target{MinRPS: 1500}, 1500, time.Second, true},
	} {
		if got := tc.target.met(result{RPS: tc.rps, P99: tc.p99}); got != tc.want {
			t.Errorf("%+v met(%v, %v) = %v", tc.target, tc.rps, tc.p99, got)
		}
	}
}
