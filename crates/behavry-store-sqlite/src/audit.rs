//! Appending to a tenant's audit chain.
//!
//! A batch is written by one multi-row `INSERT`: one statement, atomic on
//! its own, with the chain head advanced by a trigger (migration 0003).
//! That is one round trip to SQLite's connection thread per batch instead
//! of one per row plus a transaction around them; each round trip means
//! waking a thread, which on a virtual machine can cost more than the
//! insert itself.
//!
//! The head each batch continues from is kept in memory after the first
//! read. Should another process have appended meanwhile, the unique
//! `(tenant_id, seq)` index refuses the batch; the head is then re-read and
//! the batch chained again, so a stale head can delay an append but never
//! fork the chain.

use std::collections::HashMap;
use std::sync::LazyLock;

use behavry_core::TenantId;
use behavry_store::audit::AuditEvent;
use behavry_store::{NewAuditEvent, StoreError, StoreResult};
use sqlx::SqlitePool;
use tokio::sync::Mutex;

use crate::rows::AUDIT_COLUMNS;
use crate::{map_err, ts};

/// Appends through its own connection, remembering the last
/// `(seq, event_hash)` of each tenant's chain as this process wrote it. The
/// lock also serialises appends, which SQLite would do anyway.
pub(crate) struct Appender {
    pool: SqlitePool,
    heads: Mutex<HashMap<TenantId, (i64, String)>>,
}

impl Appender {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            heads: Mutex::default(),
        }
    }

    pub(crate) async fn append(
        &self,
        tenant: TenantId,
        events: &[NewAuditEvent],
    ) -> StoreResult<Vec<AuditEvent>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut heads = self.heads.lock().await;
        let mut retried = false;
        loop {
            let (seq, previous) = match heads.get(&tenant) {
                Some(h) => h.clone(),
                None => read_head(&self.pool, tenant).await?,
            };
            let chained = AuditEvent::chain_batch(events, tenant, seq, &previous);
            match insert(&self.pool, &chained).await {
                Ok(()) => {
                    if let Some(last) = chained.last() {
                        heads.insert(tenant, (last.seq, last.event_hash.clone()));
                    }
                    return Ok(chained);
                }
                Err(e) => {
                    heads.remove(&tenant);
                    let stale_head =
                        matches!(&e, sqlx::Error::Database(db) if db.is_unique_violation());
                    if stale_head && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(map_err(e));
                }
            }
        }
    }
}

async fn read_head(pool: &SqlitePool, tenant: TenantId) -> StoreResult<(i64, String)> {
    // The head row is created with the tenant.
    sqlx::query_as("SELECT last_seq, last_hash FROM audit_chain_heads WHERE tenant_id = ?")
        .bind(tenant.to_string())
        .fetch_optional(pool)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)
}

/// Rows per `INSERT`: each row count has its own cached statement, so this
/// bounds how many the connection keeps prepared.
const ROWS_PER_STATEMENT: usize = 32;

/// `INSERT INTO audit_events (…) VALUES (?, …), …` for 1 to
/// `ROWS_PER_STATEMENT` rows.
static INSERTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let columns = AUDIT_COLUMNS.split(',').count();
    let row = format!("({})", vec!["?"; columns].join(", "));
    (1..=ROWS_PER_STATEMENT)
        .map(|n| {
            format!(
                "INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES {}",
                vec![row.as_str(); n].join(", ")
            )
        })
        .collect()
});

/// Writes the rows. A batch that fits one statement is written by that
/// statement alone, which is atomic without a transaction; a larger one
/// (only under heavy load) is wrapped in one.
async fn insert(pool: &SqlitePool, events: &[AuditEvent]) -> Result<(), sqlx::Error> {
    if events.len() <= ROWS_PER_STATEMENT {
        return insert_rows(pool, events).await;
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        insert_rows(&mut *tx, chunk).await?;
    }
    tx.commit().await
}

async fn insert_rows<'e, E: sqlx::SqliteExecutor<'e>>(
    executor: E,
    rows: &[AuditEvent],
) -> Result<(), sqlx::Error> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(INSERTS[rows.len() - 1].as_str()));
    for e in rows {
        query = query
            .bind(e.id.to_string())
            .bind(e.tenant_id.to_string())
            .bind(e.seq)
            .bind(ts(e.timestamp))
            .bind(e.agent_id.map(|a| a.to_string()))
            .bind(&e.session_id)
            .bind(&e.action)
            .bind(&e.target)
            .bind(&e.tool_name)
            .bind(&e.mcp_server)
            .bind(&e.policy_result)
            .bind(&e.policy_id)
            .bind(&e.policy_reason)
            .bind(e.behavioral_score)
            .bind(e.dlp_findings.to_string())
            .bind(&e.dlp_action)
            .bind(&e.input_hash)
            .bind(&e.previous_hash)
            .bind(&e.event_hash)
            .bind(e.response_code)
            .bind(e.latency_ms)
            .bind(&e.error)
            .bind(e.request_size)
            .bind(e.response_size)
            .bind(e.extra.to_string())
            .bind(&e.requester_id);
    }
    query.execute(executor).await?;
    Ok(())
}
