//! PostgreSQL row-level security.
//!
//! Tenant isolation in the PostgreSQL backend must not depend on every query
//! remembering its `WHERE tenant_id = …`. The server's application role has
//! no BYPASSRLS, every tenant table has a forced policy keyed on the
//! transaction-local setting `behavry.tenant_id`, and so even a statement
//! with no WHERE clause at all may only reach the current tenant's rows.
//!
//! These tests run plain SQL as that application role (and as the table
//! owner) against a freshly migrated database seeded with two tenants, A and
//! B. The superuser connection bypasses RLS: it seeds the data and is the
//! referee that says what really is in each table.
//!
//! Most tests are table-driven over [`TABLES`]. A failing test lists every
//! table that failed, with the reason, not just the first one.

use behavry_core::Secret;
use behavry_store_postgres::{RoleSet, migrate};
use behavry_test_support::TestDb;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

/// Row-level security refusal: SQLSTATE 42501 with this in the message.
const RLS_VIOLATION: &str = "row-level security";
/// Missing table privilege: also SQLSTATE 42501, with this in the message.
const PERMISSION_DENIED: &str = "permission denied";

/// Rows seeded per tenant in each table that may hold several.
const ROWS_PER_TENANT: i32 = 3;

/// A tenant-scoped table and what the application role may do with it.
struct Table {
    name: &'static str,
    /// The column naming the owning tenant (`id` in `tenants` itself).
    tenant_col: &'static str,
    /// Inserts one row. `$1` row id (uuid), `$2` tenant (uuid, may be NULL),
    /// `$3` ordinal of the row within its tenant (int4), used to vary values.
    insert: &'static str,
    /// `tenants` and `tenant_configs` hold exactly one row per tenant.
    rows_per_tenant: i32,
    /// SET clause that changes every row, or `None` where the application
    /// role has no UPDATE privilege.
    update: Option<&'static str>,
    /// Whether the application role has INSERT / DELETE privileges.
    app_inserts: bool,
    app_deletes: bool,
    /// Rows without a tenant are readable by every tenant (`policies`).
    global_read: bool,
}

/// An ordinary tenant-owned table: full read/write for the application role.
const fn owned(name: &'static str, insert: &'static str, update: &'static str) -> Table {
    Table {
        name,
        tenant_col: "tenant_id",
        insert,
        rows_per_tenant: ROWS_PER_TENANT,
        update: Some(update),
        app_inserts: true,
        app_deletes: true,
        global_read: false,
    }
}

/// Every tenant-scoped table, in an order that satisfies foreign keys when
/// seeding. `every_table_has_forced_rls_and_is_covered_here` fails when the
/// schema grows a table that is missing from this list.
const TABLES: &[Table] = &[
    Table {
        name: "tenants",
        tenant_col: "id",
        insert: "INSERT INTO tenants (id, name, name_key, slug) \
                 VALUES ($2, 'Tenant ' || $1::text, 'tenant ' || $1::text, 'tenant-' || $3 || '-' || $1::text)",
        rows_per_tenant: 1,
        update: None,
        app_inserts: false,
        app_deletes: false,
        global_read: false,
    },
    Table {
        name: "tenant_configs",
        tenant_col: "tenant_id",
        insert: "INSERT INTO tenant_configs (tenant_id, plan_tier, max_agents, license_key) \
                 VALUES ($2, 'growth', 10 + $3, 'license-' || $1::text)",
        rows_per_tenant: 1,
        // The application role may only update the protection settings.
        update: Some("auto_activate_threshold = coalesce(auto_activate_threshold, 0) + 1"),
        app_inserts: false,
        app_deletes: false,
        global_read: false,
    },
    owned(
        "admin_users",
        "INSERT INTO admin_users (id, tenant_id, username, email, password_hash, role) \
         VALUES ($1, $2, 'admin-' || $1::text, 'admin-' || $1::text || '@example.com', \
                 'not-a-real-hash', CASE WHEN $3 = 0 THEN 'admin' ELSE 'viewer' END)",
        "status = 'deactivated'",
    ),
    owned(
        "agents",
        "INSERT INTO agents (id, tenant_id, name, client_id, client_secret_hash, risk_score) \
         VALUES ($1, $2, 'agent ' || $3, 'client-' || $1::text, 'not-a-real-hash', least($3 * 10, 100))",
        "status = 'suspended'",
    ),
    owned(
        "enrollment_tokens",
        "INSERT INTO enrollment_tokens (id, tenant_id, token_hash, expires_at) \
         VALUES ($1, $2, 'enroll-' || $1::text, now() + make_interval(days => 1 + $3))",
        "used_at = now()",
    ),
    owned(
        "extension_tokens",
        "INSERT INTO extension_tokens (id, tenant_id, name, token_hash, expires_at) \
         VALUES ($1, $2, 'extension ' || $3, 'ext-' || $1::text, now() + make_interval(days => 30 + $3))",
        "revoked_at = now()",
    ),
    Table {
        global_read: true,
        ..owned(
            "policies",
            "INSERT INTO policies (id, tenant_id, name, content, status) \
             VALUES ($1, $2, 'policy ' || $3, 'package behavry', 'active')",
            "version = version + 1",
        )
    },
    // Version history is append-only for the application.
    Table {
        name: "policy_versions",
        tenant_col: "tenant_id",
        insert: "INSERT INTO policy_versions (id, tenant_id, policy_id, version, name, content) \
                 VALUES ($1, $2, $1, $3 + 1, 'policy ' || $3, 'package behavry')",
        rows_per_tenant: ROWS_PER_TENANT,
        update: None,
        app_inserts: true,
        app_deletes: false,
        global_read: false,
    },
    owned(
        "policy_candidates",
        "INSERT INTO policy_candidates (id, tenant_id, name, content, confidence) \
         VALUES ($1, $2, 'candidate ' || $3, 'package behavry', 0.5)",
        "status = 'rejected'",
    ),
    owned(
        "alerts",
        "INSERT INTO alerts (id, tenant_id, alert_type, severity, title) \
         VALUES ($1, $2, 'anomaly', 'warning', 'alert ' || $3)",
        "status = 'acknowledged'",
    ),
    // Append-only for the application. The timestamps (now - 40 days, now,
    // now + 40 days) spread each tenant's rows over the default partition and
    // two monthly ones, so RLS is exercised across partitions.
    Table {
        name: "audit_events",
        tenant_col: "tenant_id",
        insert: "INSERT INTO audit_events (id, tenant_id, seq, \"timestamp\", action, previous_hash, event_hash) \
                 VALUES ($1, $2, $3, now() + make_interval(days => 40 * ($3 - 1)), 'tools/call', \
                         'prev-' || $1::text, 'hash-' || $1::text)",
        rows_per_tenant: ROWS_PER_TENANT,
        update: None,
        app_inserts: true,
        app_deletes: false,
        global_read: false,
    },
    // One chain head per tenant, created with the tenant by the platform
    // role; the application only reads and advances it.
    Table {
        name: "audit_chain_heads",
        tenant_col: "tenant_id",
        insert: "INSERT INTO audit_chain_heads (tenant_id, last_seq, last_hash) \
                 VALUES ($2, $3, 'head-' || $1::text)",
        rows_per_tenant: 1,
        update: Some("last_seq = last_seq + 1"),
        app_inserts: false,
        app_deletes: false,
        global_read: false,
    },
    owned(
        "mcp_servers",
        "INSERT INTO mcp_servers (id, tenant_id, name, transport, url) \
         VALUES ($1, $2, 'server-' || $1::text, 'streamable_http', 'http://127.0.0.1:9/mcp')",
        "enabled = NOT enabled",
    ),
    owned(
        "escalations",
        "INSERT INTO escalations (id, tenant_id, summary, expires_at) \
         VALUES ($1, $2, jsonb_build_object('n', $3), now() + interval '1 hour')",
        "status = 'approved'",
    ),
    owned(
        "sessions",
        "INSERT INTO sessions (id, tenant_id, agent_id, client_name) \
         VALUES ('session-' || $1::text, $2, $1, 'client ' || $3)",
        "call_count = call_count + 1",
    ),
    owned(
        "tool_pins",
        "INSERT INTO tool_pins (id, tenant_id, server_id, tool_name, hash, definition, approved_by) \
         VALUES ($1, $2, (SELECT id FROM mcp_servers WHERE tenant_id = $2 ORDER BY id LIMIT 1), \
                 'tool ' || $3, 'hash-' || $1::text, '{}', 'first_use')",
        "pending_hash = 'changed'",
    ),
    owned(
        "escalation_exceptions",
        "INSERT INTO escalation_exceptions (id, tenant_id, agent_id, server_id, tool_name) \
         VALUES ($1, $2, $1, $1, 'tool ' || $3)",
        "resource = 'changed'",
    ),
    // A log: the application records and updates deliveries, never
    // deletes them.
    Table {
        name: "webhook_deliveries",
        tenant_col: "tenant_id",
        insert: "INSERT INTO webhook_deliveries (id, tenant_id, url, status, created_at, updated_at) \
                 VALUES ($1, $2, 'https://hook.example/' || $3, 'pending', now(), now())",
        rows_per_tenant: ROWS_PER_TENANT,
        update: Some("attempts = attempts + 1"),
        app_inserts: true,
        app_deletes: false,
        global_read: false,
    },
    // Written by the risk job under the tenant's own context.
    Table {
        name: "agent_activity",
        tenant_col: "tenant_id",
        insert: "INSERT INTO agent_activity (tenant_id, agent_id, hour, tool_name, calls, denies, \
                 escalations, bytes_in, bytes_out, flagged) \
                 VALUES ($2, $1, date_trunc('hour', now()), 'tool ' || $3, 1, 0, 0, 0, 0, 0)",
        rows_per_tenant: ROWS_PER_TENANT,
        update: Some("calls = calls + 1"),
        app_inserts: true,
        app_deletes: true,
        global_read: false,
    },
    owned(
        "siem_destinations",
        "INSERT INTO siem_destinations (id, tenant_id, name, dest_type) \
         VALUES ($1, $2, 'siem ' || $3, 'webhook')",
        "enabled = false",
    ),
];

fn table(name: &str) -> &'static Table {
    TABLES
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} is not in TABLES"))
}

// ---------------------------------------------------------------------------
// Checks report failures as strings so a table-driven test can collect them.

type Check = Result<(), String>;

/// Like `assert!`, but returns the message as an `Err` from the current check.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Attaches what was being done to a database error.
trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T> Context<T> for Result<T, sqlx::Error> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// Expects `result` to be refused with SQLSTATE 42501 and a message
/// containing `kind` ([`RLS_VIOLATION`] or [`PERMISSION_DENIED`]): a refusal
/// for any other reason (a constraint, a typo) would prove nothing.
fn expect_refused<T>(result: Result<T, sqlx::Error>, what: &str, kind: &str) -> Check {
    match result {
        Ok(_) => Err(format!("{what} succeeded; it must be refused ({kind})")),
        Err(sqlx::Error::Database(e))
            if e.code().as_deref() == Some("42501") && e.message().contains(kind) =>
        {
            Ok(())
        }
        Err(e) => {
            let code = e
                .as_database_error()
                .and_then(|d| d.code().map(|c| c.into_owned()));
            Err(format!(
                "{what} failed with `{e}` (SQLSTATE {code:?}); expected 42501 {kind}"
            ))
        }
    }
}

/// Panics with every failure, one line each (prefixed with the table).
fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "row-level security: {} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The fixture: a migrated database with two tenants' worth of rows.

struct Fixture {
    /// Keeps the database's URL; the database itself is never dropped.
    db: TestDb,
    roles: RoleSet,
    /// Superuser: bypasses RLS. Seeds, and referees.
    su: PgPool,
    /// The server's tenant-scoped role.
    app: PgPool,
    /// The BYPASSRLS platform role.
    superadmin: PgPool,
    a: Uuid,
    b: Uuid,
    /// A policy with tenant_id NULL: readable by all tenants.
    global_policy: Uuid,
    /// A platform operator: admin_users row with tenant_id NULL.
    operator: Uuid,
}

impl Fixture {
    async fn new() -> Self {
        let db = TestDb::create().await;
        let roles = RoleSet::derive(&db.role_prefix, &Secret::new("rls-suite-secret-key"));
        migrate(&db.url, &roles)
            .await
            .expect("migrate the test database");
        let su = PgPoolOptions::new()
            .max_connections(2)
            .connect(&db.url)
            .await
            .expect("superuser pool");
        let app = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(login(&db, &roles.app, roles.app_password.expose()))
            .await
            .expect("log in as the application role");
        let superadmin = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(login(
                &db,
                &roles.superadmin,
                roles.superadmin_password.expose(),
            ));
        let fx = Self {
            db,
            roles,
            su,
            app,
            superadmin,
            a: Uuid::new_v4(),
            b: Uuid::new_v4(),
            global_policy: Uuid::new_v4(),
            operator: Uuid::new_v4(),
        };
        fx.seed().await;
        fx
    }

    async fn seed(&self) {
        for tenant in [self.a, self.b] {
            for t in TABLES {
                for n in 0..t.rows_per_tenant {
                    insert_row(&self.su, t, Uuid::new_v4(), Some(tenant), n)
                        .await
                        .unwrap_or_else(|e| panic!("seed {}: {e}", t.name));
                }
            }
        }
        insert_row(&self.su, table("policies"), self.global_policy, None, 0)
            .await
            .expect("seed the global policy");
        sqlx::query(
            "INSERT INTO admin_users (id, tenant_id, username, password_hash, role, is_super_admin) \
             VALUES ($1, NULL, 'operator-' || $1::text, 'not-a-real-hash', 'admin', true)",
        )
        .bind(self.operator)
        .execute(&self.su)
        .await
        .expect("seed the platform operator");
    }

    /// A transaction as the application role bound to `tenant`.
    async fn as_tenant(&self, tenant: Uuid) -> Result<Transaction<'static, Postgres>, String> {
        begin(&self.app, Some(&tenant.to_string())).await
    }

    /// A transaction as the table owner (via `SET LOCAL ROLE` from the
    /// superuser), with the tenant setting given as a raw string or unset.
    async fn as_owner(
        &self,
        tenant: Option<&str>,
    ) -> Result<Transaction<'static, Postgres>, String> {
        let mut tx = begin(&self.su, tenant).await?;
        exec(&mut tx, format!("SET LOCAL ROLE \"{}\"", self.roles.owner))
            .await
            .ctx("SET ROLE owner")?;
        let user: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut *tx)
            .await
            .ctx("current_user")?;
        ensure!(
            user == self.roles.owner,
            "SET ROLE left current_user = {user}"
        );
        Ok(tx)
    }

    /// Rows of `t` that really belong to `tenant` (`None`: rows without one).
    async fn rows_of(&self, t: &Table, tenant: Option<Uuid>) -> Result<i64, String> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {} WHERE {} IS NOT DISTINCT FROM $1",
            t.name, t.tenant_col
        )))
        .bind(tenant)
        .fetch_one(&self.su)
        .await
        .ctx("referee count")
    }

    /// Rows of `t` without a tenant that every tenant may read.
    async fn global_rows(&self, t: &Table) -> Result<i64, String> {
        if t.global_read {
            self.rows_of(t, None).await
        } else {
            Ok(0)
        }
    }

    /// A digest of the full contents of the rows of `t` matching
    /// `<tenant_col> <condition>` with `$1` = `tenant`, read as superuser.
    /// Compared before and after a statement to prove rows did not change.
    async fn digest(&self, t: &Table, condition: &str, tenant: Uuid) -> Result<String, String> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(r::text, '|' ORDER BY r::text)), '') \
             FROM {} r WHERE {} {condition}",
            t.name, t.tenant_col
        )))
        .bind(tenant)
        .fetch_one(&self.su)
        .await
        .ctx("referee digest")
    }

    /// Everything in `t` that is not `tenant`'s: other tenants', global and
    /// platform rows.
    async fn digest_of_others(&self, t: &Table, tenant: Uuid) -> Result<String, String> {
        self.digest(t, "IS DISTINCT FROM $1", tenant).await
    }

    async fn digest_of_own(&self, t: &Table, tenant: Uuid) -> Result<String, String> {
        self.digest(t, "= $1", tenant).await
    }

    /// Runs `check` for every table and reports all failures together.
    async fn each_table(&self, check: impl AsyncFn(&Fixture, &Table) -> Check) {
        let mut failures = Vec::new();
        for t in TABLES {
            if let Err(e) = check(self, t).await {
                failures.push(format!("  {}: {e}", t.name));
            }
        }
        report(failures);
    }
}

fn login(db: &TestDb, user: &str, password: &str) -> PgConnectOptions {
    let base: PgConnectOptions = db.url.parse().expect("parse the test database URL");
    base.username(user).password(password)
}

/// Begins a transaction the way the server's tenant store does: the first
/// statement sets the transaction-local tenant. `None` leaves it unset.
async fn begin(
    pool: &PgPool,
    tenant: Option<&str>,
) -> Result<Transaction<'static, Postgres>, String> {
    let mut tx = pool.begin().await.ctx("begin")?;
    if let Some(tenant) = tenant {
        sqlx::query("SELECT set_config('behavry.tenant_id', $1, true)")
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .ctx("set_config")?;
    }
    Ok(tx)
}

async fn insert_row<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    t: &Table,
    id: Uuid,
    tenant: Option<Uuid>,
    n: i32,
) -> Result<PgQueryResult, sqlx::Error> {
    sqlx::query(t.insert)
        .bind(id)
        .bind(tenant)
        .bind(n)
        .execute(executor)
        .await
}

/// Runs dynamic SQL built from the constant table specs above.
async fn exec(conn: &mut PgConnection, sql: String) -> Result<PgQueryResult, sqlx::Error> {
    sqlx::query(AssertSqlSafe(sql)).execute(conn).await
}

/// What a role sees of a table.
#[derive(Debug)]
struct Visible {
    /// All rows returned by a SELECT with no WHERE clause.
    total: i64,
    /// Of those, rows of the tenant asked about.
    of_tenant: i64,
    /// Of those, rows of any tenant (tenant column not NULL).
    tenant_rows: i64,
}

async fn visible(conn: &mut PgConnection, t: &Table, tenant: Uuid) -> Result<Visible, String> {
    let (total, of_tenant, tenant_rows) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT count(*), count(*) FILTER (WHERE {col} = $1), count(*) FILTER (WHERE {col} IS NOT NULL) \
         FROM {name}",
        col = t.tenant_col,
        name = t.name
    )))
    .bind(tenant)
    .fetch_one(conn)
    .await
    .ctx("SELECT")?;
    Ok(Visible {
        total,
        of_tenant,
        tenant_rows,
    })
}

// ---------------------------------------------------------------------------
// The application role, table by table.

/// A SELECT without WHERE returns exactly the current tenant's rows (and,
/// for policies, the global ones), for A and for B.
async fn select_sees_only_own_rows(fx: &Fixture, t: &Table) -> Check {
    for (me, other) in [(fx.a, fx.b), (fx.b, fx.a)] {
        let own = fx.rows_of(t, Some(me)).await?;
        let theirs = fx.rows_of(t, Some(other)).await?;
        // Without rows on both sides the test could not fail.
        ensure!(
            own > 0 && theirs > 0,
            "fixture has {own} own and {theirs} other rows"
        );
        let global = fx.global_rows(t).await?;
        let mut tx = fx.as_tenant(me).await?;
        let seen = visible(&mut tx, t, me).await?;
        ensure!(
            seen.of_tenant == own && seen.total == own + global,
            "tenant saw {seen:?}; expected its {own} rows + {global} global"
        );
    }
    Ok(())
}

#[tokio::test]
async fn select_without_where_sees_only_the_current_tenants_rows() {
    let fx = Fixture::new().await;
    fx.each_table(select_sees_only_own_rows).await;
}

/// An UPDATE without WHERE changes all of A's rows and nothing else.
async fn update_changes_only_own_rows(fx: &Fixture, t: &Table) -> Check {
    let Some(set) = t.update else {
        // tenants is read-only to the application; audit_events is
        // append-only. Both refuse UPDATE outright.
        let mut tx = fx.as_tenant(fx.a).await?;
        let col = t.tenant_col;
        let result = exec(&mut tx, format!("UPDATE {} SET {col} = {col}", t.name)).await;
        return expect_refused(result, "UPDATE", PERMISSION_DENIED);
    };
    let own = fx.rows_of(t, Some(fx.a)).await?;
    let others_before = fx.digest_of_others(t, fx.a).await?;
    let own_before = fx.digest_of_own(t, fx.a).await?;

    let mut tx = fx.as_tenant(fx.a).await?;
    let updated = exec(&mut tx, format!("UPDATE {} SET {set}", t.name))
        .await
        .ctx("UPDATE")?
        .rows_affected();
    tx.commit().await.ctx("commit")?;

    ensure!(
        updated == own as u64,
        "UPDATE without WHERE affected {updated} rows; tenant A has {own}"
    );
    ensure!(
        fx.digest_of_others(t, fx.a).await? == others_before,
        "UPDATE as tenant A changed rows that are not A's"
    );
    // Guards against a SET clause that changes nothing, which would make the
    // check above vacuous.
    ensure!(
        fx.digest_of_own(t, fx.a).await? != own_before,
        "UPDATE as tenant A did not change A's own rows"
    );
    Ok(())
}

#[tokio::test]
async fn update_without_where_changes_only_the_current_tenants_rows() {
    let fx = Fixture::new().await;
    fx.each_table(update_changes_only_own_rows).await;
}

/// A DELETE without WHERE removes all of A's rows and nothing else.
async fn delete_removes_only_own_rows(fx: &Fixture, t: &Table) -> Check {
    if !t.app_deletes {
        let mut tx = fx.as_tenant(fx.a).await?;
        let result = exec(&mut tx, format!("DELETE FROM {}", t.name)).await;
        return expect_refused(result, "DELETE", PERMISSION_DENIED);
    }
    let own = fx.rows_of(t, Some(fx.a)).await?;
    let others_before = fx.digest_of_others(t, fx.a).await?;

    let mut tx = fx.as_tenant(fx.a).await?;
    let deleted = exec(&mut tx, format!("DELETE FROM {}", t.name))
        .await
        .ctx("DELETE")?
        .rows_affected();
    tx.commit().await.ctx("commit")?;

    ensure!(
        deleted == own as u64,
        "DELETE without WHERE removed {deleted} rows; tenant A had {own}"
    );
    let left = fx.rows_of(t, Some(fx.a)).await?;
    ensure!(left == 0, "{left} of tenant A's rows survived the DELETE");
    ensure!(
        fx.digest_of_others(t, fx.a).await? == others_before,
        "DELETE as tenant A removed or changed rows that are not A's"
    );
    Ok(())
}

#[tokio::test]
async fn delete_without_where_removes_only_the_current_tenants_rows() {
    let fx = Fixture::new().await;
    fx.each_table(delete_removes_only_own_rows).await;
}

/// A row for tenant B cannot be inserted while working as tenant A, nor
/// any row while no tenant is set.
async fn insert_for_other_tenant_is_refused(fx: &Fixture, t: &Table) -> Check {
    let mut tx = fx.as_tenant(fx.a).await?;
    let result = insert_row(&mut *tx, t, Uuid::new_v4(), Some(fx.b), 100).await;
    if !t.app_inserts {
        // tenants and tenant_configs are created by the platform role only.
        return expect_refused(result, "INSERT", PERMISSION_DENIED);
    }
    expect_refused(result, "INSERT of a row for tenant B", RLS_VIOLATION)?;
    tx.rollback().await.ctx("rollback")?;

    // Control: the same statement for the current tenant is accepted, so the
    // refusal above was about the tenant and nothing else.
    let mut tx = fx.as_tenant(fx.a).await?;
    insert_row(&mut *tx, t, Uuid::new_v4(), Some(fx.a), 100)
        .await
        .ctx("INSERT of a row for the current tenant (control)")?;
    tx.rollback().await.ctx("rollback")?;

    let mut tx = begin(&fx.app, None).await?;
    let result = insert_row(&mut *tx, t, Uuid::new_v4(), Some(fx.a), 101).await;
    expect_refused(result, "INSERT with no tenant set", RLS_VIOLATION)
}

#[tokio::test]
async fn insert_for_another_tenant_is_refused() {
    let fx = Fixture::new().await;
    fx.each_table(insert_for_other_tenant_is_refused).await;
}

/// An UPDATE cannot hand A's rows over to B (the policies' WITH CHECK).
async fn update_cannot_move_rows(fx: &Fixture, t: &Table) -> Check {
    if t.update.is_none() {
        return Ok(()); // no UPDATE at all: see update_changes_only_own_rows
    }
    let mut tx = fx.as_tenant(fx.a).await?;
    let result = sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET {} = $1",
        t.name, t.tenant_col
    )))
    .bind(fx.b)
    .execute(&mut *tx)
    .await;
    // tenant_configs grants UPDATE on a few columns only, so the move is
    // refused before row-level security is even consulted.
    let kind = if t.name == "tenant_configs" {
        PERMISSION_DENIED
    } else {
        RLS_VIOLATION
    };
    expect_refused(result, "UPDATE moving A's rows to tenant B", kind)
}

#[tokio::test]
async fn update_cannot_move_rows_to_another_tenant() {
    let fx = Fixture::new().await;
    fx.each_table(update_cannot_move_rows).await;
}

/// With the tenant unset, or set to the empty string (what the setting
/// reads as after a transaction that set it has ended), no tenant's row is
/// visible and UPDATE/DELETE reach nothing.
async fn no_tenant_sees_nothing(fx: &Fixture, t: &Table) -> Check {
    let global = fx.global_rows(t).await?;
    for (label, setting) in [("unset tenant", None), ("empty tenant", Some(""))] {
        let mut tx = begin(&fx.app, setting).await?;
        let seen = visible(&mut tx, t, fx.a).await?;
        ensure!(
            seen.tenant_rows == 0 && seen.total == global,
            "{label}: saw {seen:?}; expected no tenant rows and {global} global"
        );
        if let Some(set) = t.update {
            let n = exec(&mut tx, format!("UPDATE {} SET {set}", t.name))
                .await
                .ctx("UPDATE")?
                .rows_affected();
            ensure!(n == 0, "{label}: UPDATE without WHERE affected {n} rows");
        }
        if t.app_deletes {
            let n = exec(&mut tx, format!("DELETE FROM {}", t.name))
                .await
                .ctx("DELETE")?
                .rows_affected();
            ensure!(n == 0, "{label}: DELETE without WHERE removed {n} rows");
        }
        tx.rollback().await.ctx("rollback")?;
    }
    Ok(())
}

#[tokio::test]
async fn without_a_tenant_no_tenant_rows_are_visible() {
    let fx = Fixture::new().await;
    fx.each_table(no_tenant_sees_nothing).await;
}

// ---------------------------------------------------------------------------
// The table owner.

/// FORCE ROW LEVEL SECURITY: the owner, which would otherwise be exempt,
/// is filtered like the application role.
async fn owner_is_filtered(fx: &Fixture, t: &Table) -> Check {
    let own = fx.rows_of(t, Some(fx.a)).await?;
    let global = fx.global_rows(t).await?;
    let mut tx = fx.as_owner(Some(&fx.a.to_string())).await?;
    let seen = visible(&mut tx, t, fx.a).await?;
    ensure!(
        seen.of_tenant == own && seen.total == own + global,
        "owner as tenant A saw {seen:?}; expected A's {own} rows + {global} global"
    );
    tx.rollback().await.ctx("rollback")?;

    let mut tx = fx.as_owner(None).await?;
    let seen = visible(&mut tx, t, fx.a).await?;
    ensure!(
        seen.tenant_rows == 0,
        "owner without a tenant saw {seen:?}; expected no tenant rows"
    );
    Ok(())
}

#[tokio::test]
async fn table_owner_is_subject_to_rls() {
    let fx = Fixture::new().await;
    fx.each_table(owner_is_filtered).await;
}

/// The audit partitions are tables of their own. The owner could read them
/// directly, bypassing the parent's policy, so each carries its own forced
/// policy; the application role has no privilege on them at all.
#[tokio::test]
async fn audit_partitions_are_isolated_when_read_directly() {
    let fx = Fixture::new().await;
    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT inhrelid::regclass::text FROM pg_inherits \
         WHERE inhparent = 'audit_events'::regclass ORDER BY 1",
    )
    .fetch_all(&fx.su)
    .await
    .expect("list audit partitions");
    let used: i64 = sqlx::query_scalar("SELECT count(DISTINCT tableoid) FROM audit_events")
        .fetch_one(&fx.su)
        .await
        .expect("count partitions in use");
    assert!(
        used >= 3,
        "the fixture's audit rows should span at least 3 partitions, they span {used}"
    );

    let mut failures = Vec::new();
    for p in &partitions {
        let check = async {
            let own: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT count(*) FROM {p} WHERE tenant_id = $1"
            )))
            .bind(fx.a)
            .fetch_one(&fx.su)
            .await
            .ctx("referee count")?;

            let mut tx = fx.as_owner(Some(&fx.a.to_string())).await?;
            let (total, of_a): (i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT count(*), count(*) FILTER (WHERE tenant_id = $1) FROM {p}"
            )))
            .bind(fx.a)
            .fetch_one(&mut *tx)
            .await
            .ctx("SELECT as owner")?;
            ensure!(
                total == own && of_a == own,
                "owner as tenant A saw {total} rows ({of_a} of A's); A has {own} here"
            );
            tx.rollback().await.ctx("rollback")?;

            let mut tx = fx.as_owner(None).await?;
            let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {p}")))
                .fetch_one(&mut *tx)
                .await
                .ctx("SELECT as owner")?;
            ensure!(total == 0, "owner without a tenant saw {total} rows");
            tx.rollback().await.ctx("rollback")?;

            let mut tx = fx.as_tenant(fx.a).await?;
            let result = exec(&mut tx, format!("SELECT count(*) FROM {p}")).await;
            expect_refused(
                result,
                "application role reading the partition directly",
                PERMISSION_DENIED,
            )
        };
        if let Err(e) = check.await {
            failures.push(format!("  {p}: {e}"));
        }
    }
    report(failures);
}

// ---------------------------------------------------------------------------
// Pooled connections.

/// The tenant setting is transaction-local: a pooled connection reused
/// after a tenant's transaction (committed or rolled back) carries no tenant.
#[tokio::test]
async fn pooled_connection_carries_no_tenant_after_the_transaction() {
    let fx = Fixture::new().await;
    // One connection, so the plain queries below must reuse the one the
    // tenant transaction ran on.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(login(&fx.db, &fx.roles.app, fx.roles.app_password.expose()))
        .await
        .expect("single-connection application pool");
    let agents = table("agents");

    for commit in [true, false] {
        let ending = if commit { "commit" } else { "rollback" };
        let mut tx = begin(&pool, Some(&fx.a.to_string()))
            .await
            .expect("begin as tenant A");
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *tx)
            .await
            .expect("backend pid");
        // Sanity: inside the transaction, the tenant is in effect.
        let seen = visible(&mut tx, agents, fx.a).await.expect("SELECT as A");
        assert!(
            seen.of_tenant > 0,
            "tenant A saw none of its agents: {seen:?}"
        );
        if commit {
            tx.commit().await.expect("commit");
        } else {
            tx.rollback().await.expect("rollback");
        }

        let reused: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("backend pid");
        assert_eq!(
            reused, pid,
            "after {ending}: the pool did not reuse the connection"
        );
        let setting: Option<String> =
            sqlx::query_scalar("SELECT current_setting('behavry.tenant_id', true)")
                .fetch_one(&pool)
                .await
                .expect("read the setting");
        assert!(
            setting.as_deref().unwrap_or("").is_empty(),
            "after {ending}: the reused connection still has behavry.tenant_id = {setting:?}"
        );

        let mut failures = Vec::new();
        for t in TABLES {
            let mut conn = pool.acquire().await.expect("acquire");
            match visible(&mut conn, t, fx.a).await {
                Ok(seen) if seen.tenant_rows == 0 => {}
                Ok(seen) => failures.push(format!("  {}: after {ending} saw {seen:?}", t.name)),
                Err(e) => failures.push(format!("  {}: {e}", t.name)),
            }
        }
        report(failures);
    }
}

// ---------------------------------------------------------------------------
// Rows without a tenant.

/// A global policy (tenant_id NULL) is readable by every tenant and
/// writable by none.
#[tokio::test]
async fn global_policies_are_readable_by_every_tenant_but_writable_by_none() {
    let fx = Fixture::new().await;
    let policies = table("policies");
    let before = fx
        .digest(policies, "IS NULL AND id = $1", fx.global_policy)
        .await
        .expect("digest");

    let mut failures = Vec::new();
    for (name, tenant) in [("tenant A", fx.a), ("tenant B", fx.b)] {
        let check = async {
            let mut tx = fx.as_tenant(tenant).await?;
            let found: i64 = sqlx::query_scalar("SELECT count(*) FROM policies WHERE id = $1")
                .bind(fx.global_policy)
                .fetch_one(&mut *tx)
                .await
                .ctx("SELECT")?;
            ensure!(
                found == 1,
                "the global policy is not readable ({found} rows)"
            );

            let n = sqlx::query("UPDATE policies SET content = 'package hijacked' WHERE id = $1")
                .bind(fx.global_policy)
                .execute(&mut *tx)
                .await
                .ctx("UPDATE")?
                .rows_affected();
            ensure!(n == 0, "UPDATE of the global policy affected {n} rows");

            let n = sqlx::query("DELETE FROM policies WHERE id = $1")
                .bind(fx.global_policy)
                .execute(&mut *tx)
                .await
                .ctx("DELETE")?
                .rows_affected();
            ensure!(n == 0, "DELETE of the global policy affected {n} rows");
            tx.commit().await.ctx("commit")?;

            let mut tx = fx.as_tenant(tenant).await?;
            let result = insert_row(&mut *tx, policies, Uuid::new_v4(), None, 100).await;
            expect_refused(result, "INSERT of a global policy", RLS_VIOLATION)
        };
        if let Err(e) = check.await {
            failures.push(format!("  {name}: {e}"));
        }
    }
    report(failures);

    let after = fx
        .digest(policies, "IS NULL AND id = $1", fx.global_policy)
        .await
        .expect("digest");
    assert_eq!(after, before, "a tenant changed the global policy");
}

/// Platform operators (admin_users with tenant_id NULL) are invisible to
/// and untouchable by every tenant, even when asked for by id.
#[tokio::test]
async fn platform_operators_are_invisible_to_tenants() {
    let fx = Fixture::new().await;
    let admins = table("admin_users");
    let before = fx
        .digest(admins, "IS NULL AND id = $1", fx.operator)
        .await
        .expect("digest");

    let mut failures = Vec::new();
    for (name, tenant) in [("tenant A", fx.a), ("tenant B", fx.b)] {
        let check = async {
            let mut tx = fx.as_tenant(tenant).await?;
            let found: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM admin_users WHERE id = $1 OR tenant_id IS NULL OR is_super_admin",
            )
            .bind(fx.operator)
            .fetch_one(&mut *tx)
            .await
            .ctx("SELECT")?;
            ensure!(found == 0, "{found} platform operator rows are visible");

            let n = sqlx::query("UPDATE admin_users SET password_hash = 'hijacked' WHERE id = $1")
                .bind(fx.operator)
                .execute(&mut *tx)
                .await
                .ctx("UPDATE")?
                .rows_affected();
            ensure!(n == 0, "UPDATE of the operator affected {n} rows");

            let n = sqlx::query("DELETE FROM admin_users WHERE id = $1")
                .bind(fx.operator)
                .execute(&mut *tx)
                .await
                .ctx("DELETE")?
                .rows_affected();
            ensure!(n == 0, "DELETE of the operator affected {n} rows");
            tx.commit().await.ctx("commit")?;

            // Nor can a tenant mint a new operator.
            let mut tx = fx.as_tenant(tenant).await?;
            let result = sqlx::query(
                "INSERT INTO admin_users (id, tenant_id, username, password_hash, role, is_super_admin) \
                 VALUES ($1, NULL, 'rogue-' || $1::text, 'x', 'admin', true)",
            )
            .bind(Uuid::new_v4())
            .execute(&mut *tx)
            .await;
            expect_refused(result, "INSERT of a platform operator", RLS_VIOLATION)
        };
        if let Err(e) = check.await {
            failures.push(format!("  {name}: {e}"));
        }
    }
    report(failures);

    let after = fx
        .digest(admins, "IS NULL AND id = $1", fx.operator)
        .await
        .expect("digest");
    assert_eq!(after, before, "a tenant changed the platform operator");
}

// ---------------------------------------------------------------------------
// Roles and catalog.

/// The roles have the attributes the design relies on.
#[tokio::test]
async fn app_role_cannot_bypass_rls_and_superadmin_can() {
    let fx = Fixture::new().await;
    // (role, superuser, bypassrls, can log in)
    let expected = [
        (&fx.roles.app, false, false, true),
        (&fx.roles.superadmin, false, true, true),
        (&fx.roles.owner, false, false, false),
    ];
    for (role, sup, bypass, login) in expected {
        let actual: (bool, bool, bool) = sqlx::query_as(
            "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1",
        )
        .bind(role)
        .fetch_one(&fx.su)
        .await
        .unwrap_or_else(|e| panic!("role {role}: {e}"));
        assert_eq!(
            actual,
            (sup, bypass, login),
            "role {role}: (rolsuper, rolbypassrls, rolcanlogin)"
        );
    }

    // And what the attributes mean in practice: the superadmin role reads
    // every tenant's rows without setting a tenant.
    fx.each_table(async |fx: &Fixture, t: &Table| {
        let mut conn = fx.superadmin.acquire().await.ctx("log in as superadmin")?;
        for tenant in [fx.a, fx.b] {
            let expected = fx.rows_of(t, Some(tenant)).await?;
            let seen = visible(&mut conn, t, tenant).await?;
            ensure!(
                expected > 0 && seen.of_tenant == expected,
                "superadmin saw {} of tenant {tenant}'s {expected} rows",
                seen.of_tenant
            );
        }
        Ok(())
    })
    .await;
}

/// Every table in the schema has RLS enabled and forced with a policy,
/// and is exercised by this suite: a table added to a migration without RLS,
/// or without being added to [`TABLES`], fails here.
#[tokio::test]
async fn every_table_has_forced_rls_and_is_covered_here() {
    let fx = Fixture::new().await;
    // The migration bookkeeping table holds no tenant data; the application
    // role may only read it.
    const NOT_TENANT_DATA: &[&str] = &["behavry_schema_migrations"];
    let catalog: Vec<(String, bool, bool, i64, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity, \
                (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid), c.relispartition \
         FROM pg_class c \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') \
         ORDER BY 1",
    )
    .fetch_all(&fx.su)
    .await
    .expect("read the catalog");

    let mut failures = Vec::new();
    for (name, enabled, forced, policies, partition) in &catalog {
        if NOT_TENANT_DATA.contains(&name.as_str()) {
            continue;
        }
        if !partition && !TABLES.iter().any(|t| t.name == name) {
            failures.push(format!(
                "  {name}: not covered by this suite; add it to TABLES"
            ));
        }
        if !(*enabled && *forced && *policies > 0) {
            failures.push(format!(
                "  {name}: row security enabled={enabled} forced={forced} with {policies} policies"
            ));
        }
    }
    for t in TABLES {
        if !catalog.iter().any(|(name, ..)| name == t.name) {
            failures.push(format!(
                "  {}: listed in TABLES but not in the schema",
                t.name
            ));
        }
    }
    report(failures);
}

// ---------------------------------------------------------------------------
// The suite itself.

/// The checks above must be able to fail. Break isolation on one table the
/// way a careless migration could (a policy that lets everything through,
/// no FORCE for the owner) and make sure every check notices.
#[tokio::test]
async fn the_checks_detect_broken_isolation() {
    let fx = Fixture::new().await;
    sqlx::raw_sql(
        "DROP POLICY tenant_isolation ON agents; \
         CREATE POLICY wide_open ON agents USING (true) WITH CHECK (true); \
         ALTER TABLE agents NO FORCE ROW LEVEL SECURITY;",
    )
    .execute(&fx.su)
    .await
    .expect("sabotage agents");
    let agents = table("agents");

    // Read-only and rolled-back checks first; update and delete commit, so
    // they go last (and delete after update, which leaves the rows in place).
    let mut undetected = Vec::new();
    macro_rules! must_fail {
        ($($check:ident),+) => {$(
            if $check(&fx, agents).await.is_ok() {
                undetected.push(stringify!($check));
            }
        )+};
    }
    must_fail!(
        select_sees_only_own_rows,
        insert_for_other_tenant_is_refused,
        update_cannot_move_rows,
        no_tenant_sees_nothing,
        owner_is_filtered,
        update_changes_only_own_rows,
        delete_removes_only_own_rows
    );
    assert!(
        undetected.is_empty(),
        "these checks passed on a table without isolation: {undetected:?}"
    );
}

/// A tenant-scoped unit of work must not be able to create a platform
/// operator: `is_super_admin` in a token is what grants cross-tenant access,
/// and it is read straight from admin_users at login.
/// The schema ties `is_super_admin` to having no tenant, and rows without a
/// tenant are invisible to tenants, so neither path is open.
#[tokio::test]
async fn tenant_cannot_make_its_admins_platform_operators() {
    let fx = Fixture::new().await;
    let mut failures = Vec::new();

    let mut tx = fx.as_tenant(fx.a).await.expect("begin as tenant A");
    let result = sqlx::query("UPDATE admin_users SET is_super_admin = true")
        .execute(&mut *tx)
        .await;
    match result {
        Ok(r) if r.rows_affected() > 0 => failures.push(format!(
            "  UPDATE: {} of tenant A's admins became super-admins",
            r.rows_affected()
        )),
        _ => {}
    }
    tx.rollback().await.expect("rollback");

    let mut tx = fx.as_tenant(fx.a).await.expect("begin as tenant A");
    let result = sqlx::query(
        "INSERT INTO admin_users (id, tenant_id, username, password_hash, role, is_super_admin) \
         VALUES ($1, $2, 'rogue-' || $1::text, 'x', 'admin', true)",
    )
    .bind(Uuid::new_v4())
    .bind(fx.a)
    .execute(&mut *tx)
    .await;
    if result.is_ok() {
        failures.push("  INSERT: tenant A created a super-admin".into());
    }
    tx.rollback().await.expect("rollback");
    report(failures);
}
