package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// revocationLatency measures DESIGN §7's "revocation visible at /mcp on
// every replica ≤ 1 s" with two `mcpauth serve` instances on one database:
// A (the bench's server) and B (a replica started for this scenario, same
// issuer, secret and database, its own port). For each of -revocations
// grants (codes minted through /authorize and exchanged beforehand,
// untimed): B answers /mcp with the grant's access token (so B has it in
// its cache of verified tokens, the case that matters), then the refresh
// token is revoked at A's /revoke (RFC 7009; it revokes the whole grant),
// and B's /mcp is polled every 2 ms until it answers 401. The sample is the
// time from sending the revocation to B's first 401. Percentiles are over
// the samples; Requests counts them.
func (b *bench) revocationLatency(ctx context.Context) (result, error) {
	n := b.opts.revocations
	replica, err := b.srv.replica(ctx)
	if err != nil {
		return result{}, err
	}
	defer replica.stop()
	codes, err := b.mint(ctx, n)
	if err != nil {
		return result{}, err
	}
	type grant struct{ access, refresh string }
	grants := make([]grant, 0, n)
	for _, c := range codes {
		tok, err := b.exchange(ctx, c)
		if err != nil {
			return result{}, fmt.Errorf("exchange: %w", err)
		}
		grants = append(grants, grant{tok.AccessToken, tok.RefreshToken})
	}
	start := time.Now()
	samples := make([]time.Duration, 0, n)
	for _, g := range grants {
		if err := b.mcpCall(ctx, replica.base, g.access); err != nil {
			return result{}, fmt.Errorf("replica before revocation: %w", err)
		}
		t0 := time.Now()
		if err := b.post(ctx, "/revoke", url.Values{"token": {g.refresh}, "token_type_hint": {"refresh_token"}, "client_id": {b.codeID}}, false, nil); err != nil {
			return result{}, fmt.Errorf("revoke: %w", err)
		}
		deadline := t0.Add(10 * time.Second)
		for {
			status, err := b.mcpStatus(ctx, replica.base, g.access, false)
			if err != nil {
				return result{}, err
			}
			if status == http.StatusUnauthorized {
				samples = append(samples, time.Since(t0))
				break
			}
			if status != http.StatusOK {
				return result{}, fmt.Errorf("replica: /mcp answered %d while waiting for the revocation", status)
			}
			if time.Now().After(deadline) {
				return result{}, fmt.Errorf("the revocation did not reach the replica within 10 s")
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	slices.Sort(samples)
	return result{
		Requests: len(samples),
		Elapsed:  time.Since(start),
		P50:      percentile(samples, 50),
		P99:      percentile(samples, 99),
	}, nil
}
