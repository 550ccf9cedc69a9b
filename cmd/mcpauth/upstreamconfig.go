package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mcpauth/mcpauth/resource"
	"github.com/mcpauth/mcpauth/resource/upstream"
)

// inheritedEnv are the variables of mcpauth's own environment that a stdio
// upstream gets (when set); everything else it gets from its env: mapping.
// MCPAUTH_SECRET, the database URL and the rest never reach it.
var inheritedEnv = []string{"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"}

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Bounds of the upstreams' durations and sizes.
const (
	maxUpstreamTimeout = time.Hour
	minResultBytes     = 1 << 10
	maxResultBytes     = 64 << 20
)

// upstreams reads the upstreams: list (docs/upstreams.md).
func (p *toolConfigParser) upstreams(n *yaml.Node, key string, cfg *toolConfig) {
	items, _ := p.list(n, key)
	names, prefixes := map[string]int{}, map[string]int{}
	for i, item := range items {
		ikey := fmt.Sprintf("%s[%d]", key, i)
		before := len(p.errs)
		u, rules, nameNode := p.upstream(item, ikey)
		// Names and prefixes are compared even when the upstream has other
		// problems, so that every problem is reported at once.
		if nameNode != nil {
			if line, dup := names[u.Name]; dup {
				p.errorf(nameNode, ikey+".name", "%q is used twice (first on line %d)", u.Name, line)
			} else {
				names[u.Name] = nameNode.Line
			}
		}
		if u.Prefix != "" {
			for other, line := range prefixes {
				if upstream.PrefixesOverlap(u.Prefix, other) {
					what := "overlaps"
					if other == u.Prefix {
						what = "duplicates"
					}
					p.errorf(keyNode(item, "prefix"), ikey+".prefix", "%q %s the prefix %q of line %d: tool names could collide", u.Prefix, what, other, line)
				}
			}
			if _, seen := prefixes[u.Prefix]; !seen {
				prefixes[u.Prefix] = keyNode(item, "prefix").Line
			}
		}
		if len(p.errs) > before || nameNode == nil {
			continue
		}
		cfg.Upstreams = append(cfg.Upstreams, u)
		p.upstreamRules = append(p.upstreamRules, rules...)
	}
}

// upstream reads one upstream; nameNode is nil when it has no valid name.
func (p *toolConfigParser) upstream(n *yaml.Node, key string) (u upstream.Config, rules []resource.ToolRule, nameNode *yaml.Node) {
	var (
		commandNode, urlNode, prefixNode *yaml.Node
		onlyHTTP, onlyStdio              []string // keys given that need the other transport
		ruleNodes                        []*yaml.Node
		rulesKey                         string
	)
	isMap := p.fields(n, key, map[string]func(*yaml.Node, string){
		"name": func(v *yaml.Node, key string) {
			s, ok := p.str(v, key)
			if !ok {
				return
			}
			if !upstream.NameRE.MatchString(s) {
				p.errorf(v, key, "%q: want 1 to 32 of a-z 0-9 _ -, starting with a letter or digit (it names the upstream in logs and metrics)", s)
				return
			}
			u.Name, nameNode = s, v
		},
		"prefix": func(v *yaml.Node, key string) {
			prefixNode = v
			s, ok := p.str(v, key)
			if !ok {
				return
			}
			if !upstream.PrefixRE.MatchString(s) {
				p.errorf(v, key, "%q: want 1 to 64 of A-Z a-z 0-9 _ - . (MCP tool-name characters)", s)
				return
			}
			u.Prefix = s
		},
		"command": func(v *yaml.Node, key string) {
			commandNode = v
			s, ok := p.str(v, key)
			if !ok {
				return
			}
			path, err := lookPath(s, p.getenv("PATH"))
			if err != nil {
				p.errorf(v, key, "%v", err)
				return
			}
			u.Command = path
		},
		"args": func(v *yaml.Node, key string) {
			onlyStdio = append(onlyStdio, key)
			items, _ := p.list(v, key)
			for i, item := range items {
				if s, ok := p.str(item, fmt.Sprintf("%s[%d]", key, i)); ok {
					u.Args = append(u.Args, s)
				}
			}
		},
		"env": func(v *yaml.Node, key string) {
			onlyStdio = append(onlyStdio, key)
			u.Env = p.stringMap(v, key, func(k string) error {
				if !envNameRE.MatchString(k) {
					return fmt.Errorf("%q is not an environment variable name", k)
				}
				return nil
			}, "=")
		},
		"dir": func(v *yaml.Node, key string) {
			onlyStdio = append(onlyStdio, key)
			s, ok := p.str(v, key)
			if !ok {
				return
			}
			if fi, err := os.Stat(s); err != nil || !fi.IsDir() {
				p.errorf(v, key, "%q is not a directory", s)
				return
			}
			abs, err := filepath.Abs(s)
			if err != nil {
				p.errorf(v, key, "%v", err)
				return
			}
			u.Dir = abs
		},
		"url": func(v *yaml.Node, key string) {
			urlNode = v
			s, ok := p.str(v, key)
			if !ok {
				return
			}
			if err := upstream.CheckURL(s); err != nil {
				p.errorf(v, key, "%v", err)
				return
			}
			u.URL = s
		},
		"headers": func(v *yaml.Node, key string) {
			onlyHTTP = append(onlyHTTP, key)
			kv := p.stringMap(v, key, func(k string) error {
				lk := strings.ToLower(k)
				switch {
				case !upstream.HeaderNameRE.MatchString(k):
					return fmt.Errorf("%q is not a header name", k)
				case lk == "authorization":
					return fmt.Errorf("%q: use bearer: for the upstream's credential", k)
				case upstream.ReservedHeader(k):
					return fmt.Errorf("%q is set by mcpauth or the transport", k)
				}
				return nil
			}, "\x00")
			if len(kv) > 0 {
				u.Headers = map[string]string{}
				for _, s := range kv {
					k, val, _ := strings.Cut(s, "\x00")
					if upstream.BadHeaderValue(val) {
						p.errorf(v, key+"."+k, "the value has a line break")
						continue
					}
					u.Headers[k] = val
				}
			}
		},
		"bearer": func(v *yaml.Node, key string) {
			onlyHTTP = append(onlyHTTP, key)
			s, ok := p.str(v, key)
			if !ok {
				return
			}
			if upstream.BadBearer(s) {
				p.errorf(v, key, "want one credential with no space or line break (write ${VAR} to take it from the environment)")
				return
			}
			u.Bearer = s
		},
		"start": func(v *yaml.Node, key string) {
			s, ok := p.str(v, key)
			switch {
			case !ok:
			case s == string(upstream.StartLazy) || s == string(upstream.StartBoot):
				u.Start = upstream.Start(s)
			default:
				p.errorf(v, key, "want lazy (when a client first lists or calls tools) or boot, got %q", s)
			}
		},
		"timeout":         func(v *yaml.Node, key string) { u.Timeout = p.duration(v, key) },
		"start_timeout":   func(v *yaml.Node, key string) { u.StartTimeout = p.duration(v, key) },
		"health_interval": func(v *yaml.Node, key string) { u.HealthInterval = p.duration(v, key) },
		"max_result_bytes": func(v *yaml.Node, key string) {
			s, ok := p.str(v, key)
			if !ok {
				return
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < minResultBytes || n > maxResultBytes {
				p.errorf(v, key, "want a number of bytes from %d to %d, got %q", minResultBytes, maxResultBytes, s)
				return
			}
			u.MaxResultBytes = n
		},
		"forward_identity": func(v *yaml.Node, key string) {
			items, _ := p.list(v, key)
			for i, item := range items {
				ikey := fmt.Sprintf("%s[%d]", key, i)
				s, ok := p.str(item, ikey)
				switch {
				case !ok:
				case s == "meta":
					u.IdentityMeta = true
				case s == "headers":
					onlyHTTP = append(onlyHTTP, ikey)
					u.IdentityHeaders = true
				default:
					p.errorf(item, ikey, "want meta (the call's _meta) or headers (HTTP upstreams), got %q", s)
				}
			}
		},
		"rules": func(v *yaml.Node, key string) {
			rulesKey = key
			ruleNodes, _ = p.list(v, key)
		},
	})
	if !isMap {
		return u, nil, nil
	}
	if nameNode == nil && !p.hasKey(n, "name") {
		p.errorf(n, key, "missing name: what logs and metrics call this upstream")
	}
	switch {
	case commandNode != nil && urlNode != nil:
		p.errorf(urlNode, key+".url", "an upstream has a command (stdio) or a url (Streamable HTTP), not both")
	case commandNode == nil && urlNode == nil:
		p.errorf(n, key, "missing command (a stdio server) or url (a Streamable HTTP server)")
	case commandNode != nil:
		for _, k := range onlyHTTP {
			p.errorf(n, k, "only for an upstream with a url")
		}
		env := []string{}
		for _, name := range inheritedEnv {
			if v := p.getenv(name); v != "" && !slices.ContainsFunc(u.Env, func(kv string) bool { return strings.HasPrefix(kv, name+"=") }) {
				env = append(env, name+"="+v)
			}
		}
		u.Env = append(env, u.Env...)
	default:
		for _, k := range onlyStdio {
			p.errorf(n, k, "only for an upstream with a command")
		}
	}
	if prefixNode == nil && u.Name != "" {
		u.Prefix = u.Name + "_"
		if !upstream.PrefixRE.MatchString(u.Prefix) {
			p.errorf(n, key+".prefix", "the default prefix %q is not valid; give one", u.Prefix)
		}
	}
	if u.Prefix != "" {
		for _, b := range resource.BuiltinTools {
			if strings.HasPrefix(b, u.Prefix) {
				p.errorf(keyNode(n, "prefix"), key+".prefix", "%q starts the name of mcpauth's own tool %s: give another prefix", u.Prefix, b)
				break
			}
		}
	}
	for i, item := range ruleNodes {
		rkey := fmt.Sprintf("%s[%d]", rulesKey, i)
		r, ok := p.rule(item, rkey)
		if !ok || u.Prefix == "" {
			continue
		}
		r.Match = u.Prefix + r.Match
		// Only this upstream's own tools: not a built-in tool, nor another
		// upstream's, that the prefixed pattern happens to match.
		r.Owner = u.Name
		if err := validToolPattern(r.Match); err != nil {
			p.errorf(item, rkey+".match", "with the prefix: %v", err)
			continue
		}
		rules = append(rules, r)
	}
	return u, rules, nameNode
}

// keyNode is the node of key in mapping n, or n when it has none (a
// default), for the line of an error.
func keyNode(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return n
}

// hasKey reports whether mapping n has key.
func (p *toolConfigParser) hasKey(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// stringMap reads a mapping of names to values (expanded) as "name" sep
// "value" items, in file order.
func (p *toolConfigParser) stringMap(n *yaml.Node, key string, check func(string) error, sep string) []string {
	if isNull(n) || !p.kind(n, key, yaml.MappingNode, "a mapping of names to values") {
		return nil
	}
	var out []string
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, key, "keys must be plain names")
			continue
		}
		sub := key + "." + k.Value
		if err := check(k.Value); err != nil {
			p.errorf(k, sub, "%v", err)
			continue
		}
		if line, dup := seen[strings.ToLower(k.Value)]; dup {
			p.errorf(k, sub, "given twice (first on line %d)", line)
			continue
		}
		seen[strings.ToLower(k.Value)] = k.Line
		val, ok := p.str(v, sub)
		if !ok {
			continue
		}
		out = append(out, k.Value+sep+val)
	}
	return out
}

// duration reads a positive Go duration of at most maxUpstreamTimeout.
func (p *toolConfigParser) duration(n *yaml.Node, key string) time.Duration {
	s, ok := p.str(n, key)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > maxUpstreamTimeout {
		p.errorf(n, key, "want a duration such as 30s or 2m, at most 1h, got %q", s)
		return 0
	}
	return d
}

// lookPath resolves a command as exec.LookPath does, with the PATH given:
// a name with a slash is taken as it is (made absolute); another is searched
// in path. It must be an executable regular file.
func lookPath(name, path string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty; want a program name or path")
	}
	executable := func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
	}
	if strings.Contains(name, "/") {
		abs, err := filepath.Abs(name)
		if err != nil {
			return "", err
		}
		if !executable(abs) {
			return "", fmt.Errorf("%q is not an executable file", name)
		}
		return abs, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // like exec.LookPath, never the current directory implicitly
		}
		if p := filepath.Join(dir, name); executable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q not found in PATH", name)
}
