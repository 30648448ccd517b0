-- IPMI 2.0 BMCs (lanplus, through ipmitool) beside Redfish ones. An IPMI BMC has no
-- certificate and no system id.
ALTER TABLE node_bmcs DROP CONSTRAINT node_bmcs_driver_check;
ALTER TABLE node_bmcs ADD CONSTRAINT node_bmcs_driver_check CHECK (driver IN ('redfish', 'ipmi'));
ALTER TABLE node_bmcs ADD CONSTRAINT node_bmcs_ipmi_has_no_system CHECK (driver <> 'ipmi' OR system IS NULL);
