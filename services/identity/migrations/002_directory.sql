-- The directory: carriers, people, their roles at schools, groups,
-- memberships and guardianships. Every row that belongs to a school carries
-- school_id, and rows that mean nothing without their parent go with it.

-- School carriers (Schulträger).
CREATE TABLE carriers (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A school keeps existing when its carrier record goes; it is then carried
-- by nobody until an operator assigns another.
ALTER TABLE schools ADD COLUMN carrier_id uuid REFERENCES carriers (id) ON DELETE SET NULL;
CREATE INDEX schools_carrier ON schools (carrier_id) WHERE carrier_id IS NOT NULL;

-- People, installation-wide: one account may hold contexts at several
-- schools. No e-mail address is needed.
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9._-]{3,64}$'),
    given_name    text NOT NULL CHECK (char_length(given_name) BETWEEN 1 AND 200),
    family_name   text NOT NULL CHECK (char_length(family_name) BETWEEN 1 AND 200),
    display_name  text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 200),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_given_lower ON users (lower(given_name) text_pattern_ops);
CREATE INDEX users_family_lower ON users (lower(family_name) text_pattern_ops);

-- A user's role at a school (Schulconnex "Personenkontext"), with the
-- Schulconnex role code kept alongside our role.
CREATE TABLE person_contexts (
    school_id         uuid NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role              text NOT NULL CHECK (role IN ('pupil', 'teacher', 'parent', 'staff', 'head', 'school_admin')),
    schulconnex_role  text NOT NULL CHECK (schulconnex_role IN ('Lern', 'Lehr', 'SorgBer', 'Leit', 'OrgAdmin', 'Extern')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school_id, user_id, role)
);
CREATE INDEX person_contexts_user ON person_contexts (user_id);

-- Classes, courses, clubs, staff rooms, parents of a class. A name is unique
-- per school and school year ('' for groups that outlive a year).
CREATE TABLE groups (
    id           uuid PRIMARY KEY,
    school_id    uuid NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('class', 'course', 'club', 'staff', 'parents')),
    name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    school_year  text NOT NULL DEFAULT '' CHECK (school_year = '' OR school_year ~ '^[0-9]{4}/[0-9]{2}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (school_id, name, school_year),
    -- The target of memberships' (school_id, group_id) key, so a membership
    -- can never name a school other than its group's.
    UNIQUE (school_id, id)
);

CREATE TABLE memberships (
    school_id   uuid NOT NULL,
    group_id    uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('member', 'leader')),
    valid_from  date,
    valid_to    date,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, user_id),
    FOREIGN KEY (school_id, group_id) REFERENCES groups (school_id, id) ON DELETE CASCADE,
    CHECK (valid_from IS NULL OR valid_to IS NULL OR valid_from <= valid_to)
);
CREATE INDEX memberships_user ON memberships (school_id, user_id);

-- Parents and guardians of pupils, per school.
CREATE TABLE guardianships (
    school_id   uuid NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
    parent_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    child_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school_id, parent_id, child_id),
    CHECK (parent_id <> child_id)
);
CREATE INDEX guardianships_child ON guardianships (school_id, child_id);
