package authz

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// cimdDNS is a DNS server for tests that answers every A query with addr
// (and AAAA with nothing), and a net.Resolver that asks it.
func cimdDNS(t *testing.T, addr netip.Addr) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.EnableCompression()
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			if q.Type == dnsmessage.TypeA && addr.Is4() {
				b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1},
					dnsmessage.AResource{A: addr.As4()})
			}
			out, err := b.Finish()
			if err == nil {
				pc.WriteTo(out, from)
			}
		}
	}()
	server := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", server)
	}}
}

// cimdHost is an HTTPS test server (its own test CA) and the CIMDConfig
// that trusts it and lets exactly its address through the guard.
func cimdHost(t *testing.T, h http.Handler) (*httptest.Server, CIMDConfig) {
	t.Helper()
	hs := httptest.NewTLSServer(h)
	t.Cleanup(hs.Close)
	ap := netip.MustParseAddrPort(hs.Listener.Addr().String())
	return hs, CIMDConfig{
		Transport:  hs.Client().Transport.(*http.Transport),
		allowAddrs: []netip.AddrPort{ap},
	}
}

func TestFetcherGet(t *testing.T) {
	var ua string
	hs, cfg := cimdHost(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua = r.Header.Get("User-Agent")
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Write([]byte(`{"a":1}`))
		case "/jwks":
			w.Header().Set("Content-Type", "application/jwk-set+json")
			w.Write([]byte(`{"keys":[]}`))
		case "/html":
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(`{}`))
		case "/big":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`"` + strings.Repeat("x", 6000) + `"`))
		case "/big-chunked":
			w.Header().Set("Content-Type", "application/json")
			for range 10 {
				w.Write([]byte(strings.Repeat(" ", 1000)))
				w.(http.Flusher).Flush()
			}
		case "/404":
			http.NotFound(w, r)
		case "/same1":
			http.Redirect(w, r, "/same2", http.StatusFound)
		case "/same2":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/to-private":
			http.Redirect(w, r, "https://10.1.2.3/doc", http.StatusFound)
		case "/to-loopback":
			// Same host name, another port: another origin.
			http.Redirect(w, r, "https://127.0.0.1:1/doc", http.StatusFound)
		}
	}))
	f := newFetcher(cfg)
	ctx := t.Context()

	body, _, err := f.get(ctx, hs.URL+"/ok", maxMetadataDocSize)
	if err != nil || string(body) != `{"a":1}` {
		t.Fatalf("get /ok = %q, %v", body, err)
	}
	if !strings.HasPrefix(ua, "mcpauth") {
		t.Errorf("User-Agent = %q, want mcpauth…", ua)
	}
	if _, _, err := f.get(ctx, hs.URL+"/jwks", maxMetadataDocSize); err != nil {
		t.Errorf("get +json type: %v", err)
	}
	// Two redirects within the origin are followed.
	if body, _, err := f.get(ctx, hs.URL+"/same1", maxMetadataDocSize); err != nil || string(body) != `{"a":1}` {
		t.Errorf("get /same1 = %q, %v", body, err)
	}
	for _, tc := range []struct {
		path string
		want error
	}{
		{"/html", errFetchContentType},
		{"/big", errFetchTooLarge},
		{"/big-chunked", errFetchTooLarge},
		{"/404", errFetchStatus},
		{"/loop", errFetchRedirect},
		{"/to-private", errFetchRedirect},
		{"/to-loopback", errFetchRedirect},
	} {
		if _, _, err := f.get(ctx, hs.URL+tc.path, maxMetadataDocSize); !errors.Is(err, tc.want) {
			t.Errorf("get %s: err %v, want %v", tc.path, err, tc.want)
		}
	}
}

func TestFetcherRefusesPrivateTargets(t *testing.T) {
	hs, cfg := cimdHost(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	port := netip.MustParseAddrPort(hs.Listener.Addr().String()).Port()
	f := newFetcher(cfg)
	for _, u := range []string{
		"https://10.0.0.1/doc",
		"https://192.168.1.1/doc",
		"https://169.254.169.254/latest/meta-data",
		"https://100.64.0.1/doc",
		"https://[::1]:1/doc",
		"https://[fd00::1]/doc",
		"https://[fe80::1]/doc",
		"https://[::ffff:10.0.0.1]/doc",
		"https://[::ffff:127.0.0.1]:1/doc",
		"https://0.0.0.0/doc",
		"https://127.0.0.2:" + strconv.Itoa(int(port)) + "/doc", // another loopback address than the allowed one
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		_, _, err := f.get(ctx, u, maxMetadataDocSize)
		cancel()
		if !errors.Is(err, errFetchAddress) {
			t.Errorf("get %s: err %v, want %v", u, err, errFetchAddress)
		}
	}
	for _, u := range []string{"http://example.com/doc", "http://127.0.0.1/doc", "ftp://example.com/doc", "https://user:pw@example.com/doc"} {
		if _, _, err := f.get(t.Context(), u, maxMetadataDocSize); !errors.Is(err, errFetchURL) {
			t.Errorf("get %s: err %v, want %v", u, err, errFetchURL)
		}
	}
}

// TestFetcherDNSRebinding: the guard judges the address dialled, whatever
// the name: a public-looking name that resolves to 127.0.0.1 or 10.x is
// refused; the same name resolving to the allowed test server passes (so the
// injected resolver is the one used).
func TestFetcherDNSRebinding(t *testing.T) {
	hs, cfg := cimdHost(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	_, port, _ := net.SplitHostPort(hs.Listener.Addr().String())
	// httptest's certificate is valid for example.com.
	u := "https://example.com:" + port + "/doc"

	cfg.Resolver = cimdDNS(t, netip.MustParseAddr("127.0.0.1"))
	if body, _, err := newFetcher(cfg).get(t.Context(), u, maxMetadataDocSize); err != nil || string(body) != `{"ok":true}` {
		t.Fatalf("example.com → the allowed test server: %q, %v", body, err)
	}
	cfg.allowAddrs = nil
	if _, _, err := newFetcher(cfg).get(t.Context(), u, maxMetadataDocSize); !errors.Is(err, errFetchAddress) {
		t.Fatalf("example.com → 127.0.0.1: err %v, want %v", err, errFetchAddress)
	}
	cfg.Resolver = cimdDNS(t, netip.MustParseAddr("10.9.8.7"))
	if _, _, err := newFetcher(cfg).get(t.Context(), u, maxMetadataDocSize); !errors.Is(err, errFetchAddress) {
		t.Fatalf("example.com → 10.9.8.7: err %v, want %v", err, errFetchAddress)
	}
	// Allowed by configuration: private networks (tests, private deployments).
	cfg.Resolver = cimdDNS(t, netip.MustParseAddr("127.0.0.1"))
	cfg.AllowPrivateNetworks = true
	if _, _, err := newFetcher(cfg).get(t.Context(), u, maxMetadataDocSize); err != nil {
		t.Fatalf("with AllowPrivateNetworks: %v", err)
	}
}

func TestFetcherHTTPLoopback(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(hs.Close)
	if _, _, err := newFetcher(CIMDConfig{}).get(t.Context(), hs.URL+"/doc", 100); !errors.Is(err, errFetchURL) {
		t.Fatalf("http without AllowHTTPLoopback: err %v, want %v", err, errFetchURL)
	}
	if _, _, err := newFetcher(CIMDConfig{AllowHTTPLoopback: true}).get(t.Context(), hs.URL+"/doc", 100); err != nil {
		t.Fatalf("http with AllowHTTPLoopback: %v", err)
	}
}

// TestFetcherSlowHost: a host that never answers costs one fetch its
// timeout, and no more than fetchPerHost requests wait on it at once.
func TestFetcherSlowHost(t *testing.T) {
	release := make(chan struct{})
	hs, cfg := cimdHost(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	f := newFetcher(cfg)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, fetchPerHost+1)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == fetchPerHost {
				time.Sleep(200 * time.Millisecond) // the others hold the slots
			}
			_, _, errs[i] = f.get(t.Context(), hs.URL+"/slow", maxMetadataDocSize)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i := range fetchPerHost {
		if !errors.Is(errs[i], errFetchTimeout) {
			t.Errorf("request %d: err %v, want %v", i, errs[i], errFetchTimeout)
		}
	}
	if !errors.Is(errs[fetchPerHost], errFetchBusy) {
		t.Errorf("request beyond the per-host bound: err %v, want %v", errs[fetchPerHost], errFetchBusy)
	}
	if elapsed > fetchTimeout+2*time.Second {
		t.Errorf("took %v, want about %v", elapsed, fetchTimeout)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.hosts) != 0 {
		t.Errorf("%d host entries left, want 0", len(f.hosts))
	}
}

func TestBlockedAddr(t *testing.T) {
	for _, tc := range []struct {
		addr                string
		private, loop, want bool // want: blocked
	}{
		{"8.8.8.8", false, false, false},
		{"2606:4700::1111", false, false, false},
		{"127.0.0.1", false, false, true},
		{"127.0.0.1", false, true, false},
		{"127.0.0.1", true, false, false},
		{"10.0.0.1", false, true, true},
		{"10.0.0.1", true, false, false},
		{"172.16.0.1", false, false, true},
		{"192.168.0.1", false, false, true},
		{"100.100.0.1", false, false, true},
		{"169.254.169.254", false, false, true},
		{"::ffff:169.254.169.254", false, false, true},
		{"::ffff:8.8.8.8", false, false, false},
		{"fc00::1", false, false, true},
		{"fe80::1", false, false, true},
		{"64:ff9b::a00:1", false, false, true},
		{"224.0.0.1", true, true, true},
		{"ff02::1", true, true, true},
		{"0.0.0.0", true, true, true},
		{"::", true, true, true},
	} {
		got := blockedAddr(netip.MustParseAddr(tc.addr), tc.private, tc.loop) != ""
		if got != tc.want {
			t.Errorf("blockedAddr(%s, private=%v, loopback=%v) blocked = %v, want %v", tc.addr, tc.private, tc.loop, got, tc.want)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestFetcherGlobalBound: many hosts cannot add up to more than
// fetchMaxInFlight requests in flight.
func TestFetcherGlobalBound(t *testing.T) {
	f := newFetcher(CIMDConfig{})
	var releases []func()
	for i := range fetchMaxInFlight {
		r, err := f.acquire(t.Context(), "host"+strconv.Itoa(i)+".example")
		if err != nil {
			t.Fatalf("acquire %d: %v", i, err)
		}
		releases = append(releases, r)
	}
	if _, err := f.acquire(t.Context(), "one-more.example"); !errors.Is(err, errFetchBusy) {
		t.Fatalf("acquire beyond the global bound: err %v, want %v", err, errFetchBusy)
	}
	releases[0]()
	r, err := f.acquire(t.Context(), "one-more.example")
	if err != nil {
		t.Fatalf("acquire after a release: %v", err)
	}
	r()
	for _, r := range releases[1:] {
		r()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.hosts) != 0 || len(f.all) != 0 {
		t.Fatalf("%d hosts, %d slots held after every release", len(f.hosts), len(f.all))
	}
}
