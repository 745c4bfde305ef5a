-- Credentials: password hashes, one-time enrollment and reset codes, and
-- the TOTP second factor (docs/credentials.md).

-- The argon2id hash (PHC string) of the user's password; NULL until the
-- person has set one with a code.
ALTER TABLE users ADD COLUMN password_hash text CHECK (password_hash IS NULL OR password_hash LIKE '$argon2id$%');
ALTER TABLE users ADD COLUMN password_set_at timestamptz;

-- TOTP: the secret and the last step used, so a code is never accepted
-- twice. The enrolment RPC follows; the columns exist so it needs no
-- migration of its own.
ALTER TABLE users ADD COLUMN totp_secret bytea;
ALTER TABLE users ADD COLUMN totp_last_step bigint;

-- One-time codes, stored only as an HMAC under a pepper that never enters
-- the database. A code is issued at a school (the issuer's standing there
-- allowed it) for a person with a context at that school.
CREATE TABLE one_time_codes (
    id          uuid PRIMARY KEY,
    school_id   uuid NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('enrollment', 'reset')),
    code_hash   bytea NOT NULL CHECK (octet_length(code_hash) = 32),
    -- Whoever issued it; NULL for a service or once that user is deleted.
    issued_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    -- Set when a newer code for the same person and purpose replaced it.
    retired_at  timestamptz,
    CHECK (expires_at > created_at)
);

-- At most one live code per person and purpose: issuing a new one retires
-- the old one first.
CREATE UNIQUE INDEX one_time_codes_live ON one_time_codes (user_id, purpose)
    WHERE used_at IS NULL AND retired_at IS NULL;
CREATE INDEX one_time_codes_lookup ON one_time_codes (user_id, code_hash);
CREATE INDEX one_time_codes_school ON one_time_codes (school_id);
