//! Agent activity roll-ups and risk verdicts on SQLite.

use behavry_core::risk::EscalationOutcomes;
use behavry_core::{AgentId, TenantId};
use behavry_store::{ActivityRow, RiskUpdate, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::{Row, SqlitePool};

use crate::rows::{col, time, uuid};
use crate::{map_err, ts};

/// Calls are the call events; what came back (its size, its findings) is
/// on their `TOOL_RESULT` events. Timestamps are fixed-width RFC 3339 text
/// (see [`ts`]), so the hour is the first 13 characters.
const AGGREGATE: &str = "SELECT agent_id, substr(timestamp, 1, 13) AS hour_prefix,
        coalesce(tool_name, '') AS tool_name,
        sum(CASE WHEN action <> 'TOOL_RESULT' THEN 1 ELSE 0 END) AS calls,
        sum(CASE WHEN action <> 'TOOL_RESULT' AND policy_result = 'deny' THEN 1 ELSE 0 END) AS denies,
        sum(CASE WHEN action <> 'TOOL_RESULT' AND policy_result = 'escalate' THEN 1 ELSE 0 END) AS escalations,
        sum(response_size) AS bytes_in, sum(request_size) AS bytes_out,
        sum(CASE WHEN dlp_findings NOT IN ('[]', 'null') OR json_extract(extra, '$.inbound') IS NOT NULL
            THEN 1 ELSE 0 END) AS flagged
    FROM audit_events
    WHERE tenant_id = ?1 AND timestamp >= ?2 AND agent_id IS NOT NULL
        AND action IN ('TOOL_CALL', 'RESOURCE_READ', 'PROMPT_GET', 'TOOL_RESULT')
    GROUP BY agent_id, hour_prefix, coalesce(tool_name, '')";

const UPSERT: &str = "INSERT INTO agent_activity
        (tenant_id, agent_id, hour, tool_name, calls, denies, escalations, bytes_in, bytes_out, flagged)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (tenant_id, agent_id, hour, tool_name) DO UPDATE SET
        calls = excluded.calls, denies = excluded.denies, escalations = excluded.escalations,
        bytes_in = excluded.bytes_in, bytes_out = excluded.bytes_out, flagged = excluded.flagged";

/// The sums are read first, outside any write transaction (WAL readers do
/// not block the audit writer), and only the few summed rows are written:
/// SQLite has one writer, and calls wait for their audit rows.
pub(crate) async fn roll_up(
    pool: &SqlitePool,
    tenant: TenantId,
    since: DateTime<Utc>,
    keep_from: DateTime<Utc>,
) -> StoreResult<()> {
    let sums = sqlx::query(AGGREGATE)
        .bind(tenant.to_string())
        .bind(ts(since))
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    let mut tx = pool.begin().await.map_err(map_err)?;
    sqlx::query("DELETE FROM agent_activity WHERE tenant_id = ? AND hour < ?")
        .bind(tenant.to_string())
        .bind(ts(keep_from))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    for row in &sums {
        let hour = format!("{}:00:00.000000Z", col::<String>(row, "hour_prefix")?);
        sqlx::query(UPSERT)
            .bind(tenant.to_string())
            .bind(col::<String>(row, "agent_id")?)
            .bind(hour)
            .bind(col::<String>(row, "tool_name")?)
            .bind(col::<i64>(row, "calls")?)
            .bind(col::<i64>(row, "denies")?)
            .bind(col::<i64>(row, "escalations")?)
            .bind(col::<i64>(row, "bytes_in")?)
            .bind(col::<i64>(row, "bytes_out")?)
            .bind(col::<i64>(row, "flagged")?)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)
}

pub(crate) async fn latest_hour(
    pool: &SqlitePool,
    tenant: TenantId,
) -> StoreResult<Option<DateTime<Utc>>> {
    let latest: Option<String> =
        sqlx::query_scalar("SELECT max(hour) FROM agent_activity WHERE tenant_id = ?")
            .bind(tenant.to_string())
            .fetch_one(pool)
            .await
            .map_err(map_err)?;
    time(latest)
}

pub(crate) async fn activity(
    pool: &SqlitePool,
    tenant: TenantId,
    since: DateTime<Utc>,
    agent: Option<AgentId>,
) -> StoreResult<Vec<ActivityRow>> {
    let rows = sqlx::query(
        "SELECT agent_id, hour, tool_name, calls, denies, escalations, bytes_in, bytes_out, flagged
         FROM agent_activity WHERE tenant_id = ?1 AND hour >= ?2 AND (?3 IS NULL OR agent_id = ?3)
         ORDER BY agent_id, hour, tool_name",
    )
    .bind(tenant.to_string())
    .bind(ts(since))
    .bind(agent.map(|a| a.to_string()))
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|row| {
            Ok(ActivityRow {
                agent_id: AgentId(uuid(&col::<String>(row, "agent_id")?)?),
                hour: time(Some(col(row, "hour")?))?.unwrap_or_default(),
                tool_name: col(row, "tool_name")?,
                calls: col(row, "calls")?,
                denies: col(row, "denies")?,
                escalations: col(row, "escalations")?,
                bytes_in: col(row, "bytes_in")?,
                bytes_out: col(row, "bytes_out")?,
                flagged: col(row, "flagged")?,
            })
        })
        .collect()
}

pub(crate) async fn escalation_outcomes(
    pool: &SqlitePool,
    tenant: TenantId,
    since: DateTime<Utc>,
) -> StoreResult<Vec<(AgentId, EscalationOutcomes)>> {
    let rows = sqlx::query(
        "SELECT agent_id,
                sum(CASE WHEN status = 'approved' THEN 1 ELSE 0 END) AS approved,
                sum(CASE WHEN status = 'denied' THEN 1 ELSE 0 END) AS denied,
                sum(CASE WHEN status = 'timed_out' THEN 1 ELSE 0 END) AS timed_out
         FROM escalations
         WHERE tenant_id = ? AND agent_id IS NOT NULL AND status <> 'pending' AND decided_at >= ?
         GROUP BY agent_id",
    )
    .bind(tenant.to_string())
    .bind(ts(since))
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    let count = |row: &sqlx::sqlite::SqliteRow, name: &str| -> StoreResult<u64> {
        let n: i64 = row.try_get(name).map_err(StoreError::internal)?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    rows.iter()
        .map(|row| {
            Ok((
                AgentId(uuid(&col::<String>(row, "agent_id")?)?),
                EscalationOutcomes {
                    approved: count(row, "approved")?,
                    denied: count(row, "denied")?,
                    timed_out: count(row, "timed_out")?,
                },
            ))
        })
        .collect()
}

pub(crate) async fn set_risk(
    pool: &SqlitePool,
    tenant: TenantId,
    id: AgentId,
    u: &RiskUpdate,
) -> StoreResult<()> {
    let factors = serde_json::to_string(&u.factors).map_err(StoreError::internal)?;
    let reported = serde_json::to_string(&u.reported).map_err(StoreError::internal)?;
    let done = sqlx::query(
        "UPDATE agents SET risk_score = ?, risk_tier = ?, baseline_status = ?, has_recent_drift = ?,
                risk_factors = ?, risk_reported = ?, risk_assessed_at = ?
         WHERE tenant_id = ? AND id = ?",
    )
    .bind(u.score)
    .bind(u.tier.as_str())
    .bind(u.baseline_status.as_str())
    .bind(u.has_recent_drift)
    .bind(factors)
    .bind(reported)
    .bind(ts(u.at))
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
