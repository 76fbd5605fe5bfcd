//! Embedded SQLite backend: the zero-setup default.
//!
//! SQLite has no row-level security, so tenant isolation is a property of
//! the API: a [`TenantStore`] handle is bound to one tenant when it is made,
//! and every statement it runs filters on that tenant. Code without a handle
//! has no way to name a tenant table.

mod agents;
mod alerts;
mod audit;
mod escalations;
mod platform;
mod policies;
mod risk;
mod rows;
mod tenant;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use behavry_core::TenantId;
use behavry_store::migration;
use behavry_store::migrations::{Migration, MigrationState, MigrationStatus, pending};
use behavry_store::{
    AuthStore, MaintenanceOutcome, PlatformGrant, PlatformStore, Store, StoreError, StoreResult,
    TenantStore,
};
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

pub static MIGRATIONS: &[Migration] = &[
    migration!(1, "initial", "../migrations/0001_initial.sql"),
    migration!(
        2,
        "policy_management",
        "../migrations/0002_policy_management.sql"
    ),
    migration!(
        3,
        "audit_chain_trigger",
        "../migrations/0003_audit_chain_trigger.sql"
    ),
    migration!(
        4,
        "session_inbound",
        "../migrations/0004_session_inbound.sql"
    ),
    migration!(5, "agent_freeze", "../migrations/0005_agent_freeze.sql"),
    migration!(6, "tool_pins", "../migrations/0006_tool_pins.sql"),
    migration!(7, "payload_key", "../migrations/0007_payload_key.sql"),
    migration!(
        8,
        "escalation_holds",
        "../migrations/0008_escalation_holds.sql"
    ),
    migration!(
        9,
        "webhook_deliveries",
        "../migrations/0009_webhook_deliveries.sql"
    ),
    migration!(10, "agent_risk", "../migrations/0010_agent_risk.sql"),
    migration!(11, "stdio_catalog", "../migrations/0011_stdio_catalog.sql"),
];

pub struct SqliteStore {
    pool: SqlitePool,
    platform: Arc<platform::SqlitePlatform>,
    audit: Arc<audit::Appender>,
}

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
}

/// Formats timestamps with a fixed width so that text comparison in SQL is
/// chronological.
pub(crate) fn ts(value: DateTime<Utc>) -> String {
    value.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and refuses to serve
    /// when migrations are pending.
    pub async fn open(path: &Path, pool_size: u32) -> StoreResult<Self> {
        ensure_parent(path)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(pool_size.max(1))
            // A local file does not go stale; a ping before each use would
            // cost a round trip to the connection's thread.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options(path))
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot open {}: {e}", path.display()).into())
            })?;
        let mut conn = pool.acquire().await.map_err(map_err)?;
        let status = status_on(&mut conn).await?;
        drop(conn);
        let pending = pending(&status);
        if !pending.is_empty() {
            return Err(StoreError::SchemaOutdated(format!(
                "{} migration(s) pending; run `behavry migrate`",
                pending.len()
            )));
        }
        // Audit appends get a connection of their own, kept open: its page
        // cache stays warm for the tables and indexes every append touches,
        // where a pooled connection would often find its cache invalidated
        // by another connection's writes and read the pages again.
        let audit_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(5))
            // Checkpointing is left to a background task (below), so that
            // no append waits for pages to be copied into the database.
            .connect_with(options(path).pragma("wal_autocheckpoint", "0"))
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot open {}: {e}", path.display()).into())
            })?;
        let audit = Arc::new(audit::Appender::new(audit_pool));
        tokio::spawn(checkpoints(Arc::downgrade(&audit), pool.clone()));
        Ok(Self {
            platform: Arc::new(platform::SqlitePlatform { pool: pool.clone() }),
            pool,
            audit,
        })
    }

    /// The connection pool, for tests that inspect the file directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Copies the write-ahead log into the database every second, through the
/// shared pool, for as long as the store is open. A passive checkpoint never
/// blocks writers, and it keeps the log from growing under the audit
/// connection, which does not checkpoint itself.
async fn checkpoints(store: std::sync::Weak<audit::Appender>, pool: SqlitePool) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if store.strong_count() == 0 || pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "WAL checkpoint failed; trying again later");
        }
    }
}

fn ensure_parent(path: &Path) -> StoreResult<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()).into())
        })?;
    }
    Ok(())
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS behavry_schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  TEXT NOT NULL
)";

/// Applies pending migrations, each in its own transaction.
pub async fn migrate(path: &Path) -> StoreResult<Vec<i64>> {
    ensure_parent(path)?;
    let mut conn = SqliteConnection::connect_with(&options(path))
        .await
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot open {}: {e}", path.display()).into())
        })?;
    sqlx::query(CREATE_TABLE)
        .execute(&mut conn)
        .await
        .map_err(map_err)?;
    let status = status_on(&mut conn).await?;
    if let Some(s) = status.iter().find(|s| s.state == MigrationState::Modified) {
        return Err(StoreError::SchemaOutdated(format!(
            "migration {} ({}) was changed after it was applied",
            s.version, s.name
        )));
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        if status
            .iter()
            .any(|s| s.version == m.version && s.state == MigrationState::Applied)
        {
            continue;
        }
        let mut tx = conn.begin().await.map_err(map_err)?;
        sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(|e| {
            StoreError::Internal(format!("migration {} ({}) failed: {e}", m.version, m.name).into())
        })?;
        sqlx::query("INSERT INTO behavry_schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)")
            .bind(m.version)
            .bind(m.name)
            .bind(m.checksum())
            .bind(ts(Utc::now()))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        applied.push(m.version);
    }
    Ok(applied)
}

pub async fn migration_status(path: &Path) -> StoreResult<Vec<MigrationStatus>> {
    if !path.exists() {
        return Ok(MIGRATIONS
            .iter()
            .map(|m| MigrationStatus {
                version: m.version,
                name: m.name,
                state: MigrationState::Pending,
            })
            .collect());
    }
    let mut conn = SqliteConnection::connect_with(&options(path))
        .await
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot open {}: {e}", path.display()).into())
        })?;
    status_on(&mut conn).await
}

async fn status_on(conn: &mut SqliteConnection) -> StoreResult<Vec<MigrationStatus>> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'behavry_schema_migrations')",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err)?;
    let applied: Vec<(i64, String)> = if exists {
        sqlx::query_as("SELECT version, checksum FROM behavry_schema_migrations")
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?
    } else {
        Vec::new()
    };
    Ok(MIGRATIONS
        .iter()
        .map(|m| MigrationStatus {
            version: m.version,
            name: m.name,
            state: match applied.iter().find(|(v, _)| *v == m.version) {
                None => MigrationState::Pending,
                Some((_, sum)) if *sum == m.checksum() => MigrationState::Applied,
                Some(_) => MigrationState::Modified,
            },
        })
        .collect())
}

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(Box::new(e))
        }
        sqlx::Error::Database(db) => {
            let msg = db.message();
            // SQLITE_CONSTRAINT_UNIQUE / PRIMARYKEY (extended codes 2067 / 1555)
            if matches!(db.code().as_deref(), Some("2067") | Some("1555")) {
                let what = if msg.contains("tenants.slug") {
                    "tenant slug"
                } else if msg.contains("tenants.name_key") {
                    "organization name"
                } else if msg.contains("admin_users") {
                    "admin username or email"
                } else if msg.contains("policies.package") {
                    "active policy package"
                } else if msg.contains("policies.name") {
                    "policy name"
                } else {
                    "a unique value"
                };
                StoreError::Conflict(what.into())
            } else if matches!(db.code().as_deref(), Some("5") | Some("6")) {
                // SQLITE_BUSY / SQLITE_LOCKED after the busy timeout.
                StoreError::Unavailable(Box::new(e))
            } else if msg.contains("no such table") {
                StoreError::SchemaOutdated(msg.to_string())
            } else {
                StoreError::internal(e)
            }
        }
        _ => StoreError::internal(e),
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    fn auth(&self) -> &dyn AuthStore {
        self.platform.as_ref()
    }

    fn platform(&self, _grant: &PlatformGrant) -> &dyn PlatformStore {
        self.platform.as_ref()
    }

    fn tenant(&self, tenant: TenantId) -> Box<dyn TenantStore> {
        Box::new(tenant::SqliteTenant {
            pool: self.pool.clone(),
            audit: self.audit.clone(),
            tenant,
        })
    }

    async fn maintenance(&self) -> StoreResult<MaintenanceOutcome> {
        // Nothing to prepare ahead of time; keep the WAL from growing.
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(MaintenanceOutcome::default())
    }
}
