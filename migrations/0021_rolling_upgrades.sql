-- Rolling upgrades (docs/operations.md). While daemons are upgraded one by one, two crowbar
-- builds share this database, so migrations are expand-then-contract: a migration adds what
-- the new build needs and never breaks what older builds still read and write; what only
-- older builds used is removed later, by a "contract" migration, which also raises
-- `oldest_serving`: the oldest build (named by the newest migration it carries) that may
-- still serve this schema. A build older than that refuses to start, and says so.
CREATE TABLE schema_compat (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    oldest_serving bigint NOT NULL CHECK (oldest_serving > 0)
);
INSERT INTO schema_compat (oldest_serving) VALUES (1);

-- The daemons serving this database, so that `crowbar migrate --check` can say which builds
-- still run before a contract migration leaves them behind: each daemon registers when it
-- starts, refreshes `seen_at` while it runs and leaves when it stops.
CREATE TABLE daemons (
    name text PRIMARY KEY,
    version text NOT NULL,
    schema_version bigint NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now()
);
