-- Fewer indexes on the tables every run writes three times over.
--
-- A noderole changes state three times per run (BLOCKED -> TODO -> TRANSITION -> ACTIVE),
-- and each change writes an entry into every index whose columns or predicate mention the
-- state. Three of them answered questions another index answers as well:
--   noderoles_unsettled (state) WHERE state <> 0       -> noderoles_state_id (state, id)
--   noderoles_errors (node_id) WHERE state = -1         -> noderoles_node_unsettled (node_id, state)
--   runs_worker (worker) WHERE state = 'running'        -> the primary key (heartbeats and
--       completions name their runs) or runs_running_lane (a worker's release at shutdown
--       reads at most the cap's running runs)
-- noderoles_frozen (node_id) WHERE state IN (-1, 2) stays: without it, PostgreSQL answered
-- the claim's "is this node busy" test from the (state, id) index, reading every noderole in
-- TRANSITION once per queued run (19 s of server time in one 10,000 x 10 anneal).
-- Builds before this one do not name indexes, so they serve this schema unchanged.
DROP INDEX noderoles_unsettled;
DROP INDEX noderoles_errors;
DROP INDEX runs_worker;
