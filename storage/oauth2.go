package storage

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/pkce"
)

// fosite's token storage (fosite-notes §5, §6, §13.3). fosite hands storage the
// signature part of each token; the row key is sha256 of it.

var (
	_ oauth2.CoreStorage            = (*DB)(nil)
	_ oauth2.TokenRevocationStorage = (*DB)(nil)
	_ pkce.PKCERequestStorage       = (*DB)(nil)
)

// sigHash is the primary key of a token row: sha256 of fosite's signature (or of
// any other secret), so the database never holds a usable token.
func sigHash(signature string) []byte {
	h := sha256.Sum256([]byte(signature))
	return h[:]
}

// grant is the part of a fosite.Requester that every token row stores.
type grant struct {
	requestID   string
	clientID    string
	subject     string
	requestedAt time.Time
	expiresAt   pgtype.Timestamptz
	reqScopes   []string
	grantScopes []string
	reqAud      []string
	grantAud    []string
	session     []byte
}

// newGrant extracts what a token row stores from r; expiry is the session's
// expiry for tt, or 'infinity' when fosite set none (a lifespan of -1).
func newGrant(r fosite.Requester, tt fosite.TokenType) (grant, error) {
	if r == nil {
		return grant{}, errors.New("nil request")
	}
	client := r.GetClient()
	if client == nil {
		return grant{}, errors.New("request has no client")
	}
	id := r.GetID()
	if _, err := uuid.Parse(id); err != nil {
		return grant{}, fmt.Errorf("request id %q is not a UUID", id)
	}
	g := grant{
		requestID:   id,
		clientID:    client.GetID(),
		requestedAt: r.GetRequestedAt(),
		expiresAt:   pgtype.Timestamptz{Valid: true, InfinityModifier: pgtype.Infinity},
		reqScopes:   nonNil(r.GetRequestedScopes()),
		grantScopes: nonNil(r.GetGrantedScopes()),
		reqAud:      nonNil(r.GetRequestedAudience()),
		grantAud:    nonNil(r.GetGrantedAudience()),
		session:     []byte("null"),
	}
	if g.requestedAt.IsZero() {
		g.requestedAt = time.Now().UTC()
	}
	if s := r.GetSession(); s != nil {
		g.subject = s.GetSubject()
		if exp := s.GetExpiresAt(tt); !exp.IsZero() {
			g.expiresAt = pgtype.Timestamptz{Valid: true, Time: exp}
		}
		b, err := json.Marshal(s)
		if err != nil {
			return grant{}, fmt.Errorf("encode session: %w", err)
		}
		g.session = b
	}
	return g, nil
}

// grantColumns are read from every token table, aliased t, joined to the client c.
const grantColumns = `t.request_id::text, t.requested_at, t.requested_scopes, t.granted_scopes,
	t.requested_aud, t.granted_aud, t.session`

// grantScan holds the scan targets of grantColumns plus the client's.
type grantScan struct {
	requestID   string
	requestedAt time.Time
	reqScopes   []string
	grantScopes []string
	reqAud      []string
	grantAud    []string
	session     []byte
	client      clientScan
}

func (s *grantScan) dest(extra ...any) []any {
	d := []any{&s.requestID, &s.requestedAt, &s.reqScopes, &s.grantScopes, &s.reqAud, &s.grantAud, &s.session}
	d = append(d, extra...)
	return append(d, s.client.dest()...)
}

// request rebuilds the fosite.Request, decoding the stored session into session
// (the object fosite passed in, as fosite expects). A disabled client's tokens
// are reported as not found.
func (s *grantScan) request(session fosite.Session) (*fosite.Request, error) {
	client, err := s.client.client()
	if err != nil {
		return nil, err
	}
	if client.DisabledAt != nil {
		return nil, fmt.Errorf("client %q is disabled: %w", client.ID, ErrNotFound)
	}
	if session != nil && len(s.session) > 0 && string(s.session) != "null" {
		if err := json.Unmarshal(s.session, session); err != nil {
			return nil, fmt.Errorf("decode session: %w", err)
		}
	}
	return &fosite.Request{
		ID:                s.requestID,
		RequestedAt:       s.requestedAt.UTC(),
		Client:            client,
		RequestedScope:    fosite.Arguments(s.reqScopes),
		GrantedScope:      fosite.Arguments(s.grantScopes),
		RequestedAudience: fosite.Arguments(s.reqAud),
		GrantedAudience:   fosite.Arguments(s.grantAud),
		Form:              url.Values{},
		Session:           session,
	}, nil
}

// ---- authorization codes (oauth2.AuthorizeCodeStorage) and PKCE ----

const selectCode = `SELECT ` + grantColumns + `, t.active, t.redirect_uri, t.code_challenge, t.code_challenge_method, ` +
	clientColumns + ` FROM oauth_codes t JOIN oauth_clients c ON c.id = t.client_id WHERE t.sig_hash = $1`

// codeRow is a scanned oauth_codes row.
type codeRow struct {
	grantScan
	active          bool
	redirectURI     *string
	challenge       *string
	challengeMethod *string
}

func (db *DB) getCode(ctx context.Context, signature string) (*codeRow, error) {
	var r codeRow
	err := db.q(ctx).QueryRow(ctx, selectCode, sigHash(signature)).
		Scan(r.dest(&r.active, &r.redirectURI, &r.challenge, &r.challengeMethod)...)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// CreateAuthorizeCodeSession stores a new authorization code. fosite passes a
// request sanitised to the code and redirect_uri form values; only redirect_uri
// is kept (RFC 6749 §4.1.3 compares it at the token endpoint).
func (db *DB) CreateAuthorizeCodeSession(ctx context.Context, code string, request fosite.Requester) error {
	g, err := newGrant(request, fosite.AuthorizeCode)
	if err != nil {
		return fmt.Errorf("create authorize code: %w", err)
	}
	_, err = db.q(ctx).Exec(ctx, `
		INSERT INTO oauth_codes (sig_hash, request_id, client_id, subject, requested_at, expires_at,
			requested_scopes, granted_scopes, requested_aud, granted_aud, redirect_uri, session)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		sigHash(code), g.requestID, g.clientID, g.subject, g.requestedAt, g.expiresAt,
		g.reqScopes, g.grantScopes, g.reqAud, g.grantAud,
		nullString(request.GetRequestForm().Get("redirect_uri")), g.session)
	return dbErr("create authorize code", err)
}

// GetAuthorizeCodeSession returns the request of an authorization code. For a code
// that was already used it returns the request together with
// fosite.ErrInvalidatedAuthorizeCode, which makes fosite revoke every token of the
// request (RFC 6749 §4.1.2: a reused code SHOULD revoke what it issued).
func (db *DB) GetAuthorizeCodeSession(ctx context.Context, code string, session fosite.Session) (fosite.Requester, error) {
	c, err := db.ReadAuthorizeCode(ctx, code)
	if err != nil {
		return nil, err
	}
	return c.CodeSession(session)
}

// AuthorizeCode is one read of an authorization code's row, from which
// both of fosite's views of it are built: the code's request
// (GetAuthorizeCodeSession) and its PKCE request (GetPKCERequestSession).
// fosite's code exchange asks for both, one after the other; one read
// serves the two.
type AuthorizeCode struct{ row *codeRow }

// ReadAuthorizeCode reads the code with signature; ErrNotFound when there
// is none.
func (db *DB) ReadAuthorizeCode(ctx context.Context, signature string) (*AuthorizeCode, error) {
	r, err := db.getCode(ctx, signature)
	if err != nil {
		return nil, dbErr("get authorize code", err)
	}
	return &AuthorizeCode{row: r}, nil
}

// CodeSession is what GetAuthorizeCodeSession returns for the code read:
// its request, decoding the stored session into session, with
// fosite.ErrInvalidatedAuthorizeCode when the code was used.
func (c *AuthorizeCode) CodeSession(session fosite.Session) (fosite.Requester, error) {
	r := c.row
	req, err := r.request(session)
	if err != nil {
		return nil, fmt.Errorf("get authorize code: %w", err)
	}
	if r.redirectURI != nil {
		req.Form.Set("redirect_uri", *r.redirectURI)
	}
	if !r.active {
		return req, fmt.Errorf("get authorize code: %w", fosite.ErrInvalidatedAuthorizeCode)
	}
	return req, nil
}

// PKCESession is what GetPKCERequestSession returns for the code read.
func (c *AuthorizeCode) PKCESession(session fosite.Session) (fosite.Requester, error) {
	r := c.row
	if r.challenge == nil {
		return nil, dbErr("get pkce session", pgx.ErrNoRows)
	}
	req, err := r.request(session)
	if err != nil {
		return nil, fmt.Errorf("get pkce session: %w", err)
	}
	req.Form.Set("code_challenge", *r.challenge)
	req.Form.Set("code_challenge_method", deref(r.challengeMethod))
	return req, nil
}

// InvalidateAuthorizeCodeSession marks a code used. The UPDATE is conditional on
// the code being active, so of concurrent exchanges of one code exactly one
// succeeds; the others get ErrCodeUsed (closing the race of ory/fosite#778).
func (db *DB) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	tag, err := db.q(ctx).Exec(ctx,
		`UPDATE oauth_codes SET active = false, used_at = now() WHERE sig_hash = $1 AND active`, sigHash(code))
	if err != nil {
		return dbErr("invalidate authorize code", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("invalidate authorize code: %w", ErrCodeUsed)
	}
	return nil
}

// CreatePKCERequestSession stores the PKCE challenge on the code row created just
// before by CreateAuthorizeCodeSession (fosite keys PKCE by the code signature).
func (db *DB) CreatePKCERequestSession(ctx context.Context, signature string, requester fosite.Requester) error {
	form := requester.GetRequestForm()
	tag, err := db.q(ctx).Exec(ctx,
		`UPDATE oauth_codes SET code_challenge = $2, code_challenge_method = $3 WHERE sig_hash = $1`,
		sigHash(signature), form.Get("code_challenge"), form.Get("code_challenge_method"))
	if err != nil {
		return dbErr("create pkce session", err)
	}
	if tag.RowsAffected() == 0 {
		return dbErr("create pkce session: no authorize code", pgx.ErrNoRows)
	}
	return nil
}

// GetPKCERequestSession returns the code's request with the code_challenge and
// code_challenge_method form values, or ErrNotFound when the code has no (or no
// longer a) challenge.
func (db *DB) GetPKCERequestSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	r, err := db.getCode(ctx, signature)
	if err != nil {
		return nil, dbErr("get pkce session", err)
	}
	return (&AuthorizeCode{row: r}).PKCESession(session)
}

// DeletePKCERequestSession clears the code's challenge.
func (db *DB) DeletePKCERequestSession(ctx context.Context, signature string) error {
	_, err := db.q(ctx).Exec(ctx,
		`UPDATE oauth_codes SET code_challenge = NULL, code_challenge_method = NULL
		 WHERE sig_hash = $1 AND code_challenge IS NOT NULL`, sigHash(signature))
	return dbErr("delete pkce session", err)
}

// ---- access tokens (oauth2.AccessTokenStorage) ----

const selectAccess = `SELECT ` + grantColumns + `, ` + clientColumns +
	` FROM oauth_access_tokens t JOIN oauth_clients c ON c.id = t.client_id WHERE t.sig_hash = $1`

// CreateAccessTokenSession stores an access token (JWT access tokens too: their
// row is what revocation and introspection look up).
func (db *DB) CreateAccessTokenSession(ctx context.Context, signature string, request fosite.Requester) error {
	g, err := newGrant(request, fosite.AccessToken)
	if err != nil {
		return fmt.Errorf("create access token: %w", err)
	}
	_, err = db.q(ctx).Exec(ctx, `
		INSERT INTO oauth_access_tokens (sig_hash, request_id, client_id, subject, requested_at, expires_at,
			requested_scopes, granted_scopes, requested_aud, granted_aud, session)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		sigHash(signature), g.requestID, g.clientID, g.subject, g.requestedAt, g.expiresAt,
		g.reqScopes, g.grantScopes, g.reqAud, g.grantAud, g.session)
	return dbErr("create access token", err)
}

// GetAccessTokenSession returns the request of an access token, or ErrNotFound.
func (db *DB) GetAccessTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	var s grantScan
	if err := db.q(ctx).QueryRow(ctx, selectAccess, sigHash(signature)).Scan(s.dest()...); err != nil {
		return nil, dbErr("get access token", err)
	}
	req, err := s.request(session)
	if err != nil {
		return nil, fmt.Errorf("get access token: %w", err)
	}
	return req, nil
}

// DeleteAccessTokenSession deletes one access token; deleting a missing one is not an error.
func (db *DB) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	_, err := db.q(ctx).Exec(ctx, `DELETE FROM oauth_access_tokens WHERE sig_hash = $1`, sigHash(signature))
	return dbErr("delete access token", err)
}

// RevokeAccessToken revokes the whole grant requestID, as RevokeGrant does
// (revocation.go): its access tokens are deleted, its code and refresh tokens
// made inactive, and the revocation recorded and published in the same
// transaction. fosite calls it together with RevokeRefreshToken (/revoke,
// refresh token reuse, code reuse); either one alone revokes everything.
func (db *DB) RevokeAccessToken(ctx context.Context, requestID string) error {
	if _, err := uuid.Parse(requestID); err != nil {
		return nil // not one of our request ids: nothing to revoke
	}
	_, err := db.revokeGrants(ctx, "revoke access tokens", []string{requestID})
	return err
}

// ---- refresh tokens (oauth2.RefreshTokenStorage, oauth2.TokenRevocationStorage) ----

// selectRefresh reads a refresh token; its active column is true for an active
// token and for the immediately previous token of its grant within the grace
// window of $2 seconds (inGrace).
const selectRefresh = `SELECT ` + grantColumns + `, t.active OR (` + inGrace + `), t.used_at IS NOT NULL, ` + clientColumns +
	` FROM oauth_refresh_tokens t JOIN oauth_clients c ON c.id = t.client_id WHERE t.sig_hash = $1`

// inGrace holds for the rotated refresh token t when it was rotated less than $2
// seconds ago, no token of its grant was rotated after it, and its grant still
// has an active token (it was not revoked). With $2 = 0 it never holds.
const inGrace = `$2::float8 > 0 AND NOT t.active AND t.used_at IS NOT NULL
	AND t.used_at > now() - make_interval(secs => $2::float8)
	AND NOT EXISTS (SELECT 1 FROM oauth_refresh_tokens n WHERE n.request_id = t.request_id AND n.used_at > t.used_at)
	AND EXISTS (SELECT 1 FROM oauth_refresh_tokens a WHERE a.request_id = t.request_id AND a.active)`

// CreateRefreshTokenSession stores a refresh token paired with the access token
// issued with it (accessSignature may be empty).
func (db *DB) CreateRefreshTokenSession(ctx context.Context, signature, accessSignature string, request fosite.Requester) error {
	g, err := newGrant(request, fosite.RefreshToken)
	if err != nil {
		return fmt.Errorf("create refresh token: %w", err)
	}
	var accessHash []byte
	if accessSignature != "" {
		accessHash = sigHash(accessSignature)
	}
	_, err = db.q(ctx).Exec(ctx, `
		INSERT INTO oauth_refresh_tokens (sig_hash, request_id, client_id, subject, requested_at, expires_at,
			access_sig_hash, requested_scopes, granted_scopes, requested_aud, granted_aud, session)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		sigHash(signature), g.requestID, g.clientID, g.subject, g.requestedAt, g.expiresAt,
		accessHash, g.reqScopes, g.grantScopes, g.reqAud, g.grantAud, g.session)
	return dbErr("create refresh token", err)
}

// GetRefreshTokenSession returns the request of a refresh token. For a rotated or
// revoked token it returns the request together with fosite.ErrInactiveToken, so
// fosite's reuse detection revokes the whole grant (OAuth 2.1 §4.3.1, RFC 9700
// §4.14.2: refresh token rotation with replay detection).
func (db *DB) GetRefreshTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	return db.GetRefreshTokenSessionGrace(ctx, signature, session, 0)
}

// GetRefreshTokenSessionGrace is GetRefreshTokenSession with a grace window:
// a rotated token still counts as active for grace after its rotation, so a
// client whose refresh response was lost can retry, but only while it is the
// grant's immediately previous token (the most recently rotated one, and the
// grant still has an active token: a revoked grant has none). Older tokens and
// tokens of revoked grants are inactive at once (django-oauth-toolkit#1617).
func (db *DB) GetRefreshTokenSessionGrace(ctx context.Context, signature string, session fosite.Session, grace time.Duration) (fosite.Requester, error) {
	var (
		s             grantScan
		active, spent bool
	)
	if err := db.q(ctx).QueryRow(ctx, selectRefresh, sigHash(signature), grace.Seconds()).Scan(s.dest(&active, &spent)...); err != nil {
		return nil, dbErr("get refresh token", err)
	}
	req, err := s.request(session)
	if err != nil {
		return nil, fmt.Errorf("get refresh token: %w", err)
	}
	switch {
	case !active && spent:
		return req, fmt.Errorf("get refresh token: %w: %w", ErrRefreshTokenReused, fosite.ErrInactiveToken)
	case !active:
		return req, fmt.Errorf("get refresh token: %w", fosite.ErrInactiveToken)
	}
	return req, nil
}

// DeleteRefreshTokenSession deletes one refresh token; deleting a missing one is not an error.
func (db *DB) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	_, err := db.q(ctx).Exec(ctx, `DELETE FROM oauth_refresh_tokens WHERE sig_hash = $1`, sigHash(signature))
	return dbErr("delete refresh token", err)
}

// RotateRefreshToken marks the refresh token used. The row stays (inactive) until
// it expires, so a replay is detected. The access token it was issued with is
// kept too: a JWT works at /mcp until it expires, so its row must stay for
// /revoke to find it (and revoke its grant) and for /introspect to say the
// truth; cleanup deletes it when it expires. The UPDATE is conditional on the token being active: when
// a concurrent request rotated it first, 0 rows change and the result is
// fosite.ErrSerializationFailure (fosite answers "retry").
func (db *DB) RotateRefreshToken(ctx context.Context, requestID, refreshTokenSignature string) error {
	return db.RotateRefreshTokenGrace(ctx, requestID, refreshTokenSignature, 0)
}

// RotateRefreshTokenGrace is RotateRefreshToken with the grace window of
// GetRefreshTokenSessionGrace: rotating the grant's immediately previous token
// within grace after its rotation (a client retrying a refresh whose response it
// lost) retires, instead, the token that rotation issued.
// That token is left inactive without a use time, so presenting it later counts
// as reuse and revokes the grant. The previous token's own use time is not moved,
// so retries never extend the window.
func (db *DB) RotateRefreshTokenGrace(ctx context.Context, requestID, refreshTokenSignature string, grace time.Duration) error {
	if _, err := uuid.Parse(requestID); err != nil {
		return fmt.Errorf("rotate refresh token: request id is not a UUID: %w", fosite.ErrNotFound)
	}
	var n int
	err := db.q(ctx).QueryRow(ctx, `
		WITH rotated AS (
			UPDATE oauth_refresh_tokens SET active = false, used_at = now()
			WHERE sig_hash = $1 AND request_id = $2 AND active
			RETURNING 1
		)
		SELECT count(*) FROM rotated`, sigHash(refreshTokenSignature), requestID).Scan(&n)
	if err != nil {
		return dbErr("rotate refresh token", err)
	}
	if n == 0 && grace > 0 {
		err = db.q(ctx).QueryRow(ctx, `
			WITH prev AS (
				SELECT 1 FROM oauth_refresh_tokens t WHERE t.sig_hash = $1 AND t.request_id = $2 AND (`+inGraceRotate+`)
			), retired AS (
				UPDATE oauth_refresh_tokens s SET active = false
				WHERE s.request_id = $2 AND s.active AND EXISTS (SELECT 1 FROM prev)
				RETURNING 1
			)
			SELECT count(*) FROM retired`, sigHash(refreshTokenSignature), requestID, grace.Seconds()).Scan(&n)
		if err != nil {
			return dbErr("rotate refresh token in grace", err)
		}
	}
	if n == 0 {
		return fmt.Errorf("rotate refresh token: not active: %w", fosite.ErrSerializationFailure)
	}
	return nil
}

// inGraceRotate is inGrace with the grace in $3 (the statement's $2 is the
// request id).
var inGraceRotate = strings.ReplaceAll(inGrace, "$2", "$3")

// RevokeRefreshToken revokes the whole grant requestID, as RevokeAccessToken
// does. Its refresh tokens are marked inactive, not deleted, so a later use
// is still detected as reuse; "AND active" leaves already inactive rows
// untouched (ory/hydra#3137).
func (db *DB) RevokeRefreshToken(ctx context.Context, requestID string) error {
	if _, err := uuid.Parse(requestID); err != nil {
		return nil // not one of our request ids: nothing to revoke
	}
	_, err := db.revokeGrants(ctx, "revoke refresh tokens", []string{requestID})
	return err
}

// ---- client assertion JTIs (fosite.ClientManager) ----

// ClientAssertionJWTValid returns fosite.ErrJTIKnown when the jti of a
// private_key_jwt client assertion was already used and has not expired
// (RFC 7523 §3: the server may reject a reused jti).
func (db *DB) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	var known bool
	err := db.q(ctx).QueryRow(ctx,
		`SELECT EXISTS (SELECT 1 FROM oauth_jti WHERE jti_hash = $1 AND expires_at >= now())`, sigHash(jti)).Scan(&known)
	if err != nil {
		return dbErr("check client assertion jti", err)
	}
	if known {
		return fmt.Errorf("check client assertion jti: %w", fosite.ErrJTIKnown)
	}
	return nil
}

// SetClientAssertionJWT records a jti until exp. A jti that is still recorded and
// not expired gives fosite.ErrJTIKnown (the insert is atomic, so of two concurrent
// uses one fails).
func (db *DB) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	tag, err := db.q(ctx).Exec(ctx, `
		INSERT INTO oauth_jti (jti_hash, expires_at) VALUES ($1, $2)
		ON CONFLICT (jti_hash) DO UPDATE SET expires_at = EXCLUDED.expires_at
		WHERE oauth_jti.expires_at < now()`, sigHash(jti), exp)
	if err != nil {
		return dbErr("record client assertion jti", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("record client assertion jti: %w", fosite.ErrJTIKnown)
	}
	return nil
}
