-- Tool definitions pinned per tenant and server: the approved definition
-- and its hash, and a changed definition waiting for an admin (a "rug
-- pull": a tool that changes after it was trusted is withheld until then).
CREATE TABLE tool_pins (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    server_id           TEXT NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    tool_name           TEXT NOT NULL,
    hash                TEXT NOT NULL,
    definition          TEXT NOT NULL,
    approved_at         TEXT NOT NULL,
    -- An admin's id, or 'first_use' for a definition pinned when first seen.
    approved_by         TEXT NOT NULL,
    pending_hash        TEXT,
    pending_definition  TEXT,
    pending_since       TEXT,
    -- A change an admin rejected: not proposed again while it is served.
    rejected_hash       TEXT,
    UNIQUE (tenant_id, server_id, tool_name)
);
