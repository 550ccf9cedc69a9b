-- 0003_oidc_sessions: the OpenID Connect parameters of an authorization request
-- (nonce, max_age, prompt, ...) that fosite's explicit OIDC flow needs again at
-- the token endpoint to issue the id_token. They live on the code row they
-- belong to, so they expire and are cleaned up with it; NULL means the grant is
-- not an OpenID Connect one (or its id_token was issued).
ALTER TABLE oauth_codes ADD COLUMN oidc_params jsonb;
