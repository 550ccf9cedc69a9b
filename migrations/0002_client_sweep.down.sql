DROP INDEX IF EXISTS oauth_clients_unused_dcr_idx;
