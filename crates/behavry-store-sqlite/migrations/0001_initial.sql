-- Behavry schema, SQLite flavour.
-- Identifiers are UUID text; timestamps are UTC text as encoded by the driver.
-- Tenant isolation on SQLite is enforced by the storage API (every tenant
-- handle filters by tenant_id); PostgreSQL adds row-level security on top.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    -- The name lowercased by the application (SQLite's lower() is ASCII
    -- only): names are unique by it.
    name_key    TEXT NOT NULL UNIQUE,
    slug        TEXT NOT NULL UNIQUE CHECK (slug <> '' AND slug NOT GLOB '*[^a-z0-9-]*'),
    is_frozen   INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE tenant_configs (
    tenant_id                 TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    plan_tier                 TEXT NOT NULL DEFAULT 'trial' CHECK (plan_tier IN ('trial', 'growth', 'enterprise')),
    max_agents                INTEGER NOT NULL DEFAULT -1,
    max_rpm_per_agent         INTEGER NOT NULL DEFAULT 60,
    audit_retention_days      INTEGER NOT NULL DEFAULT 90,
    deployment_mode           TEXT NOT NULL DEFAULT 'saas' CHECK (deployment_mode IN ('saas', 'hybrid', 'byoc', 'self-hosted')),
    license_key               TEXT,
    license_expires_at        TEXT,
    suspended_at              TEXT,
    data_protection_policy    TEXT,
    blast_radius_config       TEXT,
    auto_activate_threshold   REAL,
    auto_activate_enabled     INTEGER NOT NULL DEFAULT 0,
    data_plane_deployment_id  TEXT,
    data_plane_last_seen_at   TEXT,
    data_plane_region         TEXT,
    updated_at                TEXT NOT NULL
);

-- Platform operators have no tenant (tenant_id NULL, is_super_admin = 1).
CREATE TABLE admin_users (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    username             TEXT NOT NULL,
    email                TEXT,
    password_hash        TEXT NOT NULL,
    role                 TEXT NOT NULL CHECK (role IN ('viewer', 'analyst', 'policy_author', 'admin')),
    status               TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('invited', 'active', 'deactivated')),
    is_super_admin       INTEGER NOT NULL DEFAULT 0,
    created_at           TEXT NOT NULL,
    last_login_at        TEXT,
    password_changed_at  TEXT,
    CHECK (is_super_admin = (tenant_id IS NULL))
);
CREATE UNIQUE INDEX admin_users_username_lower ON admin_users (lower(username));
CREATE UNIQUE INDEX admin_users_email_lower ON admin_users (lower(email));
CREATE INDEX admin_users_tenant ON admin_users (tenant_id);

CREATE TABLE agents (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    agent_type          TEXT NOT NULL DEFAULT 'custom',
    owner               TEXT,
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'revoked')),
    risk_score          INTEGER NOT NULL DEFAULT 0,
    risk_tier           TEXT NOT NULL DEFAULT 'low' CHECK (risk_tier IN ('low', 'medium', 'high', 'critical')),
    client_id           TEXT NOT NULL UNIQUE,
    client_secret_hash  TEXT NOT NULL,
    roles               TEXT NOT NULL DEFAULT '[]',
    permissions         TEXT NOT NULL DEFAULT '[]',
    tags                TEXT NOT NULL DEFAULT '[]',
    baseline_status     TEXT NOT NULL DEFAULT 'learning',
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    last_seen_at        TEXT
);
CREATE INDEX agents_tenant ON agents (tenant_id, created_at);

CREATE TABLE enrollment_tokens (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token_hash        TEXT NOT NULL UNIQUE,
    expires_at        TEXT NOT NULL,
    used_at           TEXT,
    used_by_agent_id  TEXT,
    created_by        TEXT,
    created_at        TEXT NOT NULL
);
CREATE INDEX enrollment_tokens_tenant ON enrollment_tokens (tenant_id);

CREATE TABLE extension_tokens (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    expires_at    TEXT NOT NULL,
    revoked_at    TEXT,
    last_used_at  TEXT,
    created_at    TEXT NOT NULL
);
CREATE INDEX extension_tokens_tenant ON extension_tokens (tenant_id);

-- tenant_id NULL marks a global policy (the built-in base pack): readable by
-- every tenant, writable by none.
CREATE TABLE policies (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    content      TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active')),
    version      INTEGER NOT NULL DEFAULT 1,
    created_by   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX policies_tenant ON policies (tenant_id, status);

CREATE TABLE policy_candidates (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    content      TEXT NOT NULL,
    rationale    TEXT,
    confidence   REAL,
    status       TEXT NOT NULL DEFAULT 'proposed' CHECK (status IN ('proposed', 'accepted', 'rejected', 'activated')),
    created_at   TEXT NOT NULL,
    decided_at   TEXT
);
CREATE INDEX policy_candidates_tenant ON policy_candidates (tenant_id, status);

CREATE TABLE alerts (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id         TEXT,
    alert_type       TEXT NOT NULL,
    severity         TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    status           TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    title            TEXT NOT NULL,
    details          TEXT NOT NULL DEFAULT '{}',
    occurrences      INTEGER NOT NULL DEFAULT 1,
    first_seen_at    TEXT NOT NULL,
    last_seen_at     TEXT NOT NULL,
    acknowledged_at  TEXT,
    acknowledged_by  TEXT,
    resolved_at      TEXT,
    resolved_by      TEXT
);
CREATE INDEX alerts_tenant ON alerts (tenant_id, status, last_seen_at);

-- Append-only: the application never updates or deletes audit rows; the
-- triggers make that a rule of the database too. Retention is the only
-- deletion path and runs with triggers dropped under an operator command.
CREATE TABLE audit_events (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    seq               INTEGER NOT NULL,
    timestamp         TEXT NOT NULL,
    agent_id          TEXT,
    session_id        TEXT,
    action            TEXT NOT NULL,
    target            TEXT,
    tool_name         TEXT,
    mcp_server        TEXT,
    policy_result     TEXT CHECK (policy_result IN ('allow', 'deny', 'escalate')),
    policy_id         TEXT,
    policy_reason     TEXT,
    behavioral_score  REAL,
    dlp_findings      TEXT NOT NULL DEFAULT '[]',
    dlp_action        TEXT CHECK (dlp_action IN ('allow', 'warn', 'block')),
    input_hash        TEXT,
    previous_hash     TEXT NOT NULL,
    event_hash        TEXT NOT NULL,
    response_code     INTEGER,
    latency_ms        REAL,
    error             TEXT,
    request_size      INTEGER NOT NULL DEFAULT 0,
    response_size     INTEGER NOT NULL DEFAULT 0,
    extra             TEXT NOT NULL DEFAULT '{}',
    requester_id      TEXT
);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, timestamp);
CREATE INDEX audit_events_agent_time ON audit_events (tenant_id, agent_id, timestamp);
CREATE UNIQUE INDEX audit_events_chain ON audit_events (tenant_id, seq);

CREATE TABLE audit_chain_heads (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    last_seq    INTEGER NOT NULL,
    last_hash   TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

CREATE TABLE escalations (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id        TEXT,
    audit_event_id  TEXT,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied', 'timed_out')),
    summary         TEXT NOT NULL DEFAULT '{}',
    decided_by      TEXT,
    decision_reason TEXT,
    decided_at      TEXT,
    expires_at      TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX escalations_tenant ON escalations (tenant_id, status, created_at);

CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id          TEXT NOT NULL,
    server_id         TEXT,
    client_name       TEXT,
    client_version    TEXT,
    protocol_version  TEXT,
    started_at        TEXT NOT NULL,
    last_seen_at      TEXT NOT NULL,
    call_count        INTEGER NOT NULL DEFAULT 0,
    ended_at          TEXT,
    tainted           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_tenant ON sessions (tenant_id, last_seen_at);

CREATE TABLE mcp_servers (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    transport   TEXT NOT NULL CHECK (transport IN ('stdio', 'streamable_http', 'sse')),
    command     TEXT,
    args        TEXT NOT NULL DEFAULT '[]',
    url         TEXT,
    secrets     TEXT,
    tags        TEXT NOT NULL DEFAULT '[]',
    timeout_ms  INTEGER NOT NULL DEFAULT 60000,
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE siem_destinations (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    dest_type   TEXT NOT NULL CHECK (dest_type IN ('splunk_hec', 'sentinel', 'chronicle', 'qradar', 'syslog', 'webhook')),
    config      TEXT NOT NULL DEFAULT '{}',
    filters     TEXT NOT NULL DEFAULT '{}',
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX siem_destinations_tenant ON siem_destinations (tenant_id);
