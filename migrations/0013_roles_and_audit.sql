-- Who may do what (users and tokens carry a role) and who did what (the audit trail).
--
-- Expand-only: every column added has a default an older daemon's statements satisfy.
-- Users made before roles existed could do everything; they stay admins, and so does
-- every token made before (the default below).

ALTER TABLE users
  ADD COLUMN role text NOT NULL DEFAULT 'admin'
    CONSTRAINT users_role_check CHECK (role IN ('admin', 'operator', 'viewer'));

-- A token belongs to the user who made it (none: the built-in admin token and the tokens
-- made with it), carries at most that user's role, and may expire. A user's tokens are
-- revoked when the user goes; the row stays (SET NULL) so the name stays taken.
ALTER TABLE api_tokens
  ADD COLUMN role text NOT NULL DEFAULT 'admin'
    CONSTRAINT api_tokens_role_check CHECK (role IN ('admin', 'operator', 'viewer')),
  ADD COLUMN user_id bigint REFERENCES users (id) ON DELETE SET NULL,
  ADD COLUMN expires_at timestamptz;
CREATE INDEX api_tokens_user ON api_tokens (user_id) WHERE user_id IS NOT NULL;

-- One record per change, written in the change's own transaction, and one per refused
-- request (rate-limited by the daemon). Names are copied, not referenced: the record
-- outlives what it names.
CREATE TABLE audit (
  id         bigserial PRIMARY KEY,
  at         timestamptz NOT NULL DEFAULT now(),
  -- `token:<name>`, `user:<name>`, `node:<name>`, `system`, `anonymous`
  actor      text NOT NULL CHECK (octet_length(actor) <= 200),
  -- the caller's role when it acted (null for nodes and the daemon itself)
  role       text CHECK (role IN ('admin', 'operator', 'viewer')),
  -- the TCP peer the server saw, when there was one
  source     inet,
  -- the request's X-Request-Id, to find the record of one request
  request_id text CHECK (octet_length(request_id) <= 64),
  -- e.g. `node.create`, `deployment.commit`, `request.refused`
  action     text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
  -- what was changed: its kind, id and name at the time
  kind       text NOT NULL CHECK (kind ~ '^[a-z_]+$'),
  object_id  bigint,
  object     text CHECK (octet_length(object) <= 300),
  -- what changed, never a secret
  summary    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (octet_length(summary::text) <= 16384)
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_object ON audit (kind, object_id, id);
CREATE INDEX audit_object_name ON audit (kind, object, id);
CREATE INDEX audit_action ON audit (action, id);
CREATE INDEX audit_request ON audit (request_id) WHERE request_id IS NOT NULL;
