-- OpenID Connect clients. A confidential client's secret is 32 random bytes
-- shown once; only its SHA-256 is kept (a random secret of that length needs
-- no slow hash). Public clients have none.
CREATE TABLE oidc_clients (
    id            text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{22}$'),
    name          text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    type          text NOT NULL CHECK (type IN ('confidential', 'public')),
    secret_hash   bytea CHECK (secret_hash IS NULL OR octet_length(secret_hash) = 32),
    redirect_uris text[] NOT NULL DEFAULT '{}',
    grant_types   text[] NOT NULL CHECK (grant_types <@ ARRAY['authorization_code', 'refresh_token', 'client_credentials']),
    scopes        text[] NOT NULL DEFAULT '{}',
    id_token_alg  text NOT NULL DEFAULT 'ES256' CHECK (id_token_alg IN ('ES256', 'RS256')),
    -- A client of one school; NULL for installation-wide clients.
    school_id     uuid REFERENCES schools (id) ON DELETE CASCADE,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz,
    CHECK ((type = 'confidential') = (secret_hash IS NOT NULL)),
    CHECK (type = 'confidential' OR NOT ('client_credentials' = ANY (grant_types)))
);
CREATE INDEX oidc_clients_school ON oidc_clients (school_id) WHERE school_id IS NOT NULL;
