package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/ulule/limiter/v3"
	"gopkg.in/yaml.v3"

	"github.com/mcpauth/mcpauth/authz"
	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/resource"
	"github.com/mcpauth/mcpauth/resource/upstream"
)

// toolConfig is the file named by MCPAUTH_CONFIG: the per-tool policy and
// the settings of the MCP endpoint. The zero value is the configuration
// without a file: every tool with the scopes it was registered with, no
// per-tool rate limit, tools/list showing only the permitted tools.
// docs/configuration.md describes the format.
type toolConfig struct {
	Policy         resource.Policy // tools.rules, in file order: the first match wins
	ListAll        bool            // tools.list: all — tools/list shows every tool that is not hidden
	MCPRateLimit   *limiter.Rate   // mcp.rate_limit, per user and client on /mcp; nil: the default
	AllowedOrigins []string        // mcp.allowed_origins: scheme://host[:port], lower case

	// Scopes are the scopes: section, in file order: how the consent page
	// describes a scope, and whether only administrators may grant it.
	// Tools is left empty; the resource server knows which tools each
	// scope unlocks.
	Scopes []authz.Scope

	// Upstreams are the upstreams: section, in file order: MCP servers
	// whose tools are mounted under a prefix (docs/upstreams.md). Their
	// rules are at the front of Policy.Rules, prefixed.
	Upstreams []upstream.Config
}

// maxToolConfigSize bounds the file: a policy is a few kilobytes.
const maxToolConfigSize = 1 << 20

// loadToolConfig reads and checks the YAML file at path. ${VAR} and
// ${VAR:-default} in values are replaced from getenv; an unset (or empty)
// variable without a default is an error. Every problem in the file is
// reported at once, each as "path:line: key: what is wrong". An empty path
// means no file: the zero toolConfig.
func loadToolConfig(path string, getenv func(string) string) (*toolConfig, error) {
	if path == "" {
		return &toolConfig{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError names the file
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxToolConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxToolConfigSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxToolConfigSize)
	}
	return parseToolConfig(path, b, getenv)
}

// parseToolConfig parses the file's contents; name is used in errors.
func parseToolConfig(name string, b []byte, getenv func(string) string) (*toolConfig, error) {
	p := &toolConfigParser{name: name, getenv: getenv}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return &toolConfig{}, nil // an empty file, or only comments
	case err != nil:
		return nil, p.syntaxError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s:%d: a second YAML document: the file must hold one", name, extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, p.syntaxError(err)
	}
	cfg := &toolConfig{}
	if len(doc.Content) == 1 && !isNull(doc.Content[0]) {
		p.top(doc.Content[0], cfg)
	}
	// An upstream's own rules come first: they are the most specific.
	cfg.Policy.Rules = append(p.upstreamRules, cfg.Policy.Rules...)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return cfg, nil
}

// toolConfigParser walks the yaml.Node tree, so that every problem names
// its line, and collects the problems.
type toolConfigParser struct {
	name   string
	getenv func(string) string
	errs   []error

	upstreamRules []resource.ToolRule // the upstreams' rules, prefixed
}

func (p *toolConfigParser) errorf(n *yaml.Node, key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if key != "" {
		msg = key + ": " + msg
	}
	p.errs = append(p.errs, fmt.Errorf("%s:%d: %s", p.name, n.Line, msg))
}

// syntaxError turns yaml's "yaml: line N: msg" into "name:N: msg".
func (p *toolConfigParser) syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if _, err := strconv.Atoi(num); err == nil {
				return fmt.Errorf("%s:%s: %s", p.name, num, text)
			}
		}
	}
	return fmt.Errorf("%s: %s", p.name, msg)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// fields checks that n is a mapping with only the given keys, each at most
// once, and calls the key's function with its value, in file order.
// It reports whether n is a mapping.
func (p *toolConfigParser) fields(n *yaml.Node, key string, fields map[string]func(v *yaml.Node, key string)) bool {
	if !p.kind(n, key, yaml.MappingNode, "a mapping of keys to values") {
		return false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, key, "keys must be plain words")
			continue
		}
		sub := k.Value
		if key != "" {
			sub = key + "." + k.Value
		}
		if line, dup := seen[k.Value]; dup {
			p.errorf(k, sub, "given twice (first on line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fields[k.Value]
		if !ok {
			p.errorf(k, sub, "unknown key; want one of %s", strings.Join(sortedKeys(fields), ", "))
			continue
		}
		f(v, sub)
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var kindNames = map[yaml.Kind]string{
	yaml.DocumentNode: "a document",
	yaml.SequenceNode: "a list",
	yaml.MappingNode:  "a mapping",
	yaml.ScalarNode:   "a single value",
	yaml.AliasNode:    "an alias",
}

// kind checks n's kind and reports a type error if it is another.
func (p *toolConfigParser) kind(n *yaml.Node, key string, want yaml.Kind, desc string) bool {
	switch {
	case n.Kind == yaml.AliasNode || n.Anchor != "":
		// Aliases would let a small file expand into a huge one; a policy
		// file has no need for them.
		p.errorf(n, key, "YAML anchors and aliases are not supported")
		return false
	case isNull(n):
		p.errorf(n, key, "empty; want %s", desc)
	case n.Kind == want:
		return true
	default:
		p.errorf(n, key, "want %s, got %s", desc, kindNames[n.Kind])
	}
	return false
}

// str is a scalar value with ${VAR} expanded.
func (p *toolConfigParser) str(n *yaml.Node, key string) (string, bool) {
	if !p.kind(n, key, yaml.ScalarNode, "a single value") {
		return "", false
	}
	s, err := expandVars(n.Value, p.getenv)
	if err != nil {
		p.errorf(n, key, "%v", err)
		return "", false
	}
	return s, true
}

func (p *toolConfigParser) bool(n *yaml.Node, key string) (bool, bool) {
	s, ok := p.str(n, key)
	if !ok {
		return false, false
	}
	switch s {
	case "true", "True", "TRUE":
		return true, true
	case "false", "False", "FALSE":
		return false, true
	}
	p.errorf(n, key, "want true or false, got %q", s)
	return false, false
}

// list is a sequence's items; a missing value (key:) is an empty list.
func (p *toolConfigParser) list(n *yaml.Node, key string) ([]*yaml.Node, bool) {
	if isNull(n) {
		return nil, true
	}
	if !p.kind(n, key, yaml.SequenceNode, "a list") {
		return nil, false
	}
	return n.Content, true
}

func (p *toolConfigParser) rate(n *yaml.Node, key string) *limiter.Rate {
	s, ok := p.str(n, key)
	if !ok {
		return nil
	}
	r, err := limiter.NewRateFromFormatted(s)
	if err != nil || r.Limit <= 0 {
		p.errorf(n, key, "want N-S, N-M, N-H or N-D (N > 0 requests per second, minute, hour or day), got %q", s)
		return nil
	}
	return &r
}

func (p *toolConfigParser) top(n *yaml.Node, cfg *toolConfig) {
	p.fields(n, "", map[string]func(*yaml.Node, string){
		"tools": func(v *yaml.Node, key string) {
			if !isNull(v) {
				p.tools(v, key, cfg)
			}
		},
		"mcp": func(v *yaml.Node, key string) {
			if !isNull(v) {
				p.mcp(v, key, cfg)
			}
		},
		"scopes": func(v *yaml.Node, key string) {
			if !isNull(v) {
				p.scopeDocs(v, key, cfg)
			}
		},
		"upstreams": func(v *yaml.Node, key string) {
			p.upstreams(v, key, cfg)
		},
	})
}

// maxScopeDescription bounds a consent-page description: one line.
const maxScopeDescription = 200

// scopeDocs reads the scopes: mapping of scope name to description.
func (p *toolConfigParser) scopeDocs(n *yaml.Node, key string, cfg *toolConfig) {
	if !p.kind(n, key, yaml.MappingNode, "a mapping of scope names to their description") {
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ok := p.str(k, key)
		if !ok {
			continue
		}
		sub := key + "." + name
		if err := validToolScope(name); err != nil {
			p.errorf(k, sub, "%v", err)
			continue
		}
		if line, dup := seen[name]; dup {
			p.errorf(k, sub, "given twice (first on line %d)", line)
			continue
		}
		seen[name] = k.Line
		sc := authz.Scope{Name: name}
		var descNode *yaml.Node
		isMap := p.fields(v, sub, map[string]func(*yaml.Node, string){
			"description": func(v *yaml.Node, key string) {
				descNode = v
				s, ok := p.str(v, key)
				switch {
				case !ok:
				case strings.TrimSpace(s) == "":
					p.errorf(v, key, "empty; say what the scope lets an application do")
				case len(s) > maxScopeDescription || strings.ContainsAny(s, "\r\n"):
					p.errorf(v, key, "want one line of at most %d bytes", maxScopeDescription)
				default:
					sc.Description = strings.TrimSpace(s)
				}
			},
			"admin_only": func(v *yaml.Node, key string) {
				sc.AdminOnly, _ = p.bool(v, key)
			},
		})
		if isMap && descNode == nil {
			p.errorf(v, sub, "missing description: what the scope lets an application do, for the consent page")
		}
		if sc.Description != "" {
			cfg.Scopes = append(cfg.Scopes, sc)
		}
	}
}

func (p *toolConfigParser) tools(n *yaml.Node, key string, cfg *toolConfig) {
	p.fields(n, key, map[string]func(*yaml.Node, string){
		"list": func(v *yaml.Node, key string) {
			s, ok := p.str(v, key)
			switch {
			case !ok:
			case s == "permitted":
				cfg.ListAll = false
			case s == "all":
				cfg.ListAll = true
			default:
				p.errorf(v, key, "want permitted (only the tools the token may call) or all, got %q", s)
			}
		},
		"rules": func(v *yaml.Node, key string) {
			items, _ := p.list(v, key)
			for i, item := range items {
				if r, ok := p.rule(item, fmt.Sprintf("%s[%d]", key, i)); ok {
					cfg.Policy.Rules = append(cfg.Policy.Rules, r)
				}
			}
		},
	})
}

func (p *toolConfigParser) rule(n *yaml.Node, key string) (resource.ToolRule, bool) {
	var r resource.ToolRule
	before := len(p.errs)
	var matchNode, scopesNode, rateNode *yaml.Node
	isMap := p.fields(n, key, map[string]func(*yaml.Node, string){
		"match": func(v *yaml.Node, key string) {
			matchNode = v
			s, ok := p.str(v, key)
			if !ok {
				return
			}
			if err := validToolPattern(s); err != nil {
				p.errorf(v, key, "%v", err)
				return
			}
			r.Match = s
		},
		"scopes": func(v *yaml.Node, key string) {
			scopesNode = v
			items, ok := p.list(v, key)
			if !ok {
				return
			}
			if len(items) == 0 {
				// Every tool needs at least one scope; an empty list would
				// read as "no scope needed" but could only mean "keep the
				// tool's own".
				p.errorf(v, key, "empty; list the scopes the tool needs, or leave scopes out to keep the tool's own")
				return
			}
			for i, item := range items {
				ikey := fmt.Sprintf("%s[%d]", key, i)
				s, ok := p.str(item, ikey)
				if !ok {
					continue
				}
				if err := validToolScope(s); err != nil {
					p.errorf(item, ikey, "%v", err)
					continue
				}
				if slices.Contains(r.Scopes, s) {
					p.errorf(item, ikey, "%q is listed twice", s)
					continue
				}
				r.Scopes = append(r.Scopes, s)
			}
		},
		"rate_limit": func(v *yaml.Node, key string) {
			rateNode = v
			r.RateLimit = p.rate(v, key)
		},
		"hide": func(v *yaml.Node, key string) {
			r.Hide, _ = p.bool(v, key)
		},
	})
	if isMap && matchNode == nil {
		p.errorf(n, key, "missing match: the tool name or pattern this rule is for")
	}
	if r.Hide {
		// A hidden tool cannot be called; scopes or a rate limit beside
		// hide: true are a mistake about what the rule does.
		for _, extra := range []struct {
			n    *yaml.Node
			name string
		}{{scopesNode, "scopes"}, {rateNode, "rate_limit"}} {
			if extra.n != nil {
				p.errorf(extra.n, key+"."+extra.name, "has no effect on a hidden tool (hide: true); remove one or the other")
			}
		}
	}
	return r, len(p.errs) == before
}

func (p *toolConfigParser) mcp(n *yaml.Node, key string, cfg *toolConfig) {
	p.fields(n, key, map[string]func(*yaml.Node, string){
		"rate_limit": func(v *yaml.Node, key string) {
			cfg.MCPRateLimit = p.rate(v, key)
		},
		"allowed_origins": func(v *yaml.Node, key string) {
			items, _ := p.list(v, key)
			for i, item := range items {
				ikey := fmt.Sprintf("%s[%d]", key, i)
				s, ok := p.str(item, ikey)
				if !ok {
					continue
				}
				if err := validOrigin(s); err != nil {
					p.errorf(item, ikey, "%v", err)
					continue
				}
				if slices.Contains(cfg.AllowedOrigins, s) {
					p.errorf(item, ikey, "%q is listed twice", s)
					continue
				}
				cfg.AllowedOrigins = append(cfg.AllowedOrigins, s)
			}
		},
	})
}

// maxToolNameLen is the MCP limit on a tool name (2025-11-25, "Tool Names").
const maxToolNameLen = 128

// validToolPattern accepts a tool name or a path.Match pattern over tool
// names.
func validToolPattern(s string) error {
	switch {
	case s == "":
		return errors.New("empty; want a tool name or a pattern such as files_*")
	case len(s) > maxToolNameLen:
		return fmt.Errorf("longer than %d characters", maxToolNameLen)
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("%q contains a space or control character, which no tool name has", s)
	}
	// path.Match reports a malformed pattern whatever the name.
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("%q is not a valid pattern (path.Match syntax: *, ?, [a-z], \\ escapes): %v", s, err)
	}
	return nil
}

// validToolScope checks one scope a tool needs.
func validToolScope(s string) error {
	toks, err := oauth.ParseScope(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q: %v", s, err)
	case len(toks) != 1 || toks[0] != s:
		return fmt.Errorf("%q is not one scope: list each scope as its own item", s)
	case s == "offline_access":
		// MCP 2026-07-28 "Refresh Tokens": offline_access is no tool's
		// scope and must not appear in a challenge.
		return errors.New("offline_access is about refresh tokens, not a tool's permission")
	case s == "*":
		// MCP "Scope Selection Strategy": no omnibus scopes.
		return errors.New("a wildcard scope grants everything; name the permission the tool needs")
	}
	return nil
}

// validOrigin accepts an origin as browsers send it in the Origin header
// (RFC 6454 §6.1): scheme://host[:port], lower case, nothing else.
func validOrigin(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%q is not an origin; want scheme://host[:port], such as https://app.example.com", s)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%q: scheme must be https or http", s)
	case u.User != nil:
		return fmt.Errorf("%q: an origin has no user information", s)
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return fmt.Errorf("%q: an origin has no path, query or fragment (not even a trailing slash)", s)
	case u.Hostname() == "":
		return fmt.Errorf("%q: no host", s)
	case s != strings.ToLower(s):
		return fmt.Errorf("%q: browsers send origins in lower case; use %q", s, strings.ToLower(s))
	}
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return fmt.Errorf("%q: port must be a number from 1 to 65535", s)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return fmt.Errorf("%q: empty port", s)
	}
	return nil
}

// expandVars replaces ${NAME} with getenv(NAME) and ${NAME:-default} with
// getenv(NAME), or default when that is empty; $$ is a literal $. A $ before
// anything else is kept as it is. Values are not expanded again.
func expandVars(s string, getenv func(string) string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 || i == len(s)-1 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			s = s[i+2:]
			continue
		case '{':
		default:
			b.WriteByte('$')
			s = s[i+1:]
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ in %q", s[i:])
		}
		expr := s[i+2 : i+end]
		s = s[i+end+1:]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validVarName(name) {
			return "", fmt.Errorf("${%s}: want ${NAME} or ${NAME:-default}, NAME made of letters, digits and _", expr)
		}
		v := getenv(name)
		switch {
		case v != "":
		case hasDef:
			v = def
		default:
			return "", fmt.Errorf("environment variable %s is not set (write ${%s:-default} to give a default)", name, name)
		}
		b.WriteString(v)
	}
}

func validVarName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// scopeNames is every scope the file names, rules first, in file order:
// the authorization server must support them (scopes_supported, the
// consent page), or no client could obtain them.
func (c *toolConfig) scopeNames() []string {
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, r := range c.Policy.Rules {
		for _, s := range r.Scopes {
			add(s)
		}
	}
	for _, sc := range c.Scopes {
		add(sc.Name)
	}
	return out
}
