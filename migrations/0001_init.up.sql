-- 0001_init: the whole mcpauth schema (fosite storage, users, browser sessions,
-- consent, audit log, signing keys). See shared/reference/fosite-notes.md §13.
--
-- Token rows never hold a token or a fosite signature: the primary key is
-- sha256(signature), 32 bytes, so a dump of this database yields nothing replayable.
-- Every token row carries request_id (the grant family fosite revokes by) and a
-- NOT NULL expires_at ('infinity' when fosite sets no expiry) for the cleanup loop.

CREATE TABLE oauth_clients (
  id                              text PRIMARY KEY,                 -- random >= 128-bit id, or a URL (CIMD)
  secret_hash                     bytea,                            -- NULL for token_endpoint_auth_method 'none'
  secret_hash_alg                 text,                             -- e.g. 'sha256', 'argon2id', 'bcrypt'
  rotated_secret_hashes           bytea[] NOT NULL DEFAULT '{}',    -- fosite.ClientWithSecretRotation
  secret_expires_at               timestamptz,                      -- RFC 7591 client_secret_expires_at; NULL = never
  token_endpoint_auth_method      text NOT NULL CHECK (token_endpoint_auth_method IN
                                    ('none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt')),
  token_endpoint_auth_signing_alg text,
  redirect_uris                   text[] NOT NULL DEFAULT '{}',
  grant_types                     text[] NOT NULL DEFAULT '{}',
  response_types                  text[] NOT NULL DEFAULT '{}',
  scopes                          text[] NOT NULL DEFAULT '{}',
  audiences                       text[] NOT NULL DEFAULT '{}',     -- allowed RFC 8707 resources
  jwks                            jsonb,
  jwks_uri                        text,
  metadata                        jsonb NOT NULL DEFAULT '{}',      -- client_name, client_uri, logo_uri, contacts, ...
  registration_token_hash         bytea,                            -- RFC 7592 registration_access_token, sha256
  source                          text NOT NULL CHECK (source IN ('dcr', 'admin', 'cimd')),
  created_at                      timestamptz NOT NULL DEFAULT now(),
  updated_at                      timestamptz NOT NULL DEFAULT now(),
  last_used_at                    timestamptz,
  disabled_at                     timestamptz,
  CHECK (secret_hash IS NULL OR token_endpoint_auth_method <> 'none')
);
CREATE INDEX oauth_clients_created_at_idx ON oauth_clients (created_at);

-- Authorization codes, with the PKCE columns merged in (same key: the code signature).
CREATE TABLE oauth_codes (
  sig_hash              bytea PRIMARY KEY CHECK (octet_length(sig_hash) = 32),
  request_id            uuid NOT NULL,
  client_id             text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
  subject               text NOT NULL,
  requested_at          timestamptz NOT NULL,
  expires_at            timestamptz NOT NULL,
  active                boolean NOT NULL DEFAULT true,
  used_at               timestamptz,
  requested_scopes      text[] NOT NULL,
  granted_scopes        text[] NOT NULL,
  requested_aud         text[] NOT NULL,
  granted_aud           text[] NOT NULL,
  redirect_uri          text,
  code_challenge        text,                                       -- DeletePKCERequestSession sets NULL
  code_challenge_method text,
  session               jsonb NOT NULL
) WITH (fillfactor = 90);                                           -- HOT updates on invalidation / PKCE
CREATE INDEX oauth_codes_request_id_idx ON oauth_codes (request_id);
CREATE INDEX oauth_codes_client_id_idx ON oauth_codes (client_id);
CREATE INDEX oauth_codes_expires_at_idx ON oauth_codes (expires_at);

CREATE TABLE oauth_access_tokens (
  sig_hash         bytea PRIMARY KEY CHECK (octet_length(sig_hash) = 32),
  request_id       uuid NOT NULL,
  client_id        text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
  subject          text NOT NULL,                                   -- '' for client_credentials
  requested_at     timestamptz NOT NULL,
  expires_at       timestamptz NOT NULL,
  requested_scopes text[] NOT NULL,
  granted_scopes   text[] NOT NULL,
  requested_aud    text[] NOT NULL,
  granted_aud      text[] NOT NULL,
  session          jsonb NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.02);
CREATE INDEX oauth_access_tokens_request_id_idx ON oauth_access_tokens (request_id);
CREATE INDEX oauth_access_tokens_client_id_idx ON oauth_access_tokens (client_id);
CREATE INDEX oauth_access_tokens_expires_at_idx ON oauth_access_tokens (expires_at);

-- Rotated refresh tokens stay here, inactive, until their own expires_at so that a
-- replay is detected (fosite-notes §6). Rotation updates only active/used_at, which are
-- not indexed, so with fillfactor 90 those updates stay HOT.
CREATE TABLE oauth_refresh_tokens (
  sig_hash         bytea PRIMARY KEY CHECK (octet_length(sig_hash) = 32),
  request_id       uuid NOT NULL,                                   -- the token family
  client_id        text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
  subject          text NOT NULL,
  requested_at     timestamptz NOT NULL,
  expires_at       timestamptz NOT NULL,
  active           boolean NOT NULL DEFAULT true,
  used_at          timestamptz,
  access_sig_hash  bytea,                                           -- the paired access token
  requested_scopes text[] NOT NULL,
  granted_scopes   text[] NOT NULL,
  requested_aud    text[] NOT NULL,
  granted_aud      text[] NOT NULL,
  session          jsonb NOT NULL
) WITH (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.02);
CREATE INDEX oauth_refresh_tokens_request_id_idx ON oauth_refresh_tokens (request_id);
CREATE INDEX oauth_refresh_tokens_client_id_idx ON oauth_refresh_tokens (client_id);
CREATE INDEX oauth_refresh_tokens_expires_at_idx ON oauth_refresh_tokens (expires_at);

-- private_key_jwt client assertion replay protection (RFC 7523 §3: jti).
CREATE TABLE oauth_jti (
  jti_hash   bytea PRIMARY KEY CHECK (octet_length(jti_hash) = 32),
  expires_at timestamptz NOT NULL
);
CREATE INDEX oauth_jti_expires_at_idx ON oauth_jti (expires_at);

CREATE TABLE users (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  username      text NOT NULL CHECK (username <> ''),
  password_hash text NOT NULL,                                      -- argon2id PHC string
  is_admin      boolean NOT NULL DEFAULT false,
  disabled_at   timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_lower_idx ON users (lower(username));

-- Remembered consent, per user and client.
CREATE TABLE oauth_consents (
  user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  client_id  text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
  scopes     text[] NOT NULL,
  audiences  text[] NOT NULL,
  granted_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,                                           -- NULL = until revoked
  revoked_at timestamptz,
  PRIMARY KEY (user_id, client_id)
);
CREATE INDEX oauth_consents_client_id_idx ON oauth_consents (client_id);
CREATE INDEX oauth_consents_expires_at_idx ON oauth_consents (expires_at);

-- Browser login sessions. The cookie holds a random id; only its sha256 is stored.
CREATE TABLE browser_sessions (
  id_hash      bytea PRIMARY KEY CHECK (octet_length(id_hash) = 32),
  user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  ip           inet,
  user_agent   text
);
CREATE INDEX browser_sessions_user_id_idx ON browser_sessions (user_id);
CREATE INDEX browser_sessions_expires_at_idx ON browser_sessions (expires_at);

CREATE TABLE audit_events (
  id        bigserial PRIMARY KEY,
  at        timestamptz NOT NULL DEFAULT now(),
  event     text NOT NULL,
  actor     text,
  subject   text,
  client_id text,                                                   -- no FK: the log outlives the client
  client_ip inet,
  details   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_at_idx ON audit_events (at);

CREATE TABLE signing_keys (
  kid         text PRIMARY KEY,
  alg         text NOT NULL CHECK (alg IN ('ES256')),
  private_key bytea NOT NULL,          -- AES-256-GCM sealed private key, AAD = kid
  public_jwk  jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  active_from timestamptz NOT NULL,    -- published in the JWKS now, signs from active_from
  retire_at   timestamptz,             -- stops signing
  remove_at   timestamptz              -- leaves the JWKS
);
