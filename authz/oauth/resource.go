package oauth

import (
	"errors"
	"net/url"
	"strings"
)

// MaxResourceLen caps a resource indicator.
const MaxResourceLen = 2000

// CanonicalResource returns the canonical form of a resource indicator
// (RFC 8707 §2; MCP "Canonical Server URI"): an absolute http(s) URI without
// a fragment, scheme and host in lower case, the default port dropped, and no
// trailing slash on the path. Two indicators name the same resource exactly
// when their canonical forms are equal; this is what makes `aud` matching
// trailing-slash tolerant (as go-sdk's oauthex.MatchesResource is).
func CanonicalResource(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("empty resource")
	}
	if len(raw) > MaxResourceLen {
		return "", errors.New("resource too long")
	}
	if strings.ContainsAny(raw, " \t\r\n\\") {
		return "", errors.New("resource contains white space or a backslash")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("resource is not a URI")
	}
	if !u.IsAbs() || u.Opaque != "" || u.Host == "" {
		return "", errors.New("resource must be an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return "", errors.New("resource must not contain a fragment (RFC 8707 §2)")
	}
	if u.User != nil {
		return "", errors.New("resource must not contain user information")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", errors.New("resource must be an http or https URI")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" || strings.Contains(host, "%") {
		return "", errors.New("resource has no usable host")
	}
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	c := url.URL{Scheme: scheme, Host: host, RawQuery: u.RawQuery}
	if strings.Contains(host, ":") {
		c.Host = "[" + host + "]"
	}
	if port != "" {
		c.Host += ":" + port
	}
	c.Path = strings.TrimRight(u.Path, "/")
	c.RawPath = strings.TrimRight(u.RawPath, "/")
	return c.String(), nil
}
