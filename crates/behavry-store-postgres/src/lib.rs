//! PostgreSQL backend.
//!
//! The server holds two pools:
//!
//! - the **app** pool logs in as `<prefix>_app`, a role without BYPASSRLS.
//!   Every tenant-scoped unit of work is a transaction that first runs
//!   `set_config('behavry.tenant_id', $1, true)`; row-level security then
//!   limits every statement to that tenant, whatever its WHERE clause says.
//!   The setting is transaction-local, so a pooled connection never carries
//!   a tenant into the next unit of work.
//! - the **superadmin** pool logs in as `<prefix>_superadmin` (BYPASSRLS) and
//!   serves platform administration, pre-authentication lookups and jobs.
//!
//! Both roles, and the `<prefix>_owner` role that owns the schema, are
//! provisioned by [`migrate`] from the single database URL an operator gives.

mod agents;
mod alerts;
mod errors;
mod escalations;
mod events;
mod platform;
mod policies;
mod risk;
pub mod roles;
mod rows;
mod schema;
mod tenant;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use behavry_core::TenantId;
use behavry_store::{
    AuthStore, MaintenanceOutcome, PlatformGrant, PlatformStore, Store, StoreError, StoreResult,
    TenantStore,
};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use roles::RoleSet;
pub use schema::{MIGRATIONS, migrate, migration_status};

use errors::map_err;

/// How to reach the database.
#[derive(Clone)]
pub struct PgConfig {
    /// The operator-supplied URL (an owner or superuser account). Used for
    /// migrations and to derive the host/port/database of the role pools.
    pub url: String,
    pub roles: RoleSet,
    pub pool_size: u32,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("roles", &self.roles)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

pub struct PgStore {
    app: PgPool,
    admin: Arc<platform::PgPlatform>,
    events: Arc<events::PgEvents>,
}

impl PgStore {
    /// Opens the app and superadmin pools. Fails when the roles cannot log in
    /// (usually: `behavry migrate` has not been run with this SECRET_KEY).
    pub async fn connect(config: &PgConfig) -> StoreResult<Self> {
        let base: PgConnectOptions = config
            .url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}").into()))?;
        let app_opts = base
            .clone()
            .username(&config.roles.app)
            .password(config.roles.app_password.expose())
            .application_name("behavry-app");
        let admin_opts = base
            .username(&config.roles.superadmin)
            .password(config.roles.superadmin_password.expose())
            .application_name("behavry-superadmin");
        let app = pool_options(config.pool_size)
            .connect_with(app_opts)
            .await
            .map_err(|e| login_error(&config.roles.app, e))?;
        let admin = pool_options(config.pool_size.div_ceil(2).max(2))
            .connect_with(admin_opts)
            .await
            .map_err(|e| login_error(&config.roles.superadmin, e))?;
        let store = Self {
            app,
            events: Arc::new(events::PgEvents {
                pool: admin.clone(),
            }),
            admin: Arc::new(platform::PgPlatform { pool: admin }),
        };
        schema::ensure_current(&store.admin.pool).await?;
        Ok(store)
    }

    /// The application-role pool, for tests that probe row-level security.
    pub fn app_pool(&self) -> &PgPool {
        &self.app
    }
}

fn pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
}

fn login_error(role: &str, e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(
        format!(
            "cannot log in to PostgreSQL as `{role}` ({e}); run `behavry migrate` with the same SECRET_KEY to provision the database roles"
        )
        .into(),
    )
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.app)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    fn auth(&self) -> &dyn AuthStore {
        self.admin.as_ref()
    }

    fn platform(&self, _grant: &PlatformGrant) -> &dyn PlatformStore {
        self.admin.as_ref()
    }

    fn tenant(&self, tenant: TenantId) -> Box<dyn TenantStore> {
        Box::new(tenant::PgTenant {
            pool: self.app.clone(),
            tenant,
        })
    }

    async fn maintenance(&self) -> StoreResult<MaintenanceOutcome> {
        let created: i32 = sqlx::query_scalar("SELECT behavry_ensure_audit_partitions(2)")
            .fetch_one(&self.admin.pool)
            .await
            .map_err(map_err)?;
        Ok(MaintenanceOutcome {
            partitions_created: created.max(0) as u32,
        })
    }

    fn event_channel(&self) -> Option<Arc<dyn behavry_store::EventChannel>> {
        Some(self.events.clone())
    }
}
