//! Agent activity roll-ups and risk verdicts on PostgreSQL. Every function
//! runs inside a transaction bound to the tenant, so row-level security
//! confines both the audit rows read and the rows written.

use behavry_core::AgentId;
use behavry_core::risk::EscalationOutcomes;
use behavry_store::{ActivityRow, RiskUpdate, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use crate::errors::map_err;

/// Calls are the call events; what came back (its size, its findings) is
/// on their `TOOL_RESULT` events. Hours are cut in UTC whatever the
/// session's time zone.
const ROLL_UP: &str = r#"INSERT INTO agent_activity
        (tenant_id, agent_id, hour, tool_name, calls, denies, escalations, bytes_in, bytes_out, flagged)
    SELECT tenant_id, agent_id, date_trunc('hour', "timestamp", 'UTC'), coalesce(tool_name, ''),
        count(*) FILTER (WHERE action <> 'TOOL_RESULT'),
        count(*) FILTER (WHERE action <> 'TOOL_RESULT' AND policy_result = 'deny'),
        count(*) FILTER (WHERE action <> 'TOOL_RESULT' AND policy_result = 'escalate'),
        sum(response_size), sum(request_size),
        count(*) FILTER (WHERE dlp_findings NOT IN ('[]'::jsonb, 'null'::jsonb) OR extra ? 'inbound')
    FROM audit_events
    WHERE "timestamp" >= $1 AND agent_id IS NOT NULL
        AND action IN ('TOOL_CALL', 'RESOURCE_READ', 'PROMPT_GET', 'TOOL_RESULT')
    GROUP BY tenant_id, agent_id, date_trunc('hour', "timestamp", 'UTC'), coalesce(tool_name, '')
    ON CONFLICT (tenant_id, agent_id, hour, tool_name) DO UPDATE SET
        calls = excluded.calls, denies = excluded.denies, escalations = excluded.escalations,
        bytes_in = excluded.bytes_in, bytes_out = excluded.bytes_out, flagged = excluded.flagged"#;

pub(crate) async fn roll_up(
    tx: &mut PgConnection,
    since: DateTime<Utc>,
    keep_from: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM agent_activity WHERE hour < $1")
        .bind(keep_from)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    sqlx::query(ROLL_UP)
        .bind(since)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn latest_hour(tx: &mut PgConnection) -> StoreResult<Option<DateTime<Utc>>> {
    sqlx::query_scalar("SELECT max(hour) FROM agent_activity")
        .fetch_one(tx)
        .await
        .map_err(map_err)
}

pub(crate) async fn activity(
    tx: &mut PgConnection,
    since: DateTime<Utc>,
    agent: Option<AgentId>,
) -> StoreResult<Vec<ActivityRow>> {
    let rows = sqlx::query(
        "SELECT agent_id, hour, tool_name, calls, denies, escalations, bytes_in, bytes_out, flagged
         FROM agent_activity WHERE hour >= $1 AND ($2::uuid IS NULL OR agent_id = $2)
         ORDER BY agent_id, hour, tool_name",
    )
    .bind(since)
    .bind(agent.map(|a| a.0))
    .fetch_all(tx)
    .await
    .map_err(map_err)?;
    let get = |e: sqlx::Error| StoreError::internal(e);
    rows.iter()
        .map(|row| {
            Ok(ActivityRow {
                agent_id: AgentId(row.try_get("agent_id").map_err(get)?),
                hour: row.try_get("hour").map_err(get)?,
                tool_name: row.try_get("tool_name").map_err(get)?,
                calls: row.try_get("calls").map_err(get)?,
                denies: row.try_get("denies").map_err(get)?,
                escalations: row.try_get("escalations").map_err(get)?,
                bytes_in: row.try_get("bytes_in").map_err(get)?,
                bytes_out: row.try_get("bytes_out").map_err(get)?,
                flagged: row.try_get("flagged").map_err(get)?,
            })
        })
        .collect()
}

pub(crate) async fn escalation_outcomes(
    tx: &mut PgConnection,
    since: DateTime<Utc>,
) -> StoreResult<Vec<(AgentId, EscalationOutcomes)>> {
    let rows = sqlx::query(
        "SELECT agent_id,
                count(*) FILTER (WHERE status = 'approved') AS approved,
                count(*) FILTER (WHERE status = 'denied') AS denied,
                count(*) FILTER (WHERE status = 'timed_out') AS timed_out
         FROM escalations
         WHERE agent_id IS NOT NULL AND status <> 'pending' AND decided_at >= $1
         GROUP BY agent_id",
    )
    .bind(since)
    .fetch_all(tx)
    .await
    .map_err(map_err)?;
    let count = |row: &sqlx::postgres::PgRow, name: &str| -> StoreResult<u64> {
        let n: i64 = row.try_get(name).map_err(StoreError::internal)?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    rows.iter()
        .map(|row| {
            Ok((
                AgentId(row.try_get("agent_id").map_err(StoreError::internal)?),
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
    tx: &mut PgConnection,
    id: AgentId,
    u: &RiskUpdate,
) -> StoreResult<()> {
    let factors = serde_json::to_value(u.factors).map_err(StoreError::internal)?;
    let reported = serde_json::to_value(&u.reported).map_err(StoreError::internal)?;
    let done = sqlx::query(
        "UPDATE agents SET risk_score = $2, risk_tier = $3, baseline_status = $4, has_recent_drift = $5,
                risk_factors = $6, risk_reported = $7, risk_assessed_at = $8
         WHERE id = $1",
    )
    .bind(id.0)
    .bind(u.score)
    .bind(u.tier.as_str())
    .bind(u.baseline_status.as_str())
    .bind(u.has_recent_drift)
    .bind(factors)
    .bind(reported)
    .bind(u.at)
    .execute(tx)
    .await
    .map_err(map_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
