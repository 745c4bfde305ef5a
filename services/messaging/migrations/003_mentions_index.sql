-- Mentions are indexed for the messages that have them only. A GIN index
-- over arrays keeps an entry for every empty array too, so every message
-- paid an index insert for its empty mentions (most messages mention
-- nobody). No query reads this index today: unread mentions are counted
-- within a room's range of positions (messages_room); a lookup of someone's
-- mentions writes `mentions @> ARRAY[...] AND mentions <> '{}'` to use it.
DROP INDEX messages_mentions;
CREATE INDEX messages_mentions ON messages USING gin (mentions) WHERE mentions <> '{}';
