//! Tenant-scoped operations. Every statement filters on the handle's tenant;
//! that filter is the isolation boundary on SQLite.

use async_trait::async_trait;
use behavry_core::{AdminUserId, TenantId, UsageSummary};
use behavry_store::{
    AdminUserRecord, NewAdminUser, NewAuditEvent, NewEscalation, StoreResult, TenantRecord,
    TenantStore,
};
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use crate::platform::{load_tenant, usage_on};
use crate::rows::{ADMIN_COLUMNS, admin_record};
use crate::{map_err, ts};

pub(crate) struct SqliteTenant {
    pub(crate) pool: SqlitePool,
    pub(crate) tenant: TenantId,
}

#[async_trait]
impl TenantStore for SqliteTenant {
    fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    async fn tenant(&self) -> StoreResult<TenantRecord> {
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        load_tenant(&mut conn, self.tenant).await
    }

    async fn usage(&self, since: DateTime<Utc>, until: DateTime<Utc>) -> StoreResult<UsageSummary> {
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        usage_on(&mut conn, self.tenant, since, until).await
    }

    async fn create_admin(&self, new: NewAdminUser) -> StoreResult<AdminUserRecord> {
        let now = ts(Utc::now());
        let sql = format!(
            "INSERT INTO admin_users (id, tenant_id, username, email, password_hash, role, status, is_super_admin, created_at, password_changed_at)
             VALUES (?, ?, ?, ?, ?, ?, 'active', 0, ?, ?) RETURNING {ADMIN_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(AdminUserId::new().to_string())
            .bind(self.tenant.to_string())
            .bind(&new.username)
            .bind(&new.email)
            .bind(&new.password_hash)
            .bind(new.role.as_str())
            .bind(&now)
            .bind(&now)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        admin_record(&row)
    }

    async fn list_admins(&self) -> StoreResult<Vec<AdminUserRecord>> {
        let sql = format!(
            "SELECT {ADMIN_COLUMNS} FROM admin_users WHERE tenant_id = ? ORDER BY created_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(admin_record).collect()
    }

    async fn append_audit_events(&self, events: &[NewAuditEvent]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        for e in events {
            sqlx::query(
                "INSERT INTO audit_events (id, tenant_id, timestamp, agent_id, session_id, action, target,
                    tool_name, mcp_server, policy_result, policy_id, policy_reason, behavioral_score,
                    dlp_findings, dlp_action, input_hash, previous_hash, event_hash, response_code,
                    latency_ms, error, request_size, response_size, extra, requester_id)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(e.id.to_string())
            .bind(self.tenant.to_string())
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
            .bind(&e.requester_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    async fn count_audit_events(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE tenant_id = ?")
            .bind(self.tenant.to_string())
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn record_escalation(&self, e: NewEscalation) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO escalations (id, tenant_id, agent_id, status, summary, expires_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(e.id.to_string())
        .bind(self.tenant.to_string())
        .bind(e.agent_id.map(|a| a.to_string()))
        .bind(&e.status)
        .bind(e.summary.to_string())
        .bind(ts(e.expires_at))
        .bind(ts(e.created_at))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }
}
