//! Tenant policies, their version history and the tenant's policy settings.
//! Writers run in `BEGIN IMMEDIATE` transactions, which serialise them.

use behavry_core::TenantId;
use behavry_store::{
    NewPolicy, PolicyChange, PolicyMode, PolicyRecord, PolicySettings, PolicyStatus,
    PolicyVersionRecord, StoreError, StoreResult,
};
use chrono::Utc;
use sqlx::sqlite::SqliteRow;
use sqlx::{SqliteConnection, SqlitePool};
use uuid::Uuid;

use crate::rows::{col, time, uuid};
use crate::{map_err, ts};

const POLICY_COLUMNS: &str = "id, tenant_id, name, description, content, package, status, mode, version, created_by, created_at, updated_at";
const VERSION_COLUMNS: &str =
    "policy_id, version, name, description, content, package, status, mode, created_by, created_at";

fn status(row: &SqliteRow) -> StoreResult<PolicyStatus> {
    let s: String = col(row, "status")?;
    PolicyStatus::parse(&s).ok_or_else(|| StoreError::corrupt(format!("policy status {s:?}")))
}

fn mode(row: &SqliteRow) -> StoreResult<PolicyMode> {
    let s: String = col(row, "mode")?;
    PolicyMode::parse(&s).ok_or_else(|| StoreError::corrupt(format!("policy mode {s:?}")))
}

fn opt_uuid(value: Option<String>) -> StoreResult<Option<Uuid>> {
    value.as_deref().map(uuid).transpose()
}

fn policy(row: &SqliteRow) -> StoreResult<PolicyRecord> {
    let package: Option<String> = col(row, "package")?;
    Ok(PolicyRecord {
        id: uuid(&col::<String>(row, "id")?)?,
        tenant_id: TenantId(uuid(&col::<String>(row, "tenant_id")?)?),
        name: col(row, "name")?,
        description: col(row, "description")?,
        content: col(row, "content")?,
        package: package.unwrap_or_default(),
        status: status(row)?,
        mode: mode(row)?,
        version: col(row, "version")?,
        created_by: opt_uuid(col(row, "created_by")?)?,
        created_at: time(Some(col(row, "created_at")?))?.unwrap_or_default(),
        updated_at: time(Some(col(row, "updated_at")?))?.unwrap_or_default(),
    })
}

fn version(row: &SqliteRow) -> StoreResult<PolicyVersionRecord> {
    let package: Option<String> = col(row, "package")?;
    Ok(PolicyVersionRecord {
        policy_id: uuid(&col::<String>(row, "policy_id")?)?,
        version: col(row, "version")?,
        name: col(row, "name")?,
        description: col(row, "description")?,
        content: col(row, "content")?,
        package: package.unwrap_or_default(),
        status: status(row)?,
        mode: mode(row)?,
        created_by: opt_uuid(col(row, "created_by")?)?,
        created_at: time(Some(col(row, "created_at")?))?.unwrap_or_default(),
    })
}

async fn bump_revision(conn: &mut SqliteConnection, tenant: TenantId) -> StoreResult<()> {
    sqlx::query(
        "UPDATE tenant_configs SET policy_revision = policy_revision + 1, updated_at = ? WHERE tenant_id = ?",
    )
    .bind(ts(Utc::now()))
    .bind(tenant.to_string())
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn snapshot(
    conn: &mut SqliteConnection,
    p: &PolicyRecord,
    by: Option<Uuid>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO policy_versions (id, tenant_id, policy_id, version, name, description, content, package, status, mode, created_by, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(p.tenant_id.to_string())
    .bind(p.id.to_string())
    .bind(p.version)
    .bind(&p.name)
    .bind(&p.description)
    .bind(&p.content)
    .bind(&p.package)
    .bind(p.status.as_str())
    .bind(p.mode.as_str())
    .bind(by.map(|u| u.to_string()))
    .bind(ts(p.updated_at))
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn get_on(
    conn: &mut SqliteConnection,
    tenant: TenantId,
    id: Uuid,
) -> StoreResult<PolicyRecord> {
    let sql = format!("SELECT {POLICY_COLUMNS} FROM policies WHERE tenant_id = ? AND id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_one(conn)
        .await
        .map_err(map_err)?;
    policy(&row)
}

pub(crate) async fn create(
    pool: &SqlitePool,
    tenant: TenantId,
    new: NewPolicy,
) -> StoreResult<PolicyRecord> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    bump_revision(&mut tx, tenant).await?;
    let now = ts(Utc::now());
    let sql = format!(
        "INSERT INTO policies (id, tenant_id, name, description, content, package, status, mode, version, created_by, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?) RETURNING {POLICY_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7().to_string())
        .bind(tenant.to_string())
        .bind(&new.name)
        .bind(&new.description)
        .bind(&new.content)
        .bind(&new.package)
        .bind(new.status.as_str())
        .bind(new.mode.as_str())
        .bind(new.created_by.map(|u| u.to_string()))
        .bind(&now)
        .bind(&now)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
    let record = policy(&row)?;
    snapshot(&mut tx, &record, new.created_by).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(record)
}

pub(crate) async fn list(pool: &SqlitePool, tenant: TenantId) -> StoreResult<Vec<PolicyRecord>> {
    let sql = format!("SELECT {POLICY_COLUMNS} FROM policies WHERE tenant_id = ? ORDER BY name");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    rows.iter().map(policy).collect()
}

pub(crate) async fn get(
    pool: &SqlitePool,
    tenant: TenantId,
    id: Uuid,
) -> StoreResult<PolicyRecord> {
    let mut conn = pool.acquire().await.map_err(map_err)?;
    get_on(&mut conn, tenant, id).await
}

pub(crate) async fn update(
    pool: &SqlitePool,
    tenant: TenantId,
    id: Uuid,
    change: PolicyChange,
) -> StoreResult<PolicyRecord> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    bump_revision(&mut tx, tenant).await?;
    let current = get_on(&mut tx, tenant, id).await?;
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
        "UPDATE policies SET name = ?, description = ?, content = ?, package = ?, status = ?, mode = ?,
                version = version + 1, updated_at = ?
         WHERE tenant_id = ? AND id = ? RETURNING {POLICY_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(change.name.unwrap_or(current.name))
        .bind(change.description.unwrap_or(current.description))
        .bind(content)
        .bind(package)
        .bind(change.status.unwrap_or(current.status).as_str())
        .bind(change.mode.unwrap_or(current.mode).as_str())
        .bind(ts(Utc::now()))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
    let record = policy(&row)?;
    snapshot(&mut tx, &record, change.changed_by).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(record)
}

pub(crate) async fn delete(
    pool: &SqlitePool,
    tenant: TenantId,
    id: Uuid,
) -> StoreResult<PolicyRecord> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    bump_revision(&mut tx, tenant).await?;
    let sql =
        format!("DELETE FROM policies WHERE tenant_id = ? AND id = ? RETURNING {POLICY_COLUMNS}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
    let record = policy(&row)?;
    tx.commit().await.map_err(map_err)?;
    Ok(record)
}

pub(crate) async fn versions(
    pool: &SqlitePool,
    tenant: TenantId,
    id: Uuid,
) -> StoreResult<Vec<PolicyVersionRecord>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM policy_versions WHERE tenant_id = ? AND policy_id = ? ORDER BY version"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    rows.iter().map(version).collect()
}

pub(crate) async fn settings(pool: &SqlitePool, tenant: TenantId) -> StoreResult<PolicySettings> {
    let (base_pack_enabled, revision): (bool, i64) = sqlx::query_as(
        "SELECT base_pack_enabled, policy_revision FROM tenant_configs WHERE tenant_id = ?",
    )
    .bind(tenant.to_string())
    .fetch_one(pool)
    .await
    .map_err(map_err)?;
    Ok(PolicySettings {
        base_pack_enabled,
        revision,
    })
}

pub(crate) async fn set_base_pack(
    pool: &SqlitePool,
    tenant: TenantId,
    enabled: bool,
) -> StoreResult<PolicySettings> {
    let (base_pack_enabled, revision): (bool, i64) = sqlx::query_as(
        "UPDATE tenant_configs SET base_pack_enabled = ?, policy_revision = policy_revision + 1, updated_at = ?
         WHERE tenant_id = ? RETURNING base_pack_enabled, policy_revision",
    )
    .bind(enabled)
    .bind(ts(Utc::now()))
    .bind(tenant.to_string())
    .fetch_one(pool)
    .await
    .map_err(map_err)?;
    Ok(PolicySettings {
        base_pack_enabled,
        revision,
    })
}

pub(crate) async fn revisions(pool: &SqlitePool) -> StoreResult<Vec<(TenantId, i64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT tenant_id, policy_revision FROM tenant_configs WHERE policy_revision > 0",
    )
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.into_iter()
        .map(|(t, r)| Ok((TenantId(uuid(&t)?), r)))
        .collect()
}
