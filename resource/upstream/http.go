package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// connectHTTP connects to a Streamable HTTP upstream. Every request carries
// the configured headers and bearer credential only: the client's
// Authorization header and cookies are never copied (MCP Security Best
// Practices, "Token Passthrough"); redirects are not followed, so the
// credential never travels to another host.
func (u *upstream) connectHTTP(ctx context.Context, client *mcp.Client) (*conn, error) {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.Proxy = nil // an upstream is reached directly, never through an environment proxy
	hc := &http.Client{
		Transport: &upstreamTransport{base: base, cfg: &u.cfg},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:   u.cfg.URL,
		HTTPClient: hc,
		// No standalone GET stream: list changes are picked up by the
		// periodic health check (a tools/list) and by notifications that
		// arrive on a call's own stream.
		DisableStandaloneSSE: true,
		MaxRetries:           -1,
		MaxEventSize:         u.cfg.MaxResultBytes + lineSlack,
	}, nil)
	if err != nil {
		base.CloseIdleConnections()
		return nil, err
	}
	return &conn{
		session: session,
		done:    sessionDone(session),
		close: func() {
			session.Close()
			base.CloseIdleConnections()
		},
	}, nil
}

// upstreamTransport sets what mcpauth sends to an HTTP upstream and caps
// the JSON bodies it reads back (SSE events are capped by MaxEventSize).
type upstreamTransport struct {
	base http.RoundTripper
	cfg  *Config
}

func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	h := r.Header
	// Nothing but the go-sdk's own headers come in here; these deletions
	// keep it so whatever the go-sdk does.
	h.Del("Authorization")
	h.Del("Cookie")
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "x-mcpauth-") {
			h.Del(k)
		}
	}
	for k, v := range t.cfg.Headers {
		h.Set(k, v)
	}
	if t.cfg.Bearer != "" {
		h.Set("Authorization", "Bearer "+t.cfg.Bearer)
	}
	if t.cfg.IdentityHeaders {
		if ti := identity(req.Context()); ti != nil {
			h.Set(HeaderSubject, ti.Subject)
			h.Set(HeaderClientID, ti.ClientID)
			h.Set(HeaderScope, strings.Join(ti.Scopes, " "))
		}
	}
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		// The go-sdk reads a failed response's body whole, whatever its
		// type (streamableClientConn.checkResponse), to find a JSON-RPC
		// error in it: MaxEventSize does not apply there.
		resp.Body = &cappedBody{r: resp.Body, left: maxErrorBody}
	case !isEventStream(resp.Header.Get("Content-Type")):
		resp.Body = &cappedBody{r: resp.Body, left: int64(t.cfg.MaxResultBytes + lineSlack)}
	}
	return resp, nil
}

// maxErrorBody caps the body of an upstream's non-2xx response: room for a
// JSON-RPC error, which call cuts to maxErrorBytes anyway.
const maxErrorBody = 64 << 10

// isEventStream reports whether a Content-Type is text/event-stream (media
// types are case-insensitive, RFC 9110 §8.3.1); an SSE stream's events are
// capped by the go-sdk's MaxEventSize.
func isEventStream(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "text/event-stream"
}

// errBodyTooLarge ends the reading of an upstream response over the cap.
var errBodyTooLarge = errors.New("upstream response body too large")

// cappedBody fails once more than its budget has been read.
type cappedBody struct {
	r    io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%w", errBodyTooLarge)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cappedBody) Close() error { return b.r.Close() }
