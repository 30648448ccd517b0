-- Every claim counts the runs executing per lane (the cap holds across daemons). The queue
-- holds up to one run per node, so counting by scanning it grew with the fleet (5 ms per
-- claim with 10,000 queued); this index holds only the executing runs (and, until they
-- are vacuumed or skipped, the dead entries of those that ended).
CREATE INDEX runs_running_lane ON runs (lane) WHERE state = 'running';

-- The sequencer numbers pending events in id order (events::sequence_pending); indexed by
-- (txid, id) it sorted every pending event on each round, and its bitmap scan visited the
-- heap row of every entry a past round had numbered (dead until vacuum) again and again.
-- In id order it walks the index and stops at its batch, marking dead entries as it goes.
DROP INDEX events_unsequenced;
CREATE INDEX events_unsequenced ON events (id) WHERE seq IS NULL;
