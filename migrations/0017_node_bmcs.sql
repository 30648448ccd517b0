-- A node's BMC: how crowbar reaches the machine's baseboard management controller to read
-- and change its power and next boot device. The password is sealed (AES-256-GCM, the key in
-- the data directory of every daemon: src/power/vault.rs), never stored in the clear. The
-- certificate is pinned on first contact, like SSH host keys; the power state is the last
-- one read.
CREATE TABLE node_bmcs (
    node_id          bigint PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
    driver           text NOT NULL CHECK (driver IN ('redfish')),
    address          text NOT NULL CHECK (length(address) BETWEEN 1 AND 253),
    port             integer CHECK (port BETWEEN 1 AND 65535),
    system           text CHECK (length(system) BETWEEN 1 AND 255),
    username         text NOT NULL CHECK (length(username) BETWEEN 1 AND 64),
    password_sealed  bytea NOT NULL,
    cert_fingerprint text,
    power            text CHECK (power IN ('on', 'off', 'unknown')),
    power_checked_at timestamptz,
    power_reason     text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
