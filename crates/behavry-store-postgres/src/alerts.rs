//! Alerts on PostgreSQL. Each function runs inside the caller's
//! tenant-scoped transaction, so row-level security applies.

use behavry_core::{AdminUserId, AgentId, AlertStatus, TenantId};
use behavry_store::{AlertFilter, AlertRecord, NewAlert, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::errors::map_err;

const COLUMNS: &str = "id, agent_id, alert_type, severity, status, title, details, occurrences, \
    first_seen_at, last_seen_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by";

/// Severity as a number, for "at least" filters and for keeping the worse
/// severity when a repeat is folded in.
const RANK: &str = "(CASE severity WHEN 'info' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END)";

fn alert(row: &PgRow) -> StoreResult<AlertRecord> {
    let get = |e: sqlx::Error| StoreError::internal(e);
    let text = |name: &str| -> StoreResult<String> { row.try_get(name).map_err(get) };
    Ok(AlertRecord {
        id: row.try_get("id").map_err(get)?,
        agent_id: row
            .try_get::<Option<Uuid>, _>("agent_id")
            .map_err(get)?
            .map(AgentId),
        alert_type: text("alert_type")?.parse().map_err(StoreError::corrupt)?,
        severity: text("severity")?.parse().map_err(StoreError::corrupt)?,
        status: text("status")?.parse().map_err(StoreError::corrupt)?,
        title: text("title")?,
        details: row.try_get("details").map_err(get)?,
        occurrences: i64::from(row.try_get::<i32, _>("occurrences").map_err(get)?),
        first_seen_at: row.try_get("first_seen_at").map_err(get)?,
        last_seen_at: row.try_get("last_seen_at").map_err(get)?,
        acknowledged_at: row.try_get("acknowledged_at").map_err(get)?,
        acknowledged_by: row.try_get("acknowledged_by").map_err(get)?,
        resolved_at: row.try_get("resolved_at").map_err(get)?,
        resolved_by: row.try_get("resolved_by").map_err(get)?,
    })
}

pub(crate) async fn raise(
    tx: &mut PgConnection,
    tenant: TenantId,
    new: &NewAlert,
) -> StoreResult<(AlertRecord, bool)> {
    // Replicas raising the same alert at once take turns, so a repeat is
    // folded in rather than opened twice.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!(
            "alert:{tenant}:{}:{}",
            new.alert_type.as_str(),
            new.agent_id.map(|a| a.to_string()).unwrap_or_default()
        ))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    let sql = format!(
        "UPDATE alerts SET occurrences = occurrences + 1, last_seen_at = $1, details = $2, title = $3,
                severity = CASE WHEN {RANK} >= $4 THEN severity ELSE $5 END
         WHERE id = (SELECT id FROM alerts
                     WHERE tenant_id = $6 AND alert_type = $7 AND agent_id IS NOT DISTINCT FROM $8
                       AND status <> 'resolved' AND last_seen_at >= $9
                     ORDER BY last_seen_at DESC LIMIT 1)
         RETURNING {COLUMNS}"
    );
    let folded = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(new.at)
        .bind(&new.details)
        .bind(&new.title)
        .bind(new.severity as i32 + 1)
        .bind(new.severity.as_str())
        .bind(tenant.0)
        .bind(new.alert_type.as_str())
        .bind(new.agent_id.map(|a| a.0))
        .bind(new.fold_since)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
    if let Some(row) = folded {
        return Ok((alert(&row)?, false));
    }
    let sql = format!(
        "INSERT INTO alerts (id, tenant_id, agent_id, alert_type, severity, status, title, details,
                             occurrences, first_seen_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, 1, $8, $8) RETURNING {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(tenant.0)
        .bind(new.agent_id.map(|a| a.0))
        .bind(new.alert_type.as_str())
        .bind(new.severity.as_str())
        .bind(&new.title)
        .bind(&new.details)
        .bind(new.at)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
    Ok((alert(&row)?, true))
}

pub(crate) async fn list(
    tx: &mut PgConnection,
    f: &AlertFilter,
) -> StoreResult<(Vec<AlertRecord>, i64)> {
    let filter = format!(
        "WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR alert_type = $2)
           AND ($3::int IS NULL OR {RANK} >= $3) AND ($4::uuid IS NULL OR agent_id = $4)"
    );
    let rank = f.min_severity.map(|s| s as i32 + 1);
    let sql = format!(
        "SELECT {COLUMNS} FROM alerts {filter} ORDER BY last_seen_at DESC, id DESC LIMIT $5 OFFSET $6"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(f.status.map(|s| s.as_str()))
        .bind(f.alert_type.map(|t| t.as_str()))
        .bind(rank)
        .bind(f.agent_id.map(|a| a.0))
        .bind(f.limit)
        .bind(f.offset)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM alerts {filter}"
    )))
    .bind(f.status.map(|s| s.as_str()))
    .bind(f.alert_type.map(|t| t.as_str()))
    .bind(rank)
    .bind(f.agent_id.map(|a| a.0))
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    Ok((rows.iter().map(alert).collect::<StoreResult<_>>()?, total))
}

pub(crate) async fn get(tx: &mut PgConnection, id: Uuid) -> StoreResult<AlertRecord> {
    let sql = format!("SELECT {COLUMNS} FROM alerts WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
    alert(&row)
}

pub(crate) async fn set_status(
    tx: &mut PgConnection,
    id: Uuid,
    from: AlertStatus,
    to: AlertStatus,
    by: AdminUserId,
    at: DateTime<Utc>,
) -> StoreResult<Option<AlertRecord>> {
    let (at_col, by_col) = match to {
        AlertStatus::Acknowledged => ("acknowledged_at", "acknowledged_by"),
        AlertStatus::Resolved => ("resolved_at", "resolved_by"),
        AlertStatus::Open => return Ok(None),
    };
    let sql = format!(
        "UPDATE alerts SET status = $1, {at_col} = $2, {by_col} = $3
         WHERE id = $4 AND status = $5 RETURNING {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(to.as_str())
        .bind(at)
        .bind(by.0)
        .bind(id)
        .bind(from.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
    row.as_ref().map(alert).transpose()
}
