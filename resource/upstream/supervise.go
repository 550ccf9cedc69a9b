package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Restart backoff: the delay doubles from minBackoff to maxBackoff after each
// failed or lost connection, and starts over once a connection has stayed up
// for stableAfter.
const (
	minBackoff  = 500 * time.Millisecond
	maxBackoff  = time.Minute
	stableAfter = time.Minute
)

// conn is one live connection to an upstream: a session and what closes it.
type conn struct {
	session *mcp.ClientSession
	// done is closed when the connection is gone (the process exited, the
	// session closed).
	done <-chan struct{}
	// close ends the connection and, for stdio, stops the process.
	close func()
}

// mounted is a tool as the upstream listed it, and whether the policy lets
// clients see it.
type mounted struct {
	tool    *mcp.Tool
	visible bool
}

// upstream is one configured upstream and its supervisor.
type upstream struct {
	m   *Manager
	cfg Config
	log *slog.Logger

	started   atomic.Bool
	firstDone chan struct{} // closed when the first attempt has finished

	mu       sync.Mutex
	conn     *conn
	state    State
	since    time.Time
	restarts int
	mounted  map[string]mounted // by the upstream's tool name
	visible  int
	labels   map[string]bool // tool labels handed to the Observer

	relist chan struct{} // tools/list_changed received

	progress   sync.Map // upstream progress token (string) → *progressSink
	progressID atomic.Uint64
}

func newUpstream(m *Manager, c Config) *upstream {
	return &upstream{
		m:         m,
		cfg:       c,
		log:       m.log.With("upstream", c.Name),
		firstDone: make(chan struct{}),
		state:     StateIdle,
		since:     m.now(),
		mounted:   map[string]mounted{},
		labels:    map[string]bool{},
		relist:    make(chan struct{}, 1),
	}
}

// start launches the supervisor once.
func (u *upstream) start() {
	if u.started.Swap(true) {
		return
	}
	u.setState(StateStarting)
	u.m.wg.Go(func() { u.supervise(u.m.ctx) })
}

// awaitFirst waits for the first attempt of a started upstream, at most
// StartTimeout and while ctx lasts.
func (u *upstream) awaitFirst(ctx context.Context) {
	if !u.started.Load() {
		return
	}
	select {
	case <-u.firstDone:
		return
	default:
	}
	t := time.NewTimer(u.cfg.StartTimeout)
	defer t.Stop()
	select {
	case <-u.firstDone:
	case <-ctx.Done():
	case <-t.C:
	}
}

func (u *upstream) setState(s State) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state != s {
		u.state, u.since = s, u.m.now()
	}
}

func (u *upstream) status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	transport := "http"
	if u.cfg.IsStdio() {
		transport = "stdio"
	}
	return Status{Name: u.cfg.Name, Transport: transport, State: u.state, Tools: u.visible, Restarts: u.restarts, Since: u.since}
}

// current is the live session, or nil while the upstream is not up.
func (u *upstream) current() *mcp.ClientSession {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn == nil || u.state != StateUp {
		return nil
	}
	return u.conn.session
}

// supervise connects, mounts the tools, watches the connection, and
// reconnects with exponential backoff when it is lost, until ctx is done.
func (u *upstream) supervise(ctx context.Context) {
	defer u.setState(StateStopped)
	first := true
	backoff := minBackoff
	for {
		u.setState(StateStarting)
		began := u.m.now()
		err := u.session(ctx, func() {
			if first {
				first = false
				close(u.firstDone)
			}
		})
		if first {
			first = false
			close(u.firstDone)
		}
		if ctx.Err() != nil {
			return
		}
		u.mu.Lock()
		u.restarts++
		u.mu.Unlock()
		u.setState(StateDown)
		if u.m.now().Sub(began) > stableAfter {
			backoff = minBackoff
		}
		u.log.Warn("upstream down; restarting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// session runs one connection: connect, list and mount the tools, then
// watch until the connection ends (or a health check fails). up is called
// once the tools are mounted. It returns why the connection ended.
func (u *upstream) session(ctx context.Context, up func()) error {
	sctx, cancel := context.WithTimeout(ctx, u.cfg.StartTimeout)
	c, err := u.connect(sctx)
	if err != nil {
		cancel()
		return fmt.Errorf("connect: %w", err)
	}
	defer c.close()
	err = u.sync(sctx, c.session)
	cancel()
	if err != nil {
		return fmt.Errorf("list tools: %w", err)
	}
	u.mu.Lock()
	u.conn = c
	u.state, u.since = StateUp, u.m.now()
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.conn = nil
		u.mu.Unlock()
	}()
	u.log.Info("upstream up", "tools", u.status().Tools)
	up()

	tick := time.NewTicker(u.cfg.HealthInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return errors.New("connection closed")
		case <-u.relist:
			if err := u.check(ctx, c.session, true); err != nil {
				return err
			}
		case <-tick.C:
			if err := u.check(ctx, c.session, !u.cfg.IsStdio()); err != nil {
				return err
			}
		}
	}
}

// check is the health check: a ping, or a tools/list that also updates the
// mounted tools.
func (u *upstream) check(ctx context.Context, s *mcp.ClientSession, relist bool) error {
	cctx, cancel := context.WithTimeout(ctx, u.cfg.StartTimeout)
	defer cancel()
	if relist {
		if err := u.sync(cctx, s); err != nil {
			return fmt.Errorf("health check: list tools: %w", err)
		}
		return nil
	}
	if err := s.Ping(cctx, nil); err != nil {
		return fmt.Errorf("health check: ping: %w", err)
	}
	return nil
}

// connect opens a connection of the configured kind.
func (u *upstream) connect(ctx context.Context) (*conn, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpauth", Version: "1"}, &mcp.ClientOptions{
		Logger: u.log,
		// No roots, sampling or elicitation: mcpauth's /mcp is stateless, so
		// it cannot pass an upstream's requests on to the end client, and
		// it has no roots of its own to offer (an upstream such as
		// server-filesystem then keeps the directories it was started
		// with).
		Capabilities: &mcp.ClientCapabilities{},
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case u.relist <- struct{}{}:
			default:
			}
		},
		ProgressNotificationHandler: u.forwardProgress,
	})
	if u.cfg.IsStdio() {
		return u.connectStdio(ctx, client)
	}
	return u.connectHTTP(ctx, client)
}

// sync lists the upstream's tools and makes the mounted set match:
// new and changed tools are mounted, vanished ones unmounted.
func (u *upstream) sync(ctx context.Context, s *mcp.ClientSession) error {
	listed, err := u.list(ctx, s)
	if err != nil {
		return err
	}
	u.mu.Lock()
	old := maps.Clone(u.mounted)
	u.mu.Unlock()

	var gone []string
	for name := range old {
		if _, ok := listed[name]; !ok {
			gone = append(gone, u.cfg.Prefix+name)
		}
	}
	u.m.rs.UnmountTools(u.cfg.Name, gone...)
	now, visible := map[string]mounted{}, 0
	for name, t := range listed {
		prev, had := old[name]
		if had && reflect.DeepEqual(prev.tool, t) {
			now[name] = prev
		} else {
			ok, err := u.m.rs.MountTool(u.cfg.Name, u.proxyTool(t), u.handler(name))
			if err != nil {
				u.log.Warn("upstream tool not mounted", "tool", u.cfg.Prefix+name, "err", err)
				if !had {
					continue
				}
				// A failed re-mount leaves the previous definition
				// registered: keep it, so that a later removal unmounts it.
				// It is tried again at the next listing.
				now[name] = prev
			} else {
				now[name] = mounted{tool: t, visible: ok}
			}
		}
		if now[name].visible {
			visible++
		}
	}
	u.mu.Lock()
	u.mounted, u.visible = now, visible
	u.mu.Unlock()
	return nil
}

// list is the upstream's tools, bounded whatever it sends: a tool over
// MaxToolBytes (as JSON) is skipped; the listing stops past MaxToolListBytes
// in all, or once MaxTools tools and pages — skipped tools and empty pages
// included — have been read.
func (u *upstream) list(ctx context.Context, s *mcp.ClientSession) (map[string]*mcp.Tool, error) {
	listed := map[string]*mcp.Tool{}
	seen, size := 0, 0
	params := &mcp.ListToolsParams{}
	for {
		if seen >= MaxTools {
			u.log.Warn("upstream lists too many tools; ignoring the rest", "max", MaxTools)
			return listed, nil
		}
		res, err := s.ListTools(ctx, params)
		if err != nil {
			return nil, err
		}
		seen++ // a page counts, so that endless empty pages end too
		for _, t := range res.Tools {
			if seen >= MaxTools {
				u.log.Warn("upstream lists too many tools; ignoring the rest", "max", MaxTools)
				return listed, nil
			}
			seen++
			if t == nil || !toolNameRE.MatchString(u.cfg.Prefix+t.Name) {
				u.log.Warn("upstream tool skipped: its prefixed name is not a valid MCP tool name", "tool", truncate(fmt.Sprint(t), 200))
				continue
			}
			b, err := json.Marshal(t)
			if err != nil || len(b) > MaxToolBytes {
				u.log.Warn("upstream tool skipped: its definition is too large", "tool", u.cfg.Prefix+t.Name, "bytes", len(b), "max", MaxToolBytes)
				continue
			}
			if size += len(b); size > MaxToolListBytes {
				u.log.Warn("upstream tool list too large; ignoring the rest", "max", MaxToolListBytes)
				return listed, nil
			}
			listed[t.Name] = t
		}
		if res.NextCursor == "" {
			return listed, nil
		}
		params = &mcp.ListToolsParams{Cursor: res.NextCursor}
	}
}

// proxyTool is the upstream's tool as /mcp lists it: the prefixed name, the
// same schemas, annotations and metadata.
func (u *upstream) proxyTool(t *mcp.Tool) *mcp.Tool {
	p := *t
	p.Name = u.cfg.Prefix + t.Name
	return &p
}

// label is the Observer's tool label for a prefixed name: itself for the
// first MaxToolLabels names, then "other", so that the metrics' label
// cardinality stays bounded whatever an upstream lists.
func (u *upstream) label(name string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.labels[name] {
		return name
	}
	if len(u.labels) >= MaxToolLabels {
		return "other"
	}
	u.labels[name] = true
	return name
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
