-- 0002_client_sweep: the sweeper of unused dynamically registered clients
-- (storage.DeleteUnusedClients) looks only at clients that were registered
-- through RFC 7591 and never used, oldest first. A client leaves this index
-- as soon as it is used, so the sweep does not rescan every active client.
CREATE INDEX oauth_clients_unused_dcr_idx ON oauth_clients (created_at)
  WHERE source = 'dcr' AND last_used_at IS NULL;
