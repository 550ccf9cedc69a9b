package authz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mcpauth/mcpauth/authz/oauth"
)

// Limits of the guarded fetcher (DESIGN §8, DR-2): a client metadata document
// or a client's JWKS is small, and a host that is slow or hostile must not
// hold the server's goroutines for long.
const (
	fetchTimeout       = 5 * time.Second // whole request: dial, TLS, headers and body
	fetchDialTimeout   = 2 * time.Second
	fetchTLSTimeout    = 3 * time.Second
	fetchPerHost       = 2               // requests in flight to one host
	fetchMaxInFlight   = 32              // requests in flight in all
	fetchQueueWait     = 1 * time.Second // how long a request waits for a slot
	fetchMaxRedirects  = 2               // and only to the same origin
	maxMetadataDocSize = 5 << 10
	fetchUserAgent     = "mcpauth (+https://github.com/mcpauth/mcpauth)"
)

// Errors of the guarded fetcher. Each has a message that is safe to show.
var (
	errFetchURL         = errors.New("URL not allowed")
	errFetchAddress     = errors.New("address not allowed")
	errFetchRedirect    = errors.New("redirect not allowed")
	errFetchTooLarge    = errors.New("response too large")
	errFetchStatus      = errors.New("unexpected HTTP status")
	errFetchContentType = errors.New("response is not JSON")
	errFetchBusy        = errors.New("too many requests in progress")
	errFetchTimeout     = errors.New("timed out")
	errFetchNetwork     = errors.New("host unreachable")
)

// fetcher is the server's one outbound HTTP client for URLs that clients
// choose (metadata documents, jwks_uri): an SSRF guard on the address actually
// dialled (so DNS rebinding does not pass), https only, no cross-origin
// redirects, size and time limits, and a bound on concurrent requests per
// host.
type fetcher struct {
	client            *http.Client
	allowHTTPLoopback bool

	all chan struct{} // fetchMaxInFlight slots: many hosts cannot add up either

	mu    sync.Mutex
	hosts map[string]*hostSlots
}

type hostSlots struct {
	slots chan struct{}
	users int // requests holding or waiting for a slot; the entry goes at 0
}

// newFetcher builds the fetcher for cfg. cfg.Transport (tests) contributes
// its TLS settings; dialling, proxying and limits are always the fetcher's.
func newFetcher(cfg CIMDConfig) *fetcher {
	var tr *http.Transport
	if cfg.Transport != nil {
		tr = cfg.Transport.Clone()
	} else {
		tr = &http.Transport{}
	}
	d := &net.Dialer{
		Timeout:  fetchDialTimeout,
		Resolver: cfg.Resolver,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %q", errFetchAddress, address)
			}
			for _, ok := range cfg.allowAddrs {
				if ok == ap {
					return nil
				}
			}
			if reason := blockedAddr(ap.Addr(), cfg.AllowPrivateNetworks, cfg.AllowHTTPLoopback); reason != "" {
				return fmt.Errorf("%w: %s is %s", errFetchAddress, ap.Addr(), reason)
			}
			return nil
		},
	}
	tr.DialContext = d.DialContext
	tr.DialTLSContext = nil
	tr.Dial = nil  //nolint:staticcheck // cleared so that DialContext is the only dialer
	tr.Proxy = nil // a proxy would be the address dialled, defeating the guard
	tr.TLSHandshakeTimeout = fetchTLSTimeout
	tr.ResponseHeaderTimeout = fetchTimeout
	tr.MaxResponseHeaderBytes = 16 << 10
	tr.MaxIdleConnsPerHost = fetchPerHost
	tr.IdleConnTimeout = 30 * time.Second
	f := &fetcher{allowHTTPLoopback: cfg.AllowHTTPLoopback, all: make(chan struct{}, fetchMaxInFlight), hosts: map[string]*hostSlots{}}
	f.client = &http.Client{
		Transport: tr,
		Timeout:   fetchTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			// CIMD §6: no redirects, or a few within the same origin, each
			// target checked like the first URL (and dialled through the guard).
			if len(via) > fetchMaxRedirects {
				return fmt.Errorf("%w: more than %d redirects", errFetchRedirect, fetchMaxRedirects)
			}
			first := via[0].URL
			if req.URL.Scheme != first.Scheme || !strings.EqualFold(req.URL.Host, first.Host) {
				return fmt.Errorf("%w: to another origin", errFetchRedirect)
			}
			return f.checkURL(req.URL)
		},
	}
	return f
}

// cgnat is RFC 6598 shared address space; the others are special-purpose
// registries (RFC 6890) that netip has no predicate for.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT, RFC 6598
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: reaches any IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds any IPv4 address
	netip.MustParsePrefix("2001::/32"),       // Teredo
}

// blockedAddr says why a is not a target for a fetch of a URL a client
// chose, or "" when it may be dialled. IPv4-mapped IPv6 addresses are judged
// as the IPv4 address they are.
func blockedAddr(a netip.Addr, allowPrivate, allowLoopback bool) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return "not an address"
	case a.Zone() != "":
		return "a scoped address"
	case a.IsLoopback():
		if allowLoopback || allowPrivate {
			return ""
		}
		return "a loopback address"
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsMulticast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return "a multicast address"
	}
	if allowPrivate {
		return ""
	}
	switch {
	case a.IsPrivate():
		return "a private address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	}
	for _, p := range blockedPrefixes {
		if p.Contains(a) {
			return "a special-purpose address"
		}
	}
	return ""
}

// checkURL refuses a URL the fetcher does not request: https only (http on a
// loopback host when allowed), an authority, no user information.
func (f *fetcher) checkURL(u *url.URL) error {
	if u.User != nil {
		return fmt.Errorf("%w: user information in the URL", errFetchURL)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%w: no host", errFetchURL)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if f.allowHTTPLoopback && oauth.IsLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%w: http is not allowed, use https", errFetchURL)
	}
	return fmt.Errorf("%w: scheme %q", errFetchURL, u.Scheme)
}

// get fetches rawURL with GET and returns its body, at most maxBytes, which
// must be JSON (application/json or a +json type) with status 200.
func (f *fetcher) get(ctx context.Context, rawURL string, maxBytes int64) ([]byte, http.Header, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: not a URL", errFetchURL)
	}
	if err := f.checkURL(u); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	host := strings.ToLower(u.Host)
	release, err := f.acquire(ctx, host)
	if err != nil {
		return nil, nil, err
	}
	defer release()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errFetchURL, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", fetchUserAgent)
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, nil, classifyFetchError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%w: %d", errFetchStatus, resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil ||
		(mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return nil, nil, errFetchContentType
	}
	if resp.ContentLength > maxBytes {
		return nil, nil, fmt.Errorf("%w: more than %d bytes", errFetchTooLarge, maxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return nil, nil, classifyFetchError(ctx, err)
	}
	if int64(len(body)) > maxBytes {
		return nil, nil, fmt.Errorf("%w: more than %d bytes", errFetchTooLarge, maxBytes)
	}
	return body, resp.Header, nil
}

// classifyFetchError keeps the guard's own errors and turns the rest into
// errFetchTimeout or errFetchNetwork, wrapping the cause for the log.
func classifyFetchError(ctx context.Context, err error) error {
	for _, known := range []error{errFetchAddress, errFetchRedirect, errFetchURL} {
		if errors.Is(err, known) {
			return err
		}
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %w", errFetchTimeout, err)
	}
	return fmt.Errorf("%w: %w", errFetchNetwork, err)
}

// acquire takes one of the host's request slots and one of all, waiting at
// most fetchQueueWait, so that a slow host ties up at most fetchPerHost
// requests, many slow hosts at most fetchMaxInFlight, and the rest fail fast.
func (f *fetcher) acquire(ctx context.Context, host string) (release func(), err error) {
	releaseHost, err := f.acquireHost(ctx, host)
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(fetchQueueWait)
	defer t.Stop()
	select {
	case f.all <- struct{}{}:
		return func() { <-f.all; releaseHost() }, nil
	case <-t.C:
		releaseHost()
		return nil, errFetchBusy
	case <-ctx.Done():
		releaseHost()
		return nil, fmt.Errorf("%w: %w", errFetchTimeout, ctx.Err())
	}
}

func (f *fetcher) acquireHost(ctx context.Context, host string) (release func(), err error) {
	f.mu.Lock()
	h := f.hosts[host]
	if h == nil {
		h = &hostSlots{slots: make(chan struct{}, fetchPerHost)}
		f.hosts[host] = h
	}
	h.users++
	f.mu.Unlock()
	done := func() {
		f.mu.Lock()
		if h.users--; h.users == 0 {
			delete(f.hosts, host)
		}
		f.mu.Unlock()
	}
	t := time.NewTimer(fetchQueueWait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return func() { <-h.slots; done() }, nil
	case <-t.C:
		done()
		return nil, errFetchBusy
	case <-ctx.Done():
		done()
		return nil, fmt.Errorf("%w: %w", errFetchTimeout, ctx.Err())
	}
}

// fetchErrorDescription is what a person or client is told about a failed
// fetch: the guard's reason, never the underlying error text.
func fetchErrorDescription(err error) string {
	for _, e := range []error{errFetchURL, errFetchAddress, errFetchRedirect, errFetchTooLarge, errFetchStatus,
		errFetchContentType, errFetchBusy, errFetchTimeout, errFetchNetwork} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "fetch failed"
}
