//! Escalations and their exceptions on SQLite.

use behavry_core::{AgentId, TenantId};
use behavry_store::{
    EscalationDecision, EscalationException, EscalationFilter, EscalationRecord, NewEscalation,
    StoreError, StoreResult,
};
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::rows::{col, time, uuid};
use crate::{map_err, ts};

const COLUMNS: &str = "id, agent_id, audit_event_id, status, summary, decided_by, decision_reason, \
    decided_at, expires_at, created_at, call_key, consumed_at, exception_id";

const EXCEPTION_COLUMNS: &str = "id, agent_id, server_id, tool_name, resource, expires_at, escalation_id, created_by, created_at";

fn opt_uuid(row: &SqliteRow, name: &str) -> StoreResult<Option<Uuid>> {
    col::<Option<String>>(row, name)?
        .map(|v| uuid(&v))
        .transpose()
}

fn escalation(row: &SqliteRow) -> StoreResult<EscalationRecord> {
    Ok(EscalationRecord {
        id: uuid(&col::<String>(row, "id")?)?,
        agent_id: opt_uuid(row, "agent_id")?.map(AgentId),
        audit_event_id: opt_uuid(row, "audit_event_id")?,
        status: col::<String>(row, "status")?
            .parse()
            .map_err(StoreError::corrupt)?,
        summary: serde_json::from_str(&col::<String>(row, "summary")?)
            .map_err(StoreError::internal)?,
        decided_by: opt_uuid(row, "decided_by")?,
        decision_reason: col(row, "decision_reason")?,
        decided_at: time(col(row, "decided_at")?)?,
        expires_at: time(Some(col(row, "expires_at")?))?.unwrap_or_default(),
        created_at: time(Some(col(row, "created_at")?))?.unwrap_or_default(),
        call_key: col(row, "call_key")?,
        consumed_at: time(col(row, "consumed_at")?)?,
        exception_id: opt_uuid(row, "exception_id")?,
    })
}

fn exception(row: &SqliteRow) -> StoreResult<EscalationException> {
    Ok(EscalationException {
        id: uuid(&col::<String>(row, "id")?)?,
        agent_id: AgentId(uuid(&col::<String>(row, "agent_id")?)?),
        server_id: uuid(&col::<String>(row, "server_id")?)?,
        tool_name: col(row, "tool_name")?,
        resource: col(row, "resource")?,
        expires_at: time(col(row, "expires_at")?)?,
        escalation_id: opt_uuid(row, "escalation_id")?,
        created_by: opt_uuid(row, "created_by")?,
        created_at: time(Some(col(row, "created_at")?))?.unwrap_or_default(),
    })
}

pub(crate) async fn record(
    pool: &SqlitePool,
    tenant: TenantId,
    e: &NewEscalation,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO escalations (id, tenant_id, agent_id, status, summary, expires_at, created_at,
                                  audit_event_id, call_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(e.id.to_string())
    .bind(tenant.to_string())
    .bind(e.agent_id.map(|a| a.to_string()))
    .bind(&e.status)
    .bind(e.summary.to_string())
    .bind(ts(e.expires_at))
    .bind(ts(e.created_at))
    .bind(e.audit_event_id.map(|a| a.to_string()))
    .bind(&e.call_key)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn get(
    pool: &SqlitePool,
    tenant: TenantId,
    id: Uuid,
) -> StoreResult<EscalationRecord> {
    let sql = format!("SELECT {COLUMNS} FROM escalations WHERE tenant_id = ? AND id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
    escalation(&row)
}

pub(crate) async fn list(
    pool: &SqlitePool,
    tenant: TenantId,
    f: &EscalationFilter,
) -> StoreResult<(Vec<EscalationRecord>, i64)> {
    let filter =
        "WHERE tenant_id = ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR agent_id = ?3)";
    let sql = format!(
        "SELECT {COLUMNS} FROM escalations {filter} ORDER BY created_at DESC, id DESC LIMIT ?4 OFFSET ?5"
    );
    let status = f.status.map(|s| s.as_str());
    let agent = f.agent_id.map(|a| a.to_string());
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(status)
        .bind(&agent)
        .bind(f.limit)
        .bind(f.offset)
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM escalations {filter}"
    )))
    .bind(tenant.to_string())
    .bind(status)
    .bind(&agent)
    .fetch_one(pool)
    .await
    .map_err(map_err)?;
    Ok((
        rows.iter().map(escalation).collect::<StoreResult<_>>()?,
        total,
    ))
}

pub(crate) async fn open_for_call(
    pool: &SqlitePool,
    tenant: TenantId,
    call_key: &str,
) -> StoreResult<Option<EscalationRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM escalations
         WHERE tenant_id = ? AND call_key = ? AND consumed_at IS NULL
         ORDER BY created_at DESC LIMIT 1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(call_key)
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
    row.as_ref().map(escalation).transpose()
}

pub(crate) async fn decide(
    pool: &SqlitePool,
    tenant: TenantId,
    id: Uuid,
    d: &EscalationDecision,
) -> StoreResult<Option<EscalationRecord>> {
    let sql = format!(
        "UPDATE escalations SET status = ?, decided_by = ?, decision_reason = ?, decided_at = ?,
                exception_id = ?
         WHERE tenant_id = ? AND id = ? AND status = 'pending' RETURNING {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(d.status.as_str())
        .bind(d.by.map(|b| b.to_string()))
        .bind(&d.reason)
        .bind(ts(d.at))
        .bind(d.exception_id.map(|e| e.to_string()))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
    row.as_ref().map(escalation).transpose()
}

pub(crate) async fn consume(
    pool: &SqlitePool,
    tenant: TenantId,
    id: Uuid,
    at: DateTime<Utc>,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE escalations SET consumed_at = ?
         WHERE tenant_id = ? AND id = ? AND consumed_at IS NULL AND status <> 'pending'",
    )
    .bind(ts(at))
    .bind(tenant.to_string())
    .bind(id.to_string())
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn add_exception(
    pool: &SqlitePool,
    tenant: TenantId,
    e: &EscalationException,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO escalation_exceptions (id, tenant_id, agent_id, server_id, tool_name, resource,
                                           expires_at, escalation_id, created_by, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(e.id.to_string())
    .bind(tenant.to_string())
    .bind(e.agent_id.to_string())
    .bind(e.server_id.to_string())
    .bind(&e.tool_name)
    .bind(&e.resource)
    .bind(e.expires_at.map(ts))
    .bind(e.escalation_id.map(|x| x.to_string()))
    .bind(e.created_by.map(|x| x.to_string()))
    .bind(ts(e.created_at))
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn matching_exception(
    pool: &SqlitePool,
    tenant: TenantId,
    agent: AgentId,
    server_id: Uuid,
    tool_name: &str,
    resource: Option<&str>,
    at: DateTime<Utc>,
) -> StoreResult<Option<EscalationException>> {
    let sql = format!(
        "SELECT {EXCEPTION_COLUMNS} FROM escalation_exceptions
         WHERE tenant_id = ? AND agent_id = ? AND server_id = ? AND tool_name = ?
           AND (resource IS NULL OR resource = ?)
           AND (expires_at IS NULL OR expires_at > ?)
         ORDER BY created_at DESC LIMIT 1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(agent.to_string())
        .bind(server_id.to_string())
        .bind(tool_name)
        .bind(resource)
        .bind(ts(at))
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
    row.as_ref().map(exception).transpose()
}

pub(crate) async fn list_exceptions(
    pool: &SqlitePool,
    tenant: TenantId,
) -> StoreResult<Vec<EscalationException>> {
    let sql = format!(
        "SELECT {EXCEPTION_COLUMNS} FROM escalation_exceptions WHERE tenant_id = ?
         ORDER BY created_at DESC"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    rows.iter().map(exception).collect()
}

pub(crate) async fn delete_exception(
    pool: &SqlitePool,
    tenant: TenantId,
    id: Uuid,
) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM escalation_exceptions WHERE tenant_id = ? AND id = ?")
        .bind(tenant.to_string())
        .bind(id.to_string())
        .execute(pool)
        .await
        .map_err(map_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(crate) async fn expired(
    pool: &SqlitePool,
    at: DateTime<Utc>,
) -> StoreResult<Vec<(TenantId, Uuid)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT tenant_id, id FROM escalations WHERE status = 'pending' AND expires_at <= ?",
    )
    .bind(ts(at))
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|(t, id)| Ok((TenantId(uuid(t)?), uuid(id)?)))
        .collect()
}

const DELIVERY_COLUMNS: &str =
    "id, alert_id, url, status, attempts, response_code, error, created_at, updated_at";

pub(crate) async fn record_delivery(
    pool: &SqlitePool,
    tenant: TenantId,
    d: &behavry_store::WebhookDelivery,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, tenant_id, alert_id, url, status, attempts,
                                        response_code, error, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
             response_code = excluded.response_code, error = excluded.error,
             updated_at = excluded.updated_at
         WHERE webhook_deliveries.tenant_id = excluded.tenant_id",
    )
    .bind(d.id.to_string())
    .bind(tenant.to_string())
    .bind(d.alert_id.map(|a| a.to_string()))
    .bind(&d.url)
    .bind(&d.status)
    .bind(d.attempts)
    .bind(d.response_code)
    .bind(&d.error)
    .bind(ts(d.created_at))
    .bind(ts(d.updated_at))
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn list_deliveries(
    pool: &SqlitePool,
    tenant: TenantId,
    limit: i64,
) -> StoreResult<Vec<behavry_store::WebhookDelivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = ?
         ORDER BY created_at DESC, id DESC LIMIT ?"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    rows.iter()
        .map(|row| {
            Ok(behavry_store::WebhookDelivery {
                id: uuid(&col::<String>(row, "id")?)?,
                alert_id: opt_uuid(row, "alert_id")?,
                url: col(row, "url")?,
                status: col(row, "status")?,
                attempts: col(row, "attempts")?,
                response_code: col(row, "response_code")?,
                error: col(row, "error")?,
                created_at: time(Some(col(row, "created_at")?))?.unwrap_or_default(),
                updated_at: time(Some(col(row, "updated_at")?))?.unwrap_or_default(),
            })
        })
        .collect()
}
