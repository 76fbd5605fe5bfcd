//! Embedded migrations and the migrator.

use behavry_store::migration;
use behavry_store::migrations::{Migration, MigrationState, MigrationStatus, pending};
use behavry_store::{StoreError, StoreResult};
use sqlx::{Connection, PgConnection, PgPool};

use crate::errors::map_err;
use crate::roles::{RoleSet, provision};

pub static MIGRATIONS: &[Migration] = &[
    migration!(1, "initial", "../migrations/0001_initial.sql"),
    migration!(
        2,
        "policy_management",
        "../migrations/0002_policy_management.sql"
    ),
    migration!(
        3,
        "session_inbound",
        "../migrations/0003_session_inbound.sql"
    ),
    migration!(4, "agent_freeze", "../migrations/0004_agent_freeze.sql"),
    migration!(5, "tool_pins", "../migrations/0005_tool_pins.sql"),
    migration!(6, "payload_key", "../migrations/0006_payload_key.sql"),
    migration!(
        7,
        "escalation_holds",
        "../migrations/0007_escalation_holds.sql"
    ),
    migration!(
        8,
        "webhook_deliveries",
        "../migrations/0008_webhook_deliveries.sql"
    ),
    migration!(9, "agent_risk", "../migrations/0009_agent_risk.sql"),
    migration!(10, "stdio_catalog", "../migrations/0010_stdio_catalog.sql"),
];

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS behavry_schema_migrations (
    version     bigint PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)";

/// Provisions the roles, then applies pending migrations as the owner role,
/// each in its own transaction. Returns the versions applied.
pub async fn migrate(url: &str, roles: &RoleSet) -> StoreResult<Vec<i64>> {
    let mut conn = PgConnection::connect(url).await.map_err(|e| {
        StoreError::Unavailable(format!("cannot connect with BEHAVRY_DB_URL: {e}").into())
    })?;
    provision(&mut conn, roles).await?;

    let mut applied = Vec::new();
    let mut tx = conn.begin().await.map_err(map_err)?;
    set_owner(&mut tx, roles).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(7365628262)")
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    sqlx::query(CREATE_TABLE)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    let grant = format!(
        "GRANT SELECT ON behavry_schema_migrations TO {}, {}",
        roles.app, roles.superadmin
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(grant))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    let status = status_on(&mut tx).await?;
    for s in &status {
        if s.state == MigrationState::Modified {
            return Err(StoreError::SchemaOutdated(format!(
                "migration {} ({}) was changed after it was applied",
                s.version, s.name
            )));
        }
    }
    for m in MIGRATIONS {
        if status
            .iter()
            .any(|s| s.version == m.version && s.state == MigrationState::Applied)
        {
            continue;
        }
        let sql = render(m.sql, roles);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::Internal(
                    format!("migration {} ({}) failed: {e}", m.version, m.name).into(),
                )
            })?;
        sqlx::query(
            "INSERT INTO behavry_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(m.checksum())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        applied.push(m.version);
    }
    tx.commit().await.map_err(map_err)?;
    Ok(applied)
}

async fn set_owner(conn: &mut PgConnection, roles: &RoleSet) -> StoreResult<()> {
    let stmt = format!("SET LOCAL ROLE {}", roles.owner);
    sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Substitutes role names into a migration. Names are validated
/// (`[a-z0-9_]`) when configuration is read, so plain substitution is safe.
fn render(sql: &str, roles: &RoleSet) -> String {
    sql.replace("{{owner}}", &roles.owner)
        .replace("{{app}}", &roles.app)
        .replace("{{superadmin}}", &roles.superadmin)
}

/// Status of every embedded migration, using the operator URL.
pub async fn migration_status(url: &str) -> StoreResult<Vec<MigrationStatus>> {
    let mut conn = PgConnection::connect(url).await.map_err(|e| {
        StoreError::Unavailable(format!("cannot connect with BEHAVRY_DB_URL: {e}").into())
    })?;
    status_on(&mut conn).await
}

async fn status_on(conn: &mut PgConnection) -> StoreResult<Vec<MigrationStatus>> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('behavry_schema_migrations') IS NOT NULL")
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
        .map(|m| {
            let state = match applied.iter().find(|(v, _)| *v == m.version) {
                None => MigrationState::Pending,
                Some((_, sum)) if *sum == m.checksum() => MigrationState::Applied,
                Some(_) => MigrationState::Modified,
            };
            MigrationStatus {
                version: m.version,
                name: m.name,
                state,
            }
        })
        .collect())
}

/// Refuses to serve on a schema that is behind the binary.
pub(crate) async fn ensure_current(pool: &PgPool) -> StoreResult<()> {
    let mut conn = pool.acquire().await.map_err(map_err)?;
    let status = status_on(&mut conn).await?;
    let pending = pending(&status);
    if pending.is_empty() {
        Ok(())
    } else {
        Err(StoreError::SchemaOutdated(format!(
            "{} migration(s) pending ({}); run `behavry migrate`",
            pending.len(),
            pending
                .iter()
                .map(|s| format!("{} {}", s.version, s.name))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}
