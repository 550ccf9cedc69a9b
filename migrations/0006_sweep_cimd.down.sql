CREATE INDEX oauth_clients_unused_dcr_idx ON oauth_clients (created_at)
  WHERE source = 'dcr' AND last_used_at IS NULL;
DROP INDEX oauth_clients_unused_idx;
