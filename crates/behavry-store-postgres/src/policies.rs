//! Tenant policies, their version history and the tenant's policy settings.
//! Every function runs inside a transaction already bound to the tenant.

use behavry_core::TenantId;
use behavry_store::{
    NewPolicy, PolicyChange, PolicyMode, PolicyRecord, PolicySettings, PolicyStatus,
    PolicyVersionRecord, StoreError, StoreResult,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::errors::map_err;

const POLICY_COLUMNS: &str = "id, tenant_id, name, description, content, package, status, mode, version, created_by, created_at, updated_at";
const VERSION_COLUMNS: &str =
    "policy_id, version, name, description, content, package, status, mode, created_by, created_at";

fn status(row: &PgRow) -> StoreResult<PolicyStatus> {
    let s: String = row.try_get("status").map_err(StoreError::internal)?;
    PolicyStatus::parse(&s).ok_or_else(|| StoreError::corrupt(format!("policy status {s:?}")))
}

fn mode(row: &PgRow) -> StoreResult<PolicyMode> {
    let s: String = row.try_get("mode").map_err(StoreError::internal)?;
    PolicyMode::parse(&s).ok_or_else(|| StoreError::corrupt(format!("policy mode {s:?}")))
}

fn policy(row: &PgRow) -> StoreResult<PolicyRecord> {
    let get = |e: sqlx::Error| StoreError::internal(e);
    let package: Option<String> = row.try_get("package").map_err(get)?;
    Ok(PolicyRecord {
        id: row.try_get("id").map_err(get)?,
        tenant_id: TenantId(row.try_get("tenant_id").map_err(get)?),
        name: row.try_get("name").map_err(get)?,
        description: row.try_get("description").map_err(get)?,
        content: row.try_get("content").map_err(get)?,
        package: package.unwrap_or_default(),
        status: status(row)?,
        mode: mode(row)?,
        version: row.try_get("version").map_err(get)?,
        created_by: row.try_get("created_by").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
    })
}

fn version(row: &PgRow) -> StoreResult<PolicyVersionRecord> {
    let get = |e: sqlx::Error| StoreError::internal(e);
    let package: Option<String> = row.try_get("package").map_err(get)?;
    Ok(PolicyVersionRecord {
        policy_id: row.try_get("policy_id").map_err(get)?,
        version: row.try_get("version").map_err(get)?,
        name: row.try_get("name").map_err(get)?,
        description: row.try_get("description").map_err(get)?,
        content: row.try_get("content").map_err(get)?,
        package: package.unwrap_or_default(),
        status: status(row)?,
        mode: mode(row)?,
        created_by: row.try_get("created_by").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
    })
}

/// Raises the tenant's policy revision. Taking this row lock first also
/// serialises concurrent policy changes of one tenant.
async fn bump_revision(conn: &mut PgConnection, tenant: TenantId) -> StoreResult<()> {
    sqlx::query(
        "UPDATE tenant_configs SET policy_revision = policy_revision + 1, updated_at = now() WHERE tenant_id = $1",
    )
    .bind(tenant.0)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn snapshot(conn: &mut PgConnection, p: &PolicyRecord, by: Option<Uuid>) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO policy_versions (id, tenant_id, policy_id, version, name, description, content, package, status, mode, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(Uuid::now_v7())
    .bind(p.tenant_id.0)
    .bind(p.id)
    .bind(p.version)
    .bind(&p.name)
    .bind(&p.description)
    .bind(&p.content)
    .bind(&p.package)
    .bind(p.status.as_str())
    .bind(p.mode.as_str())
    .bind(by)
    .bind(p.updated_at)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn create(
    conn: &mut PgConnection,
    tenant: TenantId,
    new: NewPolicy,
) -> StoreResult<PolicyRecord> {
    bump_revision(conn, tenant).await?;
    let sql = format!(
        "INSERT INTO policies (id, tenant_id, name, description, content, package, status, mode, version, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, now(), now()) RETURNING {POLICY_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(tenant.0)
        .bind(&new.name)
        .bind(&new.description)
        .bind(&new.content)
        .bind(&new.package)
        .bind(new.status.as_str())
        .bind(new.mode.as_str())
        .bind(new.created_by)
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
    let record = policy(&row)?;
    snapshot(conn, &record, new.created_by).await?;
    Ok(record)
}

pub(crate) async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> StoreResult<Vec<PolicyRecord>> {
    let sql = format!("SELECT {POLICY_COLUMNS} FROM policies WHERE tenant_id = $1 ORDER BY name");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.0)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    rows.iter().map(policy).collect()
}

pub(crate) async fn get(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> StoreResult<PolicyRecord> {
    let sql = format!("SELECT {POLICY_COLUMNS} FROM policies WHERE tenant_id = $1 AND id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.0)
        .bind(id)
        .fetch_one(conn)
        .await
        .map_err(map_err)?;
    policy(&row)
}

pub(crate) async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    change: PolicyChange,
) -> StoreResult<PolicyRecord> {
    bump_revision(conn, tenant).await?;
    let current = get(conn, tenant, id).await?;
    if let Some(expected) = change.expected_version
        && expected != current.version
    {
        return Err(StoreError::Conflict(format!(
            "policy version {expected} (it is now at version {})",
            current.version
        )));
    }
    let (content, package) = change
        .content
        .unwrap_or((current.content.clone(), current.package.clone()));
    let sql = format!(
        "UPDATE policies SET name = $3, description = $4, content = $5, package = $6, status = $7, mode = $8,
                version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {POLICY_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.0)
        .bind(id)
        .bind(change.name.unwrap_or(current.name))
        .bind(change.description.unwrap_or(current.description))
        .bind(content)
        .bind(package)
        .bind(change.status.unwrap_or(current.status).as_str())
        .bind(change.mode.unwrap_or(current.mode).as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
    let record = policy(&row)?;
    snapshot(conn, &record, change.changed_by).await?;
    Ok(record)
}

pub(crate) async fn delete(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> StoreResult<PolicyRecord> {
    bump_revision(conn, tenant).await?;
    let sql =
        format!("DELETE FROM policies WHERE tenant_id = $1 AND id = $2 RETURNING {POLICY_COLUMNS}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.0)
        .bind(id)
        .fetch_one(conn)
        .await
        .map_err(map_err)?;
    policy(&row)
}

pub(crate) async fn versions(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> StoreResult<Vec<PolicyVersionRecord>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM policy_versions WHERE tenant_id = $1 AND policy_id = $2 ORDER BY version"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.0)
        .bind(id)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    rows.iter().map(version).collect()
}

pub(crate) async fn settings(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> StoreResult<PolicySettings> {
    let (base_pack_enabled, revision): (bool, i64) = sqlx::query_as(
        "SELECT base_pack_enabled, policy_revision FROM tenant_configs WHERE tenant_id = $1",
    )
    .bind(tenant.0)
    .fetch_one(conn)
    .await
    .map_err(map_err)?;
    Ok(PolicySettings {
        base_pack_enabled,
        revision,
    })
}

pub(crate) async fn set_base_pack(
    conn: &mut PgConnection,
    tenant: TenantId,
    enabled: bool,
) -> StoreResult<PolicySettings> {
    let (base_pack_enabled, revision): (bool, i64) = sqlx::query_as(
        "UPDATE tenant_configs SET base_pack_enabled = $2, policy_revision = policy_revision + 1, updated_at = now()
         WHERE tenant_id = $1 RETURNING base_pack_enabled, policy_revision",
    )
    .bind(tenant.0)
    .bind(enabled)
    .fetch_one(conn)
    .await
    .map_err(map_err)?;
    Ok(PolicySettings {
        base_pack_enabled,
        revision,
    })
}
