package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"

	"github.com/mcpauth/mcpauth/authz"
	"github.com/mcpauth/mcpauth/authz/keys"
	"github.com/mcpauth/mcpauth/authz/oauth"
)

// Config is everything mcpauth reads from its environment, parsed once into
// real types. DefaultConfig gives the safe defaults; load fills in what the
// environment sets; Validate reports every problem at once.
type Config struct {
	Issuer          string // public base URL: scheme and host, no path, no trailing slash
	Addr            string // listen address
	DatabaseURL     string
	Secret          []byte // ≥ 32 bytes: seals signing keys, keys HMACs
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	CodeTTL         time.Duration
	SessionTTL      time.Duration // browser sign-in
	KeyPublishAhead time.Duration // a rotated-in key is in the JWKS this long before it signs
	KeyReload       time.Duration // how often a replica looks for keys rotated elsewhere
	CleanupInterval time.Duration
	AuditRetention  time.Duration // audit events older than this are deleted; 0 keeps them forever
	ShutdownTimeout time.Duration
	TrustedProxies  []netip.Prefix
	LogLevel        slog.Level
	LogFormat       string // "json" or "text"
	// PprofAddr, when set, serves net/http/pprof on its own loopback
	// listener (MCPAUTH_DEBUG_PPROF_ADDR), for profiling under load
	// (make bench -profile); never on the public listener.
	PprofAddr string

	RegistrationToken string           // RFC 7591 initial access token; "" = open registration
	UnusedClientTTL   time.Duration    // registered clients that never obtained a grant are deleted after this
	RedisURL          string           // shared rate-limit counters; "" = in memory, per replica
	RateLimits        authz.RateLimits // from "N-S|M|H|D" (requests per second, minute, hour or day)

	// Client ID Metadata Documents (docs/client-metadata-documents.md):
	// URL client_ids resolved by fetching the document they name.
	CIMD                  bool          // MCPAUTH_CIMD: on (default) or off
	CIMDAllowPrivate      bool          // MCPAUTH_CIMD_ALLOW_PRIVATE: documents on loopback and private addresses
	CIMDAllowHTTPLoopback bool          // http:// documents on loopback hosts (mcpauth dev only)
	CIMDAllow, CIMDDeny   []string      // MCPAUTH_CIMD_ALLOW / _DENY: domains or URL prefixes
	CIMDMinCacheAge       time.Duration // MCPAUTH_CIMD_CACHE_MIN_AGE: a document is refetched no sooner
	CIMDMaxCacheAge       time.Duration // MCPAUTH_CIMD_CACHE_MAX_AGE: … and no later, whatever its headers say

	// Tools is the tool policy and MCP endpoint settings of the file named
	// by MCPAUTH_CONFIG (docs/configuration.md); without a file, the
	// defaults.
	ToolsFile string
	Tools     *toolConfig
}

// jwksMaxAge is how long clients may cache /jwks.json. KeyPublishAhead must
// be longer, so that every cached JWKS knows a key before it signs.
const jwksMaxAge = 5 * time.Minute

// DefaultConfig is the configuration of a production server before the
// environment is read. Issuer, DatabaseURL and Secret have no default.
func DefaultConfig() Config {
	return Config{
		Addr:            ":8080",
		AccessTokenTTL:  10 * time.Minute,
		RefreshTokenTTL: 30 * 24 * time.Hour,
		CodeTTL:         time.Minute,
		SessionTTL:      12 * time.Hour,
		UnusedClientTTL: 7 * 24 * time.Hour,
		RateLimits:      authz.DefaultRateLimits(),
		Tools:           &toolConfig{},
		KeyPublishAhead: 2 * jwksMaxAge,
		KeyReload:       30 * time.Second,
		CleanupInterval: time.Minute,
		AuditRetention:  90 * 24 * time.Hour,
		ShutdownTimeout: 20 * time.Second,
		LogLevel:        slog.LevelInfo,
		LogFormat:       "json",
		CIMD:            true,
		CIMDMinCacheAge: 5 * time.Minute,
		CIMDMaxCacheAge: 24 * time.Hour,
	}
}

// envError names the variable a problem is about.
func envError(name, format string, args ...any) error {
	return fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...))
}

// load overlays the MCPAUTH_* variables on c. It collects every problem
// instead of stopping at the first. A secret may come from NAME or from the
// file named by NAME_FILE, never both.
func (c *Config) load(getenv func(string) string) error {
	var errs []error
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	secret := func(name string) (string, bool) {
		v, file := getenv(name), getenv(name+"_FILE")
		switch {
		case v != "" && file != "":
			errs = append(errs, envError(name, "set either %s or %s_FILE, not both", name, name))
		case file != "":
			b, err := os.ReadFile(file)
			if err != nil {
				errs = append(errs, envError(name+"_FILE", "%v", err))
				return "", false
			}
			return strings.TrimRight(string(b), "\r\n"), true
		case v != "":
			return v, true
		}
		return "", false
	}
	duration := func(name string, dst *time.Duration) {
		v := getenv(name)
		if v == "" {
			return
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, envError(name, "not a duration (like 10m or 1h30m): %q", v))
			return
		}
		*dst = d
	}

	str("MCPAUTH_ISSUER", &c.Issuer)
	str("MCPAUTH_ADDR", &c.Addr)
	if v, ok := secret("MCPAUTH_DATABASE_URL"); ok {
		c.DatabaseURL = v
	}
	if v, ok := secret("MCPAUTH_SECRET"); ok {
		c.Secret = []byte(v)
	}
	duration("MCPAUTH_ACCESS_TOKEN_TTL", &c.AccessTokenTTL)
	duration("MCPAUTH_REFRESH_TOKEN_TTL", &c.RefreshTokenTTL)
	duration("MCPAUTH_CODE_TTL", &c.CodeTTL)
	duration("MCPAUTH_SESSION_TTL", &c.SessionTTL)
	duration("MCPAUTH_UNUSED_CLIENT_TTL", &c.UnusedClientTTL)
	if v, ok := secret("MCPAUTH_REGISTRATION_TOKEN"); ok {
		c.RegistrationToken = v
	}
	if v, ok := secret("MCPAUTH_REDIS_URL"); ok {
		c.RedisURL = v
	}
	rate := func(name string, dst *limiter.Rate) {
		v := getenv(name)
		if v == "" {
			return
		}
		r, err := limiter.NewRateFromFormatted(v)
		if err != nil || r.Limit <= 0 {
			errs = append(errs, envError(name, "want N-S, N-M, N-H or N-D (N requests per second, minute, hour or day), got %q", v))
			return
		}
		*dst = r
	}
	rate("MCPAUTH_RATE_LIMIT_REGISTER", &c.RateLimits.Register)
	rate("MCPAUTH_RATE_LIMIT_TOKEN", &c.RateLimits.Token)
	rate("MCPAUTH_RATE_LIMIT_AUTHORIZE", &c.RateLimits.Authorize)
	rate("MCPAUTH_RATE_LIMIT_LOGIN_IP", &c.RateLimits.LoginPerIP)
	rate("MCPAUTH_RATE_LIMIT_LOGIN_USER", &c.RateLimits.LoginPerUser)
	duration("MCPAUTH_KEY_PUBLISH_AHEAD", &c.KeyPublishAhead)
	duration("MCPAUTH_KEY_RELOAD_INTERVAL", &c.KeyReload)
	duration("MCPAUTH_CLEANUP_INTERVAL", &c.CleanupInterval)
	if v := getenv("MCPAUTH_AUDIT_RETENTION"); v != "" {
		// A duration, or a number of days ("90d"); 0 keeps events forever.
		d, err := time.ParseDuration(v)
		if days, ok := strings.CutSuffix(v, "d"); ok {
			var n int
			n, err = strconv.Atoi(days)
			d = time.Duration(n) * 24 * time.Hour
		}
		if err != nil {
			errs = append(errs, envError("MCPAUTH_AUDIT_RETENTION", "not a duration (like 90d or 720h; 0 keeps events forever): %q", v))
		} else {
			c.AuditRetention = d
		}
	}
	duration("MCPAUTH_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	if v := getenv("MCPAUTH_TRUSTED_PROXIES"); v != "" {
		c.TrustedProxies = nil
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			p, err := parsePrefix(s)
			if err != nil {
				errs = append(errs, envError("MCPAUTH_TRUSTED_PROXIES", "%q is neither an IP address nor a CIDR prefix", s))
				continue
			}
			c.TrustedProxies = append(c.TrustedProxies, p)
		}
	}
	if v := getenv("MCPAUTH_LOG_LEVEL"); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, envError("MCPAUTH_LOG_LEVEL", "want debug, info, warn or error, got %q", v))
		}
	}
	str("MCPAUTH_LOG_FORMAT", &c.LogFormat)
	str("MCPAUTH_DEBUG_PPROF_ADDR", &c.PprofAddr)
	boolean := func(name string, dst *bool, yes, no string) {
		switch v := strings.ToLower(getenv(name)); v {
		case "":
		case yes, "true", "1":
			*dst = true
		case no, "false", "0":
			*dst = false
		default:
			errs = append(errs, envError(name, "want %s or %s, got %q", yes, no, v))
		}
	}
	boolean("MCPAUTH_CIMD", &c.CIMD, "on", "off")
	boolean("MCPAUTH_CIMD_ALLOW_PRIVATE", &c.CIMDAllowPrivate, "true", "false")
	list := func(name string, dst *[]string) {
		v := getenv(name)
		if v == "" {
			return
		}
		*dst = nil
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			if err := validateCIMDPattern(s); err != nil {
				errs = append(errs, envError(name, "%q: %v", s, err))
				continue
			}
			*dst = append(*dst, s)
		}
	}
	list("MCPAUTH_CIMD_ALLOW", &c.CIMDAllow)
	list("MCPAUTH_CIMD_DENY", &c.CIMDDeny)
	duration("MCPAUTH_CIMD_CACHE_MIN_AGE", &c.CIMDMinCacheAge)
	duration("MCPAUTH_CIMD_CACHE_MAX_AGE", &c.CIMDMaxCacheAge)
	if path := getenv("MCPAUTH_CONFIG"); path != "" {
		tc, err := loadToolConfig(path, getenv)
		if err != nil {
			errs = append(errs, envError("MCPAUTH_CONFIG", "%v", err))
		} else {
			c.ToolsFile, c.Tools = path, tc
		}
	}
	return errors.Join(errs...)
}

// validateCIMDPattern checks an entry of MCPAUTH_CIMD_ALLOW or _DENY: a
// domain ("example.com", which also covers its subdomains) or the prefix of
// a client_id URL ("https://example.com/clients/").
func validateCIMDPattern(s string) error {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return errors.New("a URL prefix must be an http(s) URL with a host and no query or fragment")
		}
		return nil
	}
	if strings.Trim(strings.ToLower(s), "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || !strings.Contains(s, ".") && !strings.EqualFold(s, "localhost") {
		return errors.New("want a domain such as example.com or a URL prefix such as https://example.com/clients/")
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// minSecretLen is the shortest MCPAUTH_SECRET accepted: 256 bits, what the
// key set itself requires to seal the signing keys.
const minSecretLen = keys.MinSecretLen

// Validate reports every problem of c at once, each naming its variable.
// Everything it accepts is safe to run in production.
func (c *Config) Validate() error {
	var errs []error
	if err := validateIssuer(c.Issuer); err != nil {
		errs = append(errs, envError("MCPAUTH_ISSUER", "%v", err))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, envError("MCPAUTH_DATABASE_URL", "required: a PostgreSQL URL such as postgres://mcpauth:PASSWORD@db:5432/mcpauth"))
	} else if _, err := pgconn.ParseConfig(c.DatabaseURL); err != nil {
		// pgconn's message can quote the URL, password included: say only what is wrong.
		errs = append(errs, envError("MCPAUTH_DATABASE_URL", "not a valid PostgreSQL connection URL"))
	}
	switch n := len(c.Secret); {
	case n == 0:
		errs = append(errs, envError("MCPAUTH_SECRET", "required: at least %d random bytes (e.g. `openssl rand -base64 48`)", minSecretLen))
	case n < minSecretLen:
		errs = append(errs, envError("MCPAUTH_SECRET", "too short: %d bytes, need at least %d", n, minSecretLen))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, envError("MCPAUTH_ADDR", "want host:port or :port, got %q", c.Addr))
	}
	if c.PprofAddr != "" {
		// The profiles show memory and goroutine stacks: loopback only.
		host, _, err := net.SplitHostPort(c.PprofAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			errs = append(errs, envError("MCPAUTH_DEBUG_PPROF_ADDR", "want a loopback IP and port such as 127.0.0.1:6060, got %q", c.PprofAddr))
		}
	}
	if c.AccessTokenTTL < time.Minute || c.AccessTokenTTL > 24*time.Hour {
		errs = append(errs, envError("MCPAUTH_ACCESS_TOKEN_TTL", "must be between 1m and 24h, got %s", c.AccessTokenTTL))
	}
	if c.RefreshTokenTTL < c.AccessTokenTTL || c.RefreshTokenTTL > 365*24*time.Hour {
		errs = append(errs, envError("MCPAUTH_REFRESH_TOKEN_TTL", "must be between the access-token lifetime and 8760h, got %s", c.RefreshTokenTTL))
	}
	if c.CodeTTL < 10*time.Second || c.CodeTTL > 10*time.Minute {
		// RFC 6749 §4.1.2: a maximum lifetime of 10 minutes is RECOMMENDED.
		errs = append(errs, envError("MCPAUTH_CODE_TTL", "must be between 10s and 10m, got %s", c.CodeTTL))
	}
	if c.SessionTTL < time.Minute || c.SessionTTL > 90*24*time.Hour {
		errs = append(errs, envError("MCPAUTH_SESSION_TTL", "must be between 1m and 2160h, got %s", c.SessionTTL))
	}
	if c.UnusedClientTTL < time.Hour {
		errs = append(errs, envError("MCPAUTH_UNUSED_CLIENT_TTL", "must be at least 1h, got %s", c.UnusedClientTTL))
	}
	if c.RegistrationToken != "" && len(c.RegistrationToken) < 16 {
		errs = append(errs, envError("MCPAUTH_REGISTRATION_TOKEN", "too short to be secret: %d bytes, need at least 16", len(c.RegistrationToken)))
	}
	if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			errs = append(errs, envError("MCPAUTH_REDIS_URL", "not a Redis URL (redis://[:password@]host:port/db or rediss://…)"))
		}
	}
	if c.KeyPublishAhead < jwksMaxAge {
		errs = append(errs, envError("MCPAUTH_KEY_PUBLISH_AHEAD", "must be at least the JWKS cache lifetime (%s), got %s", jwksMaxAge, c.KeyPublishAhead))
	}
	if c.KeyReload <= 0 || c.KeyReload > c.KeyPublishAhead/2 {
		errs = append(errs, envError("MCPAUTH_KEY_RELOAD_INTERVAL", "must be positive and at most half of MCPAUTH_KEY_PUBLISH_AHEAD, got %s", c.KeyReload))
	}
	if c.AuditRetention != 0 && c.AuditRetention < time.Hour {
		errs = append(errs, envError("MCPAUTH_AUDIT_RETENTION", "must be 0 (keep forever) or at least 1h, got %s", c.AuditRetention))
	}
	if c.CleanupInterval < time.Second {
		errs = append(errs, envError("MCPAUTH_CLEANUP_INTERVAL", "must be at least 1s, got %s", c.CleanupInterval))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, envError("MCPAUTH_SHUTDOWN_TIMEOUT", "must be positive, got %s", c.ShutdownTimeout))
	}
	if c.CIMDMinCacheAge < time.Second || c.CIMDMinCacheAge > c.CIMDMaxCacheAge {
		errs = append(errs, envError("MCPAUTH_CIMD_CACHE_MIN_AGE", "must be between 1s and MCPAUTH_CIMD_CACHE_MAX_AGE (%s), got %s", c.CIMDMaxCacheAge, c.CIMDMinCacheAge))
	}
	if c.CIMDMaxCacheAge <= 0 || c.CIMDMaxCacheAge > 7*24*time.Hour {
		errs = append(errs, envError("MCPAUTH_CIMD_CACHE_MAX_AGE", "must be positive and at most 168h, got %s", c.CIMDMaxCacheAge))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, envError("MCPAUTH_LOG_FORMAT", "want json or text, got %q", c.LogFormat))
	}
	return errors.Join(errs...)
}

// validateIssuer enforces RFC 8414 §2 (https, no query or fragment) and what
// MCP clients need: a path-less issuer, so that the metadata is found at
// /.well-known/oauth-authorization-server, written without a trailing slash
// so it is byte-identical wherever it appears (RFC 8414 §3.3). Plain http is
// allowed only on a loopback host.
func validateIssuer(s string) error {
	if s == "" {
		return errors.New("required: the public base URL, such as https://auth.example.com")
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("not an absolute URL: %q", s)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("scheme must be https, got %q", u.Scheme)
	case u.User != nil:
		return errors.New("must not contain user information")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return errors.New("must not have a query or fragment")
	case u.Path == "/":
		return fmt.Errorf("must not end with a slash: use %q", strings.TrimSuffix(s, "/"))
	case u.Path != "":
		return fmt.Errorf("must not have a path (%q): serve mcpauth at the root of its own host", u.Path)
	case s != strings.ToLower(s):
		// Clients compare the issuer byte for byte (RFC 8414 §3.3); a
		// lower-case one is the form every URL normaliser agrees on.
		return fmt.Errorf("must be lower case: use %q", strings.ToLower(s))
	}
	if u.Scheme == "http" && !oauth.IsLoopbackHost(u.Hostname()) {
		return fmt.Errorf("plain http is allowed only on a loopback host; use https://%s", u.Host)
	}
	return nil
}

// LogValue lists the effective configuration with the secrets redacted.
func (c Config) LogValue() slog.Value {
	proxies := make([]string, len(c.TrustedProxies))
	for i, p := range c.TrustedProxies {
		proxies[i] = p.String()
	}
	return slog.GroupValue(
		slog.String("issuer", c.Issuer),
		slog.String("addr", c.Addr),
		slog.String("database_url", redactURL(c.DatabaseURL)),
		slog.String("secret", fmt.Sprintf("[%d bytes]", len(c.Secret))),
		slog.Duration("access_token_ttl", c.AccessTokenTTL),
		slog.Duration("refresh_token_ttl", c.RefreshTokenTTL),
		slog.Duration("code_ttl", c.CodeTTL),
		slog.Duration("session_ttl", c.SessionTTL),
		slog.Duration("unused_client_ttl", c.UnusedClientTTL),
		slog.Bool("registration_token", c.RegistrationToken != ""),
		slog.String("redis_url", redactURL(c.RedisURL)),
		slog.Duration("key_publish_ahead", c.KeyPublishAhead),
		slog.Duration("key_reload_interval", c.KeyReload),
		slog.Duration("cleanup_interval", c.CleanupInterval),
		slog.Duration("audit_retention", c.AuditRetention),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.String("trusted_proxies", strings.Join(proxies, ",")),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("log_format", c.LogFormat),
		slog.String("debug_pprof_addr", c.PprofAddr),
		slog.String("config_file", c.ToolsFile),
		slog.Bool("cimd", c.CIMD),
		slog.Bool("cimd_allow_private", c.CIMDAllowPrivate),
		slog.Bool("cimd_allow_http_loopback", c.CIMDAllowHTTPLoopback),
		slog.String("cimd_allow", strings.Join(c.CIMDAllow, ",")),
		slog.String("cimd_deny", strings.Join(c.CIMDDeny, ",")),
		slog.Duration("cimd_cache_min_age", c.CIMDMinCacheAge),
		slog.Duration("cimd_cache_max_age", c.CIMDMaxCacheAge),
	)
}

// redactURL hides the password of a database URL, and hides a key=value DSN
// entirely rather than guess where its password is.
func redactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "[redacted]"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
