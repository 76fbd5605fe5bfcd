-- Policy management: enforcement mode, the declared package, immutable
-- version history, the base-pack switch, and a per-tenant revision counter
-- that every replica polls to pick up policy changes made elsewhere.

ALTER TABLE policies
    ADD COLUMN mode text NOT NULL DEFAULT 'enforce' CHECK (mode IN ('enforce', 'monitor')),
    ADD COLUMN package text;
CREATE UNIQUE INDEX policies_tenant_name ON policies (tenant_id, name);
-- Two active policies declaring one package would merge into one Rego
-- package; the database refuses it even when two activations race.
CREATE UNIQUE INDEX policies_active_package ON policies (tenant_id, package)
    WHERE status = 'active';

-- No foreign key to policies: history outlives a deleted policy.
CREATE TABLE policy_versions (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    policy_id    uuid NOT NULL,
    version      integer NOT NULL,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    content      text NOT NULL,
    package      text,
    status       text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active')),
    mode         text NOT NULL DEFAULT 'enforce' CHECK (mode IN ('enforce', 'monitor')),
    created_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (policy_id, version)
);
CREATE INDEX policy_versions_tenant ON policy_versions (tenant_id, policy_id);

ALTER TABLE policy_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE policy_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON policy_versions
    USING (tenant_id = behavry_current_tenant())
    WITH CHECK (tenant_id = behavry_current_tenant());

ALTER TABLE tenant_configs
    ADD COLUMN base_pack_enabled boolean NOT NULL DEFAULT true,
    ADD COLUMN policy_revision bigint NOT NULL DEFAULT 0;

GRANT UPDATE (base_pack_enabled, policy_revision) ON tenant_configs TO {{app}};
-- History is append-only for the application.
GRANT SELECT, INSERT ON policy_versions TO {{app}};
GRANT SELECT, INSERT, UPDATE, DELETE ON policy_versions TO {{superadmin}};
