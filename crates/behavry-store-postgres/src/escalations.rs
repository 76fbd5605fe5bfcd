//! Escalations and their exceptions on PostgreSQL. Each function runs
//! inside the caller's tenant-scoped transaction, so row-level security
//! applies.

use behavry_core::{AgentId, TenantId};
use behavry_store::{
    EscalationDecision, EscalationException, EscalationFilter, EscalationRecord, NewEscalation,
    StoreError, StoreResult,
};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::errors::map_err;

const COLUMNS: &str = "id, agent_id, audit_event_id, status, summary, decided_by, decision_reason, \
    decided_at, expires_at, created_at, call_key, consumed_at, exception_id";

const EXCEPTION_COLUMNS: &str = "id, agent_id, server_id, tool_name, resource, expires_at, escalation_id, created_by, created_at";

fn escalation(row: &PgRow) -> StoreResult<EscalationRecord> {
    let get = |e: sqlx::Error| StoreError::internal(e);
    Ok(EscalationRecord {
        id: row.try_get("id").map_err(get)?,
        agent_id: row
            .try_get::<Option<Uuid>, _>("agent_id")
            .map_err(get)?
            .map(AgentId),
        audit_event_id: row.try_get("audit_event_id").map_err(get)?,
        status: row
            .try_get::<String, _>("status")
            .map_err(get)?
            .parse()
            .map_err(StoreError::corrupt)?,
        summary: row.try_get("summary").map_err(get)?,
        decided_by: row.try_get("decided_by").map_err(get)?,
        decision_reason: row.try_get("decision_reason").map_err(get)?,
        decided_at: row.try_get("decided_at").map_err(get)?,
        expires_at: row.try_get("expires_at").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        call_key: row.try_get("call_key").map_err(get)?,
        consumed_at: row.try_get("consumed_at").map_err(get)?,
        exception_id: row.try_get("exception_id").map_err(get)?,
    })
}

fn exception(row: &PgRow) -> StoreResult<EscalationException> {
    let get = |e: sqlx::Error| StoreError::internal(e);
    Ok(EscalationException {
        id: row.try_get("id").map_err(get)?,
        agent_id: AgentId(row.try_get("agent_id").map_err(get)?),
        server_id: row.try_get("server_id").map_err(get)?,
        tool_name: row.try_get("tool_name").map_err(get)?,
        resource: row.try_get("resource").map_err(get)?,
        expires_at: row.try_get("expires_at").map_err(get)?,
        escalation_id: row.try_get("escalation_id").map_err(get)?,
        created_by: row.try_get("created_by").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
    })
}

pub(crate) async fn record(
    tx: &mut PgConnection,
    tenant: TenantId,
    e: &NewEscalation,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO escalations (id, tenant_id, agent_id, status, summary, expires_at, created_at,
                                  audit_event_id, call_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(e.id)
    .bind(tenant.0)
    .bind(e.agent_id.map(|a| a.0))
    .bind(&e.status)
    .bind(&e.summary)
    .bind(e.expires_at)
    .bind(e.created_at)
    .bind(e.audit_event_id)
    .bind(&e.call_key)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn get(tx: &mut PgConnection, id: Uuid) -> StoreResult<EscalationRecord> {
    let sql = format!("SELECT {COLUMNS} FROM escalations WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
    escalation(&row)
}

pub(crate) async fn list(
    tx: &mut PgConnection,
    f: &EscalationFilter,
) -> StoreResult<(Vec<EscalationRecord>, i64)> {
    let filter = "WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR agent_id = $2)";
    let sql = format!(
        "SELECT {COLUMNS} FROM escalations {filter} ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
    );
    let status = f.status.map(|s| s.as_str());
    let agent = f.agent_id.map(|a| a.0);
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(status)
        .bind(agent)
        .bind(f.limit)
        .bind(f.offset)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM escalations {filter}"
    )))
    .bind(status)
    .bind(agent)
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    Ok((
        rows.iter().map(escalation).collect::<StoreResult<_>>()?,
        total,
    ))
}

pub(crate) async fn open_for_call(
    tx: &mut PgConnection,
    call_key: &str,
) -> StoreResult<Option<EscalationRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM escalations WHERE call_key = $1 AND consumed_at IS NULL
         ORDER BY created_at DESC LIMIT 1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(call_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
    row.as_ref().map(escalation).transpose()
}

pub(crate) async fn decide(
    tx: &mut PgConnection,
    id: Uuid,
    d: &EscalationDecision,
) -> StoreResult<Option<EscalationRecord>> {
    let sql = format!(
        "UPDATE escalations SET status = $1, decided_by = $2, decision_reason = $3, decided_at = $4,
                exception_id = $5
         WHERE id = $6 AND status = 'pending' RETURNING {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(d.status.as_str())
        .bind(d.by.map(|b| b.0))
        .bind(&d.reason)
        .bind(d.at)
        .bind(d.exception_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
    row.as_ref().map(escalation).transpose()
}

pub(crate) async fn consume(
    tx: &mut PgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE escalations SET consumed_at = $1
         WHERE id = $2 AND consumed_at IS NULL AND status <> 'pending'",
    )
    .bind(at)
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn add_exception(
    tx: &mut PgConnection,
    tenant: TenantId,
    e: &EscalationException,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO escalation_exceptions (id, tenant_id, agent_id, server_id, tool_name, resource,
                                           expires_at, escalation_id, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(e.id)
    .bind(tenant.0)
    .bind(e.agent_id.0)
    .bind(e.server_id)
    .bind(&e.tool_name)
    .bind(&e.resource)
    .bind(e.expires_at)
    .bind(e.escalation_id)
    .bind(e.created_by)
    .bind(e.created_at)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn matching_exception(
    tx: &mut PgConnection,
    agent: AgentId,
    server_id: Uuid,
    tool_name: &str,
    resource: Option<&str>,
    at: DateTime<Utc>,
) -> StoreResult<Option<EscalationException>> {
    let sql = format!(
        "SELECT {EXCEPTION_COLUMNS} FROM escalation_exceptions
         WHERE agent_id = $1 AND server_id = $2 AND tool_name = $3
           AND (resource IS NULL OR resource = $4)
           AND (expires_at IS NULL OR expires_at > $5)
         ORDER BY created_at DESC LIMIT 1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(agent.0)
        .bind(server_id)
        .bind(tool_name)
        .bind(resource)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
    row.as_ref().map(exception).transpose()
}

pub(crate) async fn list_exceptions(
    tx: &mut PgConnection,
) -> StoreResult<Vec<EscalationException>> {
    let sql =
        format!("SELECT {EXCEPTION_COLUMNS} FROM escalation_exceptions ORDER BY created_at DESC");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
    rows.iter().map(exception).collect()
}

pub(crate) async fn delete_exception(tx: &mut PgConnection, id: Uuid) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM escalation_exceptions WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Runs on the superadmin pool: every tenant's expired escalations.
pub(crate) async fn expired(
    pool: &sqlx::PgPool,
    at: DateTime<Utc>,
) -> StoreResult<Vec<(TenantId, Uuid)>> {
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT tenant_id, id FROM escalations WHERE status = 'pending' AND expires_at <= $1",
    )
    .bind(at)
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    Ok(rows.into_iter().map(|(t, id)| (TenantId(t), id)).collect())
}

const DELIVERY_COLUMNS: &str =
    "id, alert_id, url, status, attempts, response_code, error, created_at, updated_at";

pub(crate) async fn record_delivery(
    tx: &mut PgConnection,
    tenant: TenantId,
    d: &behavry_store::WebhookDelivery,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, tenant_id, alert_id, url, status, attempts,
                                        response_code, error, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
             response_code = excluded.response_code, error = excluded.error,
             updated_at = excluded.updated_at",
    )
    .bind(d.id)
    .bind(tenant.0)
    .bind(d.alert_id)
    .bind(&d.url)
    .bind(&d.status)
    .bind(d.attempts)
    .bind(d.response_code)
    .bind(&d.error)
    .bind(d.created_at)
    .bind(d.updated_at)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn list_deliveries(
    tx: &mut PgConnection,
    limit: i64,
) -> StoreResult<Vec<behavry_store::WebhookDelivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries ORDER BY created_at DESC, id DESC LIMIT $1"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
    let get = |e: sqlx::Error| StoreError::internal(e);
    rows.iter()
        .map(|row| {
            Ok(behavry_store::WebhookDelivery {
                id: row.try_get("id").map_err(get)?,
                alert_id: row.try_get("alert_id").map_err(get)?,
                url: row.try_get("url").map_err(get)?,
                status: row.try_get("status").map_err(get)?,
                attempts: row.try_get("attempts").map_err(get)?,
                response_code: row.try_get("response_code").map_err(get)?,
                error: row.try_get("error").map_err(get)?,
                created_at: row.try_get("created_at").map_err(get)?,
                updated_at: row.try_get("updated_at").map_err(get)?,
            })
        })
        .collect()
}
