//! Liveness, readiness and Prometheus metrics.

use behavry_test_support::{Backend, TestApp};
use serde_json::json;

use crate::support::{get, operator_token, request, send};

#[tokio::test]
async fn live_says_ok_without_authentication() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let reply = get(&app, "/health/live", None).await.expect(200);
    assert_eq!(reply.body, json!({ "status": "ok" }));
}

async fn ready_reports_each_component(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reply = get(&app, "/health/ready", None).await.expect(200);
    let body = &reply.body;
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        body.get("build_sha").is_none(),
        "no BUILD_SHA was configured: {body}"
    );

    let database = &body["components"]["database"];
    assert_eq!(database["status"], "ok", "{body}");
    let expected_backend = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(database["detail"], expected_backend);
    let latency = database["latency_ms"]
        .as_f64()
        .expect("database latency_ms");
    assert!(latency >= 0.0, "{body}");

    let policy = &body["components"]["policy_engine"];
    assert_eq!(policy["status"], "ok", "{body}");
    assert_eq!(policy["detail"], "embedded", "{body}");
    let queue = &body["components"]["escalation_queue"];
    assert_eq!(queue["status"], "ok", "{body}");
    assert!(
        queue["detail"].as_str().is_some_and(|d| d.contains("held")),
        "{body}"
    );
    let bus = &body["components"]["event_bus"];
    assert_eq!(bus["status"], "ok", "{body}");
    let expected_bus = match backend {
        Backend::Sqlite => "in-process",
        Backend::Postgres => "LISTEN/NOTIFY",
    };
    assert!(
        bus["detail"]
            .as_str()
            .is_some_and(|d| d.contains(expected_bus)),
        "{body}"
    );
    let components = body["components"].as_object().expect("components");
    assert_eq!(components.len(), 4, "{body}");
}

both_backends!(ready_reports_each_component);

#[tokio::test]
async fn build_sha_is_reported_when_configured() {
    let app = TestApp::spawn_with(Backend::Sqlite, |vars| {
        vars.insert("BUILD_SHA".into(), "abc1234".into());
    })
    .await;
    let reply = get(&app, "/health/ready", None).await.expect(200);
    assert_eq!(reply.body["build_sha"], "abc1234");
    let metrics = get(&app, "/metrics", None).await.expect(200);
    assert!(
        metrics.text.contains(&format!(
            "behavry_build_info{{version=\"{}\",build_sha=\"abc1234\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    get(&app, "/health/live", None).await.expect(200);

    let operator = operator_token(&app).await;
    let unknown = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    get(
        &app,
        &format!("/api/v1/superadmin/tenants/{unknown}"),
        Some(&operator),
    )
    .await
    .expect_error(404, "not_found");
    get(
        &app,
        &format!("/api/v1/superadmin/tenants/{unknown}/usage"),
        Some(&operator),
    )
    .await
    .expect_error(404, "not_found");
    get(&app, "/no/such/path/4242", None)
        .await
        .expect_error(404, "not_found");

    let reply = get(&app, "/metrics", None).await.expect(200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = &reply.text;
    for line in [
        "# TYPE behavry_http_requests_total counter",
        "# TYPE behavry_http_request_duration_seconds histogram",
        "# TYPE behavry_uptime_seconds gauge",
        "behavry_http_requests_total{method=\"GET\",route=\"/health/live\",status=\"200\"} 1",
        "behavry_http_requests_total{method=\"POST\",route=\"/api/v1/auth/admin/login\",status=\"200\"} 1",
        "behavry_http_requests_total{method=\"GET\",route=\"/api/v1/superadmin/tenants/{tenant_id}\",status=\"404\"} 1",
        "behavry_http_requests_total{method=\"GET\",route=\"/api/v1/superadmin/tenants/{tenant_id}/usage\",status=\"404\"} 1",
        "behavry_http_request_duration_seconds_count{method=\"GET\",route=\"/health/live\"} 1",
        "behavry_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health/live\",le=\"+Inf\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    // Raw paths never become labels (cardinality).
    assert!(!text.contains(unknown), "raw path in metrics:\n{text}");
    assert!(
        !text.contains("/no/such/path/4242"),
        "raw path in metrics:\n{text}"
    );

    // The scrape itself is counted by the next one.
    let again = get(&app, "/metrics", None).await.expect(200);
    assert!(
        again.text.lines().any(|l| l
            == "behavry_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"} 1"),
        "{}",
        again.text
    );
}

#[tokio::test]
async fn metrics_token_is_enforced_when_configured() {
    const TOKEN: &str = "metrics-scrape-token-for-tests";
    let app = TestApp::spawn_with(Backend::Sqlite, |vars| {
        vars.insert("BEHAVRY_METRICS_TOKEN".into(), TOKEN.into());
    })
    .await;

    let missing = get(&app, "/metrics", None).await;
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    missing.expect_error(401, "unauthorized");

    get(&app, "/metrics", Some("not-the-token"))
        .await
        .expect_error(401, "unauthorized");
    // A prefix of the right token is still wrong.
    get(&app, "/metrics", Some(&TOKEN[..TOKEN.len() - 1]))
        .await
        .expect_error(401, "unauthorized");
    send(
        request(&app, reqwest::Method::GET, "/metrics", None)
            .header("authorization", format!("Basic {TOKEN}")),
    )
    .await
    .expect_error(401, "unauthorized");

    let ok = get(&app, "/metrics", Some(TOKEN)).await.expect(200);
    assert!(
        ok.text.contains("behavry_http_requests_total"),
        "{}",
        ok.text
    );
    assert!(
        ok.text.lines().any(|l| l
            == "behavry_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"} 4"),
        "{}",
        ok.text
    );

    // The token protects only /metrics.
    get(&app, "/health/live", None).await.expect(200);
}

#[tokio::test]
async fn metrics_are_open_without_a_configured_token() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    get(&app, "/metrics", None).await.expect(200);
    // An arbitrary bearer token does not matter either.
    get(&app, "/metrics", Some("anything")).await.expect(200);
}
