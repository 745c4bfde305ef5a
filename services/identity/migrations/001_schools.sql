-- Schools (tenants). Every other row of the identity schema that belongs to a
-- school will reference this table.
CREATE TABLE schools (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- The official school number (Schulconnex "kennung"); unique when given.
    kennung     text UNIQUE CHECK (kennung ~ '^[A-Za-z0-9_.-]{1,32}$'),
    kind        smallint NOT NULL CHECK (kind BETWEEN 1 AND 3),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX schools_name_lower ON schools (lower(name) text_pattern_ops, id);
