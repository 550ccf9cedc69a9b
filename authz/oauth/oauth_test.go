package oauth

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestParseScope(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"   ", nil, false},
		{"mcp", []string{"mcp"}, false},
		{"mcp admin  mcp openid", []string{"mcp", "admin", "openid"}, false},
		{"files:read https://x.example/s", []string{"files:read", "https://x.example/s"}, false},
		{"a\tb", nil, true},
		{`a"b`, nil, true},
		{`a\b`, nil, true},
		{"café", nil, true},
		{strings.Repeat("a ", MaxScopeTokens+1), []string{"a"}, false},
		{strings.Repeat("x", MaxScopeLen+1), nil, true},
	}
	for _, tt := range tests {
		got, err := ParseScope(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParseScope(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	var many []string
	for i := range MaxScopeTokens + 1 {
		many = append(many, "s"+strings.Repeat("x", i))
	}
	if _, err := ParseScope(strings.Join(many, " ")); err == nil {
		t.Errorf("ParseScope accepted %d distinct scopes", len(many))
	}
}

// FuzzParseScope checks ParseScope against a simpler model: split on spaces,
// drop empties and duplicates; and that formatting round-trips.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"", "mcp", "a b  a", "a\tb", "x\x7f", "openid profile offline_access"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseScope(s)
		if err != nil {
			return
		}
		var model []string
		for _, tok := range strings.Split(s, " ") {
			if tok != "" && !slices.Contains(model, tok) {
				model = append(model, tok)
			}
		}
		if !slices.Equal(got, model) {
			t.Fatalf("ParseScope(%q) = %q, model %q", s, got, model)
		}
		for _, tok := range got {
			if validScopeToken(tok) != nil {
				t.Fatalf("ParseScope(%q) returned invalid token %q", s, tok)
			}
		}
		again, err := ParseScope(FormatScope(got))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("round trip of %q: %q, %v", got, again, err)
		}
	})
}

func TestValidateRedirectURI(t *testing.T) {
	tests := []struct {
		uri    string
		native bool
		ok     bool
	}{
		{"https://app.example.com/cb", false, true},
		{"https://app.example.com/cb?x=1", false, true},
		{"http://127.0.0.1/cb", false, true},
		{"http://127.0.0.1:5000/cb", false, true},
		{"http://[::1]:5000/cb", false, true},
		{"http://localhost:6274/oauth/callback", false, true},
		{"http://LOCALHOST/cb", false, true},
		{"com.example.app:/oauth2redirect", true, true},
		{"vscode://vscode.github-authentication/did-authenticate", true, true},
		{"com.example.app:/oauth2redirect", false, false},
		{"http://app.example.com/cb", false, false},
		{"http://127.0.0.1.evil.com/cb", false, false},
		{"http://localhost.evil.com/cb", false, false},
		{"https://app.example.com/cb#frag", false, false},
		{"https://user:pw@app.example.com/cb", false, false},
		{"javascript:alert(1)", true, false},
		{"data:text/html,hi", true, false},
		{"file:///etc/passwd", true, false},
		{"/relative/cb", false, false},
		{"https:///nohost", false, false},
		{"https://app.example.com/c b", false, false},
		{"https://app.example.com\\@evil.com/", false, false},
		{"", false, false},
	}
	for _, tt := range tests {
		err := ValidateRedirectURI(tt.uri, tt.native)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateRedirectURI(%q, native=%v) = %v, want ok=%v", tt.uri, tt.native, err, tt.ok)
		}
	}
}

func TestMatchRedirectURI(t *testing.T) {
	reg := []string{"https://app.example.com/cb", "http://127.0.0.1/callback", "http://localhost:3000/oauth/callback?x=1"}
	tests := []struct {
		req  string
		want bool
	}{
		{"https://app.example.com/cb", true},
		{"https://app.example.com/cb/", false},
		{"https://app.example.com/cb?x=1", false},
		{"https://APP.example.com/cb", false},
		{"https://app.example.com:443/cb", false},
		{"https://app.example.com.evil.com/cb", false},
		{"https://app.example.com/cb#x", false},
		{"http://127.0.0.1:51234/callback", true}, // RFC 8252 §7.3: any port
		{"http://127.0.0.1/callback", true},
		{"http://127.0.0.1:51234/callback/../x", false},
		{"http://127.0.0.1:51234/other", false},
		{"http://localhost:51234/callback", false}, // another host name
		{"http://localhost:9999/oauth/callback?x=1", true},
		{"http://localhost:9999/oauth/callback", false},
		{"http://localhost:99a/oauth/callback?x=1", false},
		{"http://user@127.0.0.1:1/callback", false},
		{"https://127.0.0.1:51234/callback", false},
	}
	for _, tt := range tests {
		if got := MatchRedirectURI(reg, tt.req); got != tt.want {
			t.Errorf("MatchRedirectURI(%q) = %v, want %v", tt.req, got, tt.want)
		}
	}
}

// FuzzMatchRedirectURI checks the properties of the matcher: a URI matches
// itself; matching is symmetric; a match that is not exact is an http
// loopback URI with the same host, path and query, differing at most in port.
func FuzzMatchRedirectURI(f *testing.F) {
	f.Add("http://127.0.0.1:1/cb", "http://127.0.0.1:2/cb")
	f.Add("https://a.example/cb", "https://a.example/cb")
	f.Add("http://localhost/cb?x", "http://localhost:80/cb?x")
	f.Add("http://[::1]:8/p", "http://[::1]/p")
	f.Fuzz(func(t *testing.T, reg, req string) {
		if !MatchRedirectURI([]string{req}, req) {
			t.Fatalf("%q does not match itself", req)
		}
		m := MatchRedirectURI([]string{reg}, req)
		if m != MatchRedirectURI([]string{req}, reg) {
			t.Fatalf("match of %q and %q is not symmetric", reg, req)
		}
		if !m || reg == req {
			return
		}
		a, errA := url.Parse(reg)
		b, errB := url.Parse(req)
		if errA != nil || errB != nil {
			t.Fatalf("%q matched %q but does not parse", reg, req)
		}
		if a.Scheme != "http" || b.Scheme != "http" || !IsLoopbackHost(a.Hostname()) || a.Hostname() != b.Hostname() ||
			a.EscapedPath() != b.EscapedPath() || a.RawQuery != b.RawQuery || a.User != nil || b.User != nil {
			t.Fatalf("%q matched %q beyond the loopback port rule", reg, req)
		}
	})
}

func TestCanonicalResource(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://mcp.example.com/mcp", "https://mcp.example.com/mcp"},
		{"https://mcp.example.com/mcp/", "https://mcp.example.com/mcp"},
		{"HTTPS://MCP.Example.COM/mcp", "https://mcp.example.com/mcp"},
		{"https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"},
		{"https://mcp.example.com:8443", "https://mcp.example.com:8443"},
		{"https://mcp.example.com/", "https://mcp.example.com"},
		{"http://localhost:8080/mcp", "http://localhost:8080/mcp"},
		{"http://[::1]:8080/mcp", "http://[::1]:8080/mcp"},
		{"https://mcp.example.com/Path", "https://mcp.example.com/Path"},
		{"https://mcp.example.com/mcp?tenant=a", "https://mcp.example.com/mcp?tenant=a"},
	}
	for _, tt := range tests {
		got, err := CanonicalResource(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("CanonicalResource(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "mcp", "/mcp", "https://x/mcp#f", "ftp://x/mcp", "urn:x:y", "https://u@x/mcp", "https:///mcp", "https://x/m cp", "https://[fe80::1%25en0]/mcp"} {
		if got, err := CanonicalResource(bad); err == nil {
			t.Errorf("CanonicalResource(%q) = %q, want an error", bad, got)
		}
	}
}

// FuzzCanonicalResource: canonical forms are fixed points, parse back as
// absolute http(s) URIs without fragment, and ignore a trailing slash.
func FuzzCanonicalResource(f *testing.F) {
	for _, s := range []string{"https://mcp.example.com/mcp/", "HTTP://LOCALHOST:80/", "https://x:443", "https://x/a%2Fb/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := CanonicalResource(s)
		if err != nil {
			return
		}
		again, err := CanonicalResource(c)
		if err != nil || again != c {
			t.Fatalf("CanonicalResource(%q) = %q, but again gives %q, %v", s, c, again, err)
		}
		u, err := url.Parse(c)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Fragment != "" || strings.HasSuffix(u.Path, "/") {
			t.Fatalf("CanonicalResource(%q) = %q is not canonical", s, c)
		}
		if !strings.Contains(s, "?") {
			if slash, err := CanonicalResource(s + "/"); err == nil && slash != c {
				t.Fatalf("trailing slash changes %q: %q vs %q", s, c, slash)
			}
		}
	})
}
