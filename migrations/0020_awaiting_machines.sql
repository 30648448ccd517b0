-- Discovery of a machine that is off: an admin made the node and enrolled its BMC; crowbar
-- read the machine's MAC from the BMC and powered it on into discovery. While this is true
-- the machine that boots with the node's MAC registers as this node, once (its address, a
-- token); nothing else may.
--
-- Power operations gain `discover` (the above) and `check` (the credentials, what the BMC
-- tells of the machine, and whether the account may change its power; queued when a BMC
-- is enrolled).
ALTER TABLE nodes ADD COLUMN awaiting_machine boolean NOT NULL DEFAULT false;

ALTER TABLE power_ops DROP CONSTRAINT power_ops_action_check;
ALTER TABLE power_ops ADD CONSTRAINT power_ops_action_check
  CHECK (action IN ('on', 'off', 'force-off', 'cycle', 'pxe-once', 'discover', 'check'));
