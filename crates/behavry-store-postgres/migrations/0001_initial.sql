-- Behavry schema, PostgreSQL flavour.
--
-- Runs as the owner role ({{owner}}). {{app}} is the role the server uses for
-- tenant-scoped work: it has no BYPASSRLS, so every tenant table below is
-- filtered by row-level security. {{superadmin}} has BYPASSRLS and is used
-- for platform administration, pre-authentication lookups and jobs.
--
-- The tenant of a unit of work is the transaction-local setting
-- behavry.tenant_id. When it is unset or empty, no tenant rows are visible.

CREATE FUNCTION behavry_current_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('behavry.tenant_id', true), '')::uuid
$$;

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    -- The name lowercased by the application (Unicode-aware, unlike the
    -- database's lower() under the C locale): names are unique by it.
    name_key    text NOT NULL UNIQUE,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9-]+$'),
    is_frozen   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant_configs (
    tenant_id                 uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    plan_tier                 text NOT NULL DEFAULT 'trial' CHECK (plan_tier IN ('trial', 'growth', 'enterprise')),
    max_agents                integer NOT NULL DEFAULT -1,
    max_rpm_per_agent         integer NOT NULL DEFAULT 60,
    audit_retention_days      integer NOT NULL DEFAULT 90,
    deployment_mode           text NOT NULL DEFAULT 'saas' CHECK (deployment_mode IN ('saas', 'hybrid', 'byoc', 'self-hosted')),
    license_key               text,
    license_expires_at        timestamptz,
    suspended_at              timestamptz,
    data_protection_policy    jsonb,
    blast_radius_config       jsonb,
    auto_activate_threshold   double precision,
    auto_activate_enabled     boolean NOT NULL DEFAULT false,
    data_plane_deployment_id  text,
    data_plane_last_seen_at   timestamptz,
    data_plane_region         text,
    updated_at                timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE admin_users (
    id                   uuid PRIMARY KEY,
    tenant_id            uuid REFERENCES tenants (id) ON DELETE CASCADE,
    username             text NOT NULL,
    email                text,
    password_hash        text NOT NULL,
    role                 text NOT NULL CHECK (role IN ('viewer', 'analyst', 'policy_author', 'admin')),
    status               text NOT NULL DEFAULT 'active' CHECK (status IN ('invited', 'active', 'deactivated')),
    is_super_admin       boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    last_login_at        timestamptz,
    password_changed_at  timestamptz,
    -- Platform operators, and only they, have no tenant: a tenant's own
    -- transaction can never mint an operator.
    CHECK (is_super_admin = (tenant_id IS NULL))
);
CREATE UNIQUE INDEX admin_users_username_lower ON admin_users (lower(username));
CREATE UNIQUE INDEX admin_users_email_lower ON admin_users (lower(email));
CREATE INDEX admin_users_tenant ON admin_users (tenant_id);

CREATE TABLE agents (
    id                  uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                text NOT NULL,
    agent_type          text NOT NULL DEFAULT 'custom',
    owner               text,
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'revoked')),
    risk_score          integer NOT NULL DEFAULT 0 CHECK (risk_score BETWEEN 0 AND 100),
    risk_tier           text NOT NULL DEFAULT 'low' CHECK (risk_tier IN ('low', 'medium', 'high', 'critical')),
    client_id           text NOT NULL UNIQUE,
    client_secret_hash  text NOT NULL,
    roles               jsonb NOT NULL DEFAULT '[]',
    permissions         jsonb NOT NULL DEFAULT '[]',
    tags                jsonb NOT NULL DEFAULT '[]',
    baseline_status     text NOT NULL DEFAULT 'learning',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz
);
CREATE INDEX agents_tenant ON agents (tenant_id, created_at);

CREATE TABLE enrollment_tokens (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token_hash        text NOT NULL UNIQUE,
    expires_at        timestamptz NOT NULL,
    used_at           timestamptz,
    used_by_agent_id  uuid,
    created_by        uuid,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX enrollment_tokens_tenant ON enrollment_tokens (tenant_id);

CREATE TABLE extension_tokens (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          text NOT NULL,
    token_hash    text NOT NULL UNIQUE,
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX extension_tokens_tenant ON extension_tokens (tenant_id);

CREATE TABLE policies (
    id           uuid PRIMARY KEY,
    tenant_id    uuid REFERENCES tenants (id) ON DELETE CASCADE,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    content      text NOT NULL,
    status       text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active')),
    version      integer NOT NULL DEFAULT 1,
    created_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX policies_tenant ON policies (tenant_id, status);

CREATE TABLE policy_candidates (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text NOT NULL,
    content      text NOT NULL,
    rationale    text,
    confidence   double precision,
    status       text NOT NULL DEFAULT 'proposed' CHECK (status IN ('proposed', 'accepted', 'rejected', 'activated')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    decided_at   timestamptz
);
CREATE INDEX policy_candidates_tenant ON policy_candidates (tenant_id, status);

CREATE TABLE alerts (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id         uuid,
    alert_type       text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    title            text NOT NULL,
    details          jsonb NOT NULL DEFAULT '{}',
    occurrences      integer NOT NULL DEFAULT 1,
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    acknowledged_by  uuid,
    resolved_at      timestamptz,
    resolved_by      uuid
);
CREATE INDEX alerts_tenant ON alerts (tenant_id, status, last_seen_at);

-- Range-partitioned by time. Partitions are created ahead of time by
-- behavry_ensure_audit_partitions(); the default partition catches anything
-- outside them so an insert never fails for want of a partition.
CREATE TABLE audit_events (
    id                uuid NOT NULL,
    tenant_id         uuid NOT NULL,
    -- Position in the tenant's hash chain (see audit_chain_heads).
    seq               bigint NOT NULL,
    "timestamp"       timestamptz NOT NULL,
    agent_id          uuid,
    session_id        text,
    action            text NOT NULL,
    target            text,
    tool_name         text,
    mcp_server        text,
    policy_result     text CHECK (policy_result IN ('allow', 'deny', 'escalate')),
    policy_id         text,
    policy_reason     text,
    behavioral_score  double precision,
    dlp_findings      jsonb NOT NULL DEFAULT '[]',
    dlp_action        text CHECK (dlp_action IN ('allow', 'warn', 'block')),
    input_hash        text,
    previous_hash     text NOT NULL,
    event_hash        text NOT NULL,
    response_code     integer,
    latency_ms        double precision,
    error             text,
    request_size      bigint NOT NULL DEFAULT 0,
    response_size     bigint NOT NULL DEFAULT 0,
    extra             jsonb NOT NULL DEFAULT '{}',
    requester_id      text,
    PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, "timestamp");
CREATE INDEX audit_events_agent_time ON audit_events (tenant_id, agent_id, "timestamp");
CREATE INDEX audit_events_chain ON audit_events (tenant_id, seq);
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

-- The end of each tenant's audit chain. Appending locks this row, which
-- serialises appends per tenant across replicas and keeps seq gapless.
CREATE TABLE audit_chain_heads (
    tenant_id   uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    last_seq    bigint NOT NULL,
    last_hash   text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE escalations (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id        uuid,
    audit_event_id  uuid,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied', 'timed_out')),
    summary         jsonb NOT NULL DEFAULT '{}',
    decided_by      uuid,
    decision_reason text,
    decided_at      timestamptz,
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX escalations_tenant ON escalations (tenant_id, status, created_at);

CREATE TABLE sessions (
    id                text PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id          uuid NOT NULL,
    server_id         text,
    client_name       text,
    client_version    text,
    protocol_version  text,
    started_at        timestamptz NOT NULL DEFAULT now(),
    last_seen_at      timestamptz NOT NULL DEFAULT now(),
    call_count        bigint NOT NULL DEFAULT 0,
    ended_at          timestamptz,
    tainted           boolean NOT NULL DEFAULT false
);
CREATE INDEX sessions_tenant ON sessions (tenant_id, last_seen_at);

-- Upstream MCP servers. `secrets` is ciphertext (env vars, HTTP headers)
-- encrypted by the server with a key derived from SECRET_KEY.
CREATE TABLE mcp_servers (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    transport   text NOT NULL CHECK (transport IN ('stdio', 'streamable_http', 'sse')),
    command     text,
    args        jsonb NOT NULL DEFAULT '[]',
    url         text,
    secrets     text,
    tags        jsonb NOT NULL DEFAULT '[]',
    timeout_ms  bigint NOT NULL DEFAULT 60000,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

CREATE TABLE siem_destinations (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    dest_type   text NOT NULL CHECK (dest_type IN ('splunk_hec', 'sentinel', 'chronicle', 'qradar', 'syslog', 'webhook')),
    config      jsonb NOT NULL DEFAULT '{}',
    filters     jsonb NOT NULL DEFAULT '{}',
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX siem_destinations_tenant ON siem_destinations (tenant_id);

-- Row-level security ------------------------------------------------------

-- A tenant sees exactly its own row of tenants and tenant_configs.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = behavry_current_tenant())
    WITH CHECK (id = behavry_current_tenant());

DO $$
DECLARE
    t text;
BEGIN
    -- Strictly tenant-owned tables: rows of other tenants and rows without a
    -- tenant (platform operators in admin_users) are invisible.
    FOREACH t IN ARRAY ARRAY[
        'tenant_configs', 'admin_users', 'agents', 'enrollment_tokens',
        'extension_tokens', 'policy_candidates', 'alerts', 'audit_events',
        'audit_chain_heads',
        'escalations', 'sessions', 'siem_destinations', 'mcp_servers'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I
                 USING (tenant_id = behavry_current_tenant())
                 WITH CHECK (tenant_id = behavry_current_tenant())', t);
    END LOOP;
END
$$;

-- Policies may be global (tenant_id NULL): readable by every tenant,
-- writable by none. Permissive policies are OR-ed per command, so SELECT sees
-- own + global rows while INSERT/UPDATE/DELETE are limited to own rows.
ALTER TABLE policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON policies
    USING (tenant_id = behavry_current_tenant())
    WITH CHECK (tenant_id = behavry_current_tenant());
CREATE POLICY global_read ON policies FOR SELECT
    USING (tenant_id IS NULL);

-- Partitions are reached only through the parent, but keep the owner
-- restricted on the default partition too.
ALTER TABLE audit_events_default ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events_default FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events_default
    USING (tenant_id = behavry_current_tenant())
    WITH CHECK (tenant_id = behavry_current_tenant());

-- Partition maintenance, run by the superadmin role through a definer
-- function so that it needs no ownership of the table.
CREATE FUNCTION behavry_ensure_audit_partitions(months_ahead integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    month_start date := date_trunc('month', now())::date;
    from_date date;
    name text;
    created integer := 0;
BEGIN
    FOR i IN 0..months_ahead LOOP
        from_date := (month_start + make_interval(months => i))::date;
        name := format('audit_events_y%sm%s', to_char(from_date, 'YYYY'), to_char(from_date, 'MM'));
        IF to_regclass(name) IS NULL THEN
            -- Rows already in the default partition for this range would make
            -- the attach fail; they stay where they are and the range is
            -- retried at the next pass once retention has moved them.
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
                    name, from_date, (from_date + interval '1 month')::date);
                EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', name);
                EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', name);
                EXECUTE format(
                    'CREATE POLICY tenant_isolation ON %I
                         USING (tenant_id = behavry_current_tenant())
                         WITH CHECK (tenant_id = behavry_current_tenant())', name);
                created := created + 1;
            EXCEPTION WHEN check_violation THEN
                RAISE WARNING 'audit partition % not created: rows for it sit in the default partition', name;
            END;
        END IF;
    END LOOP;
    RETURN created;
END
$$;
REVOKE ALL ON FUNCTION behavry_ensure_audit_partitions(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION behavry_ensure_audit_partitions(integer) TO {{superadmin}};
SELECT behavry_ensure_audit_partitions(2);

-- Privileges --------------------------------------------------------------

GRANT SELECT ON tenants TO {{app}};
-- Tenants may tune their own protection settings; plan, limits, licence and
-- suspension belong to platform operators.
GRANT SELECT ON tenant_configs TO {{app}};
GRANT UPDATE (data_protection_policy, blast_radius_config, auto_activate_threshold,
              auto_activate_enabled, updated_at) ON tenant_configs TO {{app}};
GRANT SELECT, INSERT, UPDATE, DELETE ON
    admin_users, agents, enrollment_tokens, extension_tokens, policies,
    policy_candidates, alerts, escalations, sessions, siem_destinations,
    mcp_servers
    TO {{app}};
-- Append-only for the application.
GRANT SELECT, INSERT ON audit_events TO {{app}};
GRANT SELECT, UPDATE ON audit_chain_heads TO {{app}};

GRANT SELECT, INSERT, UPDATE, DELETE ON
    tenants, tenant_configs, admin_users, agents, enrollment_tokens,
    extension_tokens, policies, policy_candidates, alerts, escalations,
    sessions, siem_destinations, mcp_servers
    TO {{superadmin}};
-- Retention is the only path that removes audit rows; nobody updates them.
GRANT SELECT, INSERT, DELETE ON audit_events TO {{superadmin}};
GRANT SELECT, INSERT, UPDATE, DELETE ON audit_chain_heads TO {{superadmin}};
