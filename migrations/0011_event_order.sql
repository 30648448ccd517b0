-- The event stream's delivery order, kept beside the events instead of in them.
--
-- Numbering an event used to rewrite its row (`events.seq`): a new version of the whole row,
-- jsonb and all, with an entry in each of the table's indexes, for every event ever
-- recorded; then vacuum had to clean up the old version. That was a third of the server's
-- time at fleet scale. Now the sequencer only appends: it moves ids out of
-- `events_pending` (filled when events are inserted) into `event_order`, in one
-- transaction, so an event is always in exactly one of the two. The rules are those of
-- migration 0002: one sequencer at a time (the `events.seq` installation row is its lock and
-- holds the highest number given), numbers in commit order by batch and gap-free.
CREATE TABLE event_order (
  seq      bigint PRIMARY KEY,
  event_id bigint NOT NULL   -- no foreign key: expiry removes events first, then their numbers
);

CREATE TABLE events_pending (
  id bigint PRIMARY KEY
);

CREATE FUNCTION events_pending_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO events_pending (id) SELECT id FROM added;
  RETURN NULL;
END
$$;

-- One statement-level trigger per INSERT, however many rows it writes.
CREATE TRIGGER events_pending_add AFTER INSERT ON events
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION events_pending_add();

INSERT INTO event_order (seq, event_id) SELECT seq, id FROM events WHERE seq IS NOT NULL;
INSERT INTO events_pending (id) SELECT id FROM events WHERE seq IS NULL;
DROP INDEX events_seq;
DROP INDEX events_unsequenced;
ALTER TABLE events DROP COLUMN seq;
