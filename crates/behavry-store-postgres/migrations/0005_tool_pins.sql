-- Tool definitions pinned per tenant and server: the approved definition
-- and its hash, and a changed definition waiting for an admin (a "rug
-- pull": a tool that changes after it was trusted is withheld until then).
CREATE TABLE tool_pins (
    id                  uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    server_id           uuid NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    tool_name           text NOT NULL,
    hash                text NOT NULL,
    definition          jsonb NOT NULL,
    approved_at         timestamptz NOT NULL DEFAULT now(),
    -- An admin's id, or 'first_use' for a definition pinned when first seen.
    approved_by         text NOT NULL,
    pending_hash        text,
    pending_definition  jsonb,
    pending_since       timestamptz,
    -- A change an admin rejected: not proposed again while it is served.
    rejected_hash       text,
    UNIQUE (tenant_id, server_id, tool_name)
);

ALTER TABLE tool_pins ENABLE ROW LEVEL SECURITY;
ALTER TABLE tool_pins FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tool_pins
    USING (tenant_id = behavry_current_tenant())
    WITH CHECK (tenant_id = behavry_current_tenant());

GRANT SELECT, INSERT, UPDATE, DELETE ON tool_pins TO {{app}};
GRANT SELECT, INSERT, UPDATE, DELETE ON tool_pins TO {{superadmin}};
