-- Power operations: what crowbar was asked to do to a machine through its BMC. Each is
-- work like a run: queued, claimed by one daemon's power worker (stamped with its worker
-- lease, so the operations of a daemon that died are taken back as soon as its session
-- is gone), done one at a time per BMC (a unique index), at most `--power-ops-cap` at
-- once over every daemon (counted by the claim under an advisory lock), and kept with its
-- outcome as the node's power history.
CREATE TABLE power_ops (
    id           bigserial PRIMARY KEY,
    node_id      bigint NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    action       text NOT NULL CHECK (action IN ('on', 'off', 'force-off', 'cycle', 'pxe-once')),
    -- a cycle of a machine whose power state is unknown goes ahead only when forced
    force        boolean NOT NULL DEFAULT false,
    state        text NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'running', 'done', 'failed')),
    reason       text NOT NULL DEFAULT '',
    actor        text NOT NULL,
    worker       text,
    worker_lease integer,
    -- tries started; an operation taken back from a dead daemon counts one more
    attempts     integer NOT NULL DEFAULT 0,
    -- when the BMC accepted the change: an operation taken back after that only confirms
    -- the state it asked for (a cycle is not cycled twice)
    sent_at      timestamptz,
    queued_at    timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    heartbeat_at timestamptz,
    finished_at  timestamptz,
    CONSTRAINT power_ops_running_has_worker
      CHECK ((state = 'running') = (worker IS NOT NULL AND started_at IS NOT NULL)),
    CONSTRAINT power_ops_finished CHECK ((state IN ('done', 'failed')) = (finished_at IS NOT NULL))
);
-- One operation per BMC at a time, whatever number of daemons claim.
CREATE UNIQUE INDEX power_ops_one_running_per_node ON power_ops (node_id) WHERE state = 'running';
CREATE INDEX power_ops_queued ON power_ops (queued_at, id) WHERE state = 'queued';
CREATE INDEX power_ops_node ON power_ops (node_id, id);

-- The power state crowbar last asked for (on or off); an operation interrupted by a
-- daemon's death is finished by another one towards it.
ALTER TABLE node_bmcs ADD COLUMN desired_power text CHECK (desired_power IN ('on', 'off'));
