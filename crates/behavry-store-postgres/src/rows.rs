//! Row decoding and the column lists that go with it.

use behavry_core::{AdminUserId, Tenant, TenantConfig, TenantId};
use behavry_store::{AdminUserRecord, StoreError, StoreResult, TenantRecord};
use sqlx::Row;
use sqlx::postgres::PgRow;

pub(crate) const TENANT_COLUMNS: &str = "t.id, t.name, t.slug, t.is_frozen, t.created_at, \
    c.plan_tier, c.max_agents, c.max_rpm_per_agent, c.audit_retention_days, c.deployment_mode, \
    c.license_key, c.license_expires_at, c.suspended_at, c.data_protection_policy, \
    c.blast_radius_config, c.auto_activate_threshold, c.auto_activate_enabled, \
    c.data_plane_deployment_id, c.data_plane_last_seen_at, c.data_plane_region";

pub(crate) const ADMIN_COLUMNS: &str = "id, tenant_id, username, email, password_hash, role, status, \
    is_super_admin, created_at, last_login_at";

fn parse<T: std::str::FromStr<Err = String>>(value: String) -> StoreResult<T> {
    value.parse().map_err(StoreError::corrupt)
}

pub(crate) fn tenant_record(row: &PgRow) -> StoreResult<TenantRecord> {
    let get = |e: sqlx::Error| StoreError::internal(e);
    Ok(TenantRecord {
        tenant: Tenant {
            id: TenantId(row.try_get("id").map_err(get)?),
            name: row.try_get("name").map_err(get)?,
            slug: row.try_get("slug").map_err(get)?,
            is_frozen: row.try_get("is_frozen").map_err(get)?,
            created_at: row.try_get("created_at").map_err(get)?,
        },
        config: TenantConfig {
            plan_tier: parse(row.try_get("plan_tier").map_err(get)?)?,
            max_agents: row.try_get("max_agents").map_err(get)?,
            max_rpm_per_agent: row.try_get("max_rpm_per_agent").map_err(get)?,
            audit_retention_days: row.try_get("audit_retention_days").map_err(get)?,
            deployment_mode: parse(row.try_get("deployment_mode").map_err(get)?)?,
            license_key: row.try_get("license_key").map_err(get)?,
            license_expires_at: row.try_get("license_expires_at").map_err(get)?,
            suspended_at: row.try_get("suspended_at").map_err(get)?,
            data_protection_policy: row.try_get("data_protection_policy").map_err(get)?,
            blast_radius_config: row.try_get("blast_radius_config").map_err(get)?,
            auto_activate_threshold: row.try_get("auto_activate_threshold").map_err(get)?,
            auto_activate_enabled: row.try_get("auto_activate_enabled").map_err(get)?,
            data_plane_deployment_id: row.try_get("data_plane_deployment_id").map_err(get)?,
            data_plane_last_seen_at: row.try_get("data_plane_last_seen_at").map_err(get)?,
            data_plane_region: row.try_get("data_plane_region").map_err(get)?,
        },
    })
}

pub(crate) fn admin_record(row: &PgRow) -> StoreResult<AdminUserRecord> {
    let get = |e: sqlx::Error| StoreError::internal(e);
    let tenant: Option<uuid::Uuid> = row.try_get("tenant_id").map_err(get)?;
    Ok(AdminUserRecord {
        id: AdminUserId(row.try_get("id").map_err(get)?),
        tenant_id: tenant.map(TenantId),
        username: row.try_get("username").map_err(get)?,
        email: row.try_get("email").map_err(get)?,
        password_hash: row.try_get("password_hash").map_err(get)?,
        role: parse(row.try_get("role").map_err(get)?)?,
        status: parse(row.try_get("status").map_err(get)?)?,
        is_super_admin: row.try_get("is_super_admin").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        last_login_at: row.try_get("last_login_at").map_err(get)?,
    })
}

pub(crate) const AGENT_COLUMNS: &str = "id, tenant_id, name, agent_type, owner, status, risk_score, risk_tier, \
    client_id, roles, permissions, tags, baseline_status, created_at, updated_at, last_seen_at, \
    frozen_at, frozen_reason, has_recent_drift, risk_factors, risk_reported, risk_assessed_at";

fn strings(value: serde_json::Value) -> StoreResult<Vec<String>> {
    serde_json::from_value(value).map_err(StoreError::internal)
}

pub(crate) fn agent(row: &PgRow) -> StoreResult<behavry_core::Agent> {
    let get = |e: sqlx::Error| StoreError::internal(e);
    Ok(behavry_core::Agent {
        id: behavry_core::AgentId(row.try_get("id").map_err(get)?),
        tenant_id: TenantId(row.try_get("tenant_id").map_err(get)?),
        name: row.try_get("name").map_err(get)?,
        agent_type: row.try_get("agent_type").map_err(get)?,
        owner: row.try_get("owner").map_err(get)?,
        status: parse(row.try_get("status").map_err(get)?)?,
        risk_score: row.try_get("risk_score").map_err(get)?,
        risk_tier: parse(row.try_get("risk_tier").map_err(get)?)?,
        client_id: row.try_get("client_id").map_err(get)?,
        roles: strings(row.try_get("roles").map_err(get)?)?,
        permissions: strings(row.try_get("permissions").map_err(get)?)?,
        tags: strings(row.try_get("tags").map_err(get)?)?,
        baseline_status: row.try_get("baseline_status").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
        last_seen_at: row.try_get("last_seen_at").map_err(get)?,
        frozen_at: row.try_get("frozen_at").map_err(get)?,
        frozen_reason: row.try_get("frozen_reason").map_err(get)?,
        has_recent_drift: row.try_get("has_recent_drift").map_err(get)?,
        risk_factors: row
            .try_get::<Option<serde_json::Value>, _>("risk_factors")
            .map_err(get)?
            .map(serde_json::from_value)
            .transpose()
            .map_err(StoreError::internal)?,
        risk_reported: serde_json::from_value(row.try_get("risk_reported").map_err(get)?)
            .map_err(StoreError::internal)?,
        risk_assessed_at: row.try_get("risk_assessed_at").map_err(get)?,
    })
}

pub(crate) const AUDIT_COLUMNS: &str = r#"id, tenant_id, seq, "timestamp", agent_id, session_id, action, target, tool_name,
    mcp_server, policy_result, policy_id, policy_reason, behavioral_score, dlp_findings, dlp_action,
    input_hash, previous_hash, event_hash, response_code, latency_ms, error, request_size,
    response_size, extra, requester_id"#;

pub(crate) fn audit_event(row: &PgRow) -> StoreResult<behavry_store::audit::AuditEvent> {
    let get = |e: sqlx::Error| StoreError::internal(e);
    let agent: Option<uuid::Uuid> = row.try_get("agent_id").map_err(get)?;
    Ok(behavry_store::audit::AuditEvent {
        id: row.try_get("id").map_err(get)?,
        tenant_id: TenantId(row.try_get("tenant_id").map_err(get)?),
        seq: row.try_get("seq").map_err(get)?,
        timestamp: row.try_get("timestamp").map_err(get)?,
        agent_id: agent.map(behavry_core::AgentId),
        session_id: row.try_get("session_id").map_err(get)?,
        action: row.try_get("action").map_err(get)?,
        target: row.try_get("target").map_err(get)?,
        tool_name: row.try_get("tool_name").map_err(get)?,
        mcp_server: row.try_get("mcp_server").map_err(get)?,
        policy_result: row.try_get("policy_result").map_err(get)?,
        policy_id: row.try_get("policy_id").map_err(get)?,
        policy_reason: row.try_get("policy_reason").map_err(get)?,
        behavioral_score: row.try_get("behavioral_score").map_err(get)?,
        dlp_findings: row.try_get("dlp_findings").map_err(get)?,
        dlp_action: row.try_get("dlp_action").map_err(get)?,
        input_hash: row.try_get("input_hash").map_err(get)?,
        previous_hash: row.try_get("previous_hash").map_err(get)?,
        event_hash: row.try_get("event_hash").map_err(get)?,
        response_code: row.try_get("response_code").map_err(get)?,
        latency_ms: row.try_get("latency_ms").map_err(get)?,
        error: row.try_get("error").map_err(get)?,
        request_size: row.try_get("request_size").map_err(get)?,
        response_size: row.try_get("response_size").map_err(get)?,
        extra: row.try_get("extra").map_err(get)?,
        requester_id: row.try_get("requester_id").map_err(get)?,
    })
}

pub(crate) const MCP_SERVER_COLUMNS: &str = "id, tenant_id, name, transport, command, args, url, secrets, tags, timeout_ms, enabled, catalog_entry, operator_defined, created_at, updated_at";

pub(crate) fn mcp_server(row: &PgRow) -> StoreResult<behavry_store::McpServerRecord> {
    let get = |e: sqlx::Error| StoreError::internal(e);
    Ok(behavry_store::McpServerRecord {
        id: row.try_get("id").map_err(get)?,
        tenant_id: TenantId(row.try_get("tenant_id").map_err(get)?),
        name: row.try_get("name").map_err(get)?,
        transport: row.try_get("transport").map_err(get)?,
        command: row.try_get("command").map_err(get)?,
        args: strings(row.try_get("args").map_err(get)?)?,
        url: row.try_get("url").map_err(get)?,
        secrets: row.try_get("secrets").map_err(get)?,
        tags: strings(row.try_get("tags").map_err(get)?)?,
        timeout_ms: row.try_get("timeout_ms").map_err(get)?,
        enabled: row.try_get("enabled").map_err(get)?,
        catalog_entry: row.try_get("catalog_entry").map_err(get)?,
        operator_defined: row.try_get("operator_defined").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
    })
}

pub(crate) const SESSION_COLUMNS: &str = "id, tenant_id, agent_id, server_id, client_name, client_version, \
    protocol_version, started_at, last_seen_at, call_count, ended_at, tainted, inbound_findings, read_untrusted, read_private";

pub(crate) fn session(row: &PgRow) -> StoreResult<behavry_store::SessionRecord> {
    let get = |e: sqlx::Error| StoreError::internal(e);
    Ok(behavry_store::SessionRecord {
        id: row.try_get("id").map_err(get)?,
        tenant_id: TenantId(row.try_get("tenant_id").map_err(get)?),
        agent_id: behavry_core::AgentId(row.try_get("agent_id").map_err(get)?),
        server_id: row.try_get("server_id").map_err(get)?,
        client_name: row.try_get("client_name").map_err(get)?,
        client_version: row.try_get("client_version").map_err(get)?,
        protocol_version: row.try_get("protocol_version").map_err(get)?,
        started_at: row.try_get("started_at").map_err(get)?,
        last_seen_at: row.try_get("last_seen_at").map_err(get)?,
        call_count: row.try_get("call_count").map_err(get)?,
        ended_at: row.try_get("ended_at").map_err(get)?,
        tainted: row.try_get("tainted").map_err(get)?,
        inbound_findings: row.try_get("inbound_findings").map_err(get)?,
        read_untrusted: row.try_get("read_untrusted").map_err(get)?,
        read_private: row.try_get("read_private").map_err(get)?,
    })
}

pub(crate) const TOOL_PIN_COLUMNS: &str = "server_id, tool_name, hash, definition, approved_at, approved_by, \
    pending_hash, pending_definition, pending_since, rejected_hash";

pub(crate) fn tool_pin(row: &PgRow) -> StoreResult<behavry_store::ToolPin> {
    let get = |e: sqlx::Error| StoreError::internal(e);
    Ok(behavry_store::ToolPin {
        server_id: row.try_get("server_id").map_err(get)?,
        tool_name: row.try_get("tool_name").map_err(get)?,
        hash: row.try_get("hash").map_err(get)?,
        definition: row.try_get("definition").map_err(get)?,
        approved_at: row.try_get("approved_at").map_err(get)?,
        approved_by: row.try_get("approved_by").map_err(get)?,
        pending_hash: row.try_get("pending_hash").map_err(get)?,
        pending_definition: row.try_get("pending_definition").map_err(get)?,
        pending_since: row.try_get("pending_since").map_err(get)?,
        rejected_hash: row.try_get("rejected_hash").map_err(get)?,
    })
}
