package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"
)

// OpenID Connect request storage (fosite's openid.OpenIDConnectRequestStorage,
// explicit flow). fosite keys these sessions by the authorization code; they are
// kept here by the code's signature instead, on the code's own row
// (oauth_codes.oidc_params), so they expire and are cleaned up with the code and
// the database never holds the code. The caller (authz) turns the code into its
// signature with fosite's own strategy.

// oidcParams are the only authorization request parameters the id_token needs
// again at the token endpoint (fosite's openid handler keeps these and no other).
var oidcParams = []string{"nonce", "max_age", "prompt", "acr_values", "id_token_hint"}

// CreateOIDCSession records the OpenID Connect parameters of the authorization
// request on the row of the code with signature codeSignature, which
// CreateAuthorizeCodeSession stored just before. A missing code is ErrNotFound.
func (db *DB) CreateOIDCSession(ctx context.Context, codeSignature string, request fosite.Requester) error {
	params := map[string][]string{}
	form := request.GetRequestForm()
	for _, p := range oidcParams {
		if v, ok := form[p]; ok {
			params[p] = v
		}
	}
	b, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("create oidc session: %w", err)
	}
	tag, err := db.q(ctx).Exec(ctx, `UPDATE oauth_codes SET oidc_params = $2 WHERE sig_hash = $1`, sigHash(codeSignature), b)
	if err != nil {
		return dbErr("create oidc session", err)
	}
	if tag.RowsAffected() == 0 {
		return dbErr("create oidc session: no authorize code", pgx.ErrNoRows)
	}
	return nil
}

const selectOIDC = `SELECT ` + grantColumns + `, t.oidc_params, ` + clientColumns +
	` FROM oauth_codes t JOIN oauth_clients c ON c.id = t.client_id WHERE t.sig_hash = $1 AND t.oidc_params IS NOT NULL`

// GetOIDCSession returns the authorization request of the code with signature
// codeSignature with its OpenID Connect parameters as the form, the stored
// session decoded into session. It answers whether or not the code was used
// (fosite issues the id_token after the code was invalidated), and ErrNotFound
// when the code has no OpenID Connect session.
func (db *DB) GetOIDCSession(ctx context.Context, codeSignature string, session fosite.Session) (fosite.Requester, error) {
	var (
		s      grantScan
		params []byte
	)
	if err := db.q(ctx).QueryRow(ctx, selectOIDC, sigHash(codeSignature)).Scan(s.dest(&params)...); err != nil {
		return nil, dbErr("get oidc session", err)
	}
	req, err := s.request(session)
	if err != nil {
		return nil, fmt.Errorf("get oidc session: %w", err)
	}
	var form map[string][]string
	if err := json.Unmarshal(params, &form); err != nil {
		return nil, fmt.Errorf("get oidc session: decode parameters: %w", err)
	}
	req.Form = url.Values(form)
	if req.Form == nil {
		req.Form = url.Values{}
	}
	return req, nil
}

// DeleteOIDCSession forgets the OpenID Connect parameters of the code with
// signature codeSignature (its id_token was issued). Deleting a missing one is
// not an error.
func (db *DB) DeleteOIDCSession(ctx context.Context, codeSignature string) error {
	_, err := db.q(ctx).Exec(ctx,
		`UPDATE oauth_codes SET oidc_params = NULL WHERE sig_hash = $1 AND oidc_params IS NOT NULL`, sigHash(codeSignature))
	return dbErr("delete oidc session", err)
}
