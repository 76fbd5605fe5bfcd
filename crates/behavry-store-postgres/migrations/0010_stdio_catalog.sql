-- stdio servers: which operator catalogue entry a tenant's server runs, and
-- whether its own command was set by a platform operator. Commands set
-- before this migration were set by tenant admins and are never run again.
ALTER TABLE mcp_servers ADD COLUMN catalog_entry text;
ALTER TABLE mcp_servers ADD COLUMN operator_defined boolean NOT NULL DEFAULT false;
