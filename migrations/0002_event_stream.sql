-- The event stream's delivery order (GET /api/v2/events).
--
-- Event ids come from a sequence and are taken when a row is inserted, but transactions
-- commit in any order: a reader following `id` could pass an id whose transaction commits
-- later and never see it. So events are numbered a second time, by one sequencer at a time,
-- in (txid, id) order and only once their transaction can no longer be in flight. `seq` is
-- gap-free and only grows: it is the SSE `id`, and `Last-Event-ID` resumes after it.
ALTER TABLE events ADD COLUMN seq bigint;
CREATE UNIQUE INDEX events_seq ON events (seq);
CREATE INDEX events_unsequenced ON events (txid, id) WHERE seq IS NULL;

-- The highest `seq` ever assigned; its row is also the sequencer's lock. Kept here rather
-- than read as max(seq), so that deleting old events never lets a number be used twice.
INSERT INTO installation (key, value) VALUES ('events.seq', '0');
