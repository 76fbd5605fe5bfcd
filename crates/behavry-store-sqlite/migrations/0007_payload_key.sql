-- The tenant's payload data key (`encrypted` payload storage), wrapped by
-- the gateway's master key. Set once, on first use.
ALTER TABLE tenant_configs ADD COLUMN payload_data_key TEXT;
