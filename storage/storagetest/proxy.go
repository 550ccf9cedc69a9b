package storagetest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy is a TCP relay in front of a test database, for outage tests: the
// real server behind it, connections that the test can cut (the server
// restarted or went away: every connection closed, new ones closed at once)
// or silence (a partition: connections stay open but nothing answers,
// new ones are accepted and never answered), and restore.
type Proxy struct {
	ln     net.Listener
	target string // host:port of the real server
	url    string

	mu    sync.Mutex
	state proxyState
	conns map[net.Conn]bool // every open connection: true for the server side
}

type proxyState int

const (
	proxyUp proxyState = iota
	proxyCut
	proxySilent
)

// NewProxy starts a proxy in front of the server of databaseURL (a URL from
// URL or EmptyURL) and stops it when the test ends.
func NewProxy(t testing.TB, databaseURL string) *Proxy {
	t.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	pu := *u
	pu.Host = ln.Addr().String()
	p.url = pu.String()
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// URL is databaseURL with the proxy as its host.
func (p *Proxy) URL() string { return p.url }

// Cut closes every connection and closes new ones as soon as they arrive.
func (p *Proxy) Cut() { p.set(proxyCut) }

// Silence stops relaying: open connections stay open and get no answer, new
// ones are accepted and get none either.
func (p *Proxy) Silence() { p.set(proxySilent) }

// Restore relays new connections again (those cut or silenced stay dead).
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = proxyUp
}

func (p *Proxy) set(s proxyState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = s
	for c, server := range p.conns {
		if s == proxyCut || server {
			// Cut: all; silence: drop the server side only; the client's side stays
			// open and unanswered.
			c.Close()
			delete(p.conns, c)
		}
	}
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		state := p.state
		if state != proxyCut {
			p.conns[c] = false
		}
		p.mu.Unlock()
		switch state {
		case proxyCut:
			c.Close()
		case proxySilent:
			// Held open, never answered, closed when the proxy stops.
		case proxyUp:
			go p.relay(c)
		}
	}
}

func (p *Proxy) relay(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(c)
		return
	}
	p.mu.Lock()
	if p.state != proxyUp {
		p.mu.Unlock()
		s.Close()
		return // c is cut or held silent by set
	}
	p.conns[s] = true
	p.mu.Unlock()
	go func() {
		_, _ = io.Copy(s, c)
		p.drop(s)
	}()
	_, _ = io.Copy(c, s)
	// The server side ended: close the client's too, unless the proxy is
	// silent (then the client must keep waiting).
	p.mu.Lock()
	silent := p.state == proxySilent
	p.mu.Unlock()
	if !silent {
		p.drop(c)
	}
}

func (p *Proxy) drop(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.Close()
	delete(p.conns, c)
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}
