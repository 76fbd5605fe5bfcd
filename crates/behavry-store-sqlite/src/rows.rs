//! Row decoding. UUIDs and JSON are stored as text on SQLite.

use behavry_core::{AdminUserId, Tenant, TenantConfig, TenantId};
use behavry_store::{AdminUserRecord, StoreError, StoreResult, TenantRecord};
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

pub(crate) const TENANT_COLUMNS: &str = "t.id, t.name, t.slug, t.is_frozen, t.created_at, \
    c.plan_tier, c.max_agents, c.max_rpm_per_agent, c.audit_retention_days, c.deployment_mode, \
    c.license_key, c.license_expires_at, c.suspended_at, c.data_protection_policy, \
    c.blast_radius_config, c.auto_activate_threshold, c.auto_activate_enabled, \
    c.data_plane_deployment_id, c.data_plane_last_seen_at, c.data_plane_region";

pub(crate) const ADMIN_COLUMNS: &str = "id, tenant_id, username, email, password_hash, role, status, \
    is_super_admin, created_at, last_login_at";

pub(crate) fn col<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
    row: &'r SqliteRow,
    name: &str,
) -> StoreResult<T> {
    row.try_get(name).map_err(StoreError::internal)
}

fn parse<T: std::str::FromStr<Err = String>>(value: String) -> StoreResult<T> {
    value.parse().map_err(StoreError::corrupt)
}

pub(crate) fn uuid(value: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(value).map_err(StoreError::internal)
}

pub(crate) fn time(value: Option<String>) -> StoreResult<Option<DateTime<Utc>>> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(&v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(StoreError::internal)
        })
        .transpose()
}

fn json(value: Option<String>) -> StoreResult<Option<serde_json::Value>> {
    value
        .map(|v| serde_json::from_str(&v).map_err(StoreError::internal))
        .transpose()
}

pub(crate) fn tenant_record(row: &SqliteRow) -> StoreResult<TenantRecord> {
    Ok(TenantRecord {
        tenant: Tenant {
            id: TenantId(uuid(&col::<String>(row, "id")?)?),
            name: col(row, "name")?,
            slug: col(row, "slug")?,
            is_frozen: col(row, "is_frozen")?,
            created_at: time(Some(col(row, "created_at")?))?.unwrap_or_default(),
        },
        config: TenantConfig {
            plan_tier: parse(col(row, "plan_tier")?)?,
            max_agents: col(row, "max_agents")?,
            max_rpm_per_agent: col(row, "max_rpm_per_agent")?,
            audit_retention_days: col(row, "audit_retention_days")?,
            deployment_mode: parse(col(row, "deployment_mode")?)?,
            license_key: col(row, "license_key")?,
            license_expires_at: time(col(row, "license_expires_at")?)?,
            suspended_at: time(col(row, "suspended_at")?)?,
            data_protection_policy: json(col(row, "data_protection_policy")?)?,
            blast_radius_config: json(col(row, "blast_radius_config")?)?,
            auto_activate_threshold: col(row, "auto_activate_threshold")?,
            auto_activate_enabled: col(row, "auto_activate_enabled")?,
            data_plane_deployment_id: col(row, "data_plane_deployment_id")?,
            data_plane_last_seen_at: time(col(row, "data_plane_last_seen_at")?)?,
            data_plane_region: col(row, "data_plane_region")?,
        },
    })
}

pub(crate) fn admin_record(row: &SqliteRow) -> StoreResult<AdminUserRecord> {
    let tenant: Option<String> = col(row, "tenant_id")?;
    Ok(AdminUserRecord {
        id: AdminUserId(uuid(&col::<String>(row, "id")?)?),
        tenant_id: tenant.as_deref().map(uuid).transpose()?.map(TenantId),
        username: col(row, "username")?,
        email: col(row, "email")?,
        password_hash: col(row, "password_hash")?,
        role: parse(col(row, "role")?)?,
        status: parse(col(row, "status")?)?,
        is_super_admin: col(row, "is_super_admin")?,
        created_at: time(Some(col(row, "created_at")?))?.unwrap_or_default(),
        last_login_at: time(col(row, "last_login_at")?)?,
    })
}

pub(crate) fn json_text(value: &Option<serde_json::Value>) -> Option<String> {
    value.as_ref().map(|v| v.to_string())
}

pub(crate) const AGENT_COLUMNS: &str = "id, tenant_id, name, agent_type, owner, status, risk_score, risk_tier, \
    client_id, roles, permissions, tags, baseline_status, created_at, updated_at, last_seen_at, \
    frozen_at, frozen_reason, has_recent_drift, risk_factors, risk_reported, risk_assessed_at";

fn strings(value: String) -> StoreResult<Vec<String>> {
    serde_json::from_str(&value).map_err(StoreError::internal)
}

pub(crate) fn agent(row: &SqliteRow) -> StoreResult<behavry_core::Agent> {
    Ok(behavry_core::Agent {
        id: behavry_core::AgentId(uuid(&col::<String>(row, "id")?)?),
        tenant_id: TenantId(uuid(&col::<String>(row, "tenant_id")?)?),
        name: col(row, "name")?,
        agent_type: col(row, "agent_type")?,
        owner: col(row, "owner")?,
        status: parse(col(row, "status")?)?,
        risk_score: col(row, "risk_score")?,
        risk_tier: parse(col(row, "risk_tier")?)?,
        client_id: col(row, "client_id")?,
        roles: strings(col(row, "roles")?)?,
        permissions: strings(col(row, "permissions")?)?,
        tags: strings(col(row, "tags")?)?,
        baseline_status: col(row, "baseline_status")?,
        created_at: time(Some(col(row, "created_at")?))?.unwrap_or_default(),
        updated_at: time(Some(col(row, "updated_at")?))?.unwrap_or_default(),
        last_seen_at: time(col(row, "last_seen_at")?)?,
        frozen_at: time(col(row, "frozen_at")?)?,
        frozen_reason: col(row, "frozen_reason")?,
        has_recent_drift: col(row, "has_recent_drift")?,
        risk_factors: col::<Option<String>>(row, "risk_factors")?
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(StoreError::internal)?,
        risk_reported: serde_json::from_str(&col::<String>(row, "risk_reported")?)
            .map_err(StoreError::internal)?,
        risk_assessed_at: time(col(row, "risk_assessed_at")?)?,
    })
}

pub(crate) const AUDIT_COLUMNS: &str = "id, tenant_id, seq, timestamp, agent_id, session_id, action, target, tool_name, \
    mcp_server, policy_result, policy_id, policy_reason, behavioral_score, dlp_findings, dlp_action, \
    input_hash, previous_hash, event_hash, response_code, latency_ms, error, request_size, \
    response_size, extra, requester_id";

pub(crate) fn audit_event(row: &SqliteRow) -> StoreResult<behavry_store::audit::AuditEvent> {
    let agent: Option<String> = col(row, "agent_id")?;
    Ok(behavry_store::audit::AuditEvent {
        id: uuid(&col::<String>(row, "id")?)?,
        tenant_id: TenantId(uuid(&col::<String>(row, "tenant_id")?)?),
        seq: col(row, "seq")?,
        timestamp: time(Some(col(row, "timestamp")?))?.unwrap_or_default(),
        agent_id: agent
            .as_deref()
            .map(uuid)
            .transpose()?
            .map(behavry_core::AgentId),
        session_id: col(row, "session_id")?,
        action: col(row, "action")?,
        target: col(row, "target")?,
        tool_name: col(row, "tool_name")?,
        mcp_server: col(row, "mcp_server")?,
        policy_result: col(row, "policy_result")?,
        policy_id: col(row, "policy_id")?,
        policy_reason: col(row, "policy_reason")?,
        behavioral_score: col(row, "behavioral_score")?,
        dlp_findings: json(Some(col(row, "dlp_findings")?))?.unwrap_or_default(),
        dlp_action: col(row, "dlp_action")?,
        input_hash: col(row, "input_hash")?,
        previous_hash: col(row, "previous_hash")?,
        event_hash: col(row, "event_hash")?,
        response_code: col(row, "response_code")?,
        latency_ms: col(row, "latency_ms")?,
        error: col(row, "error")?,
        request_size: col(row, "request_size")?,
        response_size: col(row, "response_size")?,
        extra: json(Some(col(row, "extra")?))?.unwrap_or_default(),
        requester_id: col(row, "requester_id")?,
    })
}

pub(crate) const MCP_SERVER_COLUMNS: &str = "id, tenant_id, name, transport, command, args, url, secrets, tags, timeout_ms, enabled, catalog_entry, operator_defined, created_at, updated_at";

pub(crate) fn mcp_server(row: &SqliteRow) -> StoreResult<behavry_store::McpServerRecord> {
    Ok(behavry_store::McpServerRecord {
        id: uuid(&col::<String>(row, "id")?)?,
        tenant_id: TenantId(uuid(&col::<String>(row, "tenant_id")?)?),
        name: col(row, "name")?,
        transport: col(row, "transport")?,
        command: col(row, "command")?,
        args: strings(col(row, "args")?)?,
        url: col(row, "url")?,
        secrets: col(row, "secrets")?,
        tags: strings(col(row, "tags")?)?,
        timeout_ms: col(row, "timeout_ms")?,
        enabled: col(row, "enabled")?,
        catalog_entry: col(row, "catalog_entry")?,
        operator_defined: col(row, "operator_defined")?,
        created_at: time(Some(col(row, "created_at")?))?.unwrap_or_default(),
        updated_at: time(Some(col(row, "updated_at")?))?.unwrap_or_default(),
    })
}

pub(crate) const SESSION_COLUMNS: &str = "id, tenant_id, agent_id, server_id, client_name, client_version, \
    protocol_version, started_at, last_seen_at, call_count, ended_at, tainted, inbound_findings, read_untrusted, read_private";

pub(crate) fn session(row: &SqliteRow) -> StoreResult<behavry_store::SessionRecord> {
    Ok(behavry_store::SessionRecord {
        id: col(row, "id")?,
        tenant_id: TenantId(uuid(&col::<String>(row, "tenant_id")?)?),
        agent_id: behavry_core::AgentId(uuid(&col::<String>(row, "agent_id")?)?),
        server_id: col(row, "server_id")?,
        client_name: col(row, "client_name")?,
        client_version: col(row, "client_version")?,
        protocol_version: col(row, "protocol_version")?,
        started_at: time(Some(col(row, "started_at")?))?.unwrap_or_default(),
        last_seen_at: time(Some(col(row, "last_seen_at")?))?.unwrap_or_default(),
        call_count: col(row, "call_count")?,
        ended_at: time(col(row, "ended_at")?)?,
        tainted: col(row, "tainted")?,
        inbound_findings: json(Some(col(row, "inbound_findings")?))?.unwrap_or_default(),
        read_untrusted: col(row, "read_untrusted")?,
        read_private: col(row, "read_private")?,
    })
}

pub(crate) const TOOL_PIN_COLUMNS: &str = "server_id, tool_name, hash, definition, approved_at, approved_by, \
    pending_hash, pending_definition, pending_since, rejected_hash";

pub(crate) fn tool_pin(row: &SqliteRow) -> StoreResult<behavry_store::ToolPin> {
    Ok(behavry_store::ToolPin {
        server_id: uuid(&col::<String>(row, "server_id")?)?,
        tool_name: col(row, "tool_name")?,
        hash: col(row, "hash")?,
        definition: json(Some(col(row, "definition")?))?.unwrap_or_default(),
        approved_at: time(Some(col(row, "approved_at")?))?.unwrap_or_default(),
        approved_by: col(row, "approved_by")?,
        pending_hash: col(row, "pending_hash")?,
        pending_definition: json(col(row, "pending_definition")?)?,
        pending_since: time(col(row, "pending_since")?)?,
        rejected_hash: col(row, "rejected_hash")?,
    })
}
