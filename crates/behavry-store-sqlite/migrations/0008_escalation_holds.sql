-- Escalations that hold the call: the call they belong to (so a retry of
-- the same call picks up the decision), whether a call has used the
-- decision yet, and the exception an approval added.
ALTER TABLE escalations ADD COLUMN call_key TEXT;
ALTER TABLE escalations ADD COLUMN consumed_at TEXT;
ALTER TABLE escalations ADD COLUMN exception_id TEXT;
CREATE INDEX escalations_call ON escalations (tenant_id, call_key, created_at);
CREATE INDEX escalations_pending ON escalations (status, expires_at);

-- Approvals that outlive their call.
CREATE TABLE escalation_exceptions (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id       TEXT NOT NULL,
    server_id      TEXT NOT NULL,
    tool_name      TEXT NOT NULL,
    resource       TEXT,
    expires_at     TEXT,
    escalation_id  TEXT,
    created_by     TEXT,
    created_at     TEXT NOT NULL
);
CREATE INDEX escalation_exceptions_match
    ON escalation_exceptions (tenant_id, agent_id, server_id, tool_name);
