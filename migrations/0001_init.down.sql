-- Reverses 0001_init: drops every table it created (their indexes go with them).
DROP TABLE IF EXISTS signing_keys;
DROP TABLE IF EXISTS audit_events;
DROP TABLE IF EXISTS browser_sessions;
DROP TABLE IF EXISTS oauth_consents;
DROP TABLE IF EXISTS users;
DROP TABLE IF EXISTS oauth_jti;
DROP TABLE IF EXISTS oauth_refresh_tokens;
DROP TABLE IF EXISTS oauth_access_tokens;
DROP TABLE IF EXISTS oauth_codes;
DROP TABLE IF EXISTS oauth_clients;
