//! Tenant-scoped operations on the app pool, under row-level security.

use async_trait::async_trait;
use behavry_core::{AdminUserId, Agent, AgentId, AgentStatus, TenantId, UsageSummary};
use behavry_store::{
    AdminUserRecord, AgentFilter, AgentPatch, NewAdminUser, NewAgent, NewAuditEvent,
    NewEnrollmentToken, NewEscalation, StoreError, StoreResult, TenantRecord, TenantStore,
};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::agents::insert_agent;
use crate::errors::map_err;
use crate::platform::{load_tenant, usage_on};
use crate::rows::{ADMIN_COLUMNS, AGENT_COLUMNS, admin_record, agent};

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

    async fn create_agent(&self, new: NewAgent) -> StoreResult<Agent> {
        let mut tx = self.begin().await?;
        let created = insert_agent(&mut tx, self.tenant, &new).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(created)
    }

    async fn list_agents(&self, filter: AgentFilter) -> StoreResult<(Vec<Agent>, i64)> {
        let mut tx = self.begin().await?;
        let status = filter.status.map(|s| s.as_str());
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE ($1::text IS NULL OR status = $1)
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status)
            .bind(filter.limit)
            .bind(filter.offset)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM agents WHERE ($1::text IS NULL OR status = $1)",
        )
        .bind(status)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok((rows.iter().map(agent).collect::<StoreResult<_>>()?, total))
    }

    async fn get_agent(&self, id: AgentId) -> StoreResult<Agent> {
        let mut tx = self.begin().await?;
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(map_err)?;
        agent(&row)
    }

    async fn update_agent(&self, id: AgentId, patch: AgentPatch) -> StoreResult<Agent> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "UPDATE agents SET
                name = coalesce($2, name),
                owner = CASE WHEN $3 THEN $4 ELSE owner END,
                agent_type = coalesce($5, agent_type),
                roles = coalesce($6, roles),
                permissions = coalesce($7, permissions),
                tags = coalesce($8, tags),
                updated_at = now()
             WHERE id = $1 RETURNING {AGENT_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .bind(&patch.name)
            .bind(patch.owner.is_some())
            .bind(patch.owner.clone().flatten())
            .bind(&patch.agent_type)
            .bind(patch.roles.as_ref().map(|v| serde_json::json!(v)))
            .bind(patch.permissions.as_ref().map(|v| serde_json::json!(v)))
            .bind(patch.tags.as_ref().map(|v| serde_json::json!(v)))
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(map_err)?;
        agent(&row)
    }

    async fn set_agent_status(&self, id: AgentId, status: AgentStatus) -> StoreResult<Agent> {
        let mut tx = self.begin().await?;
        let current: String =
            sqlx::query_scalar("SELECT status FROM agents WHERE id = $1 FOR UPDATE")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound)?;
        if current == "revoked" && status != AgentStatus::Revoked {
            return Err(StoreError::Refused(
                "a revoked agent cannot be reactivated; register a new one".into(),
            ));
        }
        let sql = format!(
            "UPDATE agents SET status = $2, updated_at = now() WHERE id = $1 RETURNING {AGENT_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .bind(status.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        agent(&row)
    }

    async fn set_agent_secret(&self, id: AgentId, client_secret_hash: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE agents SET client_secret_hash = $2, updated_at = now() WHERE id = $1 AND status <> 'revoked'")
            .bind(id.0)
            .bind(client_secret_hash)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn touch_agent(&self, id: AgentId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE agents SET last_seen_at = now() WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn create_enrollment_token(
        &self,
        token: NewEnrollmentToken,
        created_by: Option<AdminUserId>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, tenant_id, token_hash, expires_at, created_by) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(self.tenant.0)
        .bind(&token.token_hash)
        .bind(token.expires_at)
        .bind(created_by.map(|a| a.0))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }
}
