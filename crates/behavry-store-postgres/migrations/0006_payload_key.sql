-- The tenant's payload data key (`encrypted` payload storage), wrapped by
-- the gateway's master key: the database never holds it in the clear. Set
-- once, on first use; the application only ever fills it when empty.
ALTER TABLE tenant_configs ADD COLUMN payload_data_key text;

GRANT UPDATE (payload_data_key) ON tenant_configs TO {{app}};
