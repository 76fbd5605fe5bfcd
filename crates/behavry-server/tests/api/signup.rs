//! Self-service signup and the setup status.

use behavry_test_support::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    PASSWORD, get, login, operator_token, post, request, send, signup, str_field,
};

/// Tenants as the super-admin API lists them.
async fn tenants(app: &TestApp) -> Vec<Value> {
    let operator = operator_token(app).await;
    let reply = get(app, "/api/v1/superadmin/tenants", Some(&operator))
        .await
        .expect(200);
    reply.body["tenants"].as_array().expect("tenants").clone()
}

async fn signup_creates_a_tenant_and_its_admin(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reply = signup(&app, "  Acme Corp  ", " Founder@Acme.EXAMPLE ", PASSWORD)
        .await
        .expect(201);
    let body = &reply.body;
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "admin_username",
            "dashboard_url",
            "enrollment_token",
            "sdk_env_block",
            "tenant_id"
        ]
    );
    let tenant_id = str_field(body, "tenant_id");
    uuid::Uuid::parse_str(tenant_id).expect("tenant_id is a UUID");
    assert_eq!(body["admin_username"], "founder@acme.example");
    assert_eq!(body["dashboard_url"], "/");
    let token = str_field(body, "enrollment_token");
    assert_eq!(
        token.len(),
        43,
        "32 random bytes in unpadded base64url: {token}"
    );
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{token}"
    );
    let env_block = str_field(body, "sdk_env_block");
    assert!(
        env_block
            .lines()
            .any(|l| l == format!("BEHAVRY_ENROLLMENT_TOKEN={token}")),
        "{env_block}"
    );

    // The admin can log in, with the e-mail address in any case.
    let login_reply = login(&app, "FOUNDER@acme.example", PASSWORD)
        .await
        .expect(200);
    assert_eq!(login_reply.body["admin"]["tenant_id"], tenant_id);
    assert_eq!(
        login_reply.body["admin"]["username"],
        "founder@acme.example"
    );
    assert_eq!(login_reply.body["admin"]["is_super_admin"], false);
    let admin_token = str_field(&login_reply.body, "access_token");
    get(&app, "/api/v1/admin/usage", Some(admin_token))
        .await
        .expect(200);

    // The tenant exists with the trimmed name, its slug and trial defaults.
    let list = tenants(&app).await;
    assert_eq!(list.len(), 1);
    let tenant = &list[0];
    assert_eq!(tenant["id"], tenant_id);
    assert_eq!(tenant["name"], "Acme Corp");
    assert_eq!(tenant["slug"], "acme-corp");
    assert_eq!(tenant["is_active"], true);
    assert_eq!(tenant["is_frozen"], false);
    assert_eq!(tenant["config"]["plan_tier"], "trial");
    assert_eq!(tenant["config"]["max_agents"], -1);
    assert_eq!(tenant["config"]["max_rpm_per_agent"], 60);
    assert_eq!(tenant["config"]["audit_retention_days"], 90);
    assert_eq!(tenant["config"]["deployment_mode"], "saas");
    assert_eq!(tenant["config"]["suspended_at"], Value::Null);

    // A second signup gets a different enrollment token.
    let second = signup(&app, "Other Org", "someone@other.example", PASSWORD)
        .await
        .expect(201);
    assert_ne!(second.body["enrollment_token"], body["enrollment_token"]);
    assert_ne!(second.body["tenant_id"], body["tenant_id"]);
}

async fn duplicate_email_or_organization_conflicts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    signup(&app, "Acme Corp", "founder@acme.example", PASSWORD)
        .await
        .expect(201);
    let same_email = signup(&app, "Different Org", "FOUNDER@ACME.example", PASSWORD)
        .await
        .expect_error(409, "conflict");
    let same_org = signup(&app, "ACME CORP", "someone-else@acme.example", PASSWORD)
        .await
        .expect_error(409, "conflict");
    // One answer for both: the response does not reveal which is taken.
    assert_eq!(same_email, same_org);
    let same_org_padded = signup(&app, " acme corp ", "third@acme.example", PASSWORD)
        .await
        .expect_error(409, "conflict");
    assert_eq!(same_org_padded, same_org);

    // Nothing was created by the refused attempts.
    let list = tenants(&app).await;
    assert_eq!(list.len(), 1, "{list:?}");
    login(&app, "someone-else@acme.example", PASSWORD)
        .await
        .expect_error(401, "unauthorized");
}

async fn non_ascii_organization_names_conflict_case_insensitively(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    signup(&app, "Übersee Logistik", "ops@uebersee.example", PASSWORD)
        .await
        .expect(201);
    // Names are unique case-insensitively beyond ASCII too.
    signup(&app, "üBERSEE LOGISTIK", "other@uebersee.example", PASSWORD)
        .await
        .expect_error(409, "conflict");
}

async fn colliding_slugs_get_a_numeric_suffix(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = signup(&app, "Acme Corp", "a@acme.example", PASSWORD)
        .await
        .expect(201);
    // A different name with the same slug.
    let second = signup(&app, "Acme, Corp!", "b@acme.example", PASSWORD)
        .await
        .expect(201);
    let third = signup(&app, "ACME -- corp", "c@acme.example", PASSWORD)
        .await
        .expect(201);
    let list = tenants(&app).await;
    let slug_of = |id: &Value| {
        list.iter()
            .find(|t| t["id"] == *id)
            .map(|t| t["slug"].clone())
            .unwrap_or_else(|| panic!("tenant {id} not listed"))
    };
    assert_eq!(slug_of(&first.body["tenant_id"]), "acme-corp");
    assert_eq!(slug_of(&second.body["tenant_id"]), "acme-corp-2");
    assert_eq!(slug_of(&third.body["tenant_id"]), "acme-corp-3");
    let names: Vec<&Value> = list.iter().map(|t| &t["name"]).collect();
    assert_eq!(
        names,
        [
            &json!("Acme Corp"),
            &json!("Acme, Corp!"),
            &json!("ACME -- corp")
        ]
    );
}

both_backends!(
    signup_creates_a_tenant_and_its_admin,
    duplicate_email_or_organization_conflicts,
    non_ascii_organization_names_conflict_case_insensitively,
    colliding_slugs_get_a_numeric_suffix,
);

#[tokio::test]
async fn signup_validates_its_input() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let message = signup(&app, "Short Password Inc", "a@short.example", "elevenchars")
        .await
        .expect_error(422, "validation_failed");
    assert!(message.contains("12"), "{message}");
    signup(&app, "   ", "a@empty.example", PASSWORD)
        .await
        .expect_error(422, "validation_failed");
    signup(&app, "Bad Email Inc", "not-an-email", PASSWORD)
        .await
        .expect_error(422, "validation_failed");
    signup(&app, "Bad Email Inc", "someone@localhost", PASSWORD)
        .await
        .expect_error(422, "validation_failed");
    // Missing field.
    post(
        &app,
        "/api/v1/signup",
        None,
        &json!({ "organization_name": "Missing Field Inc", "admin_email": "a@missing.example" }),
    )
    .await
    .expect_error(422, "validation_failed");

    // None of the refused attempts created anything.
    let status = get(&app, "/api/v1/admin/setup-status", None)
        .await
        .expect(200);
    assert_eq!(status.body, json!({ "initialized": false }));
}

#[tokio::test]
async fn signup_validates_names_and_passwords() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Only symbols: nothing to derive a slug from.
    signup(&app, "!!!", "a@symbols.example", PASSWORD)
        .await
        .expect_error(422, "validation_failed");
    // Too long.
    signup(&app, &"n".repeat(201), "a@long.example", PASSWORD)
        .await
        .expect_error(422, "validation_failed");
    // Control characters.
    signup(&app, "Evil\u{7}Corp", "a@bell.example", PASSWORD)
        .await
        .expect_error(422, "validation_failed");
    // A common password of sufficient length.
    signup(
        &app,
        "Common Password Inc",
        "a@common.example",
        "password1234",
    )
    .await
    .expect_error(422, "validation_failed");
    // Malformed JSON is a 400, not a 422.
    send(
        request(&app, Method::POST, "/api/v1/signup", None)
            .header("content-type", "application/json")
            .body("{\"organization_name\": "),
    )
    .await
    .expect_error(400, "bad_request");
}

#[tokio::test]
async fn sixth_signup_from_one_address_within_an_hour_is_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for n in 1..=5 {
        signup(
            &app,
            &format!("Org {n}"),
            &format!("admin@org{n}.example"),
            PASSWORD,
        )
        .await
        .expect(201);
    }
    let reply = signup(&app, "Org 6", "admin@org6.example", PASSWORD).await;
    let retry_after: u64 = reply
        .header("retry-after")
        .expect("Retry-After header")
        .parse()
        .expect("Retry-After is a number of seconds");
    assert!(
        (1..=3600).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    reply.expect_error(429, "rate_limited");

    // X-Forwarded-For is not trusted unless configured: no way around it.
    send(
        request(&app, Method::POST, "/api/v1/signup", None)
            .header("x-forwarded-for", "203.0.113.7")
            .json(&json!({
                "organization_name": "Org 7",
                "admin_email": "admin@org7.example",
                "admin_password": PASSWORD,
            })),
    )
    .await
    .expect_error(429, "rate_limited");

    let list = tenants(&app).await;
    assert_eq!(list.len(), 5);
}

#[tokio::test]
async fn setup_status_turns_true_after_the_first_signup() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // The platform operator alone does not make the platform initialized.
    let reply = get(&app, "/api/v1/admin/setup-status", None)
        .await
        .expect(200);
    assert_eq!(reply.body, json!({ "initialized": false }));
    signup(&app, "First Org", "first@org.example", PASSWORD)
        .await
        .expect(201);
    let reply = get(&app, "/api/v1/admin/setup-status", None)
        .await
        .expect(200);
    assert_eq!(reply.body, json!({ "initialized": true }));
    // Any token, even a bogus one, is ignored: no authentication needed.
    get(&app, "/api/v1/admin/setup-status", Some("bogus"))
        .await
        .expect(200);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_limit_is_per_forwarded_address() {
    let app = TestApp::spawn_with(Backend::Sqlite, |vars| {
        vars.insert("BEHAVRY_TRUST_FORWARDED_FOR".into(), "true".into());
    })
    .await;
    let from = |forwarded_for: &str, n: u32| {
        send(
            request(&app, Method::POST, "/api/v1/signup", None)
                .header("x-forwarded-for", forwarded_for)
                .json(&json!({
                    "organization_name": format!("Proxied Org {n}"),
                    "admin_email": format!("admin@proxied{n}.example"),
                    "admin_password": PASSWORD,
                })),
        )
    };
    for n in 1..=5 {
        from("203.0.113.1", n).await.expect(201);
    }
    from("203.0.113.1", 6)
        .await
        .expect_error(429, "rate_limited");
    // The proxy appends the client's address last; whatever the client put
    // in front of it does not help.
    from("198.51.100.99, 203.0.113.1", 7)
        .await
        .expect_error(429, "rate_limited");
    // Another client behind the same proxy is not affected.
    from("203.0.113.2", 8).await.expect(201);
}
