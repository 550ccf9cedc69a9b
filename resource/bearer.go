package resource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/ulule/limiter/v3"

	"github.com/mcpauth/mcpauth/authz/oauth"
)

// maxAuthorization caps the Authorization header value; mcpauth's access
// tokens are about 1 KiB.
const maxAuthorization = 8 << 10

// b64token is RFC 6750 §2.1's token syntax.
var b64token = regexp.MustCompile(`^[A-Za-z0-9\-._~+/]+=*$`)

// mcpHandler is the /mcp chain: Origin check and CORS, bearer token, rate
// limit per principal, JSON-RPC inspection (scopes, per-tool rate limits),
// then the go-sdk's Streamable HTTP handler. The checks are HTTP middleware,
// not go-sdk middleware, because they must answer with 401/403/429 and
// WWW-Authenticate, which a tool handler cannot.
func (s *Server) mcpHandler() http.Handler {
	sdk := auth.RequireBearerToken(s.sdkTokenInfo, &auth.RequireBearerTokenOptions{
		// Verify decided expiry already (with its own leeway); this layer
		// only hands the token to the go-sdk as req.Extra.TokenInfo.
		ClockSkew: 24 * time.Hour,
	})(s.handler)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.checkOrigin(w, r) {
			return
		}
		if r.Method == http.MethodOptions {
			preflight(w)
			return
		}
		if s.cfg.DisableAuth {
			if r.Method == http.MethodPost {
				if _, ok := readBody(w, r); !ok {
					return
				}
			}
			// As below: a client that leaves cancels its tool calls.
			s.handler.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), httpRequestKey{}, r.Context())))
			return
		}
		ti, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		// The endpoint's own scopes (Config.Scopes) are needed for any
		// request, not only for tools: a sign-in-only token (openid profile)
		// must not list tools or read resources and prompts.
		var missing []string
		for _, sc := range s.cfg.Scopes {
			if !ti.HasScope(sc) {
				missing = append(missing, sc)
			}
		}
		if len(missing) > 0 {
			s.insufficientScope(w, ti, missing, "this token does not grant the use of this MCP server")
			return
		}
		r = r.WithContext(context.WithValue(withTokenInfo(r.Context(), ti), httpRequestKey{}, r.Context()))
		var body []byte
		if r.Method == http.MethodPost {
			if body, ok = readBody(w, r); !ok {
				return
			}
		}
		if !s.spend(r.Context(), w, s.perPrincipal, principalKey("mcp", ti, "")) {
			s.tooManyRequests(w, body)
			return
		}
		if body != nil && s.cfg.BeforeTools != nil && mayUseTools(body) {
			s.cfg.BeforeTools(r.Context())
		}
		if body != nil && !s.guard(w, r, ti, body) {
			return
		}
		sdk.ServeHTTP(w, r)
	})
}

// mayUseTools reports whether body may hold a tools/list or tools/call
// request: it names "tools/", or hides a method name behind escapes.
func mayUseTools(body []byte) bool {
	return bytes.Contains(body, []byte("tools/")) || bytes.IndexByte(body, '\\') >= 0
}

// checkOrigin refuses a browser request from an origin other than the
// issuer's or a configured one: MCP 2025-11-25 Transports, "Security
// Warning" — servers MUST validate Origin to prevent DNS rebinding, and
// answer an invalid one with 403. Requests without Origin (every non-browser
// client) pass. An allowed origin gets CORS headers.
func (s *Server) checkOrigin(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin == "" && len(r.Header.Values("Origin")) == 0 {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || len(r.Header.Values("Origin")) != 1 || !slices.Contains(s.origins, originOf(u)) {
		s.log.DebugContext(r.Context(), "forbidden origin", "origin", truncate(origin, 100))
		writeRPCError(w, http.StatusForbidden, jsonrpc.ID{}, -32000, "forbidden: origin not allowed")
		return false
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", "WWW-Authenticate, Retry-After, RateLimit, RateLimit-Policy, Mcp-Session-Id")
	return true
}

// originOf is the ASCII serialisation of u's origin (RFC 6454 §6.2): lower
// case, without the scheme's default port.
func originOf(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host
}

// preflight answers a CORS preflight without authentication (a browser
// sends it without credentials; peer-lessons DR-9).
func preflight(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Allow", "GET, POST, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, Mcp-Protocol-Version, Mcp-Session-Id, Last-Event-ID")
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

// authenticate reads the bearer token from the Authorization header (RFC
// 6750 §2.1; never from the query or the body, MCP "Token Requirements")
// and verifies it. On failure it has written the 400/401/500.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*oauth.TokenInfo, bool) {
	values := r.Header.Values("Authorization")
	switch {
	case len(values) == 0:
		// RFC 6750 §3.1: no authentication information, no error code in
		// the challenge.
		s.unauthorized(w, "", "")
		return nil, false
	case len(values) > 1:
		// RFC 6750 §3.1 invalid_request: more than one method or value.
		s.challenge(w, http.StatusBadRequest, oauth.InvalidRequest, "more than one Authorization header", nil)
		return nil, false
	}
	v := values[0]
	if len(v) > maxAuthorization {
		s.unauthorized(w, oauth.InvalidToken, "invalid token: too long")
		return nil, false
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(v), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		// Another scheme (Basic, DPoP…) is not a bearer token: the same
		// answer as none.
		s.unauthorized(w, "", "")
		return nil, false
	}
	token = strings.TrimLeft(token, " ")
	if !b64token.MatchString(token) {
		s.unauthorized(w, oauth.InvalidToken, "invalid token: malformed")
		return nil, false
	}
	ti, err := s.cfg.Verify(r.Context(), token)
	if err == nil && ti == nil {
		err = errors.New("verifier returned no token info")
	}
	if err != nil {
		if errors.Is(err, oauth.ErrInvalidToken) {
			s.log.DebugContext(r.Context(), "token refused", "err", err)
			s.unauthorized(w, oauth.InvalidToken, safeDescription(err))
			return nil, false
		}
		if oe := (*oauth.Error)(nil); errors.As(err, &oe) && oe.HTTPStatus() == http.StatusServiceUnavailable {
			// The verifier cannot decide now (the signing keys cannot be
			// loaded while the database is down): 503 with Retry-After,
			// never a 401 that would make the client drop a good token.
			s.log.WarnContext(r.Context(), "token verification unavailable", "err", err)
			w.Header().Set("Retry-After", "5")
			oauth.WriteError(w, err)
			return nil, false
		}
		s.log.ErrorContext(r.Context(), "token verification failed", "err", err)
		oauth.WriteError(w, err)
		return nil, false
	}
	if !s.forUs(ti.Audience) {
		// Verify checks the audience already; a token for another resource
		// must never be accepted here, whatever the verifier (RFC 8707 §2,
		// MCP "Token Handling": no passthrough), so check it again.
		s.log.ErrorContext(r.Context(), "verifier accepted a token for another audience", "client_id", ti.ClientID)
		s.unauthorized(w, oauth.InvalidToken, "invalid token: wrong audience")
		return nil, false
	}
	return ti, true
}

// forUs reports whether aud names this resource server (canonical forms,
// so a trailing slash does not matter).
func (s *Server) forUs(aud []string) bool {
	for _, a := range aud {
		if a == s.cfg.Resource {
			return true
		}
		if c, err := oauth.CanonicalResource(a); err == nil && c == s.canonical {
			return true
		}
	}
	return false
}

// safeDescription is the part of a verification error that may go to the
// client: oauth.ErrInvalidToken's text and what follows it (oauth/token.go).
func safeDescription(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, oauth.ErrInvalidToken.Error()); i >= 0 {
		return msg[i:]
	}
	return oauth.ErrInvalidToken.Error()
}

// sdkTokenInfo hands the verified token to the go-sdk, which exposes it to
// tool handlers as req.Extra.TokenInfo. auth.RequireBearerToken is the only
// way to put it in the go-sdk's context, so this "verifier" returns what
// authenticate already verified.
func (s *Server) sdkTokenInfo(_ context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
	ti := TokenInfo(r.Context())
	if ti == nil {
		return nil, auth.ErrInvalidToken
	}
	return &auth.TokenInfo{
		Scopes:     ti.Scopes,
		Expiration: ti.Expiry,
		UserID:     ti.Subject,
		Extra:      map[string]any{sdkExtraKey: ti},
	}, nil
}

// sdkExtraKey holds the *oauth.TokenInfo in auth.TokenInfo.Extra.
const sdkExtraKey = "mcpauth.token_info"

// unauthorized writes a 401 with the RFC 9728 §5.1 challenge: where the
// metadata is and which scopes basic use needs (MCP 2025-11-25 "Protected
// Resource Metadata Discovery Requirements"), plus the error when a token
// was presented (RFC 6750 §3.1).
func (s *Server) unauthorized(w http.ResponseWriter, code, desc string) {
	s.challenge(w, http.StatusUnauthorized, code, desc, s.cfg.Scopes)
}

func (s *Server) challenge(w http.ResponseWriter, status int, code, desc string, scopes []string) {
	var b strings.Builder
	b.WriteString(`Bearer resource_metadata="`)
	b.WriteString(s.metadataURL)
	b.WriteByte('"')
	if len(scopes) > 0 {
		b.WriteString(`, scope="`)
		b.WriteString(strings.Join(scopes, " "))
		b.WriteByte('"')
	}
	if code != "" {
		b.WriteString(`, error="`)
		b.WriteString(code)
		b.WriteByte('"')
		if desc = quotable(desc); desc != "" {
			b.WriteString(`, error_description="`)
			b.WriteString(desc)
			b.WriteByte('"')
		}
	}
	w.Header().Set("WWW-Authenticate", b.String())
	if code == "" {
		code, desc = oauth.InvalidToken, "missing bearer token"
	}
	oauth.WriteError(w, &oauth.Error{Code: code, Description: desc, Status: status})
}

// insufficientScope writes the 403 of MCP 2025-11-25 "Runtime Insufficient
// Scope Errors" (RFC 6750 §3.1). scope= is the granted scopes that still
// apply here plus every scope the request needs: the TS SDK v1 replaces its
// scopes with the challenge's (peer-lessons DR-11), so a challenge naming
// only the missing scope would cost the client the ones it has.
func (s *Server) insufficientScope(w http.ResponseWriter, ti *oauth.TokenInfo, need []string, desc string) {
	var scopes []string
	for _, sc := range ti.Scopes {
		if s.relevant(sc) {
			scopes = append(scopes, sc)
		}
	}
	scopes = dedupe(append(scopes, need...))
	var b strings.Builder
	b.WriteString(`Bearer error="insufficient_scope", scope="`)
	b.WriteString(strings.Join(scopes, " "))
	b.WriteString(`", resource_metadata="`)
	b.WriteString(s.metadataURL)
	b.WriteString(`", error_description="`)
	b.WriteString(quotable(desc))
	b.WriteByte('"')
	w.Header().Set("WWW-Authenticate", b.String())
	oauth.WriteError(w, &oauth.Error{Code: oauth.InsufficientScope, Description: desc, Status: http.StatusForbidden})
}

// quotable keeps the characters RFC 6750 §3 allows in error_description
// (%x20-21 / %x23-5B / %x5D-7E), so the value never breaks out of its
// quoted string; at most 200 of them.
func quotable(s string) string {
	b := make([]byte, 0, min(len(s), 200))
	for i := 0; i < len(s) && len(b) < 200; i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\'')
		case c >= 0x20 && c <= 0x7E:
			b = append(b, c)
		default:
			b = append(b, '?')
		}
	}
	return string(b)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// readBody reads a POST body (at most MaxBodyBytes; more is 413 with a
// JSON-RPC error) and puts it back for the go-sdk.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > MaxBodyBytes {
		writeRPCError(w, http.StatusRequestEntityTooLarge, jsonrpc.ID{}, -32600, "request body too large")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeRPCError(w, http.StatusRequestEntityTooLarge, jsonrpc.ID{}, -32600, "request body too large")
		} else {
			writeRPCError(w, http.StatusBadRequest, jsonrpc.ID{}, -32700, "could not read the request body")
		}
		return nil, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	if body == nil {
		body = []byte{}
	}
	return body, true
}

// guard checks every tools/call in body against the tool's policy: all
// must be allowed (DR-12: every element of a batch) or the request is
// refused with 403 insufficient_scope; then each spends its tool's rate
// limit. Unknown and hidden tools pass untouched: the go-sdk answers them
// with invalid params (-32602), so a client learns nothing about the scopes
// of tools it cannot see.
func (s *Server) guard(w http.ResponseWriter, r *http.Request, ti *oauth.TokenInfo, body []byte) bool {
	p := inspect(body)
	if len(p.tools) == 0 {
		return true
	}
	var (
		need     []string
		desc     string
		policies = make([]*toolPolicy, 0, len(p.tools))
	)
	for _, name := range p.tools {
		tp := s.tool(name)
		if tp == nil {
			continue
		}
		policies = append(policies, tp)
		need = append(need, tp.scopes...)
		if missing := tp.missing(ti); len(missing) > 0 && desc == "" {
			desc = "tool " + name + " needs scope " + strings.Join(missing, " ")
		}
	}
	if desc != "" {
		s.log.InfoContext(r.Context(), "insufficient scope", "client_id", ti.ClientID, "sub", ti.Subject, "need", need)
		s.insufficientScope(w, ti, need, desc)
		return false
	}
	for _, tp := range policies {
		if tp.limit != nil && !s.spend(r.Context(), w, tp.limit, principalKey("mcptool", ti, tp.name)) {
			s.tooManyRequests(w, body)
			return false
		}
	}
	return true
}

// principalKey names a rate-limit counter of (subject, client[, tool]);
// length prefixes keep any two distinct triples apart.
func principalKey(kind string, ti *oauth.TokenInfo, tool string) string {
	var b strings.Builder
	b.WriteString(kind)
	for _, part := range []string{ti.ClientID, ti.Subject, tool} {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(len(part)))
		b.WriteByte(':')
		b.WriteString(part)
	}
	return b.String()
}

// spend takes one request from l's budget for key and sets the RateLimit
// headers (draft-ietf-httpapi-ratelimit-headers), and Retry-After when the
// budget is spent. A failing store (Redis down) lets the request through:
// rate limiting must not take the endpoint down.
func (s *Server) spend(ctx context.Context, w http.ResponseWriter, l *limiter.Limiter, key string) bool {
	lc, err := l.Get(ctx, key)
	if err != nil {
		s.log.WarnContext(ctx, "rate limiter unavailable", "err", err)
		return true
	}
	reset := time.Unix(lc.Reset, 0).Sub(s.cfg.Now())
	secs := max(1, int(reset.Round(time.Second)/time.Second))
	h := w.Header()
	h.Set("RateLimit-Policy", strconv.FormatInt(lc.Limit, 10)+";w="+strconv.Itoa(max(1, int(l.Rate.Period/time.Second))))
	h.Set("RateLimit", "limit="+strconv.FormatInt(lc.Limit, 10)+", remaining="+strconv.FormatInt(lc.Remaining, 10)+", reset="+strconv.Itoa(secs))
	if lc.Reached {
		h.Set("Retry-After", strconv.Itoa(secs))
		return false
	}
	return true
}

// tooManyRequests writes the 429 with a JSON-RPC error for the request's id
// (null for a batch or an undecodable body).
func (s *Server) tooManyRequests(w http.ResponseWriter, body []byte) {
	var id jsonrpc.ID
	if len(body) > 0 {
		if msg, err := jsonrpc.DecodeMessage(body); err == nil {
			if req, ok := msg.(*jsonrpc.Request); ok {
				id = req.ID
			}
		}
	}
	writeRPCError(w, http.StatusTooManyRequests, id, -32000, "rate limit exceeded; retry after "+w.Header().Get("Retry-After")+" s")
}

// writeRPCError writes a JSON-RPC 2.0 error response; a zero id is null
// (JSON-RPC 2.0 §5: id is required, null when unknown).
func writeRPCError(w http.ResponseWriter, status int, id jsonrpc.ID, code int64, msg string) {
	body, _ := json.Marshal(struct {
		JSONRPC string `json:"jsonrpc"`
		ID      any    `json:"id"`
		Error   struct {
			Code    int64  `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{JSONRPC: "2.0", ID: id.Raw(), Error: struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
	}{code, msg}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
	w.Write([]byte("\n"))
}
