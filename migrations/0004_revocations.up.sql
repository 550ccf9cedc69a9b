-- 0004_revocations: revoked grants, the revocation fan-out's source of truth
-- (DESIGN §4). A grant is one fosite request id: the authorization code, every
-- refresh token and every access token issued from one authorization (or one
-- client_credentials request) share it, and access tokens carry it as their
-- grant_id claim. Every revocation inserts the grant here in the transaction
-- that revokes its tokens and sends pg_notify('mcpauth_revocations', grant_id);
-- each replica keeps the unexpired rows in memory and refuses their access
-- tokens without a database round trip.
--
-- expires_at is the latest expiry of any access token of the grant: after it
-- (plus the verifiers' clock leeway) no token of the grant can pass, and the
-- cleanup loop deletes the row.
CREATE TABLE revoked_grants (
  grant_id   uuid PRIMARY KEY,
  revoked_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX revoked_grants_expires_at_idx ON revoked_grants (expires_at);

-- Revoking or listing a user's grants looks tokens up by subject. Partial
-- indexes leave client_credentials tokens (subject '') out, so the hottest
-- insert path pays nothing for them.
CREATE INDEX oauth_access_tokens_subject_idx ON oauth_access_tokens (subject) WHERE subject <> '';
CREATE INDEX oauth_refresh_tokens_subject_idx ON oauth_refresh_tokens (subject) WHERE subject <> '';
