//! Agent identity: registration, enrollment, client-credentials tokens and
//! the admin agent API.

use behavry_test_support::{Backend, TestApp};
use serde_json::{Value, json};

use crate::support::{get, operator_token, patch, post, tenant_admin};

both_backends!(agent_lifecycle_and_tokens);

async fn token_for(app: &TestApp, client_id: &Value, secret: &Value) -> crate::support::Reply {
    post(
        app,
        "/api/v1/auth/token",
        None,
        &json!({"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials"}),
    )
    .await
}

async fn agent_lifecycle_and_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, admin) = tenant_admin(&app, "Agents Ltd", "owner@agents.example").await;

    let created = post(
        &app,
        "/api/v1/agents",
        Some(&admin),
        &json!({"name": "deployer", "owner": "platform-team", "roles": ["ops"], "permissions": ["github:write"], "tags": ["prod"]}),
    )
    .await
    .expect(201)
    .body;
    let id = created["agent"]["id"].as_str().unwrap().to_string();
    let client_id = created["client_id"].clone();
    let secret = created["client_secret"].clone();
    assert!(client_id.as_str().unwrap().starts_with("bhv_"));
    assert!(secret.as_str().unwrap().starts_with("bhvs_"));
    assert_eq!(created["agent"]["status"], "active");
    assert_eq!(created["agent"]["roles"], json!(["ops"]));
    assert_eq!(created["agent"]["online"], false);
    assert!(
        !created["agent"]
            .to_string()
            .contains(secret.as_str().unwrap()),
        "the secret is not part of the agent"
    );

    // Client credentials → RS256 token with the documented shape.
    let token = token_for(&app, &client_id, &secret).await.expect(200).body;
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3600);
    assert_eq!(token["agent_id"], id.as_str());
    assert_eq!(token["risk_tier"], "low");
    let agent_token = token["access_token"].as_str().unwrap().to_string();
    token_for(&app, &client_id, &json!("bhvs_wrong"))
        .await
        .expect_error(401, "unauthorized");
    token_for(&app, &json!("bhv_unknown"), &secret)
        .await
        .expect_error(401, "unauthorized");
    post(
        &app,
        "/api/v1/auth/token",
        None,
        &json!({"client_id": client_id, "client_secret": secret, "grant_type": "password"}),
    )
    .await
    .expect_error(422, "validation_failed");
    // An agent token is not an admin token, nor the reverse.
    get(&app, "/api/v1/agents", Some(&agent_token))
        .await
        .expect_error(401, "unauthorized");
    post(&app, "/api/v1/agents/heartbeat", Some(&admin), &json!({}))
        .await
        .expect_error(401, "unauthorized");

    // Heartbeat marks the agent online.
    post(
        &app,
        "/api/v1/agents/heartbeat",
        Some(&agent_token),
        &json!({}),
    )
    .await
    .expect(200);
    let detail = get(&app, &format!("/api/v1/agents/{id}"), Some(&admin))
        .await
        .expect(200)
        .body;
    assert_eq!(detail["online"], true);
    assert!(detail["last_seen_at"].is_string());

    // List with filter and pagination.
    post(
        &app,
        "/api/v1/agents",
        Some(&admin),
        &json!({"name": "second"}),
    )
    .await
    .expect(201);
    let list = get(&app, "/api/v1/agents?limit=1", Some(&admin))
        .await
        .expect(200)
        .body;
    assert_eq!(list["total"], 2);
    assert_eq!(list["agents"].as_array().unwrap().len(), 1);
    assert_eq!(list["agents"][0]["name"], "second", "newest first");
    get(&app, "/api/v1/agents?status=sleeping", Some(&admin))
        .await
        .expect_error(400, "bad_request");
    get(&app, "/api/v1/agents?limit=0", Some(&admin))
        .await
        .expect_error(400, "bad_request");

    let patched = patch(
        &app,
        &format!("/api/v1/agents/{id}"),
        Some(&admin),
        &json!({"name": "deployer-2", "owner": null}),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(patched["name"], "deployer-2");
    assert_eq!(patched["owner"], Value::Null);
    patch(
        &app,
        &format!("/api/v1/agents/{id}"),
        Some(&admin),
        &json!({"secret": "x"}),
    )
    .await
    .expect_error(422, "validation_failed");
    get(&app, "/api/v1/agents/not-a-uuid", Some(&admin))
        .await
        .expect_error(400, "bad_request");
    get(
        &app,
        "/api/v1/agents/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        Some(&admin),
    )
    .await
    .expect_error(404, "not_found");

    // Suspended agents get 403 at the token endpoint; reactivation restores.
    post(
        &app,
        &format!("/api/v1/agents/{id}/suspend"),
        Some(&admin),
        &json!({}),
    )
    .await
    .expect(200);
    token_for(&app, &client_id, &secret)
        .await
        .expect_error(403, "forbidden");
    let filtered = get(&app, "/api/v1/agents?status=suspended", Some(&admin))
        .await
        .expect(200)
        .body;
    assert_eq!(filtered["total"], 1);
    post(
        &app,
        &format!("/api/v1/agents/{id}/reactivate"),
        Some(&admin),
        &json!({}),
    )
    .await
    .expect(200);
    token_for(&app, &client_id, &secret).await.expect(200);

    // Rotation: the old secret stops working at once.
    let rotated = post(
        &app,
        &format!("/api/v1/agents/{id}/rotate-secret"),
        Some(&admin),
        &json!({}),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(rotated["client_id"], client_id);
    token_for(&app, &client_id, &secret)
        .await
        .expect_error(401, "unauthorized");
    token_for(&app, &client_id, &rotated["client_secret"])
        .await
        .expect(200);

    // A suspended tenant: its agents cannot get tokens; its admin reads but
    // cannot change anything.
    let operator = operator_token(&app).await;
    post(
        &app,
        &format!("/api/v1/superadmin/tenants/{tenant}/suspend"),
        Some(&operator),
        &json!({}),
    )
    .await
    .expect(200);
    token_for(&app, &client_id, &rotated["client_secret"])
        .await
        .expect_error(403, "forbidden");
    get(&app, "/api/v1/agents", Some(&admin)).await.expect(200);
    post(
        &app,
        "/api/v1/agents",
        Some(&admin),
        &json!({"name": "late"}),
    )
    .await
    .expect_error(403, "forbidden");
    patch(
        &app,
        &format!("/api/v1/superadmin/tenants/{tenant}"),
        Some(&operator),
        &json!({"is_active": true}),
    )
    .await
    .expect(200);

    // Revocation is final.
    post(
        &app,
        &format!("/api/v1/agents/{id}/revoke"),
        Some(&admin),
        &json!({}),
    )
    .await
    .expect(200);
    post(
        &app,
        &format!("/api/v1/agents/{id}/reactivate"),
        Some(&admin),
        &json!({}),
    )
    .await
    .expect_error(403, "forbidden");
    token_for(&app, &client_id, &rotated["client_secret"])
        .await
        .expect_error(403, "forbidden");
}

#[tokio::test]
async fn enrollment_tokens_register_agents_once() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_, admin) = tenant_admin(&app, "Enroll Co", "owner@enroll.example").await;
    let token = post(
        &app,
        "/api/v1/agents/enrollment-tokens",
        Some(&admin),
        &json!({"expires_in_hours": 1}),
    )
    .await
    .expect(201)
    .body;
    let enrollment = token["enrollment_token"].as_str().unwrap();
    post(
        &app,
        "/api/v1/agents/enrollment-tokens",
        Some(&admin),
        &json!({"expires_in_hours": 0}),
    )
    .await
    .expect_error(422, "validation_failed");
    let enrolled = post(
        &app,
        "/api/v1/enroll/agent",
        None,
        &json!({"enrollment_token": enrollment, "name": "self-registered"}),
    )
    .await
    .expect(201)
    .body;
    assert_eq!(enrolled["agent"]["name"], "self-registered");
    let t = post(
        &app,
        "/api/v1/auth/token",
        None,
        &json!({"client_id": enrolled["client_id"], "client_secret": enrolled["client_secret"], "grant_type": "client_credentials"}),
    )
    .await
    .expect(200);
    assert!(t.body["access_token"].is_string());
    post(
        &app,
        "/api/v1/enroll/agent",
        None,
        &json!({"enrollment_token": enrollment, "name": "again"}),
    )
    .await
    .expect_error(401, "unauthorized");
    post(
        &app,
        "/api/v1/enroll/agent",
        None,
        &json!({"enrollment_token": "made-up", "name": "x"}),
    )
    .await
    .expect_error(401, "unauthorized");
    post(
        &app,
        "/api/v1/enroll/agent",
        None,
        &json!({"enrollment_token": enrollment}),
    )
    .await
    .expect_error(422, "validation_failed");
    // The signup's own enrollment token works too.
    let signup = post(
        &app,
        "/api/v1/signup",
        None,
        &json!({"organization_name": "Signup Co", "admin_email": "a@signup.example", "admin_password": crate::support::PASSWORD}),
    )
    .await
    .expect(201)
    .body;
    post(
        &app,
        "/api/v1/enroll/agent",
        None,
        &json!({"enrollment_token": signup["enrollment_token"], "name": "first"}),
    )
    .await
    .expect(201);
    // Viewers may read agents but not create them.
    let list = get(&app, "/api/v1/agents", Some(&admin))
        .await
        .expect(200)
        .body;
    assert_eq!(list["total"], 1);
}
