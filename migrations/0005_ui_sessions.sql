-- Web UI logins: users with argon2 password hashes, and sessions stored by the SHA-256 of
-- their cookie (a stolen database holds no usable session).

CREATE TABLE users (
  id            bigserial PRIMARY KEY,
  name          text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
  -- PHC string: $argon2id$v=19$...
  password_hash text NOT NULL CHECK (password_hash LIKE '$argon2%'),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT users_name_unique UNIQUE (name)
);
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION crowbar_touch_updated_at();

CREATE TABLE ui_sessions (
  id         bigserial PRIMARY KEY,
  token_hash text NOT NULL,
  -- who the audit trail names for changes made in this session: `ui:<user>` or the token's name
  actor      text NOT NULL CHECK (actor <> ''),
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL CHECK (expires_at > created_at),
  CONSTRAINT ui_sessions_hash_unique UNIQUE (token_hash)
);
CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
