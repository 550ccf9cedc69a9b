package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// healthcheckTimeout bounds the whole check: a container runtime kills a
// HEALTHCHECK that outlives its own timeout anyway.
const healthcheckTimeout = 3 * time.Second

// healthcheck is `mcpauth healthcheck [URL]`: GET URL (default: /healthz at
// MCPAUTH_ADDR, on loopback when it names no host) and succeed on 200. It exists for
// container images without a shell or curl (deploy/Dockerfile's HEALTHCHECK).
// Only http and https URLs are fetched, without following redirects.
func (e *environment) healthcheck(ctx context.Context, args []string) error {
	fs := e.flags("healthcheck", "healthcheck [URL]  (default http://127.0.0.1:PORT/healthz, PORT from MCPAUTH_ADDR)")
	if err := parse(fs, args); err != nil {
		return err
	}
	var target string
	switch fs.NArg() {
	case 0:
		addr := e.getenv("MCPAUTH_ADDR")
		if addr == "" {
			addr = DefaultConfig().Addr
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "" || port == "0" {
			return fmt.Errorf("healthcheck: MCPAUTH_ADDR %q names no port; give the URL", addr)
		}
		// The address the server listens on; loopback when it listens on
		// every address.
		if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		target = "http://" + net.JoinHostPort(host, port) + "/healthz"
	case 1:
		target = fs.Arg(0)
	default:
		fs.Usage()
		return errUsage
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("healthcheck: want an http(s) URL, got %q", target)
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", u.Redacted(), resp.Status)
	}
	fmt.Fprintln(e.stdout, "ok")
	return nil
}
