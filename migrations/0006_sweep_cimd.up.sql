-- 0006_sweep_cimd: the unused-client sweeper also deletes clients known by
-- their metadata document that never obtained a grant (anyone can make the
-- server store one per document it hosts; a later use fetches it again).
CREATE INDEX oauth_clients_unused_idx ON oauth_clients (created_at)
  WHERE source IN ('dcr', 'cimd') AND last_used_at IS NULL;
DROP INDEX oauth_clients_unused_dcr_idx;
