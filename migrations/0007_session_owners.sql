-- A UI session lives only as long as what opened it: the admin token (ended when the token
-- is revoked or replaced) or the password user (ended when the user is deleted). Before,
-- a session outlived a revoked token and could still make changes.

ALTER TABLE ui_sessions
  ADD COLUMN token_id bigint REFERENCES api_tokens (id) ON DELETE CASCADE,
  ADD COLUMN user_id  bigint REFERENCES users (id) ON DELETE CASCADE;

-- sessions opened before this know their owner only by the actor they record
UPDATE ui_sessions s SET token_id = t.id
  FROM api_tokens t WHERE s.actor = 'admin:' || t.name AND t.revoked_at IS NULL;
UPDATE ui_sessions s SET user_id = u.id
  FROM users u WHERE s.actor = 'user:' || u.name;
DELETE FROM ui_sessions WHERE token_id IS NULL AND user_id IS NULL;

ALTER TABLE ui_sessions ADD CONSTRAINT ui_sessions_one_owner
  CHECK (num_nonnulls(token_id, user_id) = 1);
CREATE INDEX ui_sessions_token ON ui_sessions (token_id);
CREATE INDEX ui_sessions_user ON ui_sessions (user_id);

-- Tokens are revoked by marking them, not deleted (their names stay taken), and the
-- built-in admin token is replaced in place at start: either way the token that opened a
-- session stops working, so its sessions go with it, whatever statement did it.
CREATE FUNCTION crowbar_end_token_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM ui_sessions WHERE token_id = NEW.id;
  RETURN NULL;
END $$;

CREATE TRIGGER api_tokens_end_sessions AFTER UPDATE OF revoked_at, token_hash ON api_tokens
  FOR EACH ROW
  WHEN (NEW.revoked_at IS NOT NULL OR NEW.token_hash IS DISTINCT FROM OLD.token_hash)
  EXECUTE FUNCTION crowbar_end_token_sessions();
