//! Alerts on SQLite.

use behavry_core::{AdminUserId, AgentId, AlertStatus, TenantId};
use behavry_store::{AlertFilter, AlertRecord, NewAlert, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::rows::{col, time, uuid};
use crate::{map_err, ts};

const COLUMNS: &str = "id, agent_id, alert_type, severity, status, title, details, occurrences, \
    first_seen_at, last_seen_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by";

/// Severity as a number, for "at least" filters and for keeping the worse
/// severity when a repeat is folded in.
const RANK: &str = "(CASE severity WHEN 'info' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END)";

fn alert(row: &SqliteRow) -> StoreResult<AlertRecord> {
    let opt_uuid = |name: &str| -> StoreResult<Option<Uuid>> {
        col::<Option<String>>(row, name)?
            .map(|v| uuid(&v))
            .transpose()
    };
    let parse = |name: &str| -> StoreResult<String> { col::<String>(row, name) };
    Ok(AlertRecord {
        id: uuid(&col::<String>(row, "id")?)?,
        agent_id: opt_uuid("agent_id")?.map(AgentId),
        alert_type: parse("alert_type")?.parse().map_err(StoreError::corrupt)?,
        severity: parse("severity")?.parse().map_err(StoreError::corrupt)?,
        status: parse("status")?.parse().map_err(StoreError::corrupt)?,
        title: col(row, "title")?,
        details: serde_json::from_str(&col::<String>(row, "details")?)
            .map_err(StoreError::internal)?,
        occurrences: col(row, "occurrences")?,
        first_seen_at: time(Some(col(row, "first_seen_at")?))?.unwrap_or_default(),
        last_seen_at: time(Some(col(row, "last_seen_at")?))?.unwrap_or_default(),
        acknowledged_at: time(col(row, "acknowledged_at")?)?,
        acknowledged_by: opt_uuid("acknowledged_by")?,
        resolved_at: time(col(row, "resolved_at")?)?,
        resolved_by: opt_uuid("resolved_by")?,
    })
}

pub(crate) async fn raise(
    pool: &SqlitePool,
    tenant: TenantId,
    new: &NewAlert,
) -> StoreResult<(AlertRecord, bool)> {
    // One statement folds a repeat into the newest unresolved alert of the
    // same type and agent; SQLite runs it under the write lock, so two
    // raisers cannot both miss it.
    let sql = format!(
        "UPDATE alerts SET occurrences = occurrences + 1, last_seen_at = ?1, details = ?2, title = ?3,
                severity = CASE WHEN {RANK} >= ?4 THEN severity ELSE ?5 END
         WHERE id = (SELECT id FROM alerts
                     WHERE tenant_id = ?6 AND alert_type = ?7 AND agent_id IS ?8
                       AND status <> 'resolved' AND last_seen_at >= ?9
                     ORDER BY last_seen_at DESC LIMIT 1)
         RETURNING {COLUMNS}"
    );
    let folded = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ts(new.at))
        .bind(new.details.to_string())
        .bind(&new.title)
        .bind(new.severity as i64 + 1)
        .bind(new.severity.as_str())
        .bind(tenant.to_string())
        .bind(new.alert_type.as_str())
        .bind(new.agent_id.map(|a| a.to_string()))
        .bind(ts(new.fold_since))
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
    if let Some(row) = folded {
        return Ok((alert(&row)?, false));
    }
    let sql = format!(
        "INSERT INTO alerts (id, tenant_id, agent_id, alert_type, severity, status, title, details,
                             occurrences, first_seen_at, last_seen_at)
         VALUES (?, ?, ?, ?, ?, 'open', ?, ?, 1, ?, ?) RETURNING {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7().to_string())
        .bind(tenant.to_string())
        .bind(new.agent_id.map(|a| a.to_string()))
        .bind(new.alert_type.as_str())
        .bind(new.severity.as_str())
        .bind(&new.title)
        .bind(new.details.to_string())
        .bind(ts(new.at))
        .bind(ts(new.at))
        .fetch_one(pool)
        .await
        .map_err(map_err)?;
    Ok((alert(&row)?, true))
}

pub(crate) async fn list(
    pool: &SqlitePool,
    tenant: TenantId,
    f: &AlertFilter,
) -> StoreResult<(Vec<AlertRecord>, i64)> {
    let filter = format!(
        "WHERE tenant_id = ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR alert_type = ?3)
           AND (?4 IS NULL OR {RANK} >= ?4) AND (?5 IS NULL OR agent_id = ?5)"
    );
    let rank = f.min_severity.map(|s| s as i64 + 1);
    let sql = format!(
        "SELECT {COLUMNS} FROM alerts {filter} ORDER BY last_seen_at DESC, id DESC LIMIT ?6 OFFSET ?7"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(f.status.map(|s| s.as_str()))
        .bind(f.alert_type.map(|t| t.as_str()))
        .bind(rank)
        .bind(f.agent_id.map(|a| a.to_string()))
        .bind(f.limit)
        .bind(f.offset)
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM alerts {filter}"
    )))
    .bind(tenant.to_string())
    .bind(f.status.map(|s| s.as_str()))
    .bind(f.alert_type.map(|t| t.as_str()))
    .bind(rank)
    .bind(f.agent_id.map(|a| a.to_string()))
    .fetch_one(pool)
    .await
    .map_err(map_err)?;
    Ok((rows.iter().map(alert).collect::<StoreResult<_>>()?, total))
}

pub(crate) async fn get(pool: &SqlitePool, tenant: TenantId, id: Uuid) -> StoreResult<AlertRecord> {
    let sql = format!("SELECT {COLUMNS} FROM alerts WHERE tenant_id = ? AND id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
    alert(&row)
}

pub(crate) async fn set_status(
    pool: &SqlitePool,
    tenant: TenantId,
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
        "UPDATE alerts SET status = ?, {at_col} = ?, {by_col} = ?
         WHERE tenant_id = ? AND id = ? AND status = ? RETURNING {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(to.as_str())
        .bind(ts(at))
        .bind(by.to_string())
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(from.as_str())
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
    row.as_ref().map(alert).transpose()
}
