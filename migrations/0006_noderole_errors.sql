-- Whether a noderole's node has a noderole in ERROR (`node_error`, the node is frozen) is
-- read for every noderole a list shows; with this index it is answered from the index
-- alone instead of visiting every failed noderole's row.
CREATE INDEX noderoles_errors ON noderoles (node_id) WHERE state = -1;
