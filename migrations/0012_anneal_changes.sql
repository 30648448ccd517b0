-- What the annealer reads to find the nodes that changed since its last pass.
--
-- It joined the numbers after its cursor to `events` and threw away the events of workers
-- (a run's start and finish), which are most of them: at 5,000,000 events kept, each pass
-- read ~2 GB of event rows, well beyond shared buffers, for a few changed nodes (2-3 s a
-- pass). Now an event that may make work runnable (any actor but a worker) is noted when
-- it is inserted, with its node and whether it concerns a jig, and the sequencer files it
-- in `anneal_changes` under the event's number: the annealer reads only those.
ALTER TABLE events_pending
  ADD COLUMN node_id bigint,
  ADD COLUMN wakes boolean NOT NULL DEFAULT true,
  ADD COLUMN jig boolean NOT NULL DEFAULT false;

UPDATE events_pending p
   SET node_id = e.node_id, wakes = e.actor NOT LIKE 'worker:%', jig = e.type LIKE 'jig.%'
  FROM events e WHERE e.id = p.id;

CREATE TABLE anneal_changes (
  seq     bigint PRIMARY KEY,   -- the event's number (event_order.seq)
  node_id bigint,
  jig     boolean NOT NULL
);

CREATE OR REPLACE FUNCTION events_pending_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO events_pending (id, node_id, wakes, jig)
    SELECT id, node_id, actor NOT LIKE 'worker:%', type LIKE 'jig.%' FROM added;
  RETURN NULL;
END
$$;
