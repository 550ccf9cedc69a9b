// Package upstream mounts existing MCP servers behind mcpauth: stdio
// commands and Streamable HTTP endpoints whose tools are listed on mcpauth's
// /mcp under a prefix and proxied, so that mcpauth's tokens, per-tool scopes
// and rate limits apply to them.
//
// An upstream's tools are ordinary tools to the resource server's policy
// (resource.Server.MountTool): the policy decides scopes, rate limits and
// hiding, by the prefixed name. The client's token never reaches an upstream
// (MCP Security Best Practices, "Token Passthrough"): an upstream gets only
// the credentials configured for it and, when configured, the caller's
// identity in headers or _meta that mcpauth sets and overwrites.
//
// It imports resource (for the caller's token) and the go-sdk; it never
// reads the environment or files: cmd/mcpauth hands it a typed Config.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Start says when a stdio upstream's process is started.
type Start string

const (
	// StartLazy starts the upstream when a client first lists or calls
	// tools (the default).
	StartLazy Start = "lazy"
	// StartBoot starts it with mcpauth.
	StartBoot Start = "boot"
)

// Defaults of Config's optional fields.
const (
	DefaultTimeout        = 60 * time.Second
	DefaultStartTimeout   = 30 * time.Second
	DefaultMaxResultBytes = 4 << 20
	DefaultHealthInterval = 30 * time.Second
	// MaxTools caps the tools and pages of tools read from one upstream's
	// tools/list (skipped tools count too).
	MaxTools = 1000
	// MaxToolBytes caps one tool's definition as JSON (name, description,
	// schemas, annotations); a larger tool is skipped.
	MaxToolBytes = 64 << 10
	// MaxToolListBytes caps the definitions mounted from one upstream, in
	// all; the rest of a larger list is ignored.
	MaxToolListBytes = 4 << 20
)

// Config is one upstream MCP server.
type Config struct {
	// Name identifies the upstream in logs, /readyz and metrics labels.
	Name string
	// Prefix is prepended to the upstream's tool names: tool "read" of an
	// upstream with prefix "files_" is "files_read" on /mcp.
	Prefix string

	// Command (an absolute path), Args, Env (NAME=value, the whole
	// environment of the process: nothing of mcpauth's is inherited) and Dir
	// describe a stdio upstream.
	Command string
	Args    []string
	Env     []string
	Dir     string

	// URL is a Streamable HTTP upstream's MCP endpoint. Headers are sent
	// with every request to it, and Bearer, when set, as the Authorization
	// header: the upstream's own credential, never the client's.
	URL     string
	Headers map[string]string
	Bearer  string

	// Start is StartLazy (the default: the process is started, or the HTTP
	// upstream connected, when a client first lists or calls tools) or
	// StartBoot.
	Start Start
	// Timeout bounds one tools/call; default DefaultTimeout.
	Timeout time.Duration
	// StartTimeout bounds starting (or connecting) and listing the tools;
	// default DefaultStartTimeout.
	StartTimeout time.Duration
	// MaxResultBytes caps a tools/call result (as JSON); a larger one is
	// refused with a JSON-RPC error. Default DefaultMaxResultBytes.
	MaxResultBytes int
	// HealthInterval is how often a connected upstream is checked (an HTTP
	// upstream lists its tools, which also picks up changes; a stdio
	// upstream is pinged). Default DefaultHealthInterval.
	HealthInterval time.Duration

	// IdentityHeaders sends the caller's identity to an HTTP upstream in
	// the X-Mcpauth-Subject, X-Mcpauth-Client-Id and X-Mcpauth-Scope
	// headers; IdentityMeta sends it in the call's _meta (MetaSubject…).
	IdentityHeaders bool
	IdentityMeta    bool
}

// Identity headers and _meta keys. mcpauth sets them, and removes any a
// client sent, so an upstream can trust them.
const (
	HeaderSubject  = "X-Mcpauth-Subject"
	HeaderClientID = "X-Mcpauth-Client-Id"
	HeaderScope    = "X-Mcpauth-Scope"

	// MetaPrefix starts every _meta key mcpauth owns; a client's _meta keys
	// with this prefix are dropped before a call is forwarded.
	MetaPrefix   = "mcpauth/"
	MetaSubject  = MetaPrefix + "subject"
	MetaClientID = MetaPrefix + "client_id"
	MetaScope    = MetaPrefix + "scope"
)

// IsStdio reports whether c is a stdio upstream.
func (c *Config) IsStdio() bool { return c.Command != "" }

// LogValue names the upstream without its secrets: header values, the
// bearer credential, environment values and arguments are left out.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("name", c.Name), slog.String("prefix", c.Prefix)}
	if c.IsStdio() {
		names := make([]string, 0, len(c.Env))
		for _, kv := range c.Env {
			n, _, _ := strings.Cut(kv, "=")
			names = append(names, n)
		}
		// Arguments may hold a credential (${VAR} expanded): only their
		// number is logged.
		attrs = append(attrs, slog.String("command", c.Command), slog.Int("args", len(c.Args)), slog.Any("env", names), slog.String("start", string(c.Start)))
	} else {
		shown := ""
		if u, err := url.Parse(c.URL); err == nil {
			u.RawQuery = "" // a query may carry a key
			shown = u.Redacted()
		}
		attrs = append(attrs, slog.String("url", shown), slog.Any("headers", sortedKeys(c.Headers)), slog.Bool("bearer", c.Bearer != ""))
	}
	return slog.GroupValue(attrs...)
}

// The configuration's syntax, shared with cmd/mcpauth's parser so that both
// agree.
var (
	// NameRE is an upstream's name.
	NameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	// PrefixRE is a tool-name prefix.
	PrefixRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	// HeaderNameRE is a header name: an RFC 9110 §5.1 token.
	HeaderNameRE = regexp.MustCompile(`^[!#$%&'*+.^_|~0-9A-Za-z-]+$`)
	// toolNameRE is MCP 2025-11-25 "Tool Names": 1 to 128 of A-Z a-z 0-9 _ - .
	toolNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
)

// reservedHeaders are set by the transport or by mcpauth; a configuration
// cannot set them.
var reservedHeaders = []string{"authorization", "cookie", "host", "content-length", "content-type", "accept", "connection", "transfer-encoding", "mcp-session-id", "mcp-protocol-version", "last-event-id"}

// ReservedHeader reports whether a header is set by the transport or by
// mcpauth (X-Mcpauth-*), so that Config.Headers cannot set it.
func ReservedHeader(name string) bool {
	l := strings.ToLower(name)
	return slices.Contains(reservedHeaders, l) || strings.HasPrefix(l, "x-mcpauth-")
}

// PrefixesOverlap reports whether one prefix starts the other: their
// upstreams' tool names could collide.
func PrefixesOverlap(a, b string) bool {
	return strings.HasPrefix(a, b) || strings.HasPrefix(b, a)
}

// BadBearer reports whether a bearer credential is unusable: empty, or
// with a space, tab, line break or NUL.
func BadBearer(s string) bool { return s == "" || strings.ContainsAny(s, " \t\r\n\x00") }

// BadHeaderValue reports whether a header value has a line break or NUL.
func BadHeaderValue(v string) bool { return strings.ContainsAny(v, "\r\n\x00") }

// Validate reports every problem of the configuration list at once.
func Validate(cfgs []Config) error {
	var errs []error
	names, prefixes := map[string]bool{}, []string{}
	for i := range cfgs {
		c := &cfgs[i]
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("upstream %d (%s): %s", i+1, c.Name, fmt.Sprintf(format, args...)))
		}
		if !NameRE.MatchString(c.Name) {
			bad("name %q: want 1 to 32 of a-z 0-9 _ -", c.Name)
		}
		if names[c.Name] {
			bad("name %q is used twice", c.Name)
		}
		names[c.Name] = true
		if !PrefixRE.MatchString(c.Prefix) {
			bad("prefix %q: want 1 to 64 of A-Z a-z 0-9 _ - .", c.Prefix)
		}
		for _, p := range prefixes {
			if PrefixesOverlap(c.Prefix, p) {
				bad("prefix %q overlaps prefix %q: tool names could collide", c.Prefix, p)
			}
		}
		prefixes = append(prefixes, c.Prefix)
		switch {
		case c.Command != "" && c.URL != "":
			bad("both a command and a URL")
		case c.Command == "" && c.URL == "":
			bad("needs a command (stdio) or a URL (Streamable HTTP)")
		case c.Command != "":
			if !strings.HasPrefix(c.Command, "/") {
				bad("command %q: want an absolute path", c.Command)
			}
			for _, kv := range c.Env {
				if n, _, ok := strings.Cut(kv, "="); !ok || n == "" {
					bad("env %q: want NAME=value", kv)
				}
			}
			if c.IdentityHeaders {
				bad("identity headers need an HTTP upstream; use _meta for stdio")
			}
		default:
			if err := CheckURL(c.URL); err != nil {
				bad("%v", err)
			}
			for k, v := range c.Headers {
				switch {
				case !HeaderNameRE.MatchString(k):
					bad("header %q: not a header name", k)
				case ReservedHeader(k):
					bad("header %q is set by mcpauth or the transport", k)
				case BadHeaderValue(v):
					bad("header %q: value has a line break or NUL", k)
				}
			}
			if c.Bearer != "" && BadBearer(c.Bearer) {
				bad("bearer credential has a space, tab, line break or NUL")
			}
		}
		if c.Start != "" && c.Start != StartLazy && c.Start != StartBoot {
			bad("start %q: want lazy or boot", c.Start)
		}
		if c.Timeout < 0 || c.StartTimeout < 0 || c.HealthInterval < 0 || c.MaxResultBytes < 0 {
			bad("negative timeout, interval or size")
		}
	}
	return errors.Join(errs...)
}

// CheckURL accepts an absolute http or https URL with a host, without user
// information or fragment.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("url %q: not an absolute URL", raw)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("url %q: scheme must be https or http", raw)
	case u.User != nil:
		return fmt.Errorf("url %q: put credentials in bearer or headers, not in the URL", raw)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("url %q: no fragment allowed", raw)
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Start == "" {
		c.Start = StartLazy
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.MaxResultBytes == 0 {
		c.MaxResultBytes = DefaultMaxResultBytes
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = DefaultHealthInterval
	}
}

// Mounter is where the upstreams' tools are registered: the resource
// server, whose policy decides their scopes, rate limits and hiding.
type Mounter interface {
	MountTool(owner string, t *mcp.Tool, h mcp.ToolHandler) (visible bool, err error)
	UnmountTools(owner string, names ...string)
}

// Observer records tool calls, for metrics. tool is the prefixed name, or
// "other" past MaxToolLabels distinct names of one upstream; outcome is one
// of the Outcome constants.
type Observer interface {
	ObserveCall(upstream, tool, outcome string, d time.Duration)
}

// Call outcomes, for Observer.
const (
	OutcomeOK          = "ok"          // a result
	OutcomeToolError   = "tool_error"  // a result with isError
	OutcomeError       = "error"       // a JSON-RPC error from the upstream, or it failed
	OutcomeUnavailable = "unavailable" // not connected
	OutcomeTimeout     = "timeout"     // no answer within Config.Timeout
	OutcomeCancelled   = "cancelled"   // the client went away
	OutcomeTooLarge    = "too_large"   // the result exceeded MaxResultBytes
)

// MaxToolLabels bounds the distinct tool labels of one upstream that reach
// the Observer.
const MaxToolLabels = 100

// State is an upstream's connection state.
type State string

const (
	StateIdle     State = "idle"     // lazy and not started yet
	StateStarting State = "starting" // starting, connecting or listing tools
	StateUp       State = "up"       // connected, tools mounted
	StateDown     State = "down"     // failed or exited; retrying with backoff
	StateStopped  State = "stopped"  // shut down
)

// Status is what /readyz and the metrics show of one upstream. It holds no
// error text: that goes to the log.
type Status struct {
	Name      string    `json:"-"`
	Transport string    `json:"transport"` // stdio or http
	State     State     `json:"state"`
	Tools     int       `json:"tools"`    // mounted and visible
	Restarts  int       `json:"restarts"` // connections lost or failed since the first start
	Since     time.Time `json:"since"`    // when State last changed
}

// Manager runs the upstreams: starts, supervises and stops them, and keeps
// their tools mounted.
type Manager struct {
	log *slog.Logger
	obs Observer
	rs  Mounter
	now func() time.Time

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	upstreams []*upstream
}

// New checks cfgs and prepares the upstreams; nothing starts before Start.
// obs may be nil.
func New(rs Mounter, cfgs []Config, log *slog.Logger, obs Observer) (*Manager, error) {
	if err := Validate(cfgs); err != nil {
		return nil, fmt.Errorf("upstreams: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{log: log, obs: obs, rs: rs, now: time.Now}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	for _, c := range cfgs {
		c.setDefaults()
		m.upstreams = append(m.upstreams, newUpstream(m, c))
	}
	return m, nil
}

// Start starts the boot upstreams (and connects the HTTP ones that are not
// lazy) and waits until each has come up or failed its first attempt, at
// most its StartTimeout, so that their tools are mounted before mcpauth
// serves. An upstream that fails keeps being retried in the background.
func (m *Manager) Start(ctx context.Context) {
	var boot []*upstream
	for _, u := range m.upstreams {
		if u.cfg.Start == StartBoot {
			u.start()
			boot = append(boot, u)
		}
	}
	for _, u := range boot {
		u.awaitFirst(ctx)
	}
}

// Prepare starts the lazy upstreams that have not started yet and waits
// until every first attempt in flight has finished (or ctx is done). The
// resource server calls it before checking a request that may list or call
// tools (resource.Config.BeforeTools).
func (m *Manager) Prepare(ctx context.Context) {
	for _, u := range m.upstreams {
		u.start()
	}
	for _, u := range m.upstreams {
		u.awaitFirst(ctx)
	}
}

// Close stops every upstream (a stdio process gets its stdin closed, then
// SIGTERM, then SIGKILL) and waits for them.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

// Status is the state of every upstream, in configuration order.
func (m *Manager) Status() []Status {
	out := make([]Status, 0, len(m.upstreams))
	for _, u := range m.upstreams {
		out = append(out, u.status())
	}
	return out
}

func (m *Manager) observe(upstream, tool, outcome string, d time.Duration) {
	if m.obs != nil {
		m.obs.ObserveCall(upstream, tool, outcome, d)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
