-- Behavioural baselines: each agent's tool calls summed per clock hour and
-- tool, rolled up from the audit trail by the risk job, and the job's
-- verdict on the agent.
CREATE TABLE agent_activity (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id     uuid NOT NULL,
    hour         timestamptz NOT NULL,
    tool_name    text NOT NULL,
    calls        bigint NOT NULL,
    denies       bigint NOT NULL,
    escalations  bigint NOT NULL,
    bytes_in     bigint NOT NULL,
    bytes_out    bigint NOT NULL,
    flagged      bigint NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, hour, tool_name)
);
CREATE INDEX agent_activity_hour ON agent_activity (tenant_id, hour);

ALTER TABLE agent_activity ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_activity FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON agent_activity
    USING (tenant_id = behavry_current_tenant())
    WITH CHECK (tenant_id = behavry_current_tenant());

GRANT SELECT, INSERT, UPDATE, DELETE ON agent_activity TO {{app}};
GRANT SELECT, INSERT, UPDATE, DELETE ON agent_activity TO {{superadmin}};

ALTER TABLE agents ADD COLUMN has_recent_drift boolean NOT NULL DEFAULT false;
-- The score's six dimensions, each 0-1, as last computed.
ALTER TABLE agents ADD COLUMN risk_factors jsonb;
-- Findings already alerted on, with how long to remember each.
ALTER TABLE agents ADD COLUMN risk_reported jsonb NOT NULL DEFAULT '{}';
ALTER TABLE agents ADD COLUMN risk_assessed_at timestamptz;
ALTER TABLE agents ADD CONSTRAINT agents_baseline_status
    CHECK (baseline_status IN ('learning', 'established'));
