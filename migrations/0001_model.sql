-- The crowbar model (SEMANTICS.md §1–5). Invariants that must hold across daemons sharing
-- this database are constraints here, not only checks in code.

CREATE FUNCTION crowbar_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;

-- Bundles of jigs and roles, loaded from barclamps/<name>.yml.
CREATE TABLE barclamps (
  id           bigserial PRIMARY KEY,
  name         text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]*$'),
  parent       text,
  description  text NOT NULL DEFAULT '',
  source       text NOT NULL DEFAULT '',   -- where it was imported from (file path or "api")
  content_hash text NOT NULL,              -- of the normalized document: re-import is a no-op when equal
  document     jsonb NOT NULL,             -- the normalized document as imported
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT barclamps_name_unique UNIQUE (name)
);

-- Ways to do work on a node (script, noop, test, ...).
CREATE TABLE jigs (
  id           bigserial PRIMARY KEY,
  name         text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]*$'),
  barclamp_id  bigint NOT NULL REFERENCES barclamps(id),
  description  text NOT NULL DEFAULT '',
  active       boolean NOT NULL DEFAULT true,
  client_role  text,                       -- a role every role on this jig requires (§3)
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT jigs_name_unique UNIQUE (name)
);

CREATE TABLE roles (
  id            bigserial PRIMARY KEY,
  name          text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]*$'),
  barclamp_id   bigint NOT NULL REFERENCES barclamps(id),
  jig_id        bigint NOT NULL REFERENCES jigs(id),
  description   text NOT NULL DEFAULT '',
  implicit      boolean NOT NULL DEFAULT false,
  bootstrap     boolean NOT NULL DEFAULT false,
  discovery     boolean NOT NULL DEFAULT false,
  cluster       boolean NOT NULL DEFAULT false,
  destructive   boolean NOT NULL DEFAULT false,
  abstract      boolean NOT NULL DEFAULT false,
  milestone     boolean NOT NULL DEFAULT false,
  powersave     boolean NOT NULL DEFAULT false,
  service       boolean NOT NULL DEFAULT false,
  requires      text[] NOT NULL DEFAULT '{}',
  provides      text[] NOT NULL DEFAULT '{}',
  conflicts     text[] NOT NULL DEFAULT '{}',
  wants_attribs text[] NOT NULL DEFAULT '{}',
  template      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(template) = 'object'),
  timeout_secs  integer CHECK (timeout_secs > 0),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT roles_name_unique UNIQUE (name)
);

-- Named pieces of data a role owns, mapped to a path inside noderole data (§8).
CREATE TABLE attribs (
  id            bigserial PRIMARY KEY,
  name          text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]*$'),
  barclamp_id   bigint NOT NULL REFERENCES barclamps(id),
  role_id       bigint REFERENCES roles(id) ON DELETE CASCADE,
  map           text NOT NULL DEFAULT '',   -- slash-separated path, e.g. test/delay
  default_value jsonb,
  description   text NOT NULL DEFAULT '',
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT attribs_name_unique UNIQUE (name)
);

-- Scopes for bindings, in a tree rooted at the one `system` deployment (§4).
CREATE TABLE deployments (
  id          bigserial PRIMARY KEY,
  name        text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]*$'),
  description text NOT NULL DEFAULT '',
  parent_id   bigint REFERENCES deployments(id),
  system      boolean NOT NULL DEFAULT false,
  state       text NOT NULL DEFAULT 'proposed' CHECK (state IN ('proposed', 'committed')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT deployments_name_unique UNIQUE (name),
  CONSTRAINT deployments_only_system_is_root CHECK (system = (parent_id IS NULL)),
  CONSTRAINT deployments_system_always_committed CHECK (NOT system OR state = 'committed'),
  CONSTRAINT deployments_not_own_parent CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE UNIQUE INDEX deployments_one_system ON deployments (system) WHERE system;

CREATE FUNCTION crowbar_keep_system_deployment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the system deployment cannot be deleted' USING ERRCODE = 'check_violation',
    CONSTRAINT = 'deployments_system_undeletable';
END $$;
CREATE TRIGGER deployments_system_undeletable BEFORE DELETE ON deployments
  FOR EACH ROW WHEN (OLD.system) EXECUTE FUNCTION crowbar_keep_system_deployment();

INSERT INTO deployments (name, description, system, state)
VALUES ('system', 'The root deployment: bootstrap and discovery', true, 'committed');

CREATE TABLE deployment_roles (
  id             bigserial PRIMARY KEY,
  deployment_id  bigint NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
  role_id        bigint NOT NULL REFERENCES roles(id),
  proposed_data  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(proposed_data) = 'object'),
  committed_data jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(committed_data) = 'object'),
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT deployment_roles_once UNIQUE (deployment_id, role_id)
);

-- Immutable history of a deployment's committed desired state.
CREATE TABLE snapshots (
  id            bigserial PRIMARY KEY,
  deployment_id bigint NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
  seq           integer NOT NULL CHECK (seq > 0),
  content       jsonb NOT NULL,
  content_hash  text NOT NULL,
  committed_by  text NOT NULL,
  committed_at  timestamptz NOT NULL DEFAULT now(),
  -- Two commits racing from the same base both compute the same seq: one loses here.
  CONSTRAINT snapshots_seq_unique UNIQUE (deployment_id, seq)
);

CREATE FUNCTION crowbar_snapshots_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'snapshots are immutable' USING ERRCODE = 'check_violation',
    CONSTRAINT = 'snapshots_immutable';
END $$;
CREATE TRIGGER snapshots_immutable BEFORE UPDATE ON snapshots
  FOR EACH ROW EXECUTE FUNCTION crowbar_snapshots_immutable();

CREATE TABLE nodes (
  id            bigserial PRIMARY KEY,
  -- a lower-case FQDN (or a single label)
  name          text NOT NULL CHECK (
                  length(name) <= 253
                  AND name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$'),
  description   text NOT NULL DEFAULT '',
  admin         boolean NOT NULL DEFAULT false,
  alive         boolean NOT NULL DEFAULT false,   -- owned by the framework (§6)
  available     boolean NOT NULL DEFAULT true,    -- owned by the admin (§6)
  bootenv       text NOT NULL DEFAULT 'sledgehammer',
  address       inet,                             -- admin address; none: never probed
  mac           macaddr,
  deployment_id bigint NOT NULL REFERENCES deployments(id),
  hints         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(hints) = 'object'),
  discovery     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(discovery) = 'object'),
  quirks        text[] NOT NULL DEFAULT '{}',
  token_hash    text,                             -- sha256 of the node's own API token
  host_key      text,                             -- pinned SSH host key (OpenSSH format)
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT nodes_name_unique UNIQUE (name),
  CONSTRAINT nodes_mac_unique UNIQUE (mac),
  CONSTRAINT nodes_token_unique UNIQUE (token_hash)
);
CREATE INDEX nodes_deployment ON nodes (deployment_id);

-- A role bound to a node inside a deployment: the unit of work.
-- state: -1 ERROR, 0 ACTIVE, 1 TODO, 2 TRANSITION, 3 BLOCKED, 4 PROPOSED.
CREATE TABLE noderoles (
  id             bigserial PRIMARY KEY,
  node_id        bigint NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
  role_id        bigint NOT NULL REFERENCES roles(id),
  deployment_id  bigint NOT NULL REFERENCES deployments(id),
  state          smallint NOT NULL DEFAULT 4 CHECK (state BETWEEN -1 AND 4),
  cohort         integer NOT NULL DEFAULT 0 CHECK (cohort >= 0),
  run_count      integer NOT NULL DEFAULT 0 CHECK (run_count >= 0),
  proposed_data  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(proposed_data) = 'object'),
  committed_data jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(committed_data) = 'object'),
  sysdata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(sysdata) = 'object'),
  wall           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(wall) = 'object'),
  runlog         text NOT NULL DEFAULT '',
  -- bound by an admin or a document (true), or created as some binding's parent (false)
  explicit       boolean NOT NULL DEFAULT false,
  -- hash of the input its last successful run saw: a changed input re-runs it (a "poke", §8)
  input_hash     text,
  -- a re-run asked for by a hook, on this lane, even while ACTIVE (§7)
  requested_lane text CHECK (requested_lane IN ('normal', 'high')),
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  -- A role binds to a node at most once, across all deployments (§1).
  CONSTRAINT noderoles_role_once_per_node UNIQUE (node_id, role_id),
  -- lets runs reference (noderole, node) pairs so a run's node is always its noderole's
  CONSTRAINT noderoles_id_node UNIQUE (id, node_id)
);
CREATE INDEX noderoles_deployment ON noderoles (deployment_id);
CREATE INDEX noderoles_role ON noderoles (role_id);
CREATE INDEX noderoles_todo ON noderoles (node_id, cohort, id) WHERE state = 1;
CREATE INDEX noderoles_unsettled ON noderoles (state) WHERE state <> 0;
CREATE INDEX noderoles_frozen ON noderoles (node_id) WHERE state IN (-1, 2);
CREATE INDEX noderoles_requested ON noderoles (node_id) WHERE requested_lane IS NOT NULL;

CREATE TABLE noderole_edges (
  parent_id bigint NOT NULL REFERENCES noderoles(id) ON DELETE CASCADE,
  child_id  bigint NOT NULL REFERENCES noderoles(id) ON DELETE CASCADE,
  PRIMARY KEY (parent_id, child_id),
  CONSTRAINT noderole_edges_no_self_loop CHECK (parent_id <> child_id)
);
CREATE INDEX noderole_edges_child ON noderole_edges (child_id);

-- Queued and executing jig jobs. Finished runs move to run_records.
CREATE TABLE runs (
  id           bigserial PRIMARY KEY,
  noderole_id  bigint NOT NULL,
  node_id      bigint NOT NULL,
  lane         text NOT NULL DEFAULT 'normal' CHECK (lane IN ('normal', 'high')),
  state        text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running')),
  input        jsonb NOT NULL,               -- the jig's data, frozen at queue time (§8)
  input_hash   text NOT NULL,
  timeout_secs integer NOT NULL CHECK (timeout_secs > 0),
  worker       text,                          -- which daemon executes it
  queued_at    timestamptz NOT NULL DEFAULT now(),
  started_at   timestamptz,
  heartbeat_at timestamptz,
  FOREIGN KEY (noderole_id, node_id) REFERENCES noderoles (id, node_id) ON DELETE CASCADE,
  CONSTRAINT runs_running_has_worker
    CHECK ((state = 'running') = (worker IS NOT NULL AND started_at IS NOT NULL)),
  -- At most one run per node, ever, whatever number of daemons schedule (§5).
  CONSTRAINT runs_one_per_node UNIQUE (node_id),
  CONSTRAINT runs_one_per_noderole UNIQUE (noderole_id)
);
CREATE INDEX runs_queued ON runs (lane, queued_at, id) WHERE state = 'queued';
CREATE INDEX runs_worker ON runs (worker) WHERE state = 'running';

-- What happened to every run, for history, metrics and audits.
CREATE TABLE run_records (
  id           bigint PRIMARY KEY,            -- the run's id
  noderole_id  bigint REFERENCES noderoles(id) ON DELETE SET NULL,
  node_id      bigint REFERENCES nodes(id) ON DELETE SET NULL,
  role_id      bigint REFERENCES roles(id) ON DELETE SET NULL,
  lane         text NOT NULL,
  worker       text,
  queued_at    timestamptz NOT NULL,
  started_at   timestamptz,
  finished_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  outcome      text NOT NULL CHECK (outcome IN
                 ('succeeded', 'failed', 'timed_out', 'skipped', 'lost', 'dropped')),
  runlog       text NOT NULL DEFAULT ''
);
CREATE INDEX run_records_noderole ON run_records (noderole_id, id);
CREATE INDEX run_records_node ON run_records (node_id, id);

-- Every change worth telling: the audit trail, node history and the event stream's replay log.
CREATE TABLE events (
  id            bigserial PRIMARY KEY,
  -- the writing transaction: readers deliver only events whose transaction can no longer be
  -- in flight, so a stream never skips an id that commits late
  txid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
  type          text NOT NULL,
  at            timestamptz NOT NULL DEFAULT now(),
  actor         text NOT NULL,
  reason        text NOT NULL DEFAULT '',
  node_id       bigint,                         -- no foreign keys: history outlives objects
  noderole_id   bigint,
  deployment_id bigint,
  run_id        bigint,
  data          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_node ON events (node_id, id) WHERE node_id IS NOT NULL;
CREATE INDEX events_deployment ON events (deployment_id, id) WHERE deployment_id IS NOT NULL;
CREATE INDEX events_at ON events (at);

-- Admin API tokens (node tokens live on nodes). Only hashes are stored.
CREATE TABLE api_tokens (
  id         bigserial PRIMARY KEY,
  name       text NOT NULL,
  token_hash text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz,
  CONSTRAINT api_tokens_name_unique UNIQUE (name),
  CONSTRAINT api_tokens_hash_unique UNIQUE (token_hash)
);

-- Facts chosen once per installation (e.g. the IPv6 ULA global id).
CREATE TABLE installation (
  key   text PRIMARY KEY,
  value jsonb NOT NULL
);

CREATE TRIGGER barclamps_touch BEFORE UPDATE ON barclamps FOR EACH ROW EXECUTE FUNCTION crowbar_touch_updated_at();
CREATE TRIGGER jigs_touch BEFORE UPDATE ON jigs FOR EACH ROW EXECUTE FUNCTION crowbar_touch_updated_at();
CREATE TRIGGER roles_touch BEFORE UPDATE ON roles FOR EACH ROW EXECUTE FUNCTION crowbar_touch_updated_at();
CREATE TRIGGER attribs_touch BEFORE UPDATE ON attribs FOR EACH ROW EXECUTE FUNCTION crowbar_touch_updated_at();
CREATE TRIGGER deployments_touch BEFORE UPDATE ON deployments FOR EACH ROW EXECUTE FUNCTION crowbar_touch_updated_at();
CREATE TRIGGER deployment_roles_touch BEFORE UPDATE ON deployment_roles FOR EACH ROW EXECUTE FUNCTION crowbar_touch_updated_at();
CREATE TRIGGER nodes_touch BEFORE UPDATE ON nodes FOR EACH ROW EXECUTE FUNCTION crowbar_touch_updated_at();
CREATE TRIGGER noderoles_touch BEFORE UPDATE ON noderoles FOR EACH ROW EXECUTE FUNCTION crowbar_touch_updated_at();
