-- Refresh tokens rotate in Redis (docs/oidc.md, "Refresh tokens"): a
-- refresh asks Redis to judge and rotate the token in one script, and
-- PostgreSQL keeps the grant, whether it was revoked, and how long its
-- family may refresh. Tokens issued before this migration are refused
-- (the relying party signs the person in again).

DROP TABLE oidc_refresh_tokens;

-- Until when the grant's family may still refresh: set when its first
-- refresh token is issued, moved on by rotations (rarely: to twice the
-- token lifetime ahead whenever a rotation reaches past it). NULL: the
-- grant never had a refresh token. The cleanup keeps a grant while this
-- lies ahead, so a revocation stays on record as long as a token of the
-- family could be presented.
ALTER TABLE oidc_grants ADD COLUMN refresh_until timestamptz;

-- A revocation Redis has not heard of yet: set when a grant was revoked
-- here while Redis could not be told (its family would otherwise still
-- rotate at the gateway); identity tells Redis again every few seconds
-- until it has (docs/oidc.md, "Refresh tokens").
ALTER TABLE oidc_grants ADD COLUMN redis_pending boolean NOT NULL DEFAULT false;
CREATE INDEX oidc_grants_redis_pending ON oidc_grants (id) WHERE redis_pending;
