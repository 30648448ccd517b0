-- Admin tokens are created and revoked through the API (API.md "Auth"): their names are
-- what the audit trail shows, so they are short words, like other names.
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_name_check
  CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$');

-- Filtered listings page through noderoles by state in id order (GET /api/v2/node_roles?state=).
CREATE INDEX noderoles_state_id ON noderoles (state, id);
