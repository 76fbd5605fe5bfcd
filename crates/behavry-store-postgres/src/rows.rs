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
    client_id, roles, permissions, tags, baseline_status, created_at, updated_at, last_seen_at";

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
    })
}
