package storage

import (
	"context"
	"time"
)

// Consent is what a user approved for a client: the scopes and audiences
// they granted last time. A later request asking for no more than that is
// approved without asking again.
type Consent struct {
	UserID    string
	ClientID  string
	Scopes    []string
	Audiences []string
	GrantedAt time.Time
	UpdatedAt time.Time
	ExpiresAt *time.Time // nil: until revoked
}

// Consent returns the user's live consent for the client: not revoked, not
// expired. ErrNotFound when there is none.
func (db *DB) Consent(ctx context.Context, userID, clientID string) (*Consent, error) {
	c := Consent{UserID: userID, ClientID: clientID}
	err := db.q(ctx).QueryRow(ctx, `
		SELECT scopes, audiences, granted_at, updated_at, expires_at
		FROM oauth_consents
		WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL
		  AND (expires_at IS NULL OR expires_at > now())`,
		userID, clientID).Scan(&c.Scopes, &c.Audiences, &c.GrantedAt, &c.UpdatedAt, &c.ExpiresAt)
	if err != nil {
		return nil, dbErr("get consent", err)
	}
	return &c, nil
}

// SaveConsent records the user's latest decision for the client, replacing
// the previous one (a narrower approval narrows what is remembered) and
// reviving a revoked one.
func (db *DB) SaveConsent(ctx context.Context, c Consent) error {
	_, err := db.q(ctx).Exec(ctx, `
		INSERT INTO oauth_consents (user_id, client_id, scopes, audiences, expires_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, client_id) DO UPDATE
		SET scopes = EXCLUDED.scopes, audiences = EXCLUDED.audiences,
		    expires_at = EXCLUDED.expires_at, updated_at = now(), revoked_at = NULL,
		    granted_at = CASE WHEN oauth_consents.revoked_at IS NULL THEN oauth_consents.granted_at ELSE now() END`,
		c.UserID, c.ClientID, nonNil(c.Scopes), nonNil(c.Audiences), c.ExpiresAt)
	return dbErr("save consent", err)
}
