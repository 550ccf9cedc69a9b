package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// cachedAuthCheck runs the Go benchmark of DESIGN §7's "auth check for an
// already-seen token" (authz.BenchmarkVerifyAccessTokenCached: the token's
// SHA-256, the cache, the clock and the revocation set; 10,000 revoked
// grants) with `go test` in this source tree, and returns its ns/op as p50
// and p99 (Requests: the iterations). It needs the go tool and the source
// tree, as make bench has; elsewhere the row says it was not measured.
func (b *bench) cachedAuthCheck(ctx context.Context) (result, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^BenchmarkVerifyAccessTokenCached$",
		"-benchmem", "-benchtime", "2s", "-count", "3", "github.com/mcpauth/mcpauth/authz")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("go test -bench: %v: %.500s", err, out.String())
	}
	// BenchmarkVerifyAccessTokenCached-2   1000000   1234 ns/op   …
	var runs []result
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkVerifyAccessTokenCached") || f[3] != "ns/op" {
			continue
		}
		n, err1 := strconv.Atoi(f[1])
		ns, err2 := strconv.ParseFloat(f[2], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		d := time.Duration(ns)
		runs = append(runs, result{Requests: n, P50: d, P99: d})
	}
	if len(runs) == 0 {
		return result{}, fmt.Errorf("go test -bench printed no result: %.500s", out.String())
	}
	m := median(runsByLatency(runs))
	m.RPS = 0
	return m, nil
}

// runsByLatency orders runs for median by their ns/op (median sorts by
// req/s, which these have none of).
func runsByLatency(runs []result) []result {
	for i := range runs {
		runs[i].RPS = -float64(runs[i].P50)
	}
	return runs
}
