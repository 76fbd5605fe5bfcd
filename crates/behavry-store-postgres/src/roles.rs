//! The three database roles and how they are provisioned.

use behavry_core::Secret;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};

use crate::errors::map_err;
use behavry_store::{StoreError, StoreResult};

/// Names and login passwords of the roles Behavry uses.
#[derive(Clone)]
pub struct RoleSet {
    /// Owns the schema. Cannot log in.
    pub owner: String,
    /// Tenant-scoped work; subject to row-level security.
    pub app: String,
    /// Platform administration and jobs; BYPASSRLS.
    pub superadmin: String,
    pub app_password: Secret,
    pub superadmin_password: Secret,
}

impl std::fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleSet")
            .field("owner", &self.owner)
            .field("app", &self.app)
            .field("superadmin", &self.superadmin)
            .finish_non_exhaustive()
    }
}

impl RoleSet {
    /// Role names from a prefix; login passwords derived from the server's
    /// secret key, so every replica with the same SECRET_KEY can log in
    /// without a second secret to distribute. `behavry migrate` re-applies the
    /// passwords, so rotating SECRET_KEY means re-running it.
    pub fn derive(prefix: &str, secret_key: &Secret) -> Self {
        let password = |role: &str| {
            let mut h = Sha256::new();
            h.update(b"behavry-db-role-password\0");
            h.update(secret_key.expose().as_bytes());
            h.update(b"\0");
            h.update(role.as_bytes());
            Secret::new(hex::encode(h.finalize()))
        };
        let app = format!("{prefix}_app");
        let superadmin = format!("{prefix}_superadmin");
        Self {
            owner: format!("{prefix}_owner"),
            app_password: password(&app),
            superadmin_password: password(&superadmin),
            app,
            superadmin,
        }
    }
}

/// Creates the roles if they are missing, (re)sets their passwords and
/// attributes, and grants what the schema needs. Idempotent. Requires the
/// connecting account to be a superuser (only a superuser may create a role
/// with BYPASSRLS); otherwise the error says what a DBA must run.
pub(crate) async fn provision(conn: &mut PgConnection, roles: &RoleSet) -> StoreResult<()> {
    let is_super: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut *conn)
            .await
            .map_err(map_err)?;
    if !is_super {
        let missing: Vec<String> = sqlx::query_scalar(
            "SELECT r FROM unnest($1::text[]) AS r WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)",
        )
        .bind(vec![roles.owner.clone(), roles.app.clone(), roles.superadmin.clone()])
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
        if !missing.is_empty() {
            return Err(StoreError::Denied(format!(
                "the database account in BEHAVRY_DB_URL is not a superuser and cannot create the roles {}; \
                 connect as a superuser for `behavry migrate`, or have a DBA create them \
                 ({} NOLOGIN, {} LOGIN NOBYPASSRLS, {} LOGIN BYPASSRLS)",
                missing.join(", "),
                roles.owner,
                roles.app,
                roles.superadmin
            )));
        }
        return Ok(());
    }

    let mut tx = conn.begin().await.map_err(map_err)?;
    // Serialise concurrent `migrate` runs on the same cluster.
    sqlx::query("SELECT pg_advisory_xact_lock(7365628261)")
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    let specs: [(&str, &str, Option<&Secret>); 3] = [
        (&roles.owner, "NOLOGIN NOSUPERUSER NOBYPASSRLS", None),
        (
            &roles.app,
            "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB",
            Some(&roles.app_password),
        ),
        (
            &roles.superadmin,
            "LOGIN NOSUPERUSER BYPASSRLS NOCREATEROLE NOCREATEDB",
            Some(&roles.superadmin_password),
        ),
    ];
    for (name, attrs, password) in specs {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
        let verb = if exists { "ALTER" } else { "CREATE" };
        // The role name and password are quoted by the server's format();
        // the verb and attributes are constants of this function.
        let stmt: String = sqlx::query_scalar(
            "SELECT format('%s ROLE %I %s', $1::text, $2::text, $3::text) \
             || CASE WHEN $4::text IS NULL THEN '' ELSE format(' PASSWORD %L', $4::text) END",
        )
        .bind(verb)
        .bind(name)
        .bind(attrs)
        .bind(password.map(|p| p.expose()))
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    let grants: String = sqlx::query_scalar(
        "SELECT format(
            'GRANT CONNECT ON DATABASE %I TO %I, %I; \
             GRANT USAGE ON SCHEMA public TO %I, %I; \
             GRANT USAGE, CREATE ON SCHEMA public TO %I;',
            current_database(), $1::text, $2::text, $1::text, $2::text, $3::text)",
    )
    .bind(&roles.app)
    .bind(&roles.superadmin)
    .bind(&roles.owner)
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(grants))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(())
}
