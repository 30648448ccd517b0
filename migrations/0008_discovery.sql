-- Discovery's own nodes, and one node per address (docs/provisioning.md "Discovery").

-- True while a node was made by `/discover` and no admin has accepted it (changed it or
-- bound a role to it). Only such nodes register again, and only they count against
-- --discovery-limit, whatever their bootenv.
ALTER TABLE nodes ADD COLUMN discovered boolean NOT NULL DEFAULT false;

-- Nodes discovery made before this column: its description and actor, still in discovery.
UPDATE nodes n SET discovered = true
 WHERE n.bootenv = 'sledgehammer' AND n.description = 'discovered' AND NOT n.admin
   AND EXISTS (SELECT 1 FROM events e WHERE e.node_id = n.id AND e.type = 'node.created'
                  AND e.actor LIKE 'discovery:%');

-- Counting them for the limit reads this index only.
CREATE INDEX nodes_discovered ON nodes (id) WHERE discovered;

-- crowbar reaches a node at its address as root: two nodes never share one, whatever
-- number of daemons create or move nodes. Refuse to go on, naming them, where they do.
DO $$
DECLARE
  shared text;
BEGIN
  SELECT string_agg(address || ' (' || names || ')', ', ') INTO shared
    FROM (SELECT host(address) AS address, string_agg(name, ', ' ORDER BY name) AS names
            FROM nodes WHERE address IS NOT NULL
           GROUP BY host(address) HAVING count(*) > 1) d;
  IF shared IS NOT NULL THEN
    RAISE EXCEPTION 'crowbar: nodes share addresses: %; give each node its own address (or none) and start again', shared;
  END IF;
END $$;
CREATE UNIQUE INDEX nodes_address_unique ON nodes (host(address));
