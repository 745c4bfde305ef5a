-- The audience of an event at `since`: the room's joined members and those
-- who left with an event at or after it (docs/messaging.md, "Realtime"),
-- as comma-separated user ids in order.
--
-- VOLATILE on purpose: a volatile function reads with a fresh snapshot for
-- each query it runs (PostgreSQL documentation, "Function Volatility
-- Categories"). A send appends in one statement whose snapshot was taken
-- before it waited for the log head; called from that statement after the
-- head is taken, this reads every membership change committed up to then,
-- and none can commit until the send does, because changes of membership
-- take the log head too.
CREATE FUNCTION room_audience(room uuid, since bigint) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (SELECT string_agg(m.user_id::text, ',' ORDER BY m.user_id)
            FROM messaging.room_members m
            WHERE m.room_id = room AND (m.state = 'joined' OR m.left_position >= since));
END
$$;
