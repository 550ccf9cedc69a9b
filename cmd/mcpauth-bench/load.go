package main

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// op is one request of a scenario, made by one worker. It returns done when
// the worker has nothing left to send (its codes or its token chain are
// used up) and err when the request failed.
type op func(ctx context.Context) (done bool, err error)

// result is what one run of a scenario measured.
type result struct {
	Requests int           `json:"requests"`
	Errors   int           `json:"errors"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	RPS      float64       `json:"req_per_s"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
}

// load runs workers (one goroutine each, with its own op) until duration
// has passed or every worker is done, and times each request. A request
// under way at the deadline is let finish (cancelling it would break a
// refresh-token chain half-way) and counts; elapsed runs to the last one.
// Only successful requests count towards req/s and the percentiles.
func load(ctx context.Context, workers []op, duration time.Duration) result {
	lat := make([][]time.Duration, len(workers))
	errs := make([]int, len(workers))
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(duration)
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				done, err := w(ctx)
				if err != nil {
					errs[i]++
				} else if !done {
					lat[i] = append(lat[i], time.Since(t0))
				}
				if done {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	r := result{Elapsed: elapsed}
	for i := range workers {
		all = append(all, lat[i]...)
		r.Errors += errs[i]
	}
	r.Requests = len(all)
	r.RPS = float64(len(all)) / elapsed.Seconds()
	slices.Sort(all)
	r.P50 = percentile(all, 50)
	r.P99 = percentile(all, 99)
	return r
}

// percentile returns the nearest-rank p-th percentile of sorted: the
// smallest value at or below which p % of the values lie; 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// median returns the run with the median req/s of runs (the lower middle
// one for an even count), so that its p99 comes from the same run.
func median(runs []result) result {
	if len(runs) == 0 {
		return result{}
	}
	s := slices.Clone(runs)
	slices.SortFunc(s, func(a, b result) int {
		switch {
		case a.RPS < b.RPS:
			return -1
		case a.RPS > b.RPS:
			return 1
		}
		return 0
	})
	return s[(len(s)-1)/2]
}
