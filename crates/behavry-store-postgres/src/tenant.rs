//! Tenant-scoped operations on the app pool, under row-level security.

use async_trait::async_trait;
use behavry_core::{AdminUserId, TenantId, UsageSummary};
use behavry_store::{
    AdminUserRecord, NewAdminUser, NewAuditEvent, NewEscalation, StoreResult, TenantRecord,
    TenantStore,
};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::errors::map_err;
use crate::platform::{load_tenant, usage_on};
use crate::rows::{ADMIN_COLUMNS, admin_record};

pub(crate) struct PgTenant {
    pub(crate) pool: PgPool,
    pub(crate) tenant: TenantId,
}

impl PgTenant {
    /// Starts a unit of work bound to this tenant. The setting is local to
    /// the transaction, so it disappears at commit or rollback.
    async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("SELECT set_config('behavry.tenant_id', $1, true)")
            .bind(self.tenant.to_string())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        Ok(tx)
    }
}

#[async_trait]
impl TenantStore for PgTenant {
    fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    async fn tenant(&self) -> StoreResult<TenantRecord> {
        let mut tx = self.begin().await?;
        let record = load_tenant(&mut tx, self.tenant, false).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(record)
    }

    async fn usage(&self, since: DateTime<Utc>, until: DateTime<Utc>) -> StoreResult<UsageSummary> {
        let mut tx = self.begin().await?;
        let usage = usage_on(&mut tx, self.tenant, since, until).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(usage)
    }

    async fn create_admin(&self, new: NewAdminUser) -> StoreResult<AdminUserRecord> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "INSERT INTO admin_users (id, tenant_id, username, email, password_hash, role, status, is_super_admin, created_at, password_changed_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'active', false, now(), now()) RETURNING {ADMIN_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(AdminUserId::new().0)
            .bind(self.tenant.0)
            .bind(&new.username)
            .bind(&new.email)
            .bind(&new.password_hash)
            .bind(new.role.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        admin_record(&row)
    }

    async fn list_admins(&self) -> StoreResult<Vec<AdminUserRecord>> {
        let mut tx = self.begin().await?;
        let sql = format!("SELECT {ADMIN_COLUMNS} FROM admin_users ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        rows.iter().map(admin_record).collect()
    }

    async fn append_audit_events(&self, events: &[NewAuditEvent]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for e in events {
            sqlx::query(
                r#"INSERT INTO audit_events (id, tenant_id, "timestamp", agent_id, session_id, action, target,
                    tool_name, mcp_server, policy_result, policy_id, policy_reason, behavioral_score,
                    dlp_findings, dlp_action, input_hash, previous_hash, event_hash, response_code,
                    latency_ms, error, request_size, response_size, extra, requester_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                    $18, $19, $20, $21, $22, $23, $24, $25)"#,
            )
            .bind(e.id)
            .bind(self.tenant.0)
            .bind(e.timestamp)
            .bind(e.agent_id.map(|a| a.0))
            .bind(&e.session_id)
            .bind(&e.action)
            .bind(&e.target)
            .bind(&e.tool_name)
            .bind(&e.mcp_server)
            .bind(&e.policy_result)
            .bind(&e.policy_id)
            .bind(&e.policy_reason)
            .bind(e.behavioral_score)
            .bind(&e.dlp_findings)
            .bind(&e.dlp_action)
            .bind(&e.input_hash)
            .bind(&e.previous_hash)
            .bind(&e.event_hash)
            .bind(e.response_code)
            .bind(e.latency_ms)
            .bind(&e.error)
            .bind(e.request_size)
            .bind(e.response_size)
            .bind(&e.extra)
            .bind(&e.requester_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    async fn count_audit_events(&self) -> StoreResult<i64> {
        let mut tx = self.begin().await?;
        let n = sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(n)
    }

    async fn record_escalation(&self, e: NewEscalation) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO escalations (id, tenant_id, agent_id, status, summary, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.id)
        .bind(self.tenant.0)
        .bind(e.agent_id.map(|a| a.0))
        .bind(&e.status)
        .bind(&e.summary)
        .bind(e.expires_at)
        .bind(e.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }
}
