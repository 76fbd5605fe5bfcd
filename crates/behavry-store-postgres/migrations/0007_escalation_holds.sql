-- Escalations that hold the call: the call they belong to (so a retry of
-- the same call picks up the decision), whether a call has used the
-- decision yet (a decision applies once), and the exception an approval
-- added.
ALTER TABLE escalations
    ADD COLUMN call_key text,
    ADD COLUMN consumed_at timestamptz,
    ADD COLUMN exception_id uuid;
CREATE INDEX escalations_call ON escalations (tenant_id, call_key, created_at);
CREATE INDEX escalations_pending ON escalations (expires_at) WHERE status = 'pending';

-- Approvals that outlive their call: this agent may call this tool (on
-- this resource, when one is named) without escalation until expiry.
CREATE TABLE escalation_exceptions (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id       uuid NOT NULL,
    server_id      uuid NOT NULL,
    tool_name      text NOT NULL,
    resource       text,
    expires_at     timestamptz,
    escalation_id  uuid,
    created_by     uuid,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX escalation_exceptions_match
    ON escalation_exceptions (tenant_id, agent_id, server_id, tool_name);

ALTER TABLE escalation_exceptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE escalation_exceptions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON escalation_exceptions
    USING (tenant_id = behavry_current_tenant())
    WITH CHECK (tenant_id = behavry_current_tenant());

GRANT SELECT, INSERT, UPDATE, DELETE ON escalation_exceptions TO {{app}};
GRANT SELECT, INSERT, UPDATE, DELETE ON escalation_exceptions TO {{superadmin}};
