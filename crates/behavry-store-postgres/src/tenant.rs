//! Tenant-scoped operations on the app pool, under row-level security.

use async_trait::async_trait;
use behavry_core::{AdminUserId, Agent, AgentId, AgentStatus, AlertStatus, TenantId, UsageSummary};
use behavry_store::{
    AdminUserRecord, AgentFilter, AgentPatch, McpServerPatch, McpServerRecord, NewAdminUser,
    NewAgent, NewAuditEvent, NewEnrollmentToken, NewEscalation, NewMcpServer, NewPolicy,
    NewSession, PolicyChange, PolicyRecord, PolicySettings, PolicyVersionRecord, SessionRecord,
    StoreError, StoreResult, TenantRecord, TenantStore, ToolPin,
};
use behavry_store::{
    AlertFilter, AlertRecord, EscalationDecision, EscalationException, EscalationFilter,
    EscalationRecord, NewAlert,
};
use uuid::Uuid;

use crate::policies;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::agents::insert_agent;
use crate::errors::map_err;
use crate::platform::{load_tenant, usage_on};
use crate::rows::{
    ADMIN_COLUMNS, AGENT_COLUMNS, AUDIT_COLUMNS, MCP_SERVER_COLUMNS, SESSION_COLUMNS,
    TOOL_PIN_COLUMNS, admin_record, agent, audit_event, mcp_server, session, tool_pin,
};
use behavry_store::audit::{AuditEvent, AuditQuery};
use sqlx::PgConnection;

pub(crate) struct PgTenant {
    pub(crate) pool: PgPool,
    pub(crate) tenant: TenantId,
}

impl PgTenant {
    /// Starts a unit of work bound to this tenant. The setting is local to
    /// the transaction, so it disappears at commit or rollback.
    /// Runs one of the tenant-settings updates (`sql` is a constant).
    async fn set_config_json(
        &self,
        sql: &'static str,
        value: &serde_json::Value,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(sql)
            .bind(self.tenant.0)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

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

    async fn set_data_protection_policy(&self, policy: &serde_json::Value) -> StoreResult<()> {
        self.set_config_json(
            "UPDATE tenant_configs SET data_protection_policy = $2 WHERE tenant_id = $1",
            policy,
        )
        .await
    }

    async fn set_blast_radius_config(&self, config: &serde_json::Value) -> StoreResult<()> {
        self.set_config_json(
            "UPDATE tenant_configs SET blast_radius_config = $2 WHERE tenant_id = $1",
            config,
        )
        .await
    }

    async fn payload_data_key(&self) -> StoreResult<Option<String>> {
        let mut tx = self.begin().await?;
        let key: Option<Option<String>> =
            sqlx::query_scalar("SELECT payload_data_key FROM tenant_configs WHERE tenant_id = $1")
                .bind(self.tenant.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        key.ok_or(StoreError::NotFound)
    }

    async fn init_payload_data_key(&self, wrapped: &str) -> StoreResult<String> {
        let mut tx = self.begin().await?;
        let key: Option<String> = sqlx::query_scalar(
            "UPDATE tenant_configs SET payload_data_key = coalesce(payload_data_key, $2)
             WHERE tenant_id = $1 RETURNING payload_data_key",
        )
        .bind(self.tenant.0)
        .bind(wrapped)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        key.ok_or(StoreError::NotFound)
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

    async fn append_audit_events(&self, events: &[NewAuditEvent]) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let stored = append_chained(&mut tx, self.tenant, events).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(stored)
    }

    async fn list_audit_events(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let sql = format!(
            r#"SELECT {AUDIT_COLUMNS} FROM audit_events
               WHERE tenant_id = $1
                 AND ($2::timestamptz IS NULL OR "timestamp" >= $2)
                 AND ($3::timestamptz IS NULL OR "timestamp" < $3)
                 AND ($4::uuid IS NULL OR agent_id = $4)
                 AND ($5::text IS NULL OR mcp_server = $5)
                 AND ($6::text IS NULL OR tool_name = $6)
                 AND ($7::text IS NULL OR policy_result = $7)
                 AND seq > coalesce($8, 0)
               ORDER BY seq LIMIT $9"#
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.0)
            .bind(q.since)
            .bind(q.until)
            .bind(q.agent_id.map(|a| a.0))
            .bind(&q.mcp_server)
            .bind(&q.tool_name)
            .bind(&q.policy_result)
            .bind(q.after_seq)
            .bind(q.limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        rows.iter().map(audit_event).collect()
    }

    async fn get_audit_event(&self, id: Uuid) -> StoreResult<AuditEvent> {
        let mut tx = self.begin().await?;
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        audit_event(&row.ok_or(StoreError::NotFound)?)
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

    async fn raise_alert(&self, new: &NewAlert) -> StoreResult<(AlertRecord, bool)> {
        let mut tx = self.begin().await?;
        let out = crate::alerts::raise(&mut tx, self.tenant, new).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn list_alerts(&self, filter: &AlertFilter) -> StoreResult<(Vec<AlertRecord>, i64)> {
        let mut tx = self.begin().await?;
        let out = crate::alerts::list(&mut tx, filter).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn get_alert(&self, id: Uuid) -> StoreResult<AlertRecord> {
        let mut tx = self.begin().await?;
        let out = crate::alerts::get(&mut tx, id).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn set_alert_status(
        &self,
        id: Uuid,
        from: AlertStatus,
        to: AlertStatus,
        by: AdminUserId,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<AlertRecord>> {
        let mut tx = self.begin().await?;
        let out = crate::alerts::set_status(&mut tx, id, from, to, by, at).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn record_escalation(&self, e: NewEscalation) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let out = crate::escalations::record(&mut tx, self.tenant, &e).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn get_escalation(&self, id: Uuid) -> StoreResult<EscalationRecord> {
        let mut tx = self.begin().await?;
        let out = crate::escalations::get(&mut tx, id).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn list_escalations(
        &self,
        filter: &EscalationFilter,
    ) -> StoreResult<(Vec<EscalationRecord>, i64)> {
        let mut tx = self.begin().await?;
        let out = crate::escalations::list(&mut tx, filter).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn open_escalation_for_call(
        &self,
        call_key: &str,
    ) -> StoreResult<Option<EscalationRecord>> {
        let mut tx = self.begin().await?;
        let out = crate::escalations::open_for_call(&mut tx, call_key).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn decide_escalation(
        &self,
        id: Uuid,
        decision: &EscalationDecision,
    ) -> StoreResult<Option<EscalationRecord>> {
        let mut tx = self.begin().await?;
        let out = crate::escalations::decide(&mut tx, id, decision).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn consume_escalation(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let out = crate::escalations::consume(&mut tx, id, at).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn add_escalation_exception(&self, exception: &EscalationException) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let out = crate::escalations::add_exception(&mut tx, self.tenant, exception).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn matching_exception(
        &self,
        agent: AgentId,
        server_id: Uuid,
        tool_name: &str,
        resource: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<EscalationException>> {
        let mut tx = self.begin().await?;
        let out = crate::escalations::matching_exception(
            &mut tx, agent, server_id, tool_name, resource, at,
        )
        .await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn record_webhook_delivery(
        &self,
        delivery: &behavry_store::WebhookDelivery,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        crate::escalations::record_delivery(&mut tx, self.tenant, delivery).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    async fn list_webhook_deliveries(
        &self,
        limit: i64,
    ) -> StoreResult<Vec<behavry_store::WebhookDelivery>> {
        let mut tx = self.begin().await?;
        let out = crate::escalations::list_deliveries(&mut tx, limit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn roll_up_agent_activity(
        &self,
        since: DateTime<Utc>,
        keep_from: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        crate::risk::roll_up(&mut tx, since, keep_from).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn latest_activity_hour(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let mut tx = self.begin().await?;
        let out = crate::risk::latest_hour(&mut tx).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn agent_activity(
        &self,
        since: DateTime<Utc>,
        agent: Option<AgentId>,
    ) -> StoreResult<Vec<behavry_store::ActivityRow>> {
        let mut tx = self.begin().await?;
        let out = crate::risk::activity(&mut tx, since, agent).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn escalation_outcomes(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(AgentId, behavry_core::risk::EscalationOutcomes)>> {
        let mut tx = self.begin().await?;
        let out = crate::risk::escalation_outcomes(&mut tx, since).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn set_agent_risk(
        &self,
        id: AgentId,
        update: &behavry_store::RiskUpdate,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        crate::risk::set_risk(&mut tx, id, update).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn list_escalation_exceptions(&self) -> StoreResult<Vec<EscalationException>> {
        let mut tx = self.begin().await?;
        let out = crate::escalations::list_exceptions(&mut tx).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn delete_escalation_exception(&self, id: Uuid) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let out = crate::escalations::delete_exception(&mut tx, id).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
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

    async fn set_agent_frozen(&self, id: AgentId, reason: Option<&str>) -> StoreResult<Agent> {
        let mut tx = self.begin().await?;
        let sql = match reason {
            Some(_) => format!(
                "UPDATE agents SET frozen_at = coalesce(frozen_at, now()), frozen_reason = coalesce(frozen_reason, $2),
                     updated_at = now() WHERE id = $1 RETURNING {AGENT_COLUMNS}"
            ),
            None => format!(
                "UPDATE agents SET frozen_at = NULL, frozen_reason = NULL, updated_at = now()
                     WHERE id = $1 RETURNING {AGENT_COLUMNS}"
            ),
        };
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0);
        let query = match reason {
            Some(r) => query.bind(r),
            None => query,
        };
        let row = query
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
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

    async fn create_mcp_server(&self, new: NewMcpServer) -> StoreResult<McpServerRecord> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "INSERT INTO mcp_servers (id, tenant_id, name, transport, command, args, url, secrets, tags, timeout_ms, enabled, catalog_entry, operator_defined)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {MCP_SERVER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(uuid::Uuid::now_v7())
            .bind(self.tenant.0)
            .bind(&new.name)
            .bind(&new.transport)
            .bind(&new.command)
            .bind(serde_json::json!(new.args))
            .bind(&new.url)
            .bind(&new.secrets)
            .bind(serde_json::json!(new.tags))
            .bind(new.timeout_ms)
            .bind(new.enabled)
            .bind(&new.catalog_entry)
            .bind(new.operator_defined)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        mcp_server(&row)
    }

    async fn list_mcp_servers(&self) -> StoreResult<Vec<McpServerRecord>> {
        let mut tx = self.begin().await?;
        let sql = format!("SELECT {MCP_SERVER_COLUMNS} FROM mcp_servers ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        rows.iter().map(mcp_server).collect()
    }

    async fn get_mcp_server(&self, id: uuid::Uuid) -> StoreResult<McpServerRecord> {
        let mut tx = self.begin().await?;
        let sql = format!("SELECT {MCP_SERVER_COLUMNS} FROM mcp_servers WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(map_err)?;
        mcp_server(&row)
    }

    async fn update_mcp_server(
        &self,
        id: uuid::Uuid,
        patch: McpServerPatch,
    ) -> StoreResult<McpServerRecord> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "UPDATE mcp_servers SET
                name = coalesce($2, name),
                command = CASE WHEN $3 THEN $4 ELSE command END,
                args = coalesce($5, args),
                url = CASE WHEN $6 THEN $7 ELSE url END,
                secrets = CASE WHEN $8 THEN $9 ELSE secrets END,
                tags = coalesce($10, tags),
                timeout_ms = coalesce($11, timeout_ms),
                enabled = coalesce($12, enabled),
                updated_at = now()
             WHERE id = $1 RETURNING {MCP_SERVER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(&patch.name)
            .bind(patch.command.is_some())
            .bind(patch.command.clone().flatten())
            .bind(patch.args.as_ref().map(|a| serde_json::json!(a)))
            .bind(patch.url.is_some())
            .bind(patch.url.clone().flatten())
            .bind(patch.secrets.is_some())
            .bind(patch.secrets.clone().flatten())
            .bind(patch.tags.as_ref().map(|t| serde_json::json!(t)))
            .bind(patch.timeout_ms)
            .bind(patch.enabled)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(map_err)?;
        mcp_server(&row)
    }

    async fn delete_mcp_server(&self, id: uuid::Uuid) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM mcp_servers WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn import_mcp_servers(
        &self,
        servers: Vec<NewMcpServer>,
        replace_existing: bool,
    ) -> StoreResult<Vec<(McpServerRecord, bool)>> {
        let mut tx = self.begin().await?;
        let update = format!(
            "UPDATE mcp_servers SET transport = $2, command = $3, args = $4, url = $5,
                secrets = $6, tags = $7, timeout_ms = $8, enabled = $9, updated_at = now(),
                catalog_entry = $10, operator_defined = $11
             WHERE name = $1 RETURNING {MCP_SERVER_COLUMNS}"
        );
        let insert = format!(
            "INSERT INTO mcp_servers (id, tenant_id, name, transport, command, args, url, secrets, tags, timeout_ms, enabled, catalog_entry, operator_defined)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {MCP_SERVER_COLUMNS}"
        );
        let mut out = Vec::with_capacity(servers.len());
        for new in servers {
            if replace_existing {
                let row = sqlx::query(sqlx::AssertSqlSafe(update.clone()))
                    .bind(&new.name)
                    .bind(&new.transport)
                    .bind(&new.command)
                    .bind(serde_json::json!(new.args))
                    .bind(&new.url)
                    .bind(&new.secrets)
                    .bind(serde_json::json!(new.tags))
                    .bind(new.timeout_ms)
                    .bind(new.enabled)
                    .bind(&new.catalog_entry)
                    .bind(new.operator_defined)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if let Some(row) = row {
                    out.push((mcp_server(&row)?, false));
                    continue;
                }
            }
            let row = sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                .bind(uuid::Uuid::now_v7())
                .bind(self.tenant.0)
                .bind(&new.name)
                .bind(&new.transport)
                .bind(&new.command)
                .bind(serde_json::json!(new.args))
                .bind(&new.url)
                .bind(&new.secrets)
                .bind(serde_json::json!(new.tags))
                .bind(new.timeout_ms)
                .bind(new.enabled)
                .bind(&new.catalog_entry)
                .bind(new.operator_defined)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
            out.push((mcp_server(&row)?, true));
        }
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn tool_pins(&self, server_id: Uuid) -> StoreResult<Vec<ToolPin>> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT {TOOL_PIN_COLUMNS} FROM tool_pins WHERE server_id = $1 ORDER BY tool_name"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(server_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        rows.iter().map(tool_pin).collect()
    }

    async fn pin_tool(
        &self,
        server_id: Uuid,
        tool_name: &str,
        hash: &str,
        definition: &serde_json::Value,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO tool_pins (id, tenant_id, server_id, tool_name, hash, definition, approved_by)
             VALUES ($1, $2, $3, $4, $5, $6, 'first_use')
             ON CONFLICT (tenant_id, server_id, tool_name) DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(self.tenant.0)
        .bind(server_id)
        .bind(tool_name)
        .bind(hash)
        .bind(definition)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    async fn propose_tool_change(
        &self,
        server_id: Uuid,
        tool_name: &str,
        hash: &str,
        definition: &serde_json::Value,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE tool_pins SET pending_hash = $3, pending_definition = $4, pending_since = now()
             WHERE server_id = $1 AND tool_name = $2 AND hash <> $3
               AND pending_hash IS DISTINCT FROM $3 AND rejected_hash IS DISTINCT FROM $3",
        )
        .bind(server_id)
        .bind(tool_name)
        .bind(hash)
        .bind(definition)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn decide_tool_change(
        &self,
        server_id: Uuid,
        tool_name: &str,
        approve: bool,
        by: &str,
    ) -> StoreResult<ToolPin> {
        let mut tx = self.begin().await?;
        let sql = if approve {
            format!(
                "UPDATE tool_pins SET hash = pending_hash, definition = pending_definition,
                     approved_at = now(), approved_by = $3, pending_hash = NULL,
                     pending_definition = NULL, pending_since = NULL, rejected_hash = NULL
                 WHERE server_id = $1 AND tool_name = $2 AND pending_hash IS NOT NULL
                 RETURNING {TOOL_PIN_COLUMNS}"
            )
        } else {
            format!(
                "UPDATE tool_pins SET rejected_hash = pending_hash, pending_hash = NULL,
                     pending_definition = NULL, pending_since = NULL
                 WHERE server_id = $1 AND tool_name = $2 AND pending_hash IS NOT NULL
                 RETURNING {TOOL_PIN_COLUMNS}"
            )
        };
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(server_id)
            .bind(tool_name);
        let query = if approve { query.bind(by) } else { query };
        let row = query
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(map_err)?;
        tool_pin(&row)
    }

    async fn pending_tool_changes(&self) -> StoreResult<Vec<ToolPin>> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT {TOOL_PIN_COLUMNS} FROM tool_pins WHERE pending_hash IS NOT NULL
             ORDER BY pending_since, tool_name"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        rows.iter().map(tool_pin).collect()
    }

    async fn create_session(&self, new: NewSession) -> StoreResult<SessionRecord> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "INSERT INTO sessions (id, tenant_id, agent_id, server_id, client_name, client_version, protocol_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {SESSION_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&new.id)
            .bind(self.tenant.0)
            .bind(new.agent_id.0)
            .bind(&new.server_id)
            .bind(&new.client_name)
            .bind(&new.client_version)
            .bind(&new.protocol_version)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        session(&row)
    }

    async fn get_session(&self, id: &str) -> StoreResult<SessionRecord> {
        let mut tx = self.begin().await?;
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(map_err)?;
        session(&row)
    }

    async fn touch_session(&self, id: &str, calls: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE sessions SET last_seen_at = now(), call_count = call_count + $2 WHERE id = $1",
        )
        .bind(id)
        .bind(calls)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    async fn flag_session(
        &self,
        id: &str,
        flags: behavry_store::SessionFlags,
        inbound_findings: &serde_json::Value,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET tainted = (tainted OR $2), read_untrusted = (read_untrusted OR $3),
                 read_private = (read_private OR $4), inbound_findings = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(flags.tainted)
        .bind(flags.read_untrusted)
        .bind(flags.read_private)
        .bind(inbound_findings)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn end_session(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE sessions SET ended_at = coalesce(ended_at, now()) WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    async fn end_agent_sessions(&self, agent: AgentId) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET ended_at = now() WHERE agent_id = $1 AND ended_at IS NULL",
        )
        .bind(agent.0)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn list_sessions(
        &self,
        agent: Option<AgentId>,
        active_only: bool,
        limit: i64,
    ) -> StoreResult<Vec<SessionRecord>> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions
             WHERE ($1::uuid IS NULL OR agent_id = $1) AND (NOT $2 OR ended_at IS NULL)
             ORDER BY last_seen_at DESC LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(agent.map(|a| a.0))
            .bind(active_only)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        rows.iter().map(session).collect()
    }

    async fn create_policy(&self, new: NewPolicy) -> StoreResult<PolicyRecord> {
        let mut tx = self.begin().await?;
        let r = policies::create(&mut tx, self.tenant, new).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(r)
    }

    async fn list_policies(&self) -> StoreResult<Vec<PolicyRecord>> {
        let mut tx = self.begin().await?;
        let r = policies::list(&mut tx, self.tenant).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(r)
    }

    async fn get_policy(&self, id: Uuid) -> StoreResult<PolicyRecord> {
        let mut tx = self.begin().await?;
        let r = policies::get(&mut tx, self.tenant, id).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(r)
    }

    async fn update_policy(&self, id: Uuid, change: PolicyChange) -> StoreResult<PolicyRecord> {
        let mut tx = self.begin().await?;
        let r = policies::update(&mut tx, self.tenant, id, change).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(r)
    }

    async fn delete_policy(&self, id: Uuid) -> StoreResult<PolicyRecord> {
        let mut tx = self.begin().await?;
        let r = policies::delete(&mut tx, self.tenant, id).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(r)
    }

    async fn list_policy_versions(&self, id: Uuid) -> StoreResult<Vec<PolicyVersionRecord>> {
        let mut tx = self.begin().await?;
        let r = policies::versions(&mut tx, self.tenant, id).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(r)
    }

    async fn policy_settings(&self) -> StoreResult<PolicySettings> {
        let mut tx = self.begin().await?;
        let r = policies::settings(&mut tx, self.tenant).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(r)
    }

    async fn set_base_pack(&self, enabled: bool) -> StoreResult<PolicySettings> {
        let mut tx = self.begin().await?;
        let r = policies::set_base_pack(&mut tx, self.tenant, enabled).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(r)
    }
}

/// Appends events after the tenant's chain head, holding the head's row
/// lock until the transaction ends. Runs inside a tenant transaction.
pub(crate) async fn append_chained(
    conn: &mut PgConnection,
    tenant: TenantId,
    events: &[NewAuditEvent],
) -> StoreResult<Vec<AuditEvent>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    // The head row is created with the tenant.
    let (seq, previous): (i64, String) = sqlx::query_as(
        "SELECT last_seq, last_hash FROM audit_chain_heads WHERE tenant_id = $1 FOR UPDATE",
    )
    .bind(tenant.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err)?
    .ok_or(StoreError::NotFound)?;
    let stored = AuditEvent::chain_batch(events, tenant, seq, &previous);
    let (seq, previous) = stored
        .last()
        .map_or((seq, previous.clone()), |e| (e.seq, e.event_hash.clone()));
    // One statement for the whole batch: arrays of each column, unnested.
    let col = |f: fn(&AuditEvent) -> Option<String>| stored.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        r#"INSERT INTO audit_events (id, tenant_id, seq, "timestamp", agent_id, session_id, action, target,
              tool_name, mcp_server, policy_result, policy_id, policy_reason, behavioral_score,
              dlp_findings, dlp_action, input_hash, previous_hash, event_hash, response_code,
              latency_ms, error, request_size, response_size, extra, requester_id)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::timestamptz[], $5::uuid[], $6::text[],
              $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
              $14::float8[], $15::jsonb[], $16::text[], $17::text[], $18::text[], $19::text[], $20::int4[],
              $21::float8[], $22::text[], $23::int8[], $24::int8[], $25::jsonb[], $26::text[])"#,
    )
    .bind(stored.iter().map(|e| e.id).collect::<Vec<_>>())
    .bind(stored.iter().map(|e| e.tenant_id.0).collect::<Vec<_>>())
    .bind(stored.iter().map(|e| e.seq).collect::<Vec<_>>())
    .bind(stored.iter().map(|e| e.timestamp).collect::<Vec<_>>())
    .bind(stored.iter().map(|e| e.agent_id.map(|a| a.0)).collect::<Vec<_>>())
    .bind(col(|e| e.session_id.clone()))
    .bind(stored.iter().map(|e| e.action.clone()).collect::<Vec<_>>())
    .bind(col(|e| e.target.clone()))
    .bind(col(|e| e.tool_name.clone()))
    .bind(col(|e| e.mcp_server.clone()))
    .bind(col(|e| e.policy_result.clone()))
    .bind(col(|e| e.policy_id.clone()))
    .bind(col(|e| e.policy_reason.clone()))
    .bind(stored.iter().map(|e| e.behavioral_score).collect::<Vec<_>>())
    .bind(stored.iter().map(|e| e.dlp_findings.clone()).collect::<Vec<_>>())
    .bind(col(|e| e.dlp_action.clone()))
    .bind(col(|e| e.input_hash.clone()))
    .bind(stored.iter().map(|e| e.previous_hash.clone()).collect::<Vec<_>>())
    .bind(stored.iter().map(|e| e.event_hash.clone()).collect::<Vec<_>>())
    .bind(stored.iter().map(|e| e.response_code).collect::<Vec<_>>())
    .bind(stored.iter().map(|e| e.latency_ms).collect::<Vec<_>>())
    .bind(col(|e| e.error.clone()))
    .bind(stored.iter().map(|e| e.request_size).collect::<Vec<_>>())
    .bind(stored.iter().map(|e| e.response_size).collect::<Vec<_>>())
    .bind(stored.iter().map(|e| e.extra.clone()).collect::<Vec<_>>())
    .bind(col(|e| e.requester_id.clone()))
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    sqlx::query("UPDATE audit_chain_heads SET last_seq = $2, last_hash = $3, updated_at = now() WHERE tenant_id = $1")
        .bind(tenant.0)
        .bind(seq)
        .bind(&previous)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(stored)
}
