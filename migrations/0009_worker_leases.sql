-- A daemon's runner holds a session-level advisory lock, (worker lease space, worker_lease),
-- for as long as its database session lives, and stamps it on every run it claims. When
-- that session is gone (the daemon died, its connection dropped) PostgreSQL itself releases
-- the lock, and the recovery sweep loses the run at once instead of waiting for its
-- heartbeat to expire. NULL: the claimer holds no lease; only the heartbeat counts.
ALTER TABLE runs ADD COLUMN worker_lease integer;
