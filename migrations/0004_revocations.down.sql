DROP INDEX oauth_refresh_tokens_subject_idx;
DROP INDEX oauth_access_tokens_subject_idx;
DROP TABLE revoked_grants;
