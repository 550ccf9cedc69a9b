package oauth

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// MaxRedirectURILen caps a redirect URI; browsers cap URLs not far above it.
const MaxRedirectURILen = 2000

// forbiddenSchemes can never be a redirect target: they run code, read local
// files or are not navigations an OAuth client can receive.
var forbiddenSchemes = map[string]bool{
	"javascript": true, "vbscript": true, "data": true, "file": true, "blob": true,
	"about": true, "filesystem": true, "view-source": true, "ws": true, "wss": true,
	"ftp": true, "mailto": true, "tel": true, "sms": true,
}

// IsLoopbackHost reports whether host (as in url.URL.Hostname) is a loopback
// host of RFC 8252 §7.3 and §8.3: localhost, 127.0.0.0/8 or ::1.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Zone() == "" && a.Unmap().IsLoopback()
}

// ValidateRedirectURI checks a redirect URI a client registers. OAuth 2.1
// §2.3.1 and the MCP authorization spec allow https anywhere and http only on
// a loopback host; RFC 8252 §7.1 adds private-use URI schemes for native
// apps. No fragment (RFC 6749 §3.1.2), no user information.
func ValidateRedirectURI(raw string, native bool) error {
	if raw == "" {
		return errors.New("empty redirect URI")
	}
	if len(raw) > MaxRedirectURILen {
		return fmt.Errorf("redirect URI longer than %d bytes", MaxRedirectURILen)
	}
	if strings.ContainsAny(raw, " \t\r\n\\") {
		return errors.New("redirect URI contains white space or a backslash")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("redirect URI is not a URI")
	}
	if u.Scheme == "" {
		return errors.New("redirect URI is not absolute")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return errors.New("redirect URI must not contain a fragment")
	}
	if u.User != nil {
		return errors.New("redirect URI must not contain user information")
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "https":
		if u.Host == "" || u.Hostname() == "" {
			return errors.New("https redirect URI has no host")
		}
	case scheme == "http":
		if !IsLoopbackHost(u.Hostname()) {
			return errors.New("http redirect URIs are allowed only on a loopback host (127.0.0.1, [::1], localhost); use https")
		}
	case forbiddenSchemes[scheme]:
		return fmt.Errorf("redirect URI scheme %q is not allowed", u.Scheme)
	default:
		if !native {
			return fmt.Errorf("private-use scheme %q is allowed only for native applications (application_type \"native\")", u.Scheme)
		}
		// RFC 8252 §7.1: a private-use scheme redirect has no authority
		// section to speak of; it must at least name something to open.
		if u.Opaque == "" && u.Host == "" && u.Path == "" {
			return errors.New("private-use redirect URI has no path")
		}
	}
	return nil
}

// MatchRedirectURI reports whether requested is one of registered. The
// comparison is exact (OAuth 2.1 §4.1.3, RFC 9700 §4.1.3) except that for an
// http redirect to a loopback host the port is ignored (RFC 8252 §7.3): native
// apps listen on an ephemeral port. Host, path and query must still be equal.
func MatchRedirectURI(registered []string, requested string) bool {
	for _, r := range registered {
		if r == requested {
			return true
		}
	}
	req, ok := loopbackParts(requested)
	if !ok {
		return false
	}
	for _, r := range registered {
		if reg, ok := loopbackParts(r); ok && reg == req {
			return true
		}
	}
	return false
}

// loopbackParts is what an http loopback redirect URI is compared by when
// the port is ignored.
type loopbackKey struct{ host, path, query string }

func loopbackParts(raw string) (loopbackKey, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Fragment != "" || strings.Contains(raw, "#") {
		return loopbackKey{}, false
	}
	host := u.Hostname()
	if !IsLoopbackHost(host) {
		return loopbackKey{}, false
	}
	if p := u.Port(); p != "" {
		// A port, if present, must be a port.
		for _, c := range p {
			if c < '0' || c > '9' {
				return loopbackKey{}, false
			}
		}
	}
	return loopbackKey{host: host, path: u.EscapedPath(), query: u.RawQuery}, true
}
