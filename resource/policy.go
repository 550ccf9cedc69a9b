package resource

import (
	"fmt"
	"path"
	"slices"

	"github.com/ulule/limiter/v3"

	"github.com/mcpauth/mcpauth/authz/oauth"
)

// Policy is the per-tool configuration; the first rule that matches a tool
// decides.
type Policy struct{ Rules []ToolRule }

// ToolRule configures the tools it matches.
type ToolRule struct {
	// Match is a tool name, or a path.Match pattern ("files_*").
	Match string
	// Scopes, when not empty, replaces the tool's own scopes: all are
	// required to call it.
	Scopes []string
	// RateLimit, when set, is a budget per (subject, client, tool).
	RateLimit *limiter.Rate
	// Hide makes the tool not exist for clients: it is never registered,
	// so tools/list omits it and tools/call answers "unknown tool".
	Hide bool
	// Owner, when set, limits the rule to the tools that owner mounted
	// (Server.MountTool): an upstream's own rules cannot reach mcpauth's
	// built-in tools or another upstream's, whatever their pattern.
	Owner string
}

func (p Policy) validate() []error {
	var errs []error
	for i, r := range p.Rules {
		if r.Match == "" {
			errs = append(errs, fmt.Errorf("policy rule %d: match is empty", i+1))
		} else if _, err := path.Match(r.Match, ""); err != nil {
			errs = append(errs, fmt.Errorf("policy rule %d: match %q: %w", i+1, r.Match, err))
		}
		for _, sc := range r.Scopes {
			if !scopeToken.MatchString(sc) {
				errs = append(errs, fmt.Errorf("policy rule %d (%s): %q is not a scope token (RFC 6749 §3.3)", i+1, r.Match, sc))
			}
		}
		if r.RateLimit != nil && (r.RateLimit.Limit <= 0 || r.RateLimit.Period <= 0) {
			errs = append(errs, fmt.Errorf("policy rule %d (%s): rate limit needs a positive limit and period", i+1, r.Match))
		}
	}
	return errs
}

// rule returns the first rule matching the tool name, or nil; owner is who
// mounted the tool ("" for AddTool).
func (p Policy) rule(name, owner string) *ToolRule {
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.Owner != "" && r.Owner != owner {
			continue
		}
		if r.Match == name {
			return r
		}
		if ok, _ := path.Match(r.Match, name); ok {
			return r
		}
	}
	return nil
}

// toolPolicy is what a registered tool requires: every scope in scopes, and
// a turn of limit (when not nil) per (subject, client, tool).
type toolPolicy struct {
	name   string
	scopes []string
	limit  *limiter.Limiter
	owner  string // who mounted the tool (MountTool); "" for AddTool
}

// policyFor is the effective policy of a tool that declares scopes, of
// owner ("" for a tool of AddTool); nil when the policy hides it.
func (s *Server) policyFor(name string, scopes []string, owner string) *toolPolicy {
	tp := &toolPolicy{name: name, scopes: scopes}
	if len(tp.scopes) == 0 {
		tp.scopes = s.cfg.Scopes
	}
	if r := s.cfg.Policy.rule(name, owner); r != nil {
		if r.Hide {
			return nil
		}
		if len(r.Scopes) > 0 {
			tp.scopes = r.Scopes
		}
		if r.RateLimit != nil {
			tp.limit = limiter.New(s.store, *r.RateLimit)
		}
	}
	tp.scopes = dedupe(tp.scopes)
	return tp
}

// missing returns the scopes of tp that ti lacks.
func (tp *toolPolicy) missing(ti *oauth.TokenInfo) []string {
	var m []string
	for _, sc := range tp.scopes {
		if ti == nil || !ti.HasScope(sc) {
			m = append(m, sc)
		}
	}
	return m
}

// relevant reports whether scope matters to this resource server: one of the
// basic scopes or a scope some visible tool requires. Only those granted
// scopes are repeated in an insufficient_scope challenge, so the challenge
// never asks for openid or offline_access (MCP 2026-07-28 "Refresh Tokens").
func (s *Server) relevant(scope string) bool {
	if slices.Contains(s.cfg.Scopes, scope) {
		return true
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, tp := range s.tools {
		if slices.Contains(tp.scopes, scope) {
			return true
		}
	}
	return false
}

// dedupe drops repeated scopes, keeping the first occurrence's order.
func dedupe(scopes []string) []string {
	out := make([]string, 0, len(scopes))
	for _, sc := range scopes {
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out
}
