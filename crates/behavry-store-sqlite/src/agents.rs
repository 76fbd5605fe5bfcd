//! Agent rows, shared by the tenant handle and the enrollment path.

use behavry_core::{Agent, AgentId, TenantId};
use behavry_store::{NewAgent, StoreError, StoreResult};
use chrono::Utc;
use sqlx::SqliteConnection;

use crate::rows::{AGENT_COLUMNS, agent};
use crate::{map_err, ts};

/// Inserts an agent after checking the tenant's limit. Callers run this in
/// a `BEGIN IMMEDIATE` transaction, which serialises writers on SQLite.
pub(crate) async fn insert_agent(
    conn: &mut SqliteConnection,
    tenant: TenantId,
    new: &NewAgent,
) -> StoreResult<Agent> {
    let (max_agents, frozen): (i32, bool) = sqlx::query_as(
        "SELECT c.max_agents, t.is_frozen FROM tenant_configs c JOIN tenants t ON t.id = c.tenant_id WHERE c.tenant_id = ?",
    )
    .bind(tenant.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err)?
    .ok_or(StoreError::NotFound)?;
    if frozen {
        return Err(StoreError::Refused(
            "the tenant is suspended; no agents can be added".into(),
        ));
    }
    if max_agents >= 0 {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM agents WHERE tenant_id = ? AND status <> 'revoked'",
        )
        .bind(tenant.to_string())
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
        if count >= i64::from(max_agents) {
            return Err(StoreError::Refused(format!(
                "the tenant's agent limit of {max_agents} is reached"
            )));
        }
    }
    let now = ts(Utc::now());
    let sql = format!(
        "INSERT INTO agents (id, tenant_id, name, agent_type, owner, client_id, client_secret_hash, roles, permissions, tags, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {AGENT_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(AgentId::new().to_string())
        .bind(tenant.to_string())
        .bind(&new.name)
        .bind(&new.agent_type)
        .bind(&new.owner)
        .bind(&new.client_id)
        .bind(&new.client_secret_hash)
        .bind(serde_json::json!(new.roles).to_string())
        .bind(serde_json::json!(new.permissions).to_string())
        .bind(serde_json::json!(new.tags).to_string())
        .bind(&now)
        .bind(&now)
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
    agent(&row)
}
