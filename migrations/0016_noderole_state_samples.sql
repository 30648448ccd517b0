-- The overview charts noderoles by state over the last hour. The tallies (0003) hold only
-- the present, so the annealer's sweep samples them: one row per state per minute, the
-- minute's latest counts (several daemons upsert the same rows). Kept a day.
CREATE TABLE noderole_state_samples (
    at    timestamptz NOT NULL,
    state smallint    NOT NULL,
    n     bigint      NOT NULL,
    PRIMARY KEY (at, state)
);
