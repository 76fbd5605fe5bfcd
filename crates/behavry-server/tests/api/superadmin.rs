//! Tenant management for platform operators: /api/v1/superadmin/tenants.

use behavry_test_support::{Backend, TestApp};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::claims_of;
use crate::support::{
    PASSWORD, get, login, operator_token, patch, post, provision, request, send, signup, str_field,
    tenant_admin,
};

const TENANTS: &str = "/api/v1/superadmin/tenants";
const UNKNOWN_ID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

fn tenant_path(id: &str) -> String {
    format!("{TENANTS}/{id}")
}

fn parse_time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
        .with_timezone(&Utc)
}

/// Asserts that a timestamp lies within the last minute.
#[track_caller]
fn assert_recent(value: &Value) {
    let age = Utc::now() - parse_time(value);
    assert!(
        age.num_seconds() >= -5 && age.num_seconds() < 60,
        "not recent: {value}"
    );
}

async fn operator_manages_the_tenant_lifecycle(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let operator = operator_token(&app).await;

    // Provision with explicit settings.
    let reply = post(
        &app,
        TENANTS,
        Some(&operator),
        &json!({
            "name": "Globex",
            "slug": "globex-eu",
            "admin_username": " Hank@Globex.example ",
            "admin_password": PASSWORD,
            "admin_email": "Hank@Globex.example",
            "plan_tier": "growth",
            "max_agents": 25,
            "max_rpm_per_agent": 120,
            "audit_retention_days": 365,
            "deployment_mode": "hybrid",
        }),
    )
    .await
    .expect(201);
    let body = &reply.body;
    assert_eq!(body["admin_username"], "hank@globex.example");
    let tenant = body["tenant"].clone();
    let id = str_field(&tenant, "id").to_string();
    assert_eq!(tenant["name"], "Globex");
    assert_eq!(tenant["slug"], "globex-eu");
    assert_eq!(tenant["is_active"], true);
    assert_eq!(tenant["is_frozen"], false);
    assert_recent(&tenant["created_at"]);
    let config = &tenant["config"];
    assert_eq!(config["plan_tier"], "growth");
    assert_eq!(config["max_agents"], 25);
    assert_eq!(config["max_rpm_per_agent"], 120);
    assert_eq!(config["audit_retention_days"], 365);
    assert_eq!(config["deployment_mode"], "hybrid");
    assert_eq!(config["license_key"], Value::Null);
    assert_eq!(config["license_expires_at"], Value::Null);
    assert_eq!(config["suspended_at"], Value::Null);

    // The admin token works for the new tenant, and so does logging in.
    let admin_token = str_field(body, "admin_token").to_string();
    let claims = claims_of(&admin_token);
    assert_eq!(claims["tenant"], id.as_str());
    assert_eq!(claims["sa"], false);
    assert_eq!(claims["username"], "hank@globex.example");
    let usage = get(&app, "/api/v1/admin/usage", Some(&admin_token))
        .await
        .expect(200);
    assert_eq!(usage.body["tool_calls_30d"], 0);
    let logged_in = login(&app, "hank@globex.example", PASSWORD)
        .await
        .expect(200);
    assert_eq!(logged_in.body["admin"]["tenant_id"], id.as_str());
    // It is not a super-admin token.
    get(&app, TENANTS, Some(&admin_token))
        .await
        .expect_error(403, "forbidden");

    // Conflicts: same name in another case, or a taken admin username.
    let duplicate_name = post(
        &app,
        TENANTS,
        Some(&operator),
        &json!({ "name": "GLOBEX", "admin_username": "someone-new", "admin_password": PASSWORD }),
    )
    .await
    .expect_error(409, "conflict");
    assert!(
        duplicate_name.contains("organization name"),
        "{duplicate_name}"
    );
    post(
        &app,
        TENANTS,
        Some(&operator),
        &json!({ "name": "Globex Two", "admin_username": "HANK@globex.example", "admin_password": PASSWORD }),
    )
    .await
    .expect_error(409, "conflict");
    post(
        &app,
        TENANTS,
        Some(&operator),
        &json!({ "name": "Globex Three", "admin_username": "operator", "admin_password": PASSWORD }),
    )
    .await
    .expect_error(409, "conflict");

    // A second tenant with defaults; then one created by signup. Names are
    // chosen so that creation order differs from alphabetical order.
    let initech = provision(&app, &operator, "Initech", "bill").await;
    let initech_id = str_field(&initech["tenant"], "id").to_string();
    assert_eq!(initech["tenant"]["slug"], "initech");
    let defaults = &initech["tenant"]["config"];
    assert_eq!(defaults["plan_tier"], "trial");
    assert_eq!(defaults["max_agents"], -1);
    assert_eq!(defaults["max_rpm_per_agent"], 60);
    assert_eq!(defaults["audit_retention_days"], 90);
    assert_eq!(defaults["deployment_mode"], "saas");
    let signed_up = signup(&app, "Advent Labs", "owner@advent.example", PASSWORD)
        .await
        .expect(201);
    let advent_id = str_field(&signed_up.body, "tenant_id").to_string();

    // List: oldest first, with a total.
    let list = get(&app, TENANTS, Some(&operator)).await.expect(200);
    assert_eq!(list.body["total"], 3);
    let ids: Vec<&str> = list.body["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| str_field(t, "id"))
        .collect();
    assert_eq!(ids, [id.as_str(), initech_id.as_str(), advent_id.as_str()]);
    assert_eq!(list.body["tenants"][0], tenant);

    // Detail: the same view as at provisioning.
    let detail = get(&app, &tenant_path(&id), Some(&operator))
        .await
        .expect(200);
    assert_eq!(detail.body, tenant);
    // Upper-case UUIDs name the same tenant.
    let upper = get(&app, &tenant_path(&id.to_uppercase()), Some(&operator))
        .await
        .expect(200);
    assert_eq!(upper.body["id"], id.as_str());

    // PATCH each updatable field, one at a time; the change persists and
    // nothing else moves.
    let mut expected = tenant.clone();
    let updates = [
        json!({ "plan_tier": "enterprise" }),
        json!({ "max_agents": -1 }),
        json!({ "max_agents": 0 }),
        json!({ "max_rpm_per_agent": 1_000_000 }),
        json!({ "max_rpm_per_agent": 1 }),
        json!({ "audit_retention_days": 3650 }),
        json!({ "audit_retention_days": 30 }),
        json!({ "deployment_mode": "self-hosted" }),
        json!({ "deployment_mode": "byoc" }),
        json!({ "license_key": "LIC-0001-ABCD" }),
        json!({ "license_expires_at": "2030-01-31T12:00:00Z" }),
    ];
    for update in &updates {
        let reply = patch(&app, &tenant_path(&id), Some(&operator), update)
            .await
            .expect(200);
        for (field, value) in update.as_object().expect("object") {
            expected["config"][field] = value.clone();
        }
        let mut got = reply.body.clone();
        // Timestamps may be rendered differently; compare them as instants.
        if !got["config"]["license_expires_at"].is_null() {
            assert_eq!(
                parse_time(&got["config"]["license_expires_at"]),
                parse_time(&json!("2030-01-31T12:00:00Z"))
            );
            got["config"]["license_expires_at"] = expected["config"]["license_expires_at"].clone();
        }
        assert_eq!(got, expected, "after PATCH {update}");
        let mut stored = get(&app, &tenant_path(&id), Some(&operator))
            .await
            .expect(200)
            .body;
        if !stored["config"]["license_expires_at"].is_null() {
            stored["config"]["license_expires_at"] =
                expected["config"]["license_expires_at"].clone();
        }
        assert_eq!(stored, expected, "detail after PATCH {update}");
    }
    // Nullable fields can be cleared with an explicit null; an absent field
    // is left alone.
    let reply = patch(
        &app,
        &tenant_path(&id),
        Some(&operator),
        &json!({ "license_key": null }),
    )
    .await
    .expect(200);
    assert_eq!(reply.body["config"]["license_key"], Value::Null);
    assert!(!reply.body["config"]["license_expires_at"].is_null());
    let reply = patch(
        &app,
        &tenant_path(&id),
        Some(&operator),
        &json!({ "license_expires_at": null }),
    )
    .await
    .expect(200);
    assert_eq!(reply.body["config"]["license_expires_at"], Value::Null);
    let reply = patch(&app, &tenant_path(&id), Some(&operator), &json!({}))
        .await
        .expect(200);
    assert_eq!(reply.body["config"]["plan_tier"], "enterprise");
    assert_eq!(reply.body["config"]["deployment_mode"], "byoc");

    // Suspend.
    let reply = send(request(
        &app,
        Method::POST,
        &format!("{}/suspend", tenant_path(&id)),
        Some(&operator),
    ))
    .await
    .expect(200);
    assert_eq!(reply.body["id"], id.as_str());
    assert_eq!(reply.body["is_active"], false);
    assert_eq!(reply.body["is_frozen"], true);
    assert_recent(&reply.body["config"]["suspended_at"]);
    let suspended_at = parse_time(&reply.body["config"]["suspended_at"]);
    let detail = get(&app, &tenant_path(&id), Some(&operator))
        .await
        .expect(200);
    assert_eq!(detail.body["is_active"], false);
    assert_eq!(detail.body["is_frozen"], true);
    assert_eq!(
        parse_time(&detail.body["config"]["suspended_at"]),
        suspended_at
    );
    // Suspending again keeps the original time.
    let again = send(request(
        &app,
        Method::POST,
        &format!("{}/suspend", tenant_path(&id)),
        Some(&operator),
    ))
    .await
    .expect(200);
    assert_eq!(
        parse_time(&again.body["config"]["suspended_at"]),
        suspended_at
    );
    // Other tenants are untouched.
    let initech_now = get(&app, &tenant_path(&initech_id), Some(&operator))
        .await
        .expect(200);
    assert_eq!(initech_now.body["is_active"], true);

    // The suspended tenant's admin keeps read-only access: log in, read usage.
    let relogged = login(&app, "hank@globex.example", PASSWORD)
        .await
        .expect(200);
    let relogged_token = str_field(&relogged.body, "access_token");
    get(&app, "/api/v1/admin/usage", Some(relogged_token))
        .await
        .expect(200);
    get(&app, "/api/v1/admin/usage", Some(&admin_token))
        .await
        .expect(200);

    // Usage of the tenant, from the operator's side.
    let usage = get(
        &app,
        &format!("{}/usage", tenant_path(&id)),
        Some(&operator),
    )
    .await
    .expect(200);
    for field in [
        "tool_calls_30d",
        "agents_active_30d",
        "dlp_hits_30d",
        "escalations_30d",
        "data_volume_bytes_30d",
    ] {
        assert_eq!(usage.body[field], 0, "{field}: {}", usage.text);
    }
    assert_recent(&usage.body["period_end"]);

    // Lift the suspension.
    let reply = patch(
        &app,
        &tenant_path(&id),
        Some(&operator),
        &json!({ "is_active": true }),
    )
    .await
    .expect(200);
    assert_eq!(reply.body["is_active"], true);
    assert_eq!(reply.body["is_frozen"], false);
    assert_eq!(reply.body["config"]["suspended_at"], Value::Null);
    let detail = get(&app, &tenant_path(&id), Some(&operator))
        .await
        .expect(200);
    assert_eq!(detail.body["is_active"], true);
    assert_eq!(detail.body["config"]["suspended_at"], Value::Null);

    // PATCH is_active false suspends as well.
    let reply = patch(
        &app,
        &tenant_path(&id),
        Some(&operator),
        &json!({ "is_active": false }),
    )
    .await
    .expect(200);
    assert_eq!(reply.body["is_active"], false);
    assert_eq!(reply.body["is_frozen"], true);
    assert_recent(&reply.body["config"]["suspended_at"]);
    // The rest of the configuration survived all of the above.
    assert_eq!(reply.body["config"]["plan_tier"], "enterprise");
    assert_eq!(reply.body["config"]["max_agents"], 0);
    assert_eq!(reply.body["config"]["max_rpm_per_agent"], 1);
    assert_eq!(reply.body["config"]["audit_retention_days"], 30);
    assert_eq!(reply.body["name"], "Globex");
    assert_eq!(reply.body["slug"], "globex-eu");
}

/// Distinct organizations whose names share a slug, provisioned at the same
/// time, all succeed with distinct suffixes.
async fn concurrent_provisioning_with_one_slug(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let operator = operator_token(&app).await;
    // Distinct names that all derive the slug `race-co`.
    let names = [
        "Race Co",
        "Race, Co",
        "Race-Co",
        "Race. Co",
        "Race / Co",
        "Race: Co",
    ];
    let tasks: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(n, name)| {
            tokio::spawn(post(
                &app,
                TENANTS,
                Some(&operator),
                &json!({ "name": name, "admin_username": format!("race-admin-{n}"), "admin_password": PASSWORD }),
            ))
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("request task"));
    }
    let mut slugs: Vec<String> = Vec::new();
    for (name, reply) in names.iter().zip(replies) {
        // Concurrent provisioning of names sharing a slug must all succeed.
        let reply = reply.expect(201);
        assert_eq!(reply.body["tenant"]["name"], *name);
        slugs.push(str_field(&reply.body["tenant"], "slug").to_string());
    }
    slugs.sort();
    assert_eq!(
        slugs,
        [
            "race-co",
            "race-co-2",
            "race-co-3",
            "race-co-4",
            "race-co-5",
            "race-co-6"
        ]
    );
}

both_backends!(
    operator_manages_the_tenant_lifecycle,
    concurrent_provisioning_with_one_slug
);

#[tokio::test]
async fn superadmin_endpoints_need_an_operator() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (id, tenant_token) = tenant_admin(&app, "Tenant Co", "tenant-admin").await;
    let body = json!({ "name": "Sneaky", "admin_username": "sneaky", "admin_password": PASSWORD });
    let suspend = format!("{}/suspend", tenant_path(&id));
    let usage = format!("{}/usage", tenant_path(&id));
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, TENANTS.to_string(), None),
        (Method::POST, TENANTS.to_string(), Some(body.clone())),
        (Method::GET, tenant_path(&id), None),
        (
            Method::PATCH,
            tenant_path(&id),
            Some(json!({ "is_active": false })),
        ),
        (Method::POST, suspend, None),
        (Method::GET, usage, None),
    ];
    for (method, path, body) in &calls {
        let build = |token: Option<&str>| {
            let builder = request(&app, method.clone(), path, token);
            match body {
                Some(body) => builder.json(body),
                None => builder,
            }
        };
        let reply = send(build(None)).await;
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer"),
            "{method} {path}"
        );
        reply.expect_error(401, "unauthorized");
        let message = send(build(Some(&tenant_token)))
            .await
            .expect_error(403, "forbidden");
        assert!(
            message.contains("super-admin"),
            "{method} {path}: {message}"
        );
    }
    // Nothing changed.
    let operator = operator_token(&app).await;
    let list = get(&app, TENANTS, Some(&operator)).await.expect(200);
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["tenants"][0]["is_active"], true);
}

#[tokio::test]
async fn provisioning_validates_its_input() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let operator = operator_token(&app).await;
    let base = json!({ "name": "Valid Name", "admin_username": "valid-admin", "admin_password": PASSWORD });
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = base.clone();
        body.as_object_mut().expect("object").remove(field);
        body
    };
    let invalid = [
        with("slug", json!("Bad Slug!")),
        with("slug", json!("")),
        with("slug", json!("UPPER")),
        with("slug", json!("a".repeat(64))),
        with("name", json!("   ")),
        with("name", json!("???")),
        with("admin_username", json!("has space")),
        with("admin_username", json!("")),
        with("admin_email", json!("not-an-email")),
        with("admin_password", json!("short")),
        with("plan_tier", json!("platinum")),
        with("deployment_mode", json!("on-the-moon")),
        with("max_agents", json!(-2)),
        with("max_agents", json!(3_000_000_000_i64)),
        with("max_rpm_per_agent", json!(0)),
        with("max_rpm_per_agent", json!(1_000_001)),
        with("audit_retention_days", json!(0)),
        with("audit_retention_days", json!(3651)),
        with("is_super_admin", json!(true)),
        without("name"),
        without("admin_username"),
        without("admin_password"),
    ];
    for body in &invalid {
        let reply = post(&app, TENANTS, Some(&operator), body).await;
        assert_eq!(reply.status, 422, "{body} -> {}", reply.text);
        reply.expect_error(422, "validation_failed");
    }
    let list = get(&app, TENANTS, Some(&operator)).await.expect(200);
    assert_eq!(list.body["total"], 0, "{}", list.text);

    // The base body is valid.
    post(&app, TENANTS, Some(&operator), &base)
        .await
        .expect(201);
}

#[tokio::test]
async fn taken_slugs_get_a_suffix_within_the_slug_rules() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let operator = operator_token(&app).await;
    let create = |name: &str, admin: &str, slug: &str| {
        post(
            &app,
            TENANTS,
            Some(&operator),
            &json!({ "name": name, "slug": slug, "admin_username": admin, "admin_password": PASSWORD }),
        )
    };
    let first = create("Slug One", "slug-one", "shared").await.expect(201);
    assert_eq!(first.body["tenant"]["slug"], "shared");
    let second = create("Slug Two", "slug-two", "shared").await.expect(201);
    assert_eq!(second.body["tenant"]["slug"], "shared-2");

    // The longest slug the API accepts, taken twice.
    let longest = "x".repeat(63);
    create("Long One", "long-one", &longest).await.expect(201);
    let reply = create("Long Two", "long-two", &longest).await.expect(201);
    let slug = str_field(&reply.body["tenant"], "slug");
    assert_ne!(slug, longest);
    // A suffixed slug still obeys the 63-character limit.
    assert!(
        slug.len() <= 63,
        "slug `{slug}` is {} characters",
        slug.len()
    );
}

#[tokio::test]
async fn tenant_ids_are_checked() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let operator = operator_token(&app).await;
    for suffix in ["", "/usage"] {
        let message = get(
            &app,
            &format!("{TENANTS}/not-a-uuid{suffix}"),
            Some(&operator),
        )
        .await
        .expect_error(400, "bad_request");
        assert!(message.contains("not-a-uuid"), "{message}");
        let message = get(
            &app,
            &format!("{}{suffix}", tenant_path(UNKNOWN_ID)),
            Some(&operator),
        )
        .await
        .expect_error(404, "not_found");
        assert!(message.contains(UNKNOWN_ID), "{message}");
    }
    patch(
        &app,
        &tenant_path("not-a-uuid"),
        Some(&operator),
        &json!({ "plan_tier": "growth" }),
    )
    .await
    .expect_error(400, "bad_request");
    patch(
        &app,
        &tenant_path(UNKNOWN_ID),
        Some(&operator),
        &json!({ "plan_tier": "growth" }),
    )
    .await
    .expect_error(404, "not_found");
    let suspend = |id: &str| {
        send(request(
            &app,
            Method::POST,
            &format!("{}/suspend", tenant_path(id)),
            Some(&operator),
        ))
    };
    suspend("not-a-uuid").await.expect_error(400, "bad_request");
    suspend(UNKNOWN_ID).await.expect_error(404, "not_found");
    // Nothing was created by touching an unknown id.
    let list = get(&app, TENANTS, Some(&operator)).await.expect(200);
    assert_eq!(list.body["total"], 0);
}

#[tokio::test]
async fn updates_are_validated() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let operator = operator_token(&app).await;
    let created = provision(&app, &operator, "Patch Target", "patch-admin").await;
    let id = str_field(&created["tenant"], "id").to_string();
    let before = get(&app, &tenant_path(&id), Some(&operator))
        .await
        .expect(200)
        .body;

    let invalid = [
        json!({ "name": "Renamed" }),
        json!({ "slug": "renamed" }),
        json!({ "is_frozen": true }),
        json!({ "suspended_at": "2030-01-01T00:00:00Z" }),
        json!({ "max_agents": -2 }),
        json!({ "max_rpm_per_agent": 0 }),
        json!({ "max_rpm_per_agent": 1_000_001 }),
        json!({ "audit_retention_days": 0 }),
        json!({ "audit_retention_days": 3651 }),
        json!({ "license_key": "" }),
        json!({ "license_key": "k".repeat(1025) }),
        json!({ "license_expires_at": "next tuesday" }),
        json!({ "plan_tier": "platinum" }),
        json!({ "deployment_mode": "SAAS" }),
        json!({ "is_active": "yes" }),
        json!({ "max_agents": "ten" }),
        json!({ "plan_tier": "enterprise", "max_rpm_per_agent": 0 }),
    ];
    for body in &invalid {
        let reply = patch(&app, &tenant_path(&id), Some(&operator), body).await;
        assert_eq!(reply.status, 422, "{body} -> {}", reply.text);
        reply.expect_error(422, "validation_failed");
    }
    // A rejected PATCH changes nothing, not even the valid part of it.
    let after = get(&app, &tenant_path(&id), Some(&operator))
        .await
        .expect(200)
        .body;
    assert_eq!(after, before);

    // The accepted bounds.
    patch(
        &app,
        &tenant_path(&id),
        Some(&operator),
        &json!({ "license_key": "k".repeat(1024) }),
    )
    .await
    .expect(200);
}
