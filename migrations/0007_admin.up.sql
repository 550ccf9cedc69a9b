-- 0007_admin: issue 6 — personal access tokens, and the indexes of the admin
-- console's and the audit log's queries.

-- Personal access tokens: a user's named, scoped, expiring bearer token for
-- /mcp. Only sha256 of the token is stored. The id is the token's grant id:
-- revoking one records it in revoked_grants and notifies every replica, like
-- a grant.
CREATE TABLE personal_access_tokens (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  token_hash   bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
  user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  name         text NOT NULL CHECK (name <> ''),
  scopes       text[] NOT NULL,
  audience     text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  last_used_at timestamptz,
  revoked_at   timestamptz,
  created_by   text NOT NULL DEFAULT ''
);
CREATE INDEX personal_access_tokens_user_id_idx ON personal_access_tokens (user_id, created_at);
CREATE INDEX personal_access_tokens_expires_at_idx ON personal_access_tokens (expires_at);

-- The audit log is read newest first (id order), filtered by one of these.
CREATE INDEX audit_events_actor_idx ON audit_events (actor, id);
CREATE INDEX audit_events_subject_idx ON audit_events (subject, id);
CREATE INDEX audit_events_client_id_idx ON audit_events (client_id, id);
CREATE INDEX audit_events_event_idx ON audit_events (event, id);

-- The console lists clients by source, in id order (keyset paging).
CREATE INDEX oauth_clients_source_idx ON oauth_clients (source, id);
