-- Rooms and their one event log (docs/messaging.md). Every row that belongs
-- to a school carries school_id; rows of a room reference (school_id,
-- room_id), so they can never name another school than their room's.

-- What messaging knows of a school: its policy and when its rooms were last
-- reconciled with identity's groups. A row appears the first time the
-- service meets the school (a roster event, a caller, an admin's policy).
CREATE TABLE schools (
    school_id       uuid PRIMARY KEY,
    -- The defaults in force: 'school', 'kita' or 'community', from the
    -- school's kind at identity when the row was made.
    preset          text NOT NULL DEFAULT 'school' CHECK (preset IN ('school', 'kita', 'community')),
    -- NULL: the preset's defaults. Direct rules are "from>to" role pairs.
    direct_rules    text[],
    room_creators   text[],
    retention_days  integer CHECK (retention_days BETWEEN 1 AND 3650),
    updated_by      uuid,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Reconciliation with identity: replicas claim due schools with
    -- FOR UPDATE SKIP LOCKED.
    next_sync_at    timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz
);
CREATE INDEX schools_next_sync ON schools (next_sync_at);

-- Display names as identity last reported them, for member lists.
CREATE TABLE people (
    user_id       uuid PRIMARY KEY,
    display_name  text NOT NULL CHECK (char_length(display_name) <= 200),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rooms (
    id              uuid PRIMARY KEY,
    school_id       uuid NOT NULL REFERENCES schools (school_id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('direct', 'group', 'announcement', 'roster')),
    name            text NOT NULL DEFAULT '' CHECK (char_length(name) <= 200),
    topic           text NOT NULL DEFAULT '' CHECK (char_length(topic) <= 1000),
    -- The identity group a roster room (always) or an announcement channel
    -- (optionally) follows.
    group_id        uuid,
    group_kind      text NOT NULL DEFAULT '' CHECK (group_kind IN ('', 'class', 'course', 'club', 'staff', 'parents')),
    -- Direct rooms: the two user ids, lower first, so a pair has one room.
    direct_key      text,
    locked          boolean NOT NULL DEFAULT false,
    retention_days  integer CHECK (retention_days BETWEEN 1 AND 3650),
    created_by      uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_position   bigint NOT NULL DEFAULT 0,
    UNIQUE (school_id, id),
    CHECK ((kind = 'roster') <= (group_id IS NOT NULL)),
    CHECK (group_id IS NULL OR kind IN ('roster', 'announcement')),
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);
CREATE UNIQUE INDEX rooms_roster_group ON rooms (group_id) WHERE kind = 'roster';
CREATE UNIQUE INDEX rooms_direct_pair ON rooms (school_id, direct_key) WHERE kind = 'direct';
CREATE INDEX rooms_group ON rooms (group_id) WHERE group_id IS NOT NULL;
CREATE INDEX rooms_school ON rooms (school_id);

-- Membership. A person who leaves keeps the row (state 'left') so the log
-- up to their leaving stays theirs to read in their stream's catch-up.
CREATE TABLE room_members (
    school_id           uuid NOT NULL,
    room_id             uuid NOT NULL,
    user_id             uuid NOT NULL,
    role                text NOT NULL CHECK (role IN ('member', 'moderator')),
    state               text NOT NULL CHECK (state IN ('joined', 'left')),
    -- 'group': follows the room's identity group; 'manual': added by people.
    source              text NOT NULL CHECK (source IN ('group', 'manual')),
    muted               boolean NOT NULL DEFAULT false,
    last_read_position  bigint NOT NULL DEFAULT 0,
    left_position       bigint,
    joined_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id),
    FOREIGN KEY (school_id, room_id) REFERENCES rooms (school_id, id) ON DELETE CASCADE,
    CHECK ((state = 'left') = (left_position IS NOT NULL))
);
CREATE INDEX room_members_user ON room_members (user_id, room_id);

-- The head of the one log: every append takes its positions from this row
-- and holds its lock until commit, so positions become visible in order
-- (docs/messaging.md, "Positions").
CREATE TABLE log_head (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    position  bigint NOT NULL
);
INSERT INTO log_head (only_row, position) VALUES (true, 0);

-- The log. Event payloads hold small facts (a reaction key, a receipt's
-- position, a member's id), never message content: content lives in
-- `messages` only, so deleting it there deletes it everywhere.
CREATE TABLE events (
    position    bigint PRIMARY KEY,
    id          uuid NOT NULL UNIQUE,
    school_id   uuid NOT NULL,
    room_id     uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN (
                    'room.created', 'message', 'message.edited', 'message.deleted',
                    'reaction.added', 'reaction.removed', 'receipt', 'read.confirmed',
                    'member.joined', 'member.left', 'member.role', 'member.muted',
                    'room.locked', 'room.retention', 'room.renamed',
                    'message.pinned', 'message.unpinned', 'poll.voted', 'poll.closed')),
    sender      uuid,
    txn_id      text CHECK (txn_id ~ '^[A-Za-z0-9._~-]{1,64}$'),
    message_id  uuid,
    data        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (school_id, room_id) REFERENCES rooms (school_id, id) ON DELETE CASCADE,
    CHECK (txn_id IS NULL OR sender IS NOT NULL)
);
CREATE UNIQUE INDEX events_txn ON events (sender, txn_id) WHERE txn_id IS NOT NULL;
CREATE INDEX events_room ON events (room_id, position);
CREATE INDEX events_message ON events (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX events_school_created ON events (school_id, created_at);

-- Each message's current state, for reading fast: the text with edits
-- applied, NULL once deleted. Goes with its MESSAGE event.
CREATE TABLE messages (
    id                    uuid PRIMARY KEY,
    position              bigint NOT NULL UNIQUE REFERENCES events (position) ON DELETE CASCADE,
    school_id             uuid NOT NULL,
    room_id               uuid NOT NULL,
    sender                uuid NOT NULL,
    body                  text CHECK (char_length(body) <= 8000),
    reply_to              uuid,
    mentions              uuid[] NOT NULL DEFAULT '{}',
    is_poll               boolean NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL,
    edited_at             timestamptz,
    deleted_at            timestamptz,
    deleted_by            uuid,
    removed_by_moderator  boolean NOT NULL DEFAULT false,
    search                tsvector GENERATED ALWAYS AS (to_tsvector('simple', coalesce(body, ''))) STORED,
    FOREIGN KEY (school_id, room_id) REFERENCES rooms (school_id, id) ON DELETE CASCADE,
    CHECK ((deleted_at IS NULL) = (body IS NOT NULL))
);
CREATE INDEX messages_room ON messages (room_id, position);
CREATE INDEX messages_search ON messages USING gin (search);
CREATE INDEX messages_mentions ON messages USING gin (mentions);

-- References to files of the files service; the file is not ours to delete.
CREATE TABLE attachments (
    message_id  uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    school_id   uuid NOT NULL,
    ord         smallint NOT NULL CHECK (ord BETWEEN 0 AND 9),
    file_id     uuid NOT NULL,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    media_type  text NOT NULL CHECK (media_type ~ '^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$'),
    size_bytes  bigint NOT NULL CHECK (size_bytes >= 0),
    PRIMARY KEY (message_id, ord)
);
CREATE INDEX attachments_file ON attachments (school_id, file_id);

CREATE TABLE reactions (
    message_id  uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL,
    key         text NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, user_id, key)
);

-- "I have read this" on announcements.
CREATE TABLE confirmations (
    message_id    uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL,
    confirmed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, user_id)
);

CREATE TABLE pins (
    room_id     uuid NOT NULL,
    message_id  uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    pinned_by   uuid NOT NULL,
    pinned_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, message_id)
);

-- A poll is a message (its text is the question) with options.
CREATE TABLE polls (
    message_id       uuid PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    options          text[] NOT NULL CHECK (cardinality(options) BETWEEN 2 AND 20),
    multiple_choice  boolean NOT NULL,
    anonymous        boolean NOT NULL,
    closes_at        timestamptz,
    closed_at        timestamptz
);

-- Who chose what. For anonymous polls this table is the only place that
-- links a person to an option, and no reply ever shows it.
CREATE TABLE poll_votes (
    message_id  uuid NOT NULL REFERENCES polls (message_id) ON DELETE CASCADE,
    user_id     uuid NOT NULL,
    option      smallint NOT NULL CHECK (option BETWEEN 0 AND 19),
    voted_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, user_id, option)
);

-- Reports to the room's moderators and the school's admins. The excerpt is
-- content, so it goes with the message (retention, purges).
CREATE TABLE reports (
    id           uuid PRIMARY KEY,
    school_id    uuid NOT NULL,
    room_id      uuid NOT NULL,
    message_id   uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    reporter     uuid NOT NULL,
    reason       text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
    excerpt      text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    resolved_by  uuid,
    resolution   text CHECK (resolution IN ('removed', 'dismissed')),
    FOREIGN KEY (school_id, room_id) REFERENCES rooms (school_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX reports_open ON reports (message_id, reporter) WHERE resolved_at IS NULL;
CREATE INDEX reports_school ON reports (school_id, created_at);

-- What was done, by whom, under which rule, with counts: never content.
CREATE TABLE audit (
    id          bigserial PRIMARY KEY,
    school_id   uuid NOT NULL,
    room_id     uuid,
    action      text NOT NULL,
    actor       text NOT NULL,
    rule        text NOT NULL DEFAULT '',
    counts      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_school ON audit (school_id, created_at);

-- The oldest creation time a read may show for a room: the shorter of the
-- room's and the school's retention, '-infinity' when neither is set.
CREATE FUNCTION visible_since(room_days integer, school_days integer) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN least(room_days, school_days) IS NULL THEN '-infinity'::timestamptz
                ELSE now() - make_interval(days => least(room_days, school_days)) END
$$;
