-- The delivery log of alert webhooks: one row per alert and URL, updated
-- after each attempt.
CREATE TABLE webhook_deliveries (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    alert_id       uuid,
    url            text NOT NULL,
    status         text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts       integer NOT NULL DEFAULT 0,
    response_code  integer,
    error          text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, created_at);

ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_deliveries
    USING (tenant_id = behavry_current_tenant())
    WITH CHECK (tenant_id = behavry_current_tenant());

GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO {{app}};
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_deliveries TO {{superadmin}};
