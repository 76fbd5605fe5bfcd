-- Behavioural baselines: each agent's tool calls summed per clock hour and
-- tool, rolled up from the audit trail by the risk job, and the job's
-- verdict on the agent.
CREATE TABLE agent_activity (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id     TEXT NOT NULL,
    hour         TEXT NOT NULL,
    tool_name    TEXT NOT NULL,
    calls        INTEGER NOT NULL,
    denies       INTEGER NOT NULL,
    escalations  INTEGER NOT NULL,
    bytes_in     INTEGER NOT NULL,
    bytes_out    INTEGER NOT NULL,
    flagged      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, hour, tool_name)
);
CREATE INDEX agent_activity_hour ON agent_activity (tenant_id, hour);

ALTER TABLE agents ADD COLUMN has_recent_drift INTEGER NOT NULL DEFAULT 0;
-- The score's six dimensions, each 0-1, as last computed (JSON).
ALTER TABLE agents ADD COLUMN risk_factors TEXT;
-- Findings already alerted on, with how long to remember each (JSON).
ALTER TABLE agents ADD COLUMN risk_reported TEXT NOT NULL DEFAULT '{}';
ALTER TABLE agents ADD COLUMN risk_assessed_at TEXT;
