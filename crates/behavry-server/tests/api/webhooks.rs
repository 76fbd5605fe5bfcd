//! Alert webhooks against a receiver run by the test: it verifies every
//! signature, refuses the first two attempts, and the gateway retries until
//! the third is accepted; the delivery log shows it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use behavry_test_support::Backend;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::mcp::Fixture;
use crate::support::{list_until, request, send};

const SECRET: &str = "webhook-test-secret";
const TOKEN: &str = "ghp_R8yXq2Lw9ZtK4mVbN7cJ3sHfD6gP1aE0uQ5o";

/// What the receiver saw: each body, and whether its signature verified.
type Seen = Arc<Mutex<Vec<(Value, bool)>>>;

/// A webhook receiver on an ephemeral port that answers 500 to the first
/// `fail_first` requests and 204 after.
async fn receiver(fail_first: usize) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(&body);
                let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                let verified = headers
                    .get("x-behavry-signature")
                    .and_then(|v| v.to_str().ok())
                    == Some(expected.as_str());
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mut log = log.lock().unwrap();
                log.push((value, verified));
                if log.len() <= fail_first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

#[tokio::test]
async fn alerts_are_signed_retried_and_logged() {
    let (url, seen) = receiver(2).await;
    let fx = Fixture::with(
        Backend::Sqlite,
        |vars| {
            vars.insert("BEHAVRY_WEBHOOK_URL".into(), url.clone());
            vars.insert("BEHAVRY_WEBHOOK_SECRET".into(), SECRET.into());
            vars.insert("BEHAVRY_WEBHOOK_MIN_SEVERITY".into(), "warning".into());
        },
        60_000,
    )
    .await;
    let leak = || {
        fx.call(json!({"name": "echo", "arguments": {"message": format!("GITHUB_TOKEN={TOKEN}")}}))
    };
    assert_eq!(leak().await["error"]["code"], -32045);

    // Two refusals, then accepted: three attempts, about 1 + 2 s apart.
    for _ in 0..200 {
        if seen.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attempts = seen.lock().unwrap().clone();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(
        attempts.iter().all(|(_, verified)| *verified),
        "every signature verifies"
    );
    let first = &attempts[0].0;
    assert_eq!(first["type"], "alert");
    assert_eq!(first["tenant_id"], fx.tenant.as_str());
    assert_eq!(first["alert"]["alert_type"], "dlp_violation");
    assert_eq!(first["alert"]["severity"], "critical");
    let age = chrono::Utc::now().timestamp() - first["timestamp"].as_i64().unwrap();
    assert!((0..60).contains(&age), "a current timestamp: {first}");
    assert!(
        attempts.iter().all(|(b, _)| b["id"] == first["id"]),
        "one delivery id"
    );
    let numbers: Vec<i64> = attempts
        .iter()
        .map(|(b, _)| b["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![1, 2, 3]);
    assert!(!format!("{attempts:?}").contains(TOKEN), "no secret leaves");

    // The log shows it delivered on the third attempt (it is written just
    // after the receiver answered).
    let mut log = Value::Null;
    for _ in 0..100 {
        log = send(request(
            &fx.app,
            Method::GET,
            "/api/v1/webhooks/deliveries",
            Some(&fx.admin),
        ))
        .await
        .expect(200)
        .body;
        if log[0]["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entry = &log[0];
    assert_eq!(entry["status"], "delivered", "{log}");
    assert_eq!(entry["attempts"], 3);
    assert_eq!(entry["response_code"], 204);
    assert_eq!(entry["url"], url.as_str());
    assert_eq!(entry["id"], first["id"]);

    // A repeat folded into the same alert is not sent again.
    assert_eq!(leak().await["error"]["code"], -32045);
    list_until(
        &fx.app,
        &fx.admin,
        "/api/v1/alerts",
        "alerts",
        "the repeat",
        |a| a.first().is_some_and(|a| a["occurrences"] == 2),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.lock().unwrap().len(), 3);
}
