//! The committed OpenAPI document must match what the code generates.
//! Regenerate with `BEHAVRY_UPDATE_OPENAPI=1 ./scripts/test -p behavry-server --test api openapi`.

use std::path::PathBuf;

use behavry_test_support::{Backend, TestApp};

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[test]
fn committed_openapi_document_is_current() {
    let generated = behavry_server::openapi::document();
    let path = committed_path();
    if std::env::var("BEHAVRY_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale: regenerate it with \
         BEHAVRY_UPDATE_OPENAPI=1 ./scripts/test -p behavry-server --test api openapi"
    );
}

#[tokio::test]
async fn served_document_lists_every_route() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: serde_json::Value = response.json().await.unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/.well-known/jwks.json",
        "/api/v1/auth/admin/login",
        "/api/v1/signup",
        "/api/v1/admin/setup-status",
        "/api/v1/admin/usage",
        "/api/v1/superadmin/tenants",
        "/api/v1/superadmin/tenants/{tenant_id}",
        "/api/v1/superadmin/tenants/{tenant_id}/suspend",
        "/api/v1/superadmin/tenants/{tenant_id}/usage",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}
