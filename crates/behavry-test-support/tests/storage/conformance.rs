//! One behavioural contract for every storage backend: the same tests run
//! against SQLite and PostgreSQL, each on a fresh database.

use std::sync::Arc;

use behavry_core::{
    AdminRole, AgentId, AgentStatus, DeploymentMode, PlanTier, RiskTier, Secret, TenantConfig,
    TenantId,
};
use behavry_store::migrations::MigrationState;
use behavry_store::{
    AgentFilter, AgentPatch, NewAdminUser, NewAgent, NewAuditEvent, NewEnrollmentToken,
    NewEscalation, NewTenant, PlatformGrant, Store, StoreError, TenantPatch,
};
use behavry_store_postgres::{PgConfig, PgStore, RoleSet};
use behavry_store_sqlite::SqliteStore;
use behavry_test_support::TestDb;
use behavry_test_support::tmp::TempDir;
use chrono::{Duration, Utc};
use serde_json::json;
use uuid::Uuid;

/// A store plus whatever must live as long as it.
struct Harness {
    store: Arc<dyn Store>,
    _dir: Option<TempDir>,
    _db: Option<TestDb>,
}

async fn sqlite() -> Harness {
    let dir = TempDir::new("behavry-conformance");
    let path = dir.path().join("behavry.db");
    assert_eq!(
        behavry_store_sqlite::migrate(&path).await.unwrap(),
        versions(behavry_store_sqlite::MIGRATIONS)
    );
    assert!(
        behavry_store_sqlite::migrate(&path)
            .await
            .unwrap()
            .is_empty(),
        "migrate is idempotent"
    );
    let status = behavry_store_sqlite::migration_status(&path).await.unwrap();
    assert!(status.iter().all(|s| s.state == MigrationState::Applied));
    let store = SqliteStore::open(&path, 4).await.unwrap();
    Harness {
        store: Arc::new(store),
        _dir: Some(dir),
        _db: None,
    }
}

/// Every embedded migration, in order: a fresh database gets them all.
fn versions(migrations: &[behavry_store::migrations::Migration]) -> Vec<i64> {
    migrations.iter().map(|m| m.version).collect()
}

async fn postgres() -> Harness {
    let db = TestDb::create().await;
    let roles = RoleSet::derive(&db.role_prefix, &Secret::new("conformance-secret-key"));
    assert_eq!(
        behavry_store_postgres::migrate(&db.url, &roles)
            .await
            .unwrap(),
        versions(behavry_store_postgres::MIGRATIONS)
    );
    assert!(
        behavry_store_postgres::migrate(&db.url, &roles)
            .await
            .unwrap()
            .is_empty(),
        "migrate is idempotent"
    );
    let status = behavry_store_postgres::migration_status(&db.url)
        .await
        .unwrap();
    assert!(status.iter().all(|s| s.state == MigrationState::Applied));
    let store = PgStore::connect(&PgConfig {
        url: db.url.clone(),
        roles,
        pool_size: 4,
    })
    .await
    .unwrap();
    Harness {
        store: Arc::new(store),
        _dir: None,
        _db: Some(db),
    }
}

/// Runs each scenario once per backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = super::sqlite().await;
                    super::$name(h.store.as_ref()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = super::postgres().await;
                    super::$name(h.store.as_ref()).await;
                }
            )*
        }
    };
}

conformance!(
    creating_a_tenant_creates_config_admin_and_token,
    duplicates_conflict_and_leave_nothing_behind,
    slug_collisions_get_numeric_suffixes,
    patches_suspend_and_reactivate,
    unknown_tenants_are_not_found,
    usage_counts_only_the_window_and_the_tenant,
    tenant_handles_see_only_their_tenant,
    platform_admins_are_created_once_and_reset,
    maintenance_runs,
    agents_lifecycle_and_limits,
    enrollment_tokens_are_single_use,
    audit_events_form_a_verifiable_chain_per_tenant,
    mcp_servers_and_sessions,
    policies_keep_versions_and_raise_the_revision,
    payload_data_keys_are_set_once_per_tenant,
    alerts_fold_repeats_and_move_forward,
    escalations_are_decided_and_used_once,
    webhook_deliveries_are_logged_per_tenant,
    activity_rolls_up_per_hour_and_tool_and_risk_is_stored,
);

/// Tenants A and B, for isolation checks.
async fn two_tenants(p: &dyn behavry_store::PlatformStore) -> (TenantId, TenantId) {
    let mut ids = Vec::new();
    for (name, slug, email) in [("A", "a", "a@a.com"), ("B", "b", "b@b.com")] {
        let created = p
            .create_tenant(new_tenant(name, slug, email))
            .await
            .unwrap();
        ids.push(created.record.tenant.id);
    }
    (ids[0], ids[1])
}

fn grant() -> PlatformGrant {
    PlatformGrant::operator_verified()
}

fn new_tenant(name: &str, slug: &str, admin: &str) -> NewTenant {
    NewTenant {
        name: name.to_string(),
        slug_base: slug.to_string(),
        config: TenantConfig::default(),
        admin: NewAdminUser {
            username: admin.to_string(),
            email: Some(admin.to_string()),
            password_hash: "$2b$04$notarealhashbutstoredverbatim.........................".into(),
            role: AdminRole::Admin,
        },
        enrollment_token: None,
    }
}

async fn creating_a_tenant_creates_config_admin_and_token(store: &dyn Store) {
    assert!(!store.auth().is_initialized().await.unwrap());
    let mut new = new_tenant("Acme Corp", "acme-corp", "sec@acme.com");
    new.config.plan_tier = PlanTier::Enterprise;
    new.config.max_rpm_per_agent = 120;
    new.config.deployment_mode = DeploymentMode::SelfHosted;
    new.enrollment_token = Some(NewEnrollmentToken {
        token_hash: "ab".repeat(32),
        expires_at: Utc::now() + Duration::hours(24),
    });
    let created = store.platform(&grant()).create_tenant(new).await.unwrap();
    let t = &created.record.tenant;
    assert_eq!(t.name, "Acme Corp");
    assert_eq!(t.slug, "acme-corp");
    assert!(t.is_active());
    let c = &created.record.config;
    assert_eq!(c.plan_tier, PlanTier::Enterprise);
    assert_eq!(c.max_rpm_per_agent, 120);
    assert_eq!(c.deployment_mode, DeploymentMode::SelfHosted);
    assert_eq!(c.max_agents, -1);
    assert_eq!(c.audit_retention_days, 90);
    assert_eq!(created.admin.tenant_id, Some(t.id));
    assert!(!created.admin.is_super_admin);
    assert!(store.auth().is_initialized().await.unwrap());

    // Username lookup is case-insensitive and returns the stored hash.
    let found = store
        .auth()
        .find_admin_by_username("SEC@ACME.COM")
        .await
        .unwrap()
        .expect("admin found");
    assert_eq!(found.id, created.admin.id);
    assert!(found.password_hash.starts_with("$2b$04$"));
    store.auth().record_admin_login(found.id).await.unwrap();
    let again = store
        .auth()
        .find_admin_by_username("sec@acme.com")
        .await
        .unwrap()
        .unwrap();
    assert!(again.last_login_at.is_some());

    let fetched = store.platform(&grant()).get_tenant(t.id).await.unwrap();
    assert_eq!(fetched, created.record);
    let own = store.tenant(t.id).tenant().await.unwrap();
    assert_eq!(own, created.record);
}

async fn duplicates_conflict_and_leave_nothing_behind(store: &dyn Store) {
    let p = store.platform(&grant());
    p.create_tenant(new_tenant("Acme Corp", "acme-corp", "a@acme.com"))
        .await
        .unwrap();
    match p
        .create_tenant(new_tenant("ACME corp", "acme-corp", "b@acme.com"))
        .await
    {
        Err(StoreError::Conflict(what)) => assert!(what.contains("organization"), "{what}"),
        other => panic!("expected a name conflict, got {other:?}"),
    }
    match p
        .create_tenant(new_tenant("Other Inc", "other-inc", "A@ACME.COM"))
        .await
    {
        Err(StoreError::Conflict(what)) => assert!(what.contains("admin"), "{what}"),
        other => panic!("expected an admin conflict, got {other:?}"),
    }
    // The refused attempts created no tenant.
    let all = p.list_tenants().await.unwrap();
    assert_eq!(all.len(), 1);
    assert!(
        store
            .auth()
            .find_admin_by_username("b@acme.com")
            .await
            .unwrap()
            .is_none()
    );
}

async fn slug_collisions_get_numeric_suffixes(store: &dyn Store) {
    let p = store.platform(&grant());
    let a = p
        .create_tenant(new_tenant("Acme", "acme", "1@acme.com"))
        .await
        .unwrap();
    let b = p
        .create_tenant(new_tenant("Acme!", "acme", "2@acme.com"))
        .await
        .unwrap();
    let c = p
        .create_tenant(new_tenant("Acme?", "acme", "3@acme.com"))
        .await
        .unwrap();
    let d = p
        .create_tenant(new_tenant("Acme Labs", "acme-labs", "4@acme.com"))
        .await
        .unwrap();
    assert_eq!(a.record.tenant.slug, "acme");
    assert_eq!(b.record.tenant.slug, "acme-2");
    assert_eq!(c.record.tenant.slug, "acme-3");
    assert_eq!(d.record.tenant.slug, "acme-labs");
    let listed: Vec<_> = p
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.tenant.slug)
        .collect();
    assert_eq!(
        listed,
        vec!["acme", "acme-2", "acme-3", "acme-labs"],
        "ordered by creation"
    );
}

async fn patches_suspend_and_reactivate(store: &dyn Store) {
    let p = store.platform(&grant());
    let id = p
        .create_tenant(new_tenant("Acme", "acme", "a@acme.com"))
        .await
        .unwrap()
        .record
        .tenant
        .id;
    let expires = Utc::now() + Duration::days(365);
    let updated = p
        .update_tenant(
            id,
            TenantPatch {
                plan_tier: Some(PlanTier::Growth),
                max_agents: Some(100),
                max_rpm_per_agent: Some(300),
                audit_retention_days: Some(365),
                deployment_mode: Some(DeploymentMode::Hybrid),
                license_key: Some(Some("lic_123".into())),
                license_expires_at: Some(Some(expires)),
                is_active: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.config.plan_tier, PlanTier::Growth);
    assert_eq!(updated.config.max_agents, 100);
    assert_eq!(updated.config.max_rpm_per_agent, 300);
    assert_eq!(updated.config.audit_retention_days, 365);
    assert_eq!(updated.config.deployment_mode, DeploymentMode::Hybrid);
    assert_eq!(updated.config.license_key.as_deref(), Some("lic_123"));
    let stored_expiry = updated.config.license_expires_at.unwrap();
    assert!((stored_expiry - expires).num_milliseconds().abs() < 1);

    let suspended = p.update_tenant(id, TenantPatch::suspend()).await.unwrap();
    assert!(suspended.tenant.is_frozen);
    let when = suspended.config.suspended_at.expect("suspended_at set");
    // Suspending again keeps the original time.
    let again = p.update_tenant(id, TenantPatch::suspend()).await.unwrap();
    assert_eq!(again.config.suspended_at, Some(when));

    let cleared = p
        .update_tenant(
            id,
            TenantPatch {
                is_active: Some(true),
                license_key: Some(None),
                ..TenantPatch::default()
            },
        )
        .await
        .unwrap();
    assert!(!cleared.tenant.is_frozen);
    assert_eq!(cleared.config.suspended_at, None);
    assert_eq!(cleared.config.license_key, None);
    assert_eq!(
        cleared.config.plan_tier,
        PlanTier::Growth,
        "untouched fields stay"
    );
}

async fn unknown_tenants_are_not_found(store: &dyn Store) {
    let p = store.platform(&grant());
    let ghost = TenantId::new();
    assert!(matches!(
        p.get_tenant(ghost).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        p.update_tenant(ghost, TenantPatch::suspend()).await,
        Err(StoreError::NotFound)
    ));
    let now = Utc::now();
    assert!(matches!(
        p.usage(ghost, now - Duration::days(30), now).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.tenant(ghost).tenant().await,
        Err(StoreError::NotFound)
    ));
}

fn event(
    agent: AgentId,
    at: chrono::DateTime<Utc>,
    action: &str,
    findings: serde_json::Value,
    req: i64,
    resp: i64,
) -> NewAuditEvent {
    NewAuditEvent {
        id: Uuid::now_v7(),
        timestamp: at,
        agent_id: Some(agent),
        action: action.to_string(),
        tool_name: Some("read_file".into()),
        policy_result: Some("allow".into()),
        dlp_findings: findings,
        request_size: req,
        response_size: resp,
        extra: json!({}),
        ..NewAuditEvent::default()
    }
}

async fn usage_counts_only_the_window_and_the_tenant(store: &dyn Store) {
    let p = store.platform(&grant());
    let (a, b) = two_tenants(p).await;
    let now = Utc::now();
    let (x, y) = (AgentId::new(), AgentId::new());
    let finding = json!([{ "pattern": "aws_access_key", "severity": "critical" }]);
    store
        .tenant(a)
        .append_audit_events(&[
            event(
                x,
                now - Duration::days(1),
                "TOOL_CALL",
                json!([]),
                100,
                1000,
            ),
            event(
                x,
                now - Duration::days(2),
                "TOOL_CALL",
                finding.clone(),
                10,
                20,
            ),
            event(y, now - Duration::hours(3), "TOOL_CALL", json!([]), 1, 2),
            event(y, now - Duration::hours(2), "TOOLS_LIST", json!([]), 5, 5),
            // Outside the window: not counted.
            event(
                AgentId::new(),
                now - Duration::days(40),
                "TOOL_CALL",
                finding.clone(),
                999,
                999,
            ),
        ])
        .await
        .unwrap();
    store
        .tenant(b)
        .append_audit_events(&[event(
            AgentId::new(),
            now - Duration::days(1),
            "TOOL_CALL",
            finding,
            7,
            7,
        )])
        .await
        .unwrap();
    for (tenant, days) in [(a, 1), (a, 45), (b, 1)] {
        store
            .tenant(tenant)
            .record_escalation(NewEscalation {
                id: Uuid::now_v7(),
                agent_id: Some(x),
                status: "pending".into(),
                summary: json!({ "tool": "delete_file" }),
                created_at: now - Duration::days(days),
                expires_at: now + Duration::hours(1),
                ..NewEscalation::default()
            })
            .await
            .unwrap();
    }

    let since = now - Duration::days(30);
    let until = now + Duration::seconds(1);
    let usage = store.tenant(a).usage(since, until).await.unwrap();
    assert_eq!(usage.tool_calls_30d, 3);
    assert_eq!(usage.agents_active_30d, 2);
    assert_eq!(usage.dlp_hits_30d, 1);
    assert_eq!(usage.escalations_30d, 1);
    assert_eq!(
        usage.data_volume_bytes_30d,
        100 + 1000 + 10 + 20 + 1 + 2 + 5 + 5
    );
    assert_eq!(usage.period_start, since);
    assert_eq!(usage.period_end, until);
    // The operator's view of the same tenant agrees.
    assert_eq!(p.usage(a, since, until).await.unwrap(), usage);

    let usage_b = store.tenant(b).usage(since, until).await.unwrap();
    assert_eq!(usage_b.tool_calls_30d, 1);
    assert_eq!(usage_b.escalations_30d, 1);
    assert_eq!(usage_b.data_volume_bytes_30d, 14);
    assert_eq!(store.tenant(a).count_audit_events().await.unwrap(), 5);
    assert_eq!(store.tenant(b).count_audit_events().await.unwrap(), 1);
}

async fn tenant_handles_see_only_their_tenant(store: &dyn Store) {
    let p = store.platform(&grant());
    let (a, b) = two_tenants(p).await;
    p.upsert_platform_admin("operator", "$2b$04$operatorhash")
        .await
        .unwrap();
    let extra = store
        .tenant(a)
        .create_admin(NewAdminUser {
            username: "viewer@a.com".into(),
            email: None,
            password_hash: "$2b$04$x".into(),
            role: AdminRole::Viewer,
        })
        .await
        .unwrap();
    assert_eq!(extra.tenant_id, Some(a));
    assert_eq!(extra.role, AdminRole::Viewer);

    let names = |admins: Vec<behavry_store::AdminUserRecord>| {
        let mut v: Vec<String> = admins.into_iter().map(|a| a.username).collect();
        v.sort();
        v
    };
    assert_eq!(
        names(store.tenant(a).list_admins().await.unwrap()),
        vec!["a@a.com", "viewer@a.com"]
    );
    assert_eq!(
        names(store.tenant(b).list_admins().await.unwrap()),
        vec!["b@b.com"]
    );
    assert_eq!(store.tenant(b).tenant().await.unwrap().tenant.id, b);
    assert_eq!(store.tenant(a).tenant_id(), a);
}

async fn platform_admins_are_created_once_and_reset(store: &dyn Store) {
    let p = store.platform(&grant());
    assert!(
        p.upsert_platform_admin("root-operator", "$2b$04$first")
            .await
            .unwrap()
    );
    assert!(
        !p.upsert_platform_admin("Root-Operator", "$2b$04$second")
            .await
            .unwrap()
    );
    let admin = store
        .auth()
        .find_admin_by_username("root-operator")
        .await
        .unwrap()
        .unwrap();
    assert!(admin.is_super_admin);
    assert_eq!(admin.tenant_id, None);
    assert_eq!(admin.password_hash, "$2b$04$second");

    p.set_admin_password("root-operator", "$2b$04$third")
        .await
        .unwrap();
    let admin = store
        .auth()
        .find_admin_by_username("root-operator")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin.password_hash, "$2b$04$third");
    assert!(matches!(
        p.set_admin_password("nobody", "$2b$04$x").await,
        Err(StoreError::NotFound)
    ));

    // Platform operators alone do not make the platform "initialized".
    assert!(!store.auth().is_initialized().await.unwrap());

    // A tenant admin's username cannot be turned into a platform operator.
    p.create_tenant(new_tenant("A", "a", "a@a.com"))
        .await
        .unwrap();
    assert!(matches!(
        p.upsert_platform_admin("a@a.com", "$2b$04$x").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.auth().is_initialized().await.unwrap());
}

async fn maintenance_runs(store: &dyn Store) {
    store.maintenance().await.unwrap();
    // A second pass has nothing left to create.
    assert_eq!(store.maintenance().await.unwrap().partitions_created, 0);
    store.ping().await.unwrap();
}

async fn tenant_a(store: &dyn Store) -> TenantId {
    store
        .platform(&grant())
        .create_tenant(new_tenant("A", "a", "a@a.com"))
        .await
        .unwrap()
        .record
        .tenant
        .id
}

#[tokio::test]
async fn sqlite_audit_events_are_append_only() {
    let h = sqlite().await;
    let a = tenant_a(h.store.as_ref()).await;
    h.store
        .tenant(a)
        .append_audit_events(&[event(
            AgentId::new(),
            Utc::now(),
            "TOOL_CALL",
            json!([]),
            1,
            1,
        )])
        .await
        .unwrap();
    let dir = h._dir.as_ref().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("behavry.db").display()
    ))
    .await
    .unwrap();
    let update = sqlx::query("UPDATE audit_events SET action = 'EDITED'")
        .execute(&pool)
        .await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM audit_events").execute(&pool).await;
    assert!(delete.unwrap_err().to_string().contains("append-only"));
}

/// SQLite appends continue from a head kept in memory; another store on the
/// same file (another process) appending in between must not fork the
/// chain, a refused batch must leave nothing behind, and a batch too large
/// for one statement is still all-or-nothing.
#[tokio::test]
async fn sqlite_appends_from_two_stores_on_one_file_keep_one_chain() {
    use behavry_store::audit::{AuditQuery, verify_chain};
    let h = sqlite().await;
    let path = h._dir.as_ref().unwrap().path().join("behavry.db");
    let other = SqliteStore::open(&path, 2).await.unwrap();
    let t = tenant_a(h.store.as_ref()).await;
    let one = |n: i64| event(AgentId::new(), Utc::now(), "TOOL_CALL", json!([]), n, n);
    for round in 0..3 {
        let mine = h
            .store
            .tenant(t)
            .append_audit_events(&[one(round)])
            .await
            .unwrap();
        let theirs = other
            .tenant(t)
            .append_audit_events(&[one(round)])
            .await
            .unwrap();
        assert_eq!(theirs[0].seq, mine[0].seq + 1);
        assert_eq!(theirs[0].previous_hash, mine[0].event_hash);
    }

    let mut bad = one(0);
    bad.policy_result = Some("maybe".into());
    let refused = h.store.tenant(t).append_audit_events(&[one(0), bad]).await;
    assert!(refused.is_err(), "a CHECK violation refuses the batch");

    let big: Vec<NewAuditEvent> = (0..70).map(one).collect();
    let stored = h.store.tenant(t).append_audit_events(&big).await.unwrap();
    assert_eq!((stored[0].seq, stored[69].seq), (7, 76));
    let mut too_big: Vec<NewAuditEvent> = (0..70).map(one).collect();
    too_big[65].policy_result = Some("maybe".into());
    assert!(
        h.store
            .tenant(t)
            .append_audit_events(&too_big)
            .await
            .is_err()
    );
    let last = other
        .tenant(t)
        .append_audit_events(&[one(1)])
        .await
        .unwrap();
    assert_eq!(last[0].seq, 77);

    let all = h
        .store
        .tenant(t)
        .list_audit_events(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 77, "nothing of the refused batches was kept");
    let report = verify_chain(&all);
    assert_eq!((report.events_checked, report.first_broken), (77, None));
}

fn new_agent(name: &str, client_id: &str) -> NewAgent {
    NewAgent {
        name: name.to_string(),
        agent_type: "custom".into(),
        owner: Some("team-a".into()),
        roles: vec!["reader".into()],
        permissions: vec!["filesystem:read".into()],
        tags: vec![],
        client_id: client_id.to_string(),
        client_secret_hash: format!("hash-of-{client_id}"),
    }
}

async fn agents_lifecycle_and_limits(store: &dyn Store) {
    let p = store.platform(&grant());
    let (a, b) = two_tenants(p).await;
    p.update_tenant(
        a,
        TenantPatch {
            max_agents: Some(2),
            ..TenantPatch::default()
        },
    )
    .await
    .unwrap();
    let ta = store.tenant(a);

    let first = ta.create_agent(new_agent("first", "bhv_1")).await.unwrap();
    assert_eq!(first.tenant_id, a);
    assert_eq!(first.status, AgentStatus::Active);
    assert_eq!(first.risk_tier, RiskTier::Low);
    assert_eq!(first.roles, vec!["reader"]);
    let second = ta.create_agent(new_agent("second", "bhv_2")).await.unwrap();
    match ta.create_agent(new_agent("third", "bhv_3")).await {
        Err(StoreError::Refused(why)) => assert!(why.contains("limit of 2"), "{why}"),
        other => panic!("expected the agent limit to refuse, got {other:?}"),
    }
    // Client ids are unique across tenants.
    assert!(matches!(
        store
            .tenant(b)
            .create_agent(new_agent("dup", "bhv_1"))
            .await,
        Err(StoreError::Conflict(_))
    ));

    // Newest first, filtered, paginated, with the total.
    let (page, total) = ta
        .list_agents(AgentFilter {
            status: None,
            limit: 1,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(total, 2);
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, second.id);
    let (page, _) = ta
        .list_agents(AgentFilter {
            status: None,
            limit: 1,
            offset: 1,
        })
        .await
        .unwrap();
    assert_eq!(page[0].id, first.id);

    let patched = ta
        .update_agent(
            first.id,
            AgentPatch {
                name: Some("renamed".into()),
                owner: Some(None),
                tags: Some(vec!["prod".into()]),
                ..AgentPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.name, "renamed");
    assert_eq!(patched.owner, None);
    assert_eq!(patched.tags, vec!["prod"]);
    assert_eq!(patched.roles, vec!["reader"], "untouched fields stay");

    // Freezing keeps the first reason; unfreezing clears both fields.
    assert!(patched.frozen_at.is_none());
    let frozen = ta
        .set_agent_frozen(first.id, Some("too many deletes"))
        .await
        .unwrap();
    assert!(frozen.frozen_at.is_some());
    let again = ta
        .set_agent_frozen(first.id, Some("another window"))
        .await
        .unwrap();
    assert_eq!(again.frozen_reason.as_deref(), Some("too many deletes"));
    assert_eq!(again.frozen_at, frozen.frozen_at);
    let thawed = ta.set_agent_frozen(first.id, None).await.unwrap();
    assert!(thawed.frozen_at.is_none() && thawed.frozen_reason.is_none());
    assert!(matches!(
        store.tenant(b).set_agent_frozen(first.id, Some("x")).await,
        Err(StoreError::NotFound)
    ));

    let suspended = ta
        .set_agent_status(first.id, AgentStatus::Suspended)
        .await
        .unwrap();
    assert_eq!(suspended.status, AgentStatus::Suspended);
    let (page, total) = ta
        .list_agents(AgentFilter {
            status: Some(AgentStatus::Suspended),
            limit: 50,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!((page.len(), total), (1, 1));
    ta.set_agent_status(first.id, AgentStatus::Active)
        .await
        .unwrap();
    ta.set_agent_status(first.id, AgentStatus::Revoked)
        .await
        .unwrap();
    assert!(matches!(
        ta.set_agent_status(first.id, AgentStatus::Active).await,
        Err(StoreError::Refused(_))
    ));
    // A revoked agent no longer counts against the limit.
    ta.create_agent(new_agent("third", "bhv_3")).await.unwrap();
    // ...and its secret cannot be rotated.
    assert!(matches!(
        ta.set_agent_secret(first.id, "new").await,
        Err(StoreError::NotFound)
    ));

    ta.set_agent_secret(second.id, "rotated-hash")
        .await
        .unwrap();
    ta.touch_agent(second.id).await.unwrap();
    let creds = store
        .auth()
        .find_agent_credentials("bhv_2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds.client_secret_hash, "rotated-hash");
    assert_eq!(creds.agent.id, second.id);
    assert!(creds.agent.last_seen_at.is_some());
    assert!(!creds.tenant_frozen);
    assert!(
        store
            .auth()
            .find_agent_credentials("bhv_nope")
            .await
            .unwrap()
            .is_none()
    );

    // Another tenant's handle cannot see or change these agents.
    let tb = store.tenant(b);
    assert!(matches!(
        tb.get_agent(second.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        tb.set_agent_status(second.id, AgentStatus::Suspended).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        tb.touch_agent(second.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        tb.list_agents(AgentFilter {
            status: None,
            limit: 50,
            offset: 0
        })
        .await
        .unwrap()
        .1,
        0
    );

    p.update_tenant(a, TenantPatch::suspend()).await.unwrap();
    assert!(
        store
            .auth()
            .find_agent_credentials("bhv_2")
            .await
            .unwrap()
            .unwrap()
            .tenant_frozen
    );
    assert!(matches!(
        ta.create_agent(new_agent("late", "bhv_4")).await,
        Err(StoreError::Refused(_))
    ));
}

async fn enrollment_tokens_are_single_use(store: &dyn Store) {
    let p = store.platform(&grant());
    let a = p
        .create_tenant(new_tenant("A", "a", "a@a.com"))
        .await
        .unwrap()
        .record
        .tenant
        .id;
    let ta = store.tenant(a);
    let in_a_day = Utc::now() + Duration::hours(24);
    ta.create_enrollment_token(
        NewEnrollmentToken {
            token_hash: "t1".into(),
            expires_at: in_a_day,
        },
        None,
    )
    .await
    .unwrap();
    ta.create_enrollment_token(
        NewEnrollmentToken {
            token_hash: "expired".into(),
            expires_at: Utc::now() - Duration::minutes(1),
        },
        None,
    )
    .await
    .unwrap();

    let agent = store
        .auth()
        .enroll_agent("t1", new_agent("self", "bhv_self"))
        .await
        .unwrap();
    assert_eq!(agent.tenant_id, a);
    assert_eq!(ta.get_agent(agent.id).await.unwrap().name, "self");
    assert!(matches!(
        store
            .auth()
            .enroll_agent("t1", new_agent("again", "bhv_again"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .auth()
            .enroll_agent("expired", new_agent("late", "bhv_late"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .auth()
            .enroll_agent("unknown", new_agent("x", "bhv_x"))
            .await,
        Err(StoreError::NotFound)
    ));
    // The refused attempts created nothing.
    assert_eq!(
        ta.list_agents(AgentFilter {
            status: None,
            limit: 50,
            offset: 0
        })
        .await
        .unwrap()
        .1,
        1
    );

    ta.create_enrollment_token(
        NewEnrollmentToken {
            token_hash: "t2".into(),
            expires_at: in_a_day,
        },
        None,
    )
    .await
    .unwrap();
    p.update_tenant(a, TenantPatch::suspend()).await.unwrap();
    assert!(matches!(
        store
            .auth()
            .enroll_agent("t2", new_agent("blocked", "bhv_blocked"))
            .await,
        Err(StoreError::Refused(_))
    ));
    // Refusal rolled back the token's use: it works once the tenant is back.
    p.update_tenant(
        a,
        TenantPatch {
            is_active: Some(true),
            ..TenantPatch::default()
        },
    )
    .await
    .unwrap();
    store
        .auth()
        .enroll_agent("t2", new_agent("back", "bhv_back"))
        .await
        .unwrap();
}

async fn audit_events_form_a_verifiable_chain_per_tenant(store: &dyn Store) {
    use behavry_store::audit::{AuditQuery, GENESIS, verify_chain};
    let p = store.platform(&grant());
    let (a, b) = two_tenants(p).await;
    let (x, y) = (AgentId::new(), AgentId::new());
    let now = Utc::now();
    let mut odd = event(
        x,
        now,
        "TOOL_CALL",
        json!([{"pattern": "jwt", "offset": 3}]),
        1,
        2,
    );
    // Values that must survive storage exactly for the hash to verify.
    odd.latency_ms = Some(0.1 + 0.2);
    odd.behavioral_score = Some(1e-7);
    odd.extra = json!({"z": [1, 2.5, "three"], "a": {"nested": true}, "n": 12345678901234i64});
    odd.policy_reason = Some("quotes \" and unicode ✓".into());
    let first = store
        .tenant(a)
        .append_audit_events(&[
            odd,
            event(y, now, "TOOL_CALL", json!([]), 3, 4),
            event(x, now, "TOOLS_LIST", json!([]), 5, 6),
        ])
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(first[0].previous_hash, GENESIS);
    assert_eq!(first[1].previous_hash, first[0].event_hash);
    let second = store
        .tenant(a)
        .append_audit_events(&[
            event(y, now, "TOOL_CALL", json!([]), 7, 8),
            event(x, now, "TOOL_CALL", json!([]), 9, 10),
        ])
        .await
        .unwrap();
    assert_eq!(second[0].seq, 4);
    assert_eq!(second[0].previous_hash, first[2].event_hash);
    let other = store
        .tenant(b)
        .append_audit_events(&[event(y, now, "TOOL_CALL", json!([]), 1, 1)])
        .await
        .unwrap();
    assert_eq!(
        (other[0].seq, other[0].previous_hash.as_str()),
        (1, GENESIS)
    );
    assert!(
        store
            .tenant(a)
            .append_audit_events(&[])
            .await
            .unwrap()
            .is_empty()
    );

    let all = store
        .tenant(a)
        .list_audit_events(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    // What was returned at append time is exactly what is read back.
    assert_eq!(all[..3], first[..]);
    assert_eq!(all[3..], second[..]);
    let report = verify_chain(&all);
    assert_eq!((report.events_checked, report.first_broken), (5, None));

    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        };
        f(&mut q);
        q
    };
    let ta = store.tenant(a);
    assert_eq!(
        ta.list_audit_events(&q(|q| q.tool_name = Some("read_file".into())))
            .await
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        ta.list_audit_events(&q(|q| q.tool_name = Some("nope".into())))
            .await
            .unwrap()
            .len(),
        0
    );
    let page = ta
        .list_audit_events(&q(|q| {
            q.after_seq = Some(2);
            q.limit = 2;
        }))
        .await
        .unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    let mut by_agent = AuditQuery {
        limit: 100,
        agent_id: Some(x),
        ..AuditQuery::default()
    };
    assert_eq!(ta.list_audit_events(&by_agent).await.unwrap().len(), 3);
    by_agent.until = Some(now - Duration::hours(1));
    assert_eq!(ta.list_audit_events(&by_agent).await.unwrap().len(), 0);
    // B's handle sees only B's chain.
    assert_eq!(
        store
            .tenant(b)
            .list_audit_events(&q(|_| {}))
            .await
            .unwrap()
            .len(),
        1
    );
    // One event by id, and only by its own tenant.
    assert_eq!(ta.get_audit_event(first[0].id).await.unwrap(), first[0]);
    assert!(matches!(
        store.tenant(b).get_audit_event(first[0].id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        ta.get_audit_event(uuid::Uuid::now_v7()).await,
        Err(StoreError::NotFound)
    ));
}

async fn payload_data_keys_are_set_once_per_tenant(store: &dyn Store) {
    let p = store.platform(&grant());
    let (a, b) = two_tenants(p).await;
    let (ta, tb) = (store.tenant(a), store.tenant(b));
    assert_eq!(ta.payload_data_key().await.unwrap(), None);
    assert_eq!(ta.init_payload_data_key("key-a").await.unwrap(), "key-a");
    // A second replica racing to make one gets the first one back.
    assert_eq!(ta.init_payload_data_key("key-a2").await.unwrap(), "key-a");
    assert_eq!(
        ta.payload_data_key().await.unwrap().as_deref(),
        Some("key-a")
    );
    assert_eq!(tb.payload_data_key().await.unwrap(), None);
    assert_eq!(tb.init_payload_data_key("key-b").await.unwrap(), "key-b");
    assert!(matches!(
        store
            .tenant(TenantId::new())
            .init_payload_data_key("k")
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn mcp_servers_and_sessions(store: &dyn Store) {
    use behavry_store::{McpServerPatch, NewMcpServer, NewSession};
    let p = store.platform(&grant());
    let (a, b) = two_tenants(p).await;
    let ta = store.tenant(a);
    let new = |name: &str| NewMcpServer {
        name: name.into(),
        transport: "stdio".into(),
        command: Some("node".into()),
        args: vec!["server.js".into(), "stdio".into()],
        url: None,
        secrets: Some("ciphertext".into()),
        tags: vec!["fs".into()],
        timeout_ms: 5000,
        enabled: true,
        catalog_entry: None,
        operator_defined: true,
    };
    let fs = ta.create_mcp_server(new("filesystem")).await.unwrap();
    assert_eq!(fs.args, vec!["server.js", "stdio"]);
    assert!(fs.operator_defined);
    assert_eq!(fs.catalog_entry, None);
    let from_catalog = ta
        .create_mcp_server(NewMcpServer {
            command: None,
            args: Vec::new(),
            catalog_entry: Some("everything".into()),
            operator_defined: false,
            ..new("from-catalog")
        })
        .await
        .unwrap();
    let read = ta.get_mcp_server(from_catalog.id).await.unwrap();
    assert_eq!(read.catalog_entry.as_deref(), Some("everything"));
    assert!(!read.operator_defined);
    ta.delete_mcp_server(from_catalog.id).await.unwrap();
    assert_eq!(fs.secrets.as_deref(), Some("ciphertext"));
    assert!(matches!(
        ta.create_mcp_server(new("filesystem")).await,
        Err(StoreError::Conflict(_))
    ));
    // The same name in another tenant is fine.
    store
        .tenant(b)
        .create_mcp_server(new("filesystem"))
        .await
        .unwrap();
    ta.create_mcp_server(new("another")).await.unwrap();
    let names: Vec<_> = ta
        .list_mcp_servers()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["another", "filesystem"]);

    let patched = ta
        .update_mcp_server(
            fs.id,
            McpServerPatch {
                url: Some(Some("http://127.0.0.1:1/mcp".into())),
                secrets: Some(None),
                enabled: Some(false),
                ..McpServerPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.url.as_deref(), Some("http://127.0.0.1:1/mcp"));
    assert_eq!(patched.secrets, None);
    assert!(!patched.enabled);
    assert_eq!(
        patched.command.as_deref(),
        Some("node"),
        "untouched fields stay"
    );
    // Another tenant cannot reach it.
    assert!(matches!(
        store.tenant(b).get_mcp_server(fs.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.tenant(b).delete_mcp_server(fs.id).await,
        Err(StoreError::NotFound)
    ));

    let agent = AgentId::new();
    let session = ta
        .create_session(NewSession {
            id: "sess-1".into(),
            agent_id: agent,
            server_id: fs.id.to_string(),
            client_name: Some("client".into()),
            client_version: Some("1.0".into()),
            protocol_version: "2025-06-18".into(),
        })
        .await
        .unwrap();
    assert_eq!(session.call_count, 0);
    assert!(session.ended_at.is_none());
    ta.touch_session("sess-1", 3).await.unwrap();
    assert_eq!(ta.get_session("sess-1").await.unwrap().call_count, 3);
    assert!(!session.tainted);
    assert_eq!(session.inbound_findings, serde_json::json!([]));
    let protection = serde_json::json!({"payload_storage": "full", "dlp_action": "redact"});
    ta.set_data_protection_policy(&protection).await.unwrap();
    assert_eq!(
        ta.tenant().await.unwrap().config.data_protection_policy,
        Some(protection.clone())
    );
    assert_ne!(
        store
            .tenant(b)
            .tenant()
            .await
            .unwrap()
            .config
            .data_protection_policy,
        Some(protection)
    );
    let seen = serde_json::json!([{"pattern_class": "imperative_override", "severity": "high"}]);
    let taint = behavry_store::SessionFlags {
        tainted: true,
        ..Default::default()
    };
    ta.flag_session("sess-1", taint, &seen).await.unwrap();
    // A later call without a flag never lowers one.
    let private = behavry_store::SessionFlags {
        read_private: true,
        ..Default::default()
    };
    ta.flag_session("sess-1", private, &seen).await.unwrap();
    let flagged = ta.get_session("sess-1").await.unwrap();
    assert!(flagged.tainted && flagged.read_private && !flagged.read_untrusted);
    assert_eq!(flagged.inbound_findings, seen);
    assert!(matches!(
        store.tenant(b).flag_session("sess-1", taint, &seen).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.tenant(b).get_session("sess-1").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        ta.list_sessions(Some(agent), true, 10).await.unwrap().len(),
        1
    );
    assert_eq!(ta.end_agent_sessions(agent).await.unwrap(), 1);
    assert!(ta.get_session("sess-1").await.unwrap().ended_at.is_some());
    assert!(
        ta.list_sessions(Some(agent), true, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ta.list_sessions(None, false, 10).await.unwrap().len(), 1);

    // Tool pins: first use pins, a change waits, approval moves the pin,
    // a rejected change is not proposed again.
    let v1 = serde_json::json!({"name": "read", "description": "one"});
    let v2 = serde_json::json!({"name": "read", "description": "two"});
    ta.pin_tool(fs.id, "read", "h1", &v1).await.unwrap();
    ta.pin_tool(fs.id, "read", "h2", &v2).await.unwrap();
    let pins = ta.tool_pins(fs.id).await.unwrap();
    assert_eq!(pins.len(), 1);
    assert_eq!(
        (pins[0].hash.as_str(), pins[0].approved_by.as_str()),
        ("h1", "first_use")
    );
    assert!(
        ta.propose_tool_change(fs.id, "read", "h2", &v2)
            .await
            .unwrap()
    );
    assert!(
        !ta.propose_tool_change(fs.id, "read", "h2", &v2)
            .await
            .unwrap(),
        "already pending"
    );
    assert!(
        !ta.propose_tool_change(fs.id, "read", "h1", &v1)
            .await
            .unwrap(),
        "that is the pin"
    );
    assert!(
        store
            .tenant(b)
            .pending_tool_changes()
            .await
            .unwrap()
            .is_empty()
    );
    let pending = ta.pending_tool_changes().await.unwrap();
    assert_eq!(pending[0].pending_definition, Some(v2.clone()));
    let approved = ta
        .decide_tool_change(fs.id, "read", true, "admin-1")
        .await
        .unwrap();
    assert_eq!(
        (approved.hash.as_str(), approved.approved_by.as_str()),
        ("h2", "admin-1")
    );
    assert_eq!(approved.definition, v2);
    assert!(matches!(
        ta.decide_tool_change(fs.id, "read", true, "admin-1").await,
        Err(StoreError::NotFound)
    ));
    assert!(
        ta.propose_tool_change(fs.id, "read", "h3", &v1)
            .await
            .unwrap()
    );
    let rejected = ta
        .decide_tool_change(fs.id, "read", false, "admin-1")
        .await
        .unwrap();
    assert_eq!(
        (rejected.hash.as_str(), rejected.rejected_hash.as_deref()),
        ("h2", Some("h3"))
    );
    assert!(
        !ta.propose_tool_change(fs.id, "read", "h3", &v1)
            .await
            .unwrap(),
        "rejected"
    );
    assert!(ta.pending_tool_changes().await.unwrap().is_empty());

    ta.delete_mcp_server(fs.id).await.unwrap();
    assert!(matches!(
        ta.get_mcp_server(fs.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        ta.tool_pins(fs.id).await.unwrap().is_empty(),
        "pins go with their server"
    );
}

async fn policies_keep_versions_and_raise_the_revision(store: &dyn Store) {
    use behavry_store::{NewPolicy, PolicyChange, PolicyMode, PolicyStatus};
    let p = store.platform(&grant());
    let (a, b) = two_tenants(p).await;
    let ta = store.tenant(a);
    let settings = ta.policy_settings().await.unwrap();
    assert!(settings.base_pack_enabled, "the base pack is on by default");
    assert_eq!(settings.revision, 0);
    assert!(p.policy_revisions().await.unwrap().is_empty());

    let new = |name: &str, package: &str, status| NewPolicy {
        name: name.into(),
        description: "guards production".into(),
        content: format!("package {package}\n"),
        package: package.into(),
        status,
        mode: PolicyMode::Enforce,
        created_by: None,
    };
    let guard = ta
        .create_policy(new("guard", "behavry.policies.guard", PolicyStatus::Active))
        .await
        .unwrap();
    assert_eq!(guard.version, 1);
    assert_eq!(guard.status, PolicyStatus::Active);
    // Names are unique per tenant; so are the packages of active policies.
    assert!(matches!(
        ta.create_policy(new("guard", "behavry.policies.other", PolicyStatus::Draft))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        ta.create_policy(new(
            "guard2",
            "behavry.policies.guard",
            PolicyStatus::Active
        ))
        .await,
        Err(StoreError::Conflict(_))
    ));
    // A draft may share the package of an active policy (a next version).
    let draft = ta
        .create_policy(new(
            "guard-next",
            "behavry.policies.guard",
            PolicyStatus::Draft,
        ))
        .await
        .unwrap();
    assert!(matches!(
        ta.update_policy(
            draft.id,
            PolicyChange {
                status: Some(PolicyStatus::Active),
                ..PolicyChange::default()
            }
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    // Another tenant sees none of it and may reuse the names.
    let tb = store.tenant(b);
    assert!(tb.list_policies().await.unwrap().is_empty());
    assert!(matches!(
        tb.get_policy(guard.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        tb.delete_policy(guard.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(tb.list_policy_versions(guard.id).await.unwrap().is_empty());
    tb.create_policy(new("guard", "behavry.policies.guard", PolicyStatus::Active))
        .await
        .unwrap();

    let changed = ta
        .update_policy(
            guard.id,
            PolicyChange {
                content: Some((
                    "package behavry.policies.guard\n# v2\n".into(),
                    "behavry.policies.guard".into(),
                )),
                mode: Some(PolicyMode::Monitor),
                expected_version: Some(1),
                ..PolicyChange::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.version, 2);
    assert_eq!(changed.mode, PolicyMode::Monitor);
    assert_eq!(changed.name, "guard", "unchanged fields stay");
    assert!(matches!(
        ta.update_policy(
            guard.id,
            PolicyChange {
                description: Some("stale".into()),
                expected_version: Some(1),
                ..PolicyChange::default()
            }
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    let listed = ta.list_policies().await.unwrap();
    assert_eq!(
        listed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["guard", "guard-next"]
    );

    let before = ta.policy_settings().await.unwrap().revision;
    // Three changes were made; the refused ones left no trace.
    assert_eq!(before, 3);
    let off = ta.set_base_pack(false).await.unwrap();
    assert!(!off.base_pack_enabled);
    assert_eq!(off.revision, before + 1);

    let deleted = ta.delete_policy(guard.id).await.unwrap();
    assert_eq!(deleted.version, 2);
    assert!(matches!(
        ta.get_policy(guard.id).await,
        Err(StoreError::NotFound)
    ));
    // History outlives the policy.
    let versions = ta.list_policy_versions(guard.id).await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(versions[0].content, "package behavry.policies.guard\n");
    assert_eq!(versions[1].mode, PolicyMode::Monitor);

    let revisions = p.policy_revisions().await.unwrap();
    let of = |t| revisions.iter().find(|(id, _)| *id == t).map(|(_, r)| *r);
    assert_eq!(of(a), Some(before + 2));
    assert_eq!(of(b), Some(1));
}

async fn alerts_fold_repeats_and_move_forward(store: &dyn Store) {
    use behavry_core::{AdminUserId, AlertSeverity, AlertStatus, AlertType};
    use behavry_store::{AlertFilter, NewAlert};
    let p = store.platform(&grant());
    let (a, b) = two_tenants(p).await;
    let (ta, tb) = (store.tenant(a), store.tenant(b));
    let (x, y) = (AgentId::new(), AgentId::new());
    let t0 = Utc::now();
    let alert = |agent: Option<AgentId>, kind, severity, at: chrono::DateTime<Utc>| NewAlert {
        agent_id: agent,
        alert_type: kind,
        severity,
        title: format!("{kind:?} at {at}"),
        details: json!({"at": at.to_rfc3339()}),
        at,
        fold_since: at - Duration::minutes(15),
    };
    let dlp = AlertType::DlpViolation;
    let (first, new) = ta
        .raise_alert(&alert(Some(x), dlp, AlertSeverity::Warning, t0))
        .await
        .unwrap();
    assert!(new);
    assert_eq!(
        (first.status, first.occurrences, first.agent_id),
        (AlertStatus::Open, 1, Some(x))
    );
    // Repeats fold in; the worse severity stays.
    let t1 = t0 + Duration::minutes(1);
    let (again, new) = ta
        .raise_alert(&alert(Some(x), dlp, AlertSeverity::Critical, t1))
        .await
        .unwrap();
    assert!(!new);
    assert_eq!(again.id, first.id);
    assert_eq!(again.occurrences, 2);
    assert_eq!(again.severity, AlertSeverity::Critical);
    assert_eq!(again.details, json!({"at": t1.to_rfc3339()}));
    let (third, _) = ta
        .raise_alert(&alert(Some(x), dlp, AlertSeverity::Info, t1))
        .await
        .unwrap();
    assert_eq!(
        (third.occurrences, third.severity),
        (3, AlertSeverity::Critical)
    );
    assert_eq!(third.first_seen_at, first.first_seen_at);
    // Another agent, no agent, another type, or after the window: new ones.
    let (other_agent, new) = ta
        .raise_alert(&alert(Some(y), dlp, AlertSeverity::Warning, t1))
        .await
        .unwrap();
    assert!(new && other_agent.id != first.id);
    let (no_agent, new) = ta
        .raise_alert(&alert(None, dlp, AlertSeverity::Warning, t1))
        .await
        .unwrap();
    assert!(new);
    let (again_none, new) = ta
        .raise_alert(&alert(None, dlp, AlertSeverity::Warning, t1))
        .await
        .unwrap();
    assert!(!new && again_none.id == no_agent.id);
    let (_, new) = ta
        .raise_alert(&alert(
            Some(x),
            AlertType::AgentFrozen,
            AlertSeverity::Critical,
            t1,
        ))
        .await
        .unwrap();
    assert!(new);
    let late = t1 + Duration::minutes(30);
    let (_, new) = ta
        .raise_alert(&alert(Some(y), dlp, AlertSeverity::Info, late))
        .await
        .unwrap();
    assert!(new, "a repeat after the window opens a new alert");

    let list = |f: AlertFilter| {
        let ta = &ta;
        async move {
            ta.list_alerts(&AlertFilter { limit: 100, ..f })
                .await
                .unwrap()
        }
    };
    let (all, total) = list(AlertFilter::default()).await;
    assert_eq!((all.len(), total), (5, 5));
    assert!(
        all.windows(2)
            .all(|w| w[0].last_seen_at >= w[1].last_seen_at),
        "most recently seen first"
    );
    let (critical, _) = list(AlertFilter {
        min_severity: Some(AlertSeverity::Critical),
        ..AlertFilter::default()
    })
    .await;
    assert_eq!(critical.len(), 2);
    let (warned, _) = list(AlertFilter {
        min_severity: Some(AlertSeverity::Warning),
        ..AlertFilter::default()
    })
    .await;
    assert_eq!(warned.len(), 4);
    let (of_x, total) = list(AlertFilter {
        agent_id: Some(x),
        alert_type: Some(dlp),
        ..AlertFilter::default()
    })
    .await;
    assert_eq!((of_x.len(), total), (1, 1));
    let (page, total) = ta
        .list_alerts(&AlertFilter {
            limit: 2,
            offset: 4,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert_eq!((page.len(), total), (1, 5));

    // The other tenant sees none of them.
    assert_eq!(
        tb.list_alerts(&AlertFilter {
            limit: 10,
            ..AlertFilter::default()
        })
        .await
        .unwrap()
        .1,
        0
    );
    assert!(matches!(
        tb.get_alert(first.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        tb.set_alert_status(
            first.id,
            AlertStatus::Open,
            AlertStatus::Resolved,
            AdminUserId::new(),
            t1
        )
        .await
        .unwrap()
        .is_none()
    );

    // Forward moves record who and when; a stale `from` changes nothing.
    let admin = AdminUserId::new();
    let acked = ta
        .set_alert_status(
            first.id,
            AlertStatus::Open,
            AlertStatus::Acknowledged,
            admin,
            t1,
        )
        .await
        .unwrap()
        .expect("acknowledged");
    assert_eq!(acked.status, AlertStatus::Acknowledged);
    assert_eq!(acked.acknowledged_by, Some(admin.0));
    assert!(acked.acknowledged_at.is_some());
    assert!(
        ta.set_alert_status(
            first.id,
            AlertStatus::Open,
            AlertStatus::Resolved,
            admin,
            t1
        )
        .await
        .unwrap()
        .is_none()
    );
    // An acknowledged alert still folds repeats in.
    let (folded, new) = ta
        .raise_alert(&alert(Some(x), dlp, AlertSeverity::Warning, t1))
        .await
        .unwrap();
    assert!(!new && folded.id == first.id && folded.status == AlertStatus::Acknowledged);
    let resolved = ta
        .set_alert_status(
            first.id,
            AlertStatus::Acknowledged,
            AlertStatus::Resolved,
            admin,
            t1,
        )
        .await
        .unwrap()
        .expect("resolved");
    assert_eq!(resolved.resolved_by, Some(admin.0));
    assert_eq!(ta.get_alert(first.id).await.unwrap(), resolved);
    // A resolved alert is closed: a repeat opens a new one.
    let (reopened, new) = ta
        .raise_alert(&alert(Some(x), dlp, AlertSeverity::Warning, t1))
        .await
        .unwrap();
    assert!(new && reopened.id != first.id);
}

async fn escalations_are_decided_and_used_once(store: &dyn Store) {
    use behavry_core::{AdminUserId, EscalationStatus};
    use behavry_store::{EscalationDecision, EscalationException, EscalationFilter};
    let p = store.platform(&grant());
    let (a, b) = two_tenants(p).await;
    let (ta, tb) = (store.tenant(a), store.tenant(b));
    let (x, y) = (AgentId::new(), AgentId::new());
    let now = Utc::now();
    let held = |agent: AgentId, key: &str, expires: chrono::DateTime<Utc>| NewEscalation {
        id: Uuid::now_v7(),
        agent_id: Some(agent),
        status: "pending".into(),
        summary: json!({"tool": "write_file"}),
        created_at: Utc::now(),
        expires_at: expires,
        audit_event_id: Some(Uuid::now_v7()),
        call_key: Some(key.into()),
    };
    let first = held(x, "call-1", now + Duration::hours(1));
    ta.record_escalation(first.clone()).await.unwrap();
    let got = ta.get_escalation(first.id).await.unwrap();
    assert_eq!(got.status, EscalationStatus::Pending);
    assert_eq!(got.audit_event_id, first.audit_event_id);
    assert_eq!(got.summary, json!({"tool": "write_file"}));
    assert_eq!(
        ta.open_escalation_for_call("call-1")
            .await
            .unwrap()
            .map(|e| e.id),
        Some(first.id)
    );
    assert!(
        ta.open_escalation_for_call("call-2")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        tb.open_escalation_for_call("call-1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        tb.get_escalation(first.id).await,
        Err(StoreError::NotFound)
    ));
    // A pending escalation cannot be used yet.
    assert!(!ta.consume_escalation(first.id, now).await.unwrap());

    let admin = AdminUserId::new();
    let approve = EscalationDecision {
        status: EscalationStatus::Approved,
        by: Some(admin),
        reason: Some("expected".into()),
        at: now,
        exception_id: None,
    };
    assert!(
        tb.decide_escalation(first.id, &approve)
            .await
            .unwrap()
            .is_none()
    );
    let decided = ta
        .decide_escalation(first.id, &approve)
        .await
        .unwrap()
        .expect("decided");
    assert_eq!(decided.status, EscalationStatus::Approved);
    assert_eq!(decided.decided_by, Some(admin.0));
    assert_eq!(decided.decision_reason.as_deref(), Some("expected"));
    // Decided once: a second decision (say, from another approver) is refused.
    let deny = EscalationDecision {
        status: EscalationStatus::Denied,
        ..approve.clone()
    };
    assert!(
        ta.decide_escalation(first.id, &deny)
            .await
            .unwrap()
            .is_none()
    );
    // Used once.
    assert!(ta.consume_escalation(first.id, now).await.unwrap());
    assert!(!ta.consume_escalation(first.id, now).await.unwrap());
    assert!(
        ta.open_escalation_for_call("call-1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        ta.get_escalation(first.id)
            .await
            .unwrap()
            .consumed_at
            .is_some()
    );

    // Expiry is found across tenants.
    let stale = held(y, "call-3", now - Duration::minutes(1));
    ta.record_escalation(stale.clone()).await.unwrap();
    let other = held(y, "call-4", now - Duration::minutes(1));
    tb.record_escalation(other.clone()).await.unwrap();
    let mut expired = p.expired_escalations(now).await.unwrap();
    expired.sort();
    let mut want = vec![(a, stale.id), (b, other.id)];
    want.sort();
    assert_eq!(expired, want);

    // Listing, newest first, with filters.
    let (all, total) = ta
        .list_escalations(&EscalationFilter {
            limit: 10,
            ..EscalationFilter::default()
        })
        .await
        .unwrap();
    assert_eq!((all.len(), total), (2, 2));
    assert_eq!(all[0].id, stale.id);
    let (pending, total) = ta
        .list_escalations(&EscalationFilter {
            status: Some(EscalationStatus::Pending),
            agent_id: Some(y),
            limit: 10,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!((pending.len(), total), (1, 1));

    // Exceptions: agent, server and tool must match; a resource narrows.
    let server = Uuid::now_v7();
    let broad = EscalationException {
        id: Uuid::now_v7(),
        agent_id: x,
        server_id: server,
        tool_name: "write_file".into(),
        resource: None,
        expires_at: Some(now + Duration::hours(1)),
        escalation_id: Some(first.id),
        created_by: Some(admin.0),
        created_at: now,
    };
    let narrow = EscalationException {
        id: Uuid::now_v7(),
        agent_id: y,
        resource: Some("/srv/notes.txt".into()),
        expires_at: None,
        ..broad.clone()
    };
    let expired_one = EscalationException {
        id: Uuid::now_v7(),
        tool_name: "delete_file".into(),
        expires_at: Some(now - Duration::minutes(1)),
        ..broad.clone()
    };
    for e in [&broad, &narrow, &expired_one] {
        ta.add_escalation_exception(e).await.unwrap();
    }
    let m = |agent, server, tool: &'static str, resource: Option<&'static str>| {
        let ta = &ta;
        async move {
            ta.matching_exception(agent, server, tool, resource, now)
                .await
                .unwrap()
                .map(|e| e.id)
        }
    };
    assert_eq!(
        m(x, server, "write_file", Some("/etc/x")).await,
        Some(broad.id)
    );
    assert_eq!(m(x, server, "write_file", None).await, Some(broad.id));
    assert_eq!(m(x, Uuid::now_v7(), "write_file", None).await, None);
    assert_eq!(m(x, server, "read_file", None).await, None);
    assert_eq!(m(x, server, "delete_file", None).await, None, "expired");
    assert_eq!(
        m(y, server, "write_file", Some("/srv/notes.txt")).await,
        Some(narrow.id)
    );
    assert_eq!(
        m(y, server, "write_file", Some("/srv/other.txt")).await,
        None
    );
    assert_eq!(m(y, server, "write_file", None).await, None);
    assert!(
        tb.matching_exception(x, server, "write_file", None, now)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(ta.list_escalation_exceptions().await.unwrap().len(), 3);
    assert!(tb.list_escalation_exceptions().await.unwrap().is_empty());
    assert!(matches!(
        tb.delete_escalation_exception(broad.id).await,
        Err(StoreError::NotFound)
    ));
    ta.delete_escalation_exception(broad.id).await.unwrap();
    assert_eq!(m(x, server, "write_file", None).await, None);
}

async fn webhook_deliveries_are_logged_per_tenant(store: &dyn Store) {
    use behavry_store::WebhookDelivery;
    let p = store.platform(&grant());
    let (a, b) = two_tenants(p).await;
    let (ta, tb) = (store.tenant(a), store.tenant(b));
    // Both backends keep microseconds.
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
    let mut d = WebhookDelivery {
        id: Uuid::now_v7(),
        alert_id: Some(Uuid::now_v7()),
        url: "https://siem.example/hook".into(),
        status: "pending".into(),
        attempts: 1,
        response_code: Some(500),
        error: Some("HTTP 500".into()),
        created_at: now,
        updated_at: now,
    };
    ta.record_webhook_delivery(&d).await.unwrap();
    d.status = "delivered".into();
    d.attempts = 2;
    d.response_code = Some(204);
    d.error = None;
    d.updated_at = now + Duration::seconds(1);
    ta.record_webhook_delivery(&d).await.unwrap();
    let later = WebhookDelivery {
        id: Uuid::now_v7(),
        created_at: now + Duration::seconds(5),
        ..d.clone()
    };
    ta.record_webhook_delivery(&later).await.unwrap();
    let log = ta.list_webhook_deliveries(10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].id, later.id, "newest first");
    assert_eq!(log[1], d, "updated in place");
    assert_eq!(ta.list_webhook_deliveries(1).await.unwrap().len(), 1);
    assert!(tb.list_webhook_deliveries(10).await.unwrap().is_empty());
}

async fn activity_rolls_up_per_hour_and_tool_and_risk_is_stored(store: &dyn Store) {
    use behavry_core::risk::{BaselineStatus, RiskFactors};
    use behavry_store::RiskUpdate;
    use chrono::TimeZone;
    let p = store.platform(&grant());
    let (a, b) = two_tenants(p).await;
    let (ta, tb) = (store.tenant(a), store.tenant(b));
    let agent = ta
        .create_agent(new_agent("roller", "bhv_roller"))
        .await
        .unwrap();
    let hour = Utc.with_ymd_and_hms(2026, 11, 20, 14, 0, 0).unwrap();
    let event = |at: chrono::DateTime<Utc>, action: &str, tool: &str, deny: bool| NewAuditEvent {
        id: Uuid::now_v7(),
        timestamp: at,
        agent_id: Some(agent.id),
        action: action.into(),
        tool_name: Some(tool.into()),
        policy_result: Some(if deny { "deny" } else { "allow" }.into()),
        dlp_findings: json!([]),
        request_size: if action == "TOOL_RESULT" { 0 } else { 100 },
        response_size: if action == "TOOL_RESULT" { 1000 } else { 0 },
        extra: json!({}),
        ..NewAuditEvent::default()
    };
    let mut flagged = event(hour + Duration::minutes(2), "TOOL_RESULT", "echo", false);
    flagged.extra = json!({"inbound": {"action": "flag", "findings": []}});
    let events = vec![
        event(hour + Duration::minutes(1), "TOOL_CALL", "echo", false),
        flagged,
        event(hour + Duration::minutes(3), "TOOL_CALL", "echo", true),
        event(hour + Duration::minutes(59), "TOOL_CALL", "add", false),
        event(hour + Duration::minutes(61), "TOOL_CALL", "echo", false),
        // Not a call: left out.
        event(hour + Duration::minutes(5), "AGENT_FROZEN", "echo", true),
    ];
    ta.append_audit_events(&events).await.unwrap();
    // Another tenant's trail never reaches this tenant's roll-up.
    tb.append_audit_events(&[NewAuditEvent {
        agent_id: Some(AgentId(Uuid::now_v7())),
        ..event(hour, "TOOL_CALL", "echo", false)
    }])
    .await
    .unwrap();

    assert_eq!(ta.latest_activity_hour().await.unwrap(), None);
    let keep_from = hour - Duration::days(1);
    for _ in 0..2 {
        // Twice: the same rows.
        ta.roll_up_agent_activity(hour - Duration::hours(1), keep_from)
            .await
            .unwrap();
    }
    let rows = ta.agent_activity(keep_from, None).await.unwrap();
    let summary: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.hour,
                r.tool_name.as_str(),
                [r.calls, r.denies, r.bytes_in, r.bytes_out, r.flagged],
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (hour, "add", [1, 0, 0, 100, 0]),
            (hour, "echo", [2, 1, 1000, 200, 1]),
            (hour + Duration::hours(1), "echo", [1, 0, 0, 100, 0]),
        ]
    );
    assert!(rows.iter().all(|r| r.agent_id == agent.id));
    assert_eq!(
        ta.latest_activity_hour().await.unwrap(),
        Some(hour + Duration::hours(1))
    );
    tb.roll_up_agent_activity(hour - Duration::hours(1), keep_from)
        .await
        .unwrap();
    assert_eq!(tb.agent_activity(keep_from, None).await.unwrap().len(), 1);
    assert_eq!(ta.agent_activity(keep_from, None).await.unwrap().len(), 3);
    // One agent's rows.
    let only = ta.agent_activity(keep_from, Some(agent.id)).await.unwrap();
    assert_eq!(only.len(), 3);
    let nobody = AgentId(Uuid::now_v7());
    assert!(
        ta.agent_activity(keep_from, Some(nobody))
            .await
            .unwrap()
            .is_empty()
    );
    // Hours before `keep_from` are dropped.
    ta.roll_up_agent_activity(hour + Duration::hours(2), hour + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(ta.agent_activity(keep_from, None).await.unwrap().len(), 1);

    let update = RiskUpdate {
        score: 67,
        tier: RiskTier::High,
        baseline_status: BaselineStatus::Established,
        has_recent_drift: true,
        factors: RiskFactors {
            denial_rate: 0.5,
            anomaly: 1.0,
            ..RiskFactors::default()
        },
        reported: [("tool:add".to_string(), hour + Duration::hours(25))].into(),
        at: hour + Duration::minutes(20),
    };
    ta.set_agent_risk(agent.id, &update).await.unwrap();
    let stored = ta.get_agent(agent.id).await.unwrap();
    assert_eq!(
        (
            stored.risk_score,
            stored.risk_tier,
            stored.baseline_status.as_str()
        ),
        (67, RiskTier::High, "established")
    );
    assert!(stored.has_recent_drift);
    assert_eq!(stored.risk_factors, Some(update.factors));
    assert_eq!(stored.risk_reported, update.reported);
    assert_eq!(stored.risk_assessed_at, Some(update.at));
    assert!(matches!(
        tb.set_agent_risk(agent.id, &update).await,
        Err(StoreError::NotFound)
    ));
    assert!(ta.escalation_outcomes(hour).await.unwrap().is_empty());
}
