//! Tenant-scoped operations. Every statement filters on the handle's tenant;
//! that filter is the isolation boundary on SQLite.

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
use std::sync::Arc;
use uuid::Uuid;

use crate::policies;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use crate::agents::insert_agent;
use crate::platform::{load_tenant, usage_on};
use crate::rows::{
    ADMIN_COLUMNS, AGENT_COLUMNS, AUDIT_COLUMNS, MCP_SERVER_COLUMNS, SESSION_COLUMNS,
    TOOL_PIN_COLUMNS, admin_record, agent, audit_event, mcp_server, session, tool_pin,
};
use crate::{map_err, ts};
use behavry_store::audit::{AuditEvent, AuditQuery};

pub(crate) struct SqliteTenant {
    pub(crate) pool: SqlitePool,
    pub(crate) audit: Arc<crate::audit::Appender>,
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

    async fn set_data_protection_policy(&self, policy: &serde_json::Value) -> StoreResult<()> {
        set_config_json(
            &self.pool,
            self.tenant,
            "UPDATE tenant_configs SET data_protection_policy = ? WHERE tenant_id = ?",
            policy,
        )
        .await
    }

    async fn set_blast_radius_config(&self, config: &serde_json::Value) -> StoreResult<()> {
        set_config_json(
            &self.pool,
            self.tenant,
            "UPDATE tenant_configs SET blast_radius_config = ? WHERE tenant_id = ?",
            config,
        )
        .await
    }

    async fn payload_data_key(&self) -> StoreResult<Option<String>> {
        let key: Option<Option<String>> =
            sqlx::query_scalar("SELECT payload_data_key FROM tenant_configs WHERE tenant_id = ?")
                .bind(self.tenant.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
        key.ok_or(StoreError::NotFound)
    }

    async fn init_payload_data_key(&self, wrapped: &str) -> StoreResult<String> {
        sqlx::query_scalar(
            "UPDATE tenant_configs SET payload_data_key = coalesce(payload_data_key, ?)
             WHERE tenant_id = ? RETURNING payload_data_key",
        )
        .bind(wrapped)
        .bind(self.tenant.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)
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

    async fn append_audit_events(&self, events: &[NewAuditEvent]) -> StoreResult<Vec<AuditEvent>> {
        self.audit.append(self.tenant, events).await
    }

    async fn list_audit_events(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events
             WHERE tenant_id = ?1
               AND (?2 IS NULL OR timestamp >= ?2)
               AND (?3 IS NULL OR timestamp < ?3)
               AND (?4 IS NULL OR agent_id = ?4)
               AND (?5 IS NULL OR mcp_server = ?5)
               AND (?6 IS NULL OR tool_name = ?6)
               AND (?7 IS NULL OR policy_result = ?7)
               AND seq > coalesce(?8, 0)
             ORDER BY seq LIMIT ?9"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .bind(q.since.map(ts))
            .bind(q.until.map(ts))
            .bind(q.agent_id.map(|a| a.to_string()))
            .bind(&q.mcp_server)
            .bind(&q.tool_name)
            .bind(&q.policy_result)
            .bind(q.after_seq)
            .bind(q.limit)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(audit_event).collect()
    }

    async fn get_audit_event(&self, id: Uuid) -> StoreResult<AuditEvent> {
        let sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE tenant_id = ? AND id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        audit_event(&row)
    }

    async fn count_audit_events(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE tenant_id = ?")
            .bind(self.tenant.to_string())
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn raise_alert(&self, new: &NewAlert) -> StoreResult<(AlertRecord, bool)> {
        crate::alerts::raise(&self.pool, self.tenant, new).await
    }

    async fn list_alerts(&self, filter: &AlertFilter) -> StoreResult<(Vec<AlertRecord>, i64)> {
        crate::alerts::list(&self.pool, self.tenant, filter).await
    }

    async fn get_alert(&self, id: Uuid) -> StoreResult<AlertRecord> {
        crate::alerts::get(&self.pool, self.tenant, id).await
    }

    async fn set_alert_status(
        &self,
        id: Uuid,
        from: AlertStatus,
        to: AlertStatus,
        by: AdminUserId,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<AlertRecord>> {
        crate::alerts::set_status(&self.pool, self.tenant, id, from, to, by, at).await
    }

    async fn record_escalation(&self, e: NewEscalation) -> StoreResult<()> {
        crate::escalations::record(&self.pool, self.tenant, &e).await
    }

    async fn get_escalation(&self, id: Uuid) -> StoreResult<EscalationRecord> {
        crate::escalations::get(&self.pool, self.tenant, id).await
    }

    async fn list_escalations(
        &self,
        filter: &EscalationFilter,
    ) -> StoreResult<(Vec<EscalationRecord>, i64)> {
        crate::escalations::list(&self.pool, self.tenant, filter).await
    }

    async fn open_escalation_for_call(
        &self,
        call_key: &str,
    ) -> StoreResult<Option<EscalationRecord>> {
        crate::escalations::open_for_call(&self.pool, self.tenant, call_key).await
    }

    async fn decide_escalation(
        &self,
        id: Uuid,
        decision: &EscalationDecision,
    ) -> StoreResult<Option<EscalationRecord>> {
        crate::escalations::decide(&self.pool, self.tenant, id, decision).await
    }

    async fn consume_escalation(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<bool> {
        crate::escalations::consume(&self.pool, self.tenant, id, at).await
    }

    async fn add_escalation_exception(&self, exception: &EscalationException) -> StoreResult<()> {
        crate::escalations::add_exception(&self.pool, self.tenant, exception).await
    }

    async fn matching_exception(
        &self,
        agent: AgentId,
        server_id: Uuid,
        tool_name: &str,
        resource: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<EscalationException>> {
        crate::escalations::matching_exception(
            &self.pool,
            self.tenant,
            agent,
            server_id,
            tool_name,
            resource,
            at,
        )
        .await
    }

    async fn record_webhook_delivery(
        &self,
        delivery: &behavry_store::WebhookDelivery,
    ) -> StoreResult<()> {
        crate::escalations::record_delivery(&self.pool, self.tenant, delivery).await
    }

    async fn list_webhook_deliveries(
        &self,
        limit: i64,
    ) -> StoreResult<Vec<behavry_store::WebhookDelivery>> {
        crate::escalations::list_deliveries(&self.pool, self.tenant, limit).await
    }

    async fn roll_up_agent_activity(
        &self,
        since: DateTime<Utc>,
        keep_from: DateTime<Utc>,
    ) -> StoreResult<()> {
        crate::risk::roll_up(&self.pool, self.tenant, since, keep_from).await
    }

    async fn latest_activity_hour(&self) -> StoreResult<Option<DateTime<Utc>>> {
        crate::risk::latest_hour(&self.pool, self.tenant).await
    }

    async fn agent_activity(
        &self,
        since: DateTime<Utc>,
        agent: Option<AgentId>,
    ) -> StoreResult<Vec<behavry_store::ActivityRow>> {
        crate::risk::activity(&self.pool, self.tenant, since, agent).await
    }

    async fn escalation_outcomes(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(AgentId, behavry_core::risk::EscalationOutcomes)>> {
        crate::risk::escalation_outcomes(&self.pool, self.tenant, since).await
    }

    async fn set_agent_risk(
        &self,
        id: AgentId,
        update: &behavry_store::RiskUpdate,
    ) -> StoreResult<()> {
        crate::risk::set_risk(&self.pool, self.tenant, id, update).await
    }

    async fn list_escalation_exceptions(&self) -> StoreResult<Vec<EscalationException>> {
        crate::escalations::list_exceptions(&self.pool, self.tenant).await
    }

    async fn delete_escalation_exception(&self, id: Uuid) -> StoreResult<()> {
        crate::escalations::delete_exception(&self.pool, self.tenant, id).await
    }

    async fn create_agent(&self, new: NewAgent) -> StoreResult<Agent> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_err)?;
        let created = insert_agent(&mut tx, self.tenant, &new).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(created)
    }

    async fn list_agents(&self, filter: AgentFilter) -> StoreResult<(Vec<Agent>, i64)> {
        let status = filter.status.map(|s| s.as_str());
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = ?1 AND (?2 IS NULL OR status = ?2)
             ORDER BY created_at DESC, id DESC LIMIT ?3 OFFSET ?4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .bind(status)
            .bind(filter.limit)
            .bind(filter.offset)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM agents WHERE tenant_id = ?1 AND (?2 IS NULL OR status = ?2)",
        )
        .bind(self.tenant.to_string())
        .bind(status)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok((rows.iter().map(agent).collect::<StoreResult<_>>()?, total))
    }

    async fn get_agent(&self, id: AgentId) -> StoreResult<Agent> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = ? AND id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        agent(&row)
    }

    async fn update_agent(&self, id: AgentId, patch: AgentPatch) -> StoreResult<Agent> {
        let sql = format!(
            "UPDATE agents SET
                name = coalesce(?3, name),
                owner = CASE WHEN ?4 THEN ?5 ELSE owner END,
                agent_type = coalesce(?6, agent_type),
                roles = coalesce(?7, roles),
                permissions = coalesce(?8, permissions),
                tags = coalesce(?9, tags),
                updated_at = ?10
             WHERE tenant_id = ?1 AND id = ?2 RETURNING {AGENT_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .bind(id.to_string())
            .bind(&patch.name)
            .bind(patch.owner.is_some())
            .bind(patch.owner.clone().flatten())
            .bind(&patch.agent_type)
            .bind(
                patch
                    .roles
                    .as_ref()
                    .map(|v| serde_json::json!(v).to_string()),
            )
            .bind(
                patch
                    .permissions
                    .as_ref()
                    .map(|v| serde_json::json!(v).to_string()),
            )
            .bind(
                patch
                    .tags
                    .as_ref()
                    .map(|v| serde_json::json!(v).to_string()),
            )
            .bind(ts(Utc::now()))
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        agent(&row)
    }

    async fn set_agent_status(&self, id: AgentId, status: AgentStatus) -> StoreResult<Agent> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_err)?;
        let current: String =
            sqlx::query_scalar("SELECT status FROM agents WHERE tenant_id = ? AND id = ?")
                .bind(self.tenant.to_string())
                .bind(id.to_string())
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
            "UPDATE agents SET status = ?, updated_at = ? WHERE tenant_id = ? AND id = ? RETURNING {AGENT_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status.as_str())
            .bind(ts(Utc::now()))
            .bind(self.tenant.to_string())
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        agent(&row)
    }

    async fn set_agent_secret(&self, id: AgentId, client_secret_hash: &str) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE agents SET client_secret_hash = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND status <> 'revoked'",
        )
        .bind(client_secret_hash)
        .bind(ts(Utc::now()))
        .bind(self.tenant.to_string())
        .bind(id.to_string())
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn set_agent_frozen(&self, id: AgentId, reason: Option<&str>) -> StoreResult<Agent> {
        let now = ts(Utc::now());
        let sql = match reason {
            Some(_) => format!(
                "UPDATE agents SET frozen_at = coalesce(frozen_at, ?), frozen_reason = coalesce(frozen_reason, ?),
                     updated_at = ? WHERE tenant_id = ? AND id = ? RETURNING {AGENT_COLUMNS}"
            ),
            None => format!(
                "UPDATE agents SET frozen_at = ?, frozen_reason = ?, updated_at = ?
                     WHERE tenant_id = ? AND id = ? RETURNING {AGENT_COLUMNS}"
            ),
        };
        let frozen_at = reason.map(|_| now.clone());
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(frozen_at)
            .bind(reason)
            .bind(&now)
            .bind(self.tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        agent(&row)
    }

    async fn touch_agent(&self, id: AgentId) -> StoreResult<()> {
        let done = sqlx::query("UPDATE agents SET last_seen_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(ts(Utc::now()))
            .bind(self.tenant.to_string())
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
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
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, tenant_id, token_hash, expires_at, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(self.tenant.to_string())
        .bind(&token.token_hash)
        .bind(ts(token.expires_at))
        .bind(created_by.map(|a| a.to_string()))
        .bind(ts(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn create_mcp_server(&self, new: NewMcpServer) -> StoreResult<McpServerRecord> {
        let now = ts(Utc::now());
        let sql = format!(
            "INSERT INTO mcp_servers (id, tenant_id, name, transport, command, args, url, secrets, tags, timeout_ms, enabled, created_at, updated_at, catalog_entry, operator_defined)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {MCP_SERVER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(self.tenant.to_string())
            .bind(&new.name)
            .bind(&new.transport)
            .bind(&new.command)
            .bind(serde_json::json!(new.args).to_string())
            .bind(&new.url)
            .bind(&new.secrets)
            .bind(serde_json::json!(new.tags).to_string())
            .bind(new.timeout_ms)
            .bind(new.enabled)
            .bind(&now)
            .bind(&now)
            .bind(&new.catalog_entry)
            .bind(new.operator_defined)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        mcp_server(&row)
    }

    async fn list_mcp_servers(&self) -> StoreResult<Vec<McpServerRecord>> {
        let sql = format!(
            "SELECT {MCP_SERVER_COLUMNS} FROM mcp_servers WHERE tenant_id = ? ORDER BY name"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(mcp_server).collect()
    }

    async fn get_mcp_server(&self, id: uuid::Uuid) -> StoreResult<McpServerRecord> {
        let sql =
            format!("SELECT {MCP_SERVER_COLUMNS} FROM mcp_servers WHERE tenant_id = ? AND id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        mcp_server(&row)
    }

    async fn update_mcp_server(
        &self,
        id: uuid::Uuid,
        patch: McpServerPatch,
    ) -> StoreResult<McpServerRecord> {
        let sql = format!(
            "UPDATE mcp_servers SET
                name = coalesce(?3, name),
                command = CASE WHEN ?4 THEN ?5 ELSE command END,
                args = coalesce(?6, args),
                url = CASE WHEN ?7 THEN ?8 ELSE url END,
                secrets = CASE WHEN ?9 THEN ?10 ELSE secrets END,
                tags = coalesce(?11, tags),
                timeout_ms = coalesce(?12, timeout_ms),
                enabled = coalesce(?13, enabled),
                updated_at = ?14
             WHERE tenant_id = ?1 AND id = ?2 RETURNING {MCP_SERVER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .bind(id.to_string())
            .bind(&patch.name)
            .bind(patch.command.is_some())
            .bind(patch.command.clone().flatten())
            .bind(
                patch
                    .args
                    .as_ref()
                    .map(|a| serde_json::json!(a).to_string()),
            )
            .bind(patch.url.is_some())
            .bind(patch.url.clone().flatten())
            .bind(patch.secrets.is_some())
            .bind(patch.secrets.clone().flatten())
            .bind(
                patch
                    .tags
                    .as_ref()
                    .map(|t| serde_json::json!(t).to_string()),
            )
            .bind(patch.timeout_ms)
            .bind(patch.enabled)
            .bind(ts(Utc::now()))
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        mcp_server(&row)
    }

    async fn delete_mcp_server(&self, id: uuid::Uuid) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM mcp_servers WHERE tenant_id = ? AND id = ?")
            .bind(self.tenant.to_string())
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
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
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_err)?;
        let now = ts(Utc::now());
        let update = format!(
            "UPDATE mcp_servers SET transport = ?3, command = ?4, args = ?5, url = ?6,
                secrets = ?7, tags = ?8, timeout_ms = ?9, enabled = ?10, updated_at = ?11,
                catalog_entry = ?12, operator_defined = ?13
             WHERE tenant_id = ?1 AND name = ?2 RETURNING {MCP_SERVER_COLUMNS}"
        );
        let insert = format!(
            "INSERT INTO mcp_servers (id, tenant_id, name, transport, command, args, url, secrets, tags, timeout_ms, enabled, created_at, updated_at, catalog_entry, operator_defined)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {MCP_SERVER_COLUMNS}"
        );
        let mut out = Vec::with_capacity(servers.len());
        for new in servers {
            let args = serde_json::json!(new.args).to_string();
            let tags = serde_json::json!(new.tags).to_string();
            if replace_existing {
                let row = sqlx::query(sqlx::AssertSqlSafe(update.clone()))
                    .bind(self.tenant.to_string())
                    .bind(&new.name)
                    .bind(&new.transport)
                    .bind(&new.command)
                    .bind(&args)
                    .bind(&new.url)
                    .bind(&new.secrets)
                    .bind(&tags)
                    .bind(new.timeout_ms)
                    .bind(new.enabled)
                    .bind(&now)
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
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(self.tenant.to_string())
                .bind(&new.name)
                .bind(&new.transport)
                .bind(&new.command)
                .bind(&args)
                .bind(&new.url)
                .bind(&new.secrets)
                .bind(&tags)
                .bind(new.timeout_ms)
                .bind(new.enabled)
                .bind(&now)
                .bind(&now)
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
        let sql = format!(
            "SELECT {TOOL_PIN_COLUMNS} FROM tool_pins WHERE tenant_id = ? AND server_id = ? ORDER BY tool_name"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .bind(server_id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(tool_pin).collect()
    }

    async fn pin_tool(
        &self,
        server_id: Uuid,
        tool_name: &str,
        hash: &str,
        definition: &serde_json::Value,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tool_pins (id, tenant_id, server_id, tool_name, hash, definition, approved_at, approved_by)
             VALUES (?, ?, ?, ?, ?, ?, ?, 'first_use')
             ON CONFLICT (tenant_id, server_id, tool_name) DO NOTHING",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(self.tenant.to_string())
        .bind(server_id.to_string())
        .bind(tool_name)
        .bind(hash)
        .bind(definition.to_string())
        .bind(ts(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn propose_tool_change(
        &self,
        server_id: Uuid,
        tool_name: &str,
        hash: &str,
        definition: &serde_json::Value,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE tool_pins SET pending_hash = ?, pending_definition = ?, pending_since = ?
             WHERE tenant_id = ? AND server_id = ? AND tool_name = ? AND hash <> ?
               AND pending_hash IS NOT ? AND rejected_hash IS NOT ?",
        )
        .bind(hash)
        .bind(definition.to_string())
        .bind(ts(Utc::now()))
        .bind(self.tenant.to_string())
        .bind(server_id.to_string())
        .bind(tool_name)
        .bind(hash)
        .bind(hash)
        .bind(hash)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn decide_tool_change(
        &self,
        server_id: Uuid,
        tool_name: &str,
        approve: bool,
        by: &str,
    ) -> StoreResult<ToolPin> {
        let sql = if approve {
            format!(
                "UPDATE tool_pins SET hash = pending_hash, definition = pending_definition,
                     approved_at = ?, approved_by = ?, pending_hash = NULL,
                     pending_definition = NULL, pending_since = NULL, rejected_hash = NULL
                 WHERE tenant_id = ? AND server_id = ? AND tool_name = ? AND pending_hash IS NOT NULL
                 RETURNING {TOOL_PIN_COLUMNS}"
            )
        } else {
            format!(
                "UPDATE tool_pins SET rejected_hash = pending_hash, pending_hash = NULL,
                     pending_definition = NULL, pending_since = NULL
                 WHERE tenant_id = ? AND server_id = ? AND tool_name = ? AND pending_hash IS NOT NULL
                 RETURNING {TOOL_PIN_COLUMNS}"
            )
        };
        let query = sqlx::query(sqlx::AssertSqlSafe(sql));
        let query = if approve {
            query.bind(ts(Utc::now())).bind(by.to_string())
        } else {
            query
        };
        let row = query
            .bind(self.tenant.to_string())
            .bind(server_id.to_string())
            .bind(tool_name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        tool_pin(&row)
    }

    async fn pending_tool_changes(&self) -> StoreResult<Vec<ToolPin>> {
        let sql = format!(
            "SELECT {TOOL_PIN_COLUMNS} FROM tool_pins WHERE tenant_id = ? AND pending_hash IS NOT NULL
             ORDER BY pending_since, tool_name"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(tool_pin).collect()
    }

    async fn create_session(&self, new: NewSession) -> StoreResult<SessionRecord> {
        let now = ts(Utc::now());
        let sql = format!(
            "INSERT INTO sessions (id, tenant_id, agent_id, server_id, client_name, client_version, protocol_version, started_at, last_seen_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {SESSION_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&new.id)
            .bind(self.tenant.to_string())
            .bind(new.agent_id.to_string())
            .bind(&new.server_id)
            .bind(&new.client_name)
            .bind(&new.client_version)
            .bind(&new.protocol_version)
            .bind(&now)
            .bind(&now)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        session(&row)
    }

    async fn get_session(&self, id: &str) -> StoreResult<SessionRecord> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = ? AND id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        session(&row)
    }

    async fn touch_session(&self, id: &str, calls: i64) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = ?, call_count = call_count + ? WHERE tenant_id = ? AND id = ?")
            .bind(ts(Utc::now()))
            .bind(calls)
            .bind(self.tenant.to_string())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn flag_session(
        &self,
        id: &str,
        flags: behavry_store::SessionFlags,
        inbound_findings: &serde_json::Value,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE sessions SET tainted = (tainted OR ?), read_untrusted = (read_untrusted OR ?),
                 read_private = (read_private OR ?), inbound_findings = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(flags.tainted)
        .bind(flags.read_untrusted)
        .bind(flags.read_private)
        .bind(inbound_findings.to_string())
        .bind(self.tenant.to_string())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn end_session(&self, id: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sessions SET ended_at = coalesce(ended_at, ?) WHERE tenant_id = ? AND id = ?",
        )
        .bind(ts(Utc::now()))
        .bind(self.tenant.to_string())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn end_agent_sessions(&self, agent: AgentId) -> StoreResult<u64> {
        let done = sqlx::query("UPDATE sessions SET ended_at = ? WHERE tenant_id = ? AND agent_id = ? AND ended_at IS NULL")
            .bind(ts(Utc::now()))
            .bind(self.tenant.to_string())
            .bind(agent.to_string())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn list_sessions(
        &self,
        agent: Option<AgentId>,
        active_only: bool,
        limit: i64,
    ) -> StoreResult<Vec<SessionRecord>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions
             WHERE tenant_id = ?1 AND (?2 IS NULL OR agent_id = ?2) AND (NOT ?3 OR ended_at IS NULL)
             ORDER BY last_seen_at DESC LIMIT ?4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .bind(agent.map(|a| a.to_string()))
            .bind(active_only)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(session).collect()
    }

    async fn create_policy(&self, new: NewPolicy) -> StoreResult<PolicyRecord> {
        policies::create(&self.pool, self.tenant, new).await
    }

    async fn list_policies(&self) -> StoreResult<Vec<PolicyRecord>> {
        policies::list(&self.pool, self.tenant).await
    }

    async fn get_policy(&self, id: Uuid) -> StoreResult<PolicyRecord> {
        policies::get(&self.pool, self.tenant, id).await
    }

    async fn update_policy(&self, id: Uuid, change: PolicyChange) -> StoreResult<PolicyRecord> {
        policies::update(&self.pool, self.tenant, id, change).await
    }

    async fn delete_policy(&self, id: Uuid) -> StoreResult<PolicyRecord> {
        policies::delete(&self.pool, self.tenant, id).await
    }

    async fn list_policy_versions(&self, id: Uuid) -> StoreResult<Vec<PolicyVersionRecord>> {
        policies::versions(&self.pool, self.tenant, id).await
    }

    async fn policy_settings(&self) -> StoreResult<PolicySettings> {
        policies::settings(&self.pool, self.tenant).await
    }

    async fn set_base_pack(&self, enabled: bool) -> StoreResult<PolicySettings> {
        policies::set_base_pack(&self.pool, self.tenant, enabled).await
    }
}

/// Runs one of the tenant-settings updates (`sql` is a constant).
async fn set_config_json(
    pool: &sqlx::SqlitePool,
    tenant: TenantId,
    sql: &'static str,
    value: &serde_json::Value,
) -> StoreResult<()> {
    let done = sqlx::query(sql)
        .bind(value.to_string())
        .bind(tenant.to_string())
        .execute(pool)
        .await
        .map_err(map_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
