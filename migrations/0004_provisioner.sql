-- The provisioner (SEMANTICS.md §10–11): networks and address allocation, what the DHCP
-- database last handed to dnsmasq, and the OS-install handshake.

-- Networks with IPv4 and/or IPv6 ranges and a router.
CREATE TABLE networks (
  id            bigserial PRIMARY KEY,
  name          text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]*$'),
  deployment_id bigint NOT NULL REFERENCES deployments(id),
  description   text NOT NULL DEFAULT '',
  -- 'auto' (an RFC 4193 prefix) or a /64 in CIDR notation; checked by the daemon
  v6prefix      text CHECK (CASE WHEN v6prefix = 'auto' THEN true
                                 ELSE family(v6prefix::cidr) = 6 AND masklen(v6prefix::cidr) = 64 END),
  -- the IPv4 subnet, for the prefix length of addresses (optional)
  v4prefix      cidr CHECK (family(v4prefix) = 4),
  router        inet,
  router_pref   integer NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT networks_name_unique UNIQUE (name)
);
CREATE TRIGGER networks_touch BEFORE UPDATE ON networks FOR EACH ROW EXECUTE FUNCTION crowbar_touch_updated_at();

CREATE TABLE network_ranges (
  id         bigserial PRIMARY KEY,
  network_id bigint NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
  name       text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]*$'),
  first      inet NOT NULL,
  last       inet NOT NULL,
  CONSTRAINT network_ranges_name_unique UNIQUE (network_id, name),
  CONSTRAINT network_ranges_bounds CHECK (family(first) = family(last) AND first <= last
                                          AND masklen(first) = masklen(last)
                                          AND masklen(first) IN (32, 128))
);

-- Addresses handed to nodes. The database refuses the same address twice on a network and
-- a second address of one family for one node, whatever number of daemons allocate.
CREATE TABLE network_allocations (
  id         bigserial PRIMARY KEY,
  network_id bigint NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
  -- the range it came from; NULL for an IPv6 address derived from the network's v6prefix
  range_id   bigint REFERENCES network_ranges(id) ON DELETE CASCADE,
  node_id    bigint NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
  address    inet NOT NULL,
  family     smallint GENERATED ALWAYS AS (family(address)) STORED,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT network_allocations_address_unique UNIQUE (network_id, address),
  CONSTRAINT network_allocations_one_per_family UNIQUE (network_id, node_id, family)
);
CREATE INDEX network_allocations_node ON network_allocations (node_id);
CREATE INDEX network_allocations_range ON network_allocations (range_id, address);

-- The RFC 4193 global ID of this installation: 40 random bits, chosen once, here.
INSERT INTO installation (key, value)
VALUES ('ipam.ula_global_id',
        to_jsonb(('x' || substr(md5(gen_random_uuid()::text), 1, 10))::bit(40)::bigint));

-- What the DHCP database role last wrote for each node and had dnsmasq reload: the
-- OS-install handshake compares it with the node before rebooting the node.
CREATE TABLE dhcp_reservations (
  node_id    bigint PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
  mac        macaddr NOT NULL,
  address    inet NOT NULL,
  written_at timestamptz NOT NULL DEFAULT now()
);

-- The OS-install handshake of a node (docs/provisioning.md). One row per node, ever: a
-- node whose install is `done` is never installed again.
CREATE TABLE os_installs (
  node_id    bigint PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
  bootenv    text NOT NULL,
  state      text NOT NULL CHECK (state IN ('requested', 'rebooting', 'installed', 'done')),
  -- the last event before the provisioner confirmed the install: the node's next
  -- `alive=true` after it means the installed system booted
  confirmed_after_event bigint,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER os_installs_touch BEFORE UPDATE ON os_installs FOR EACH ROW EXECUTE FUNCTION crowbar_touch_updated_at();
