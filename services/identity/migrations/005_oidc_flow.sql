-- The OpenID Connect authorization-code flow (docs/oidc.md, "Identity's
-- side of the flow"): client settings, codes, grants with their refresh
-- tokens and recorded access tokens, consents, and the pending TOTP secret.
--
-- None of these rows belongs to a school on its own: each belongs to a
-- person and a client, and goes with either (ON DELETE CASCADE). A client of
-- one school already goes with its school (004), and with it everything
-- issued to it. Codes and tokens are kept only as SHA-256 of 32 random
-- bytes, so a dump of these tables holds nothing that can be presented.

-- Kreide's own apps skip the consent page; only operators set it.
ALTER TABLE oidc_clients ADD COLUMN first_party boolean NOT NULL DEFAULT false;
-- Where RP-Initiated Logout may send the browser back to; the same rules as
-- redirect URIs (kr_oauth_redirect_uri_check).
ALTER TABLE oidc_clients ADD COLUMN post_logout_redirect_uris text[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(post_logout_redirect_uris) <= 16);

-- TOTP enrolment: SetupTotp stores a new secret here, ConfirmTotp moves it
-- to totp_secret (003) with the first code. A pending secret is good for
-- a limited time from totp_pending_at.
ALTER TABLE users ADD COLUMN totp_pending_secret bytea
    CHECK (totp_pending_secret IS NULL OR octet_length(totp_pending_secret) = 20);
ALTER TABLE users ADD COLUMN totp_pending_at timestamptz;
ALTER TABLE users ADD COLUMN totp_enabled_at timestamptz;
ALTER TABLE users ADD CONSTRAINT users_totp_pending_pair
    CHECK ((totp_pending_secret IS NULL) = (totp_pending_at IS NULL));
ALTER TABLE users ADD CONSTRAINT users_totp_secret_length
    CHECK (totp_secret IS NULL OR octet_length(totp_secret) = 20);

-- A grant: what one redeemed code started, a "family" of refresh tokens
-- and access tokens. Revoking it ends every refresh token of the family;
-- the access tokens recorded below are revoked in Redis at the same time.
CREATE TABLE oidc_grants (
    id             uuid PRIMARY KEY,
    client_id      text NOT NULL REFERENCES oidc_clients (id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Space-separated, as granted; always with openid.
    scope          text NOT NULL CHECK (scope ~ '(^| )openid( |$)' AND char_length(scope) <= 2200),
    session_id     uuid NOT NULL,
    auth_time      bigint NOT NULL CHECK (auth_time > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason text CHECK (revoked_reason IN ('code_replayed', 'refresh_reused', 'revoked_by_client')),
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
CREATE INDEX oidc_grants_user ON oidc_grants (user_id);
CREATE INDEX oidc_grants_client ON oidc_grants (client_id);

-- Authorization codes: single use, short-lived, bound to everything the
-- authorization request said. `grant_id` is set when the code was redeemed,
-- so a replay finds the grant to revoke; a code refused for a wrong
-- redirect URI or verifier is used without a grant.
CREATE TABLE oidc_codes (
    code_hash      bytea PRIMARY KEY CHECK (octet_length(code_hash) = 32),
    client_id      text NOT NULL REFERENCES oidc_clients (id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri   text NOT NULL CHECK (char_length(redirect_uri) BETWEEN 1 AND 2000),
    scope          text NOT NULL CHECK (scope ~ '(^| )openid( |$)' AND char_length(scope) <= 2200),
    nonce          text NOT NULL DEFAULT '' CHECK (octet_length(nonce) <= 512),
    -- The S256 code_challenge (RFC 7636); NULL when the request had none.
    code_challenge text CHECK (code_challenge ~ '^[A-Za-z0-9_-]{43}$'),
    session_id     uuid NOT NULL,
    auth_time      bigint NOT NULL CHECK (auth_time > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    grant_id       uuid REFERENCES oidc_grants (id) ON DELETE CASCADE,
    CHECK (expires_at > created_at),
    CHECK (grant_id IS NULL OR used_at IS NOT NULL)
);
CREATE INDEX oidc_codes_expires ON oidc_codes (expires_at);
CREATE INDEX oidc_codes_grant ON oidc_codes (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX oidc_codes_user ON oidc_codes (user_id);
CREATE INDEX oidc_codes_client ON oidc_codes (client_id);

-- Refresh tokens: each use rotates it (used_at set, a new one issued). A
-- family has at most one token that is not used yet.
CREATE TABLE oidc_refresh_tokens (
    token_hash  bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    grant_id    uuid NOT NULL REFERENCES oidc_grants (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CHECK (expires_at > created_at)
);
CREATE UNIQUE INDEX oidc_refresh_tokens_live ON oidc_refresh_tokens (grant_id) WHERE used_at IS NULL;
CREATE INDEX oidc_refresh_tokens_grant ON oidc_refresh_tokens (grant_id);
CREATE INDEX oidc_refresh_tokens_expires ON oidc_refresh_tokens (expires_at);

-- The jti of every access token the gateway signs for a grant, with its
-- expiry, so that revoking the grant can revoke them in Redis too.
CREATE TABLE oidc_access_tokens (
    jti         uuid PRIMARY KEY,
    grant_id    uuid NOT NULL REFERENCES oidc_grants (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CHECK (expires_at > created_at)
);
CREATE INDEX oidc_access_tokens_grant ON oidc_access_tokens (grant_id);
CREATE INDEX oidc_access_tokens_expires ON oidc_access_tokens (expires_at);

-- The scopes a person allowed a client (third-party clients only); merged
-- when the person allows more.
CREATE TABLE oidc_consents (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id   text NOT NULL REFERENCES oidc_clients (id) ON DELETE CASCADE,
    scopes      text[] NOT NULL CHECK (cardinality(scopes) BETWEEN 1 AND 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_id)
);
CREATE INDEX oidc_consents_client ON oidc_consents (client_id);
