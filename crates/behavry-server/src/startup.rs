//! Turning settings into a running application: choosing the storage
//! backend (once), migrations, keys, the bootstrap admin.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use behavry_core::Secret;
use behavry_core::config::{DatabaseUrl, Settings};
use behavry_core::validate::password_problem;
use behavry_store::migrations::MigrationStatus;
use behavry_store::{PlatformGrant, Store};
use behavry_store_postgres::{PgConfig, PgStore, RoleSet};
use behavry_store_sqlite::SqliteStore;
use rand::RngCore;

use crate::auth::keys::{JwtKeys, generate_pem};
use crate::state::AppState;

/// Writes a file readable only by its owner.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("while creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("while writing {}", path.display()))?;
    Ok(())
}

/// Creates the data directory readable only by its owner: it holds the
/// SQLite database (password hashes) and development keys.
pub fn ensure_data_dir(settings: &Settings) -> Result<()> {
    let dir = &settings.data_dir;
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("while creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("while restricting {}", dir.display()))?;
    }
    Ok(())
}

/// SECRET_KEY, or in development a generated one kept in the data directory.
pub fn secret_key(settings: &Settings) -> Result<Secret> {
    if let Some(key) = &settings.secret_key {
        return Ok(key.clone());
    }
    if settings.is_production() {
        bail!("SECRET_KEY is required in production");
    }
    let path = settings.data_dir.join("secret.key");
    if !path.exists() {
        ensure_data_dir(settings)?;
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        write_private(&path, &hex::encode(bytes))?;
        tracing::info!(path = %path.display(), "generated a development SECRET_KEY");
    }
    let key = std::fs::read_to_string(&path)
        .with_context(|| format!("while reading {}", path.display()))?;
    Ok(Secret::new(key.trim().to_string()))
}

fn pg_config(settings: &Settings, url: &Secret) -> Result<PgConfig> {
    Ok(PgConfig {
        url: url.expose().to_string(),
        roles: RoleSet::derive(&settings.db_role_prefix, &secret_key(settings)?),
        pool_size: settings.db_pool_size,
    })
}

/// Applies pending migrations (and, on PostgreSQL, provisions the roles).
pub async fn migrate(settings: &Settings) -> Result<Vec<i64>> {
    if matches!(settings.database, DatabaseUrl::Sqlite { .. }) {
        ensure_data_dir(settings)?;
    }
    match &settings.database {
        DatabaseUrl::Sqlite { path } => behavry_store_sqlite::migrate(path)
            .await
            .with_context(|| format!("while migrating {}", path.display())),
        DatabaseUrl::Postgres { url } => {
            let config = pg_config(settings, url)?;
            behavry_store_postgres::migrate(&config.url, &config.roles)
                .await
                .context("while migrating PostgreSQL")
        }
    }
}

pub async fn migration_status(settings: &Settings) -> Result<Vec<MigrationStatus>> {
    match &settings.database {
        DatabaseUrl::Sqlite { path } => Ok(behavry_store_sqlite::migration_status(path).await?),
        DatabaseUrl::Postgres { url } => {
            Ok(behavry_store_postgres::migration_status(url.expose()).await?)
        }
    }
}

/// Opens the configured backend. This is the only place that knows which
/// backends exist; everything after works on `dyn Store`.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>> {
    Ok(match &settings.database {
        DatabaseUrl::Sqlite { path } => Arc::new({
            ensure_data_dir(settings)?;

            SqliteStore::open(path, settings.db_pool_size)
                .await
                .with_context(|| format!("while opening {}", path.display()))?
        }),
        DatabaseUrl::Postgres { url } => Arc::new(
            PgStore::connect(&pg_config(settings, url)?)
                .await
                .context("while connecting to PostgreSQL")?,
        ),
    })
}

/// The JWT signing keys: from configuration, or in development a pair
/// generated on first start and kept in the data directory (mode 0600) so
/// that tokens survive restarts.
pub fn jwt_keys(settings: &Settings) -> Result<JwtKeys> {
    if let (Some(private), Some(public)) = (&settings.jwt_private_key, &settings.jwt_public_key) {
        return JwtKeys::from_pem(private.expose(), public, &settings.jwt_issuer)
            .context("while loading BEHAVRY_JWT_PRIVATE_KEY / BEHAVRY_JWT_PUBLIC_KEY");
    }
    if settings.is_production() {
        bail!("BEHAVRY_JWT_PRIVATE_KEY and BEHAVRY_JWT_PUBLIC_KEY are required in production");
    }
    let private_path = settings.data_dir.join("jwt-private.pem");
    let public_path = settings.data_dir.join("jwt-public.pem");
    if !private_path.exists() {
        ensure_data_dir(settings)?;
        let (private, public) =
            generate_pem().context("while generating a development key pair")?;
        write_private(&private_path, &private)?;
        let _ = std::fs::remove_file(&public_path);
        write_private(&public_path, &public)?;
        tracing::info!(path = %private_path.display(), "generated a development JWT key pair");
    }
    let private = std::fs::read_to_string(&private_path)
        .with_context(|| format!("while reading {}", private_path.display()))?;
    let public = std::fs::read_to_string(&public_path)
        .with_context(|| format!("while reading {}", public_path.display()))?;
    JwtKeys::from_pem(&private, &public, &settings.jwt_issuer).with_context(|| {
        format!(
            "while loading the key pair in {}",
            settings.data_dir.display()
        )
    })
}

/// Creates the platform operator from BEHAVRY_ADMIN_USERNAME /
/// BEHAVRY_ADMIN_PASSWORD when it does not exist yet. An existing account is
/// left alone (change its password with `behavry admin reset-password`).
pub async fn bootstrap_admin(store: &dyn Store, settings: &Settings) -> Result<()> {
    let Some(password) = &settings.admin_password else {
        return Ok(());
    };
    let username = settings.admin_username.trim().to_lowercase();
    match store.auth().find_admin_by_username(&username).await? {
        Some(existing) if existing.is_super_admin => Ok(()),
        Some(_) => {
            tracing::warn!(username = %username, "BEHAVRY_ADMIN_USERNAME belongs to a tenant admin; no platform operator was created");
            Ok(())
        }
        None => {
            if let Some(problem) = password_problem(password.expose()) {
                tracing::warn!("bootstrap admin password is weak: {problem}");
            }
            let pw = password.expose().to_string();
            let cost = settings.bcrypt_cost;
            let hash = tokio::task::spawn_blocking(move || crate::auth::password::hash(&pw, cost))
                .await??;
            store
                .platform(&PlatformGrant::operator_verified())
                .upsert_platform_admin(&username, &hash)
                .await
                .context("while creating the bootstrap admin")?;
            tracing::info!(username = %username, "created the platform operator account");
            Ok(())
        }
    }
}

/// Everything `serve` needs before it binds: migrations (when enabled),
/// the store, keys, the bootstrap admin.
pub async fn build_state(settings: Settings) -> Result<AppState> {
    // Before any HTTP client exists (the SDKs some deployments embed build
    // their own).
    crate::outbound::install_crypto_provider();
    if settings.migrate_on_start {
        let applied = migrate(&settings).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied database migrations");
        }
    }
    let store = open_store(&settings).await.map_err(|e| {
        if settings.migrate_on_start {
            e
        } else {
            e.context("the database may need `behavry migrate` (or start with --migrate)")
        }
    })?;
    let keys = jwt_keys(&settings)?;
    bootstrap_admin(store.as_ref(), &settings).await?;
    let secret = secret_key(&settings)?;
    let policy = crate::policy::Policies::from_settings(&settings)
        .context("while starting the policy engine")?;
    let launcher = crate::mcp::catalog::Launcher::from_settings(&settings)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("while preparing stdio servers")?;
    let upstreams = crate::mcp::registry::UpstreamRegistry::new(
        launcher,
        behavry_mcp::outbound::AddressGuard::system(settings.outbound.clone()),
    );
    let state = AppState::new(settings, store, keys, policy, &secret, upstreams)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(state)
}
