-- Admin tokens are created and revoked through the API (API.md "Auth"): their names are
-- what the audit trail shows, so they are short words, like other names.
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_name_check
  CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$');

-- Filtered listings page through noderoles by state in id order (GET /api/v2/node_roles?state=).
CREATE INDEX noderoles_state_id ON noderoles (state, id);
-- A node's derived state looks only at its unsettled noderoles (none: it is active).
CREATE INDEX noderoles_node_unsettled ON noderoles (node_id, state) WHERE state <> 0;

-- Noderole counts by deployment and state, kept exact without counting the table
-- (GET /api/v2/anneal at fleet scale). Every statement that inserts, deletes or changes the
-- state or deployment of noderoles appends its net change here; readers sum. Appending never
-- waits on another transaction, so busy annealers do not queue behind each other; the sweep
-- folds the rows into one per (deployment, state) now and then.
CREATE TABLE noderole_tallies (
  id            bigserial PRIMARY KEY,
  deployment_id bigint NOT NULL,
  state         smallint NOT NULL,
  n             bigint NOT NULL
);
CREATE INDEX noderole_tallies_deployment ON noderole_tallies (deployment_id);

CREATE FUNCTION crowbar_tally_noderoles() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO noderole_tallies (deployment_id, state, n)
      SELECT deployment_id, state, count(*) FROM new_rows GROUP BY 1, 2;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO noderole_tallies (deployment_id, state, n)
      SELECT deployment_id, state, -count(*) FROM old_rows GROUP BY 1, 2;
  ELSE
    INSERT INTO noderole_tallies (deployment_id, state, n)
      SELECT deployment_id, state, sum(d) FROM (
          SELECT deployment_id, state, 1 AS d FROM new_rows
          UNION ALL
          SELECT deployment_id, state, -1 FROM old_rows) changes
       GROUP BY 1, 2 HAVING sum(d) <> 0;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER noderoles_tally_insert AFTER INSERT ON noderoles
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION crowbar_tally_noderoles();
-- (transition tables rule out a column list: updates that keep state and deployment add nothing)
CREATE TRIGGER noderoles_tally_update AFTER UPDATE ON noderoles
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION crowbar_tally_noderoles();
CREATE TRIGGER noderoles_tally_delete AFTER DELETE ON noderoles
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION crowbar_tally_noderoles();

INSERT INTO noderole_tallies (deployment_id, state, n)
  SELECT deployment_id, state, count(*) FROM noderoles GROUP BY 1, 2;
