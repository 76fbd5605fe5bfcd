//! Cross-tenant operations on the superadmin pool.

use async_trait::async_trait;
use behavry_core::Agent;
use behavry_core::{AdminRole, AdminUserId, TenantId, UsageSummary};
use behavry_store::{
    AdminUserRecord, AgentCredentials, AuthStore, CreatedTenant, NewAgent, NewTenant,
    PlatformStore, StoreError, StoreResult, TenantPatch, TenantRecord,
};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::agents::insert_agent;
use crate::errors::map_err;
use crate::rows::{
    ADMIN_COLUMNS, AGENT_COLUMNS, TENANT_COLUMNS, admin_record, agent, tenant_record,
};

pub(crate) struct PgPlatform {
    pub(crate) pool: PgPool,
}

impl PgPlatform {
    async fn try_create_tenant(&self, new: &NewTenant) -> StoreResult<CreatedTenant> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;

        // Checked up front for a precise answer; the unique indexes remain
        // the authority under concurrency.
        let name_key = new.name.trim().to_lowercase();
        let name_taken: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE name_key = $1)")
                .bind(&name_key)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
        if name_taken {
            return Err(StoreError::Conflict("organization name".into()));
        }
        let admin_taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM admin_users WHERE lower(username) = lower($1) OR lower(email) = lower($2))",
        )
        .bind(&new.admin.username)
        .bind(new.admin.email.as_deref())
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        if admin_taken {
            return Err(StoreError::Conflict("admin username or email".into()));
        }

        let taken: Vec<String> =
            sqlx::query_scalar("SELECT slug FROM tenants WHERE slug = $1 OR slug LIKE $1 || '-%'")
                .bind(&new.slug_base)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
        let slug = behavry_core::validate::free_slug(&new.slug_base, &taken);

        let tenant_id = TenantId::new();
        let now = Utc::now();
        sqlx::query(
            "INSERT INTO tenants (id, name, name_key, slug, is_frozen, created_at, updated_at) VALUES ($1, $2, $5, $3, false, $4, $4)",
        )
            .bind(tenant_id.0)
            .bind(&new.name)
            .bind(&slug)
            .bind(now)
            .bind(&name_key)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let c = &new.config;
        sqlx::query(
            "INSERT INTO tenant_configs (tenant_id, plan_tier, max_agents, max_rpm_per_agent, audit_retention_days,
                deployment_mode, license_key, license_expires_at, suspended_at, data_protection_policy,
                blast_radius_config, auto_activate_threshold, auto_activate_enabled, data_plane_deployment_id,
                data_plane_last_seen_at, data_plane_region, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(tenant_id.0)
        .bind(c.plan_tier.as_str())
        .bind(c.max_agents)
        .bind(c.max_rpm_per_agent)
        .bind(c.audit_retention_days)
        .bind(c.deployment_mode.as_str())
        .bind(&c.license_key)
        .bind(c.license_expires_at)
        .bind(c.suspended_at)
        .bind(&c.data_protection_policy)
        .bind(&c.blast_radius_config)
        .bind(c.auto_activate_threshold)
        .bind(c.auto_activate_enabled)
        .bind(&c.data_plane_deployment_id)
        .bind(c.data_plane_last_seen_at)
        .bind(&c.data_plane_region)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;

        sqlx::query(
            "INSERT INTO audit_chain_heads (tenant_id, last_seq, last_hash) VALUES ($1, 0, $2)",
        )
        .bind(tenant_id.0)
        .bind(behavry_store::audit::GENESIS)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;

        let admin_id = AdminUserId::new();
        let sql = format!(
            "INSERT INTO admin_users (id, tenant_id, username, email, password_hash, role, status, is_super_admin, created_at, password_changed_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'active', false, $7, $7) RETURNING {ADMIN_COLUMNS}"
        );
        let admin_row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(admin_id.0)
            .bind(tenant_id.0)
            .bind(&new.admin.username)
            .bind(&new.admin.email)
            .bind(&new.admin.password_hash)
            .bind(new.admin.role.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let admin = admin_record(&admin_row)?;

        if let Some(token) = &new.enrollment_token {
            sqlx::query(
                "INSERT INTO enrollment_tokens (id, tenant_id, token_hash, expires_at, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(Uuid::now_v7())
            .bind(tenant_id.0)
            .bind(&token.token_hash)
            .bind(token.expires_at)
            .bind(admin_id.0)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        let record = load_tenant(&mut tx, tenant_id, false).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(CreatedTenant { record, admin })
    }
}

pub(crate) async fn load_tenant(
    conn: &mut PgConnection,
    id: TenantId,
    lock: bool,
) -> StoreResult<TenantRecord> {
    let sql = format!(
        "SELECT {TENANT_COLUMNS} FROM tenants t JOIN tenant_configs c ON c.tenant_id = t.id WHERE t.id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
    tenant_record(&row)
}

/// Usage over a window; the explicit tenant filter serves the superadmin
/// pool and lets the tenant pool use the (tenant_id, timestamp) index.
pub(crate) async fn usage_on(
    conn: &mut PgConnection,
    id: TenantId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> StoreResult<UsageSummary> {
    let (tool_calls, agents, dlp, volume): (i64, i64, i64, i64) = sqlx::query_as(
        r#"SELECT
               count(*) FILTER (WHERE action = 'TOOL_CALL'),
               count(DISTINCT agent_id),
               count(*) FILTER (WHERE jsonb_typeof(dlp_findings) = 'array' AND jsonb_array_length(dlp_findings) > 0),
               coalesce(sum(request_size + response_size), 0)::bigint
           FROM audit_events
           WHERE tenant_id = $1 AND "timestamp" >= $2 AND "timestamp" < $3"#,
    )
    .bind(id.0)
    .bind(since)
    .bind(until)
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err)?;
    let escalations: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM escalations WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3",
    )
    .bind(id.0)
    .bind(since)
    .bind(until)
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(UsageSummary {
        tool_calls_30d: tool_calls,
        agents_active_30d: agents,
        dlp_hits_30d: dlp,
        escalations_30d: escalations,
        data_volume_bytes_30d: volume,
        period_start: since,
        period_end: until,
    })
}

#[async_trait]
impl AuthStore for PgPlatform {
    async fn find_admin_by_username(&self, username: &str) -> StoreResult<Option<AdminUserRecord>> {
        let sql =
            format!("SELECT {ADMIN_COLUMNS} FROM admin_users WHERE lower(username) = lower($1)");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(admin_record).transpose()
    }

    async fn record_admin_login(&self, admin: AdminUserId) -> StoreResult<()> {
        sqlx::query("UPDATE admin_users SET last_login_at = now() WHERE id = $1")
            .bind(admin.0)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn is_initialized(&self) -> StoreResult<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants)")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn find_agent_credentials(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<AgentCredentials>> {
        let sql = format!(
            "SELECT {cols}, a.client_secret_hash, t.is_frozen AS tenant_frozen
             FROM agents a JOIN tenants t ON t.id = a.tenant_id WHERE a.client_id = $1",
            cols = AGENT_COLUMNS
                .split(", ")
                .map(|c| format!("a.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
        else {
            return Ok(None);
        };
        Ok(Some(AgentCredentials {
            agent: agent(&row)?,
            client_secret_hash: row
                .try_get("client_secret_hash")
                .map_err(StoreError::internal)?,
            tenant_frozen: row.try_get("tenant_frozen").map_err(StoreError::internal)?,
        }))
    }

    async fn enroll_agent(&self, token_hash: &str, new: NewAgent) -> StoreResult<Agent> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let token: Option<(Uuid, Uuid)> = sqlx::query_as(
            "UPDATE enrollment_tokens SET used_at = now()
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
             RETURNING id, tenant_id",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let (token_id, tenant) = token.ok_or(StoreError::NotFound)?;
        let created = insert_agent(&mut tx, TenantId(tenant), &new).await?;
        sqlx::query("UPDATE enrollment_tokens SET used_by_agent_id = $2 WHERE id = $1")
            .bind(token_id)
            .bind(created.id.0)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(created)
    }
}

#[async_trait]
impl PlatformStore for PgPlatform {
    async fn create_tenant(&self, new: NewTenant) -> StoreResult<CreatedTenant> {
        // Two signups whose names share a slug can both pick the same free
        // suffix under READ COMMITTED; the loser retries with a fresh look.
        let mut attempts = 0;
        loop {
            match self.try_create_tenant(&new).await {
                Err(StoreError::Conflict(what)) if what == "tenant slug" && attempts < 8 => {
                    attempts += 1
                }
                other => return other,
            }
        }
    }

    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        let sql = format!(
            "SELECT {TENANT_COLUMNS} FROM tenants t JOIN tenant_configs c ON c.tenant_id = t.id ORDER BY t.created_at, t.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(tenant_record).collect()
    }

    async fn get_tenant(&self, id: TenantId) -> StoreResult<TenantRecord> {
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        load_tenant(&mut conn, id, false).await
    }

    async fn update_tenant(&self, id: TenantId, patch: TenantPatch) -> StoreResult<TenantRecord> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let mut record = load_tenant(&mut tx, id, true).await?;
        patch.apply(&mut record, Utc::now());
        sqlx::query("UPDATE tenants SET is_frozen = $2, updated_at = now() WHERE id = $1")
            .bind(id.0)
            .bind(record.tenant.is_frozen)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let c = &record.config;
        sqlx::query(
            "UPDATE tenant_configs SET plan_tier = $2, max_agents = $3, max_rpm_per_agent = $4,
                audit_retention_days = $5, deployment_mode = $6, license_key = $7, license_expires_at = $8,
                suspended_at = $9, updated_at = now()
             WHERE tenant_id = $1",
        )
        .bind(id.0)
        .bind(c.plan_tier.as_str())
        .bind(c.max_agents)
        .bind(c.max_rpm_per_agent)
        .bind(c.audit_retention_days)
        .bind(c.deployment_mode.as_str())
        .bind(&c.license_key)
        .bind(c.license_expires_at)
        .bind(c.suspended_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let record = load_tenant(&mut tx, id, false).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(record)
    }

    async fn usage(
        &self,
        id: TenantId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<UsageSummary> {
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        // NotFound for an unknown tenant rather than a row of zeroes.
        load_tenant(&mut conn, id, false).await?;
        usage_on(&mut conn, id, since, until).await
    }

    async fn upsert_platform_admin(
        &self,
        username: &str,
        password_hash: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let existing: Option<(Uuid, bool)> =
            sqlx::query_as("SELECT id, is_super_admin FROM admin_users WHERE lower(username) = lower($1) FOR UPDATE")
                .bind(username)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        let created = match existing {
            Some((_, false)) => {
                return Err(StoreError::Conflict(
                    "admin username (held by a tenant admin, not a platform operator)".into(),
                ));
            }
            Some((id, true)) => {
                sqlx::query("UPDATE admin_users SET password_hash = $2, password_changed_at = now() WHERE id = $1")
                    .bind(id)
                    .bind(password_hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                false
            }
            None => {
                sqlx::query(
                    "INSERT INTO admin_users (id, tenant_id, username, password_hash, role, status, is_super_admin, created_at, password_changed_at)
                     VALUES ($1, NULL, $2, $3, $4, 'active', true, now(), now())",
                )
                .bind(AdminUserId::new().0)
                .bind(username)
                .bind(password_hash)
                .bind(AdminRole::Admin.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                true
            }
        };
        tx.commit().await.map_err(map_err)?;
        Ok(created)
    }

    async fn set_admin_password(&self, username: &str, password_hash: &str) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE admin_users SET password_hash = $2, password_changed_at = now() WHERE lower(username) = lower($1)",
        )
        .bind(username)
        .bind(password_hash)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn policy_revisions(&self) -> StoreResult<Vec<(TenantId, i64)>> {
        let rows: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
            "SELECT tenant_id, policy_revision FROM tenant_configs WHERE policy_revision > 0",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(rows.into_iter().map(|(t, r)| (TenantId(t), r)).collect())
    }

    async fn expired_escalations(
        &self,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<(TenantId, uuid::Uuid)>> {
        crate::escalations::expired(&self.pool, at).await
    }
}
