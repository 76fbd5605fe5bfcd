//! Agent rows. Shared by the tenant handle (under row-level security) and
//! the pre-authentication enrollment path (superadmin pool).

use behavry_core::{Agent, AgentId, TenantId};
use behavry_store::{NewAgent, StoreError, StoreResult};
use sqlx::PgConnection;

use crate::errors::map_err;
use crate::rows::{AGENT_COLUMNS, agent};

/// Inserts an agent after checking the tenant's limit. The tenant's config
/// row is locked so that concurrent creations cannot both pass the check.
pub(crate) async fn insert_agent(
    conn: &mut PgConnection,
    tenant: TenantId,
    new: &NewAgent,
) -> StoreResult<Agent> {
    let (max_agents, frozen): (i32, bool) = sqlx::query_as(
        "SELECT c.max_agents, t.is_frozen FROM tenant_configs c JOIN tenants t ON t.id = c.tenant_id
         WHERE c.tenant_id = $1 FOR UPDATE OF c",
    )
    .bind(tenant.0)
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
            "SELECT count(*) FROM agents WHERE tenant_id = $1 AND status <> 'revoked'",
        )
        .bind(tenant.0)
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
        if count >= i64::from(max_agents) {
            return Err(StoreError::Refused(format!(
                "the tenant's agent limit of {max_agents} is reached"
            )));
        }
    }
    let sql = format!(
        "INSERT INTO agents (id, tenant_id, name, agent_type, owner, client_id, client_secret_hash, roles, permissions, tags)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {AGENT_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(AgentId::new().0)
        .bind(tenant.0)
        .bind(&new.name)
        .bind(&new.agent_type)
        .bind(&new.owner)
        .bind(&new.client_id)
        .bind(&new.client_secret_hash)
        .bind(serde_json::json!(new.roles))
        .bind(serde_json::json!(new.permissions))
        .bind(serde_json::json!(new.tags))
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
    agent(&row)
}
