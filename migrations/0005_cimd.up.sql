-- 0005_cimd: Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document).
-- A client identified by an https URL is an oauth_clients row with source
-- 'cimd' (tokens reference it by foreign key, like any client); the row is
-- rebuilt from the document each time it is fetched. cimd_documents says when
-- that was and until when the copy is fresh (Cache-Control / Expires, clamped
-- by the server), so every replica shares one cache.
CREATE TABLE cimd_documents (
  client_id  text PRIMARY KEY REFERENCES oauth_clients (id) ON DELETE CASCADE,
  fetched_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL
);

-- The negative cache: a document that could not be fetched or was invalid is
-- not fetched again before expires_at; the same error is answered instead.
-- Keyed by sha256 of the URL, so an attacker-chosen URL of any length costs
-- 32 bytes of key.
CREATE TABLE cimd_failures (
  url_hash    bytea PRIMARY KEY CHECK (octet_length(url_hash) = 32),
  code        text NOT NULL,
  description text NOT NULL,
  expires_at  timestamptz NOT NULL
);
CREATE INDEX cimd_failures_expires_at_idx ON cimd_failures (expires_at);
