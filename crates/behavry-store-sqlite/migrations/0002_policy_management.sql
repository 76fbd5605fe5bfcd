-- Policy management: enforcement mode, the declared package, immutable
-- version history, the base-pack switch, and a per-tenant revision counter.

ALTER TABLE policies ADD COLUMN mode TEXT NOT NULL DEFAULT 'enforce' CHECK (mode IN ('enforce', 'monitor'));
ALTER TABLE policies ADD COLUMN package TEXT;
CREATE UNIQUE INDEX policies_tenant_name ON policies (tenant_id, name);
-- Two active policies declaring one package would merge into one Rego
-- package; the database refuses it.
CREATE UNIQUE INDEX policies_active_package ON policies (tenant_id, package)
    WHERE status = 'active';

-- No foreign key to policies: history outlives a deleted policy.
CREATE TABLE policy_versions (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    policy_id    TEXT NOT NULL,
    version      INTEGER NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    content      TEXT NOT NULL,
    package      TEXT,
    status       TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active')),
    mode         TEXT NOT NULL DEFAULT 'enforce' CHECK (mode IN ('enforce', 'monitor')),
    created_by   TEXT,
    created_at   TEXT NOT NULL,
    UNIQUE (policy_id, version)
);
CREATE INDEX policy_versions_tenant ON policy_versions (tenant_id, policy_id);

ALTER TABLE tenant_configs ADD COLUMN base_pack_enabled INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tenant_configs ADD COLUMN policy_revision INTEGER NOT NULL DEFAULT 0;
