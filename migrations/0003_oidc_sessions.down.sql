ALTER TABLE oauth_codes DROP COLUMN oidc_params;
