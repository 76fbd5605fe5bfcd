//! Alerts raised by the proxy, through the gateway to the npm reference
//! server with the official TypeScript SDK as the agent: a credential
//! stopped by data protection raises a `dlp_violation` alert, repeats are
//! folded into it, and admins move it from open to acknowledged to
//! resolved.

use behavry_test_support::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::mcp::Fixture;
use crate::support::{list_until, request, send, tenant_admin};

both_backends!(blocked_credentials_raise_one_folded_alert_that_admins_resolve);

const TOKEN: &str = "ghp_R8yXq2Lw9ZtK4mVbN7cJ3sHfD6gP1aE0uQ5o";

/// The tenant's alerts under a query string, once `done` holds.
pub(crate) async fn alerts_until(
    app: &TestApp,
    admin: &str,
    query: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    list_until(
        app,
        admin,
        &format!("/api/v1/alerts{query}"),
        "alerts",
        what,
        done,
    )
    .await
}

async fn blocked_credentials_raise_one_folded_alert_that_admins_resolve(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let leak = || {
        fx.call(json!({"name": "echo", "arguments": {"message": format!("GITHUB_TOKEN={TOKEN}")}}))
    };
    assert_eq!(leak().await["error"]["code"], -32045);
    let alerts = alerts_until(&fx.app, &fx.admin, "", "a dlp_violation", |a| {
        a.iter().any(|a| a["alert_type"] == "dlp_violation")
    })
    .await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["severity"], "critical", "a critical finding: {alert}");
    assert_eq!(alert["status"], "open");
    assert_eq!(alert["occurrences"], 1);
    assert_eq!(alert["details"]["tool"], "echo");
    assert_eq!(alert["details"]["action"], "block");
    assert_eq!(alert["details"]["findings"][0]["pattern"], "github_token");
    assert_eq!(alert["details"]["findings"][0]["field"], "/message");
    assert!(alert["agent_id"].is_string(), "{alert}");
    assert!(alert["details"]["audit_event_id"].is_string(), "{alert}");
    assert!(
        !alert.to_string().contains(TOKEN),
        "an alert never holds the secret: {alert}"
    );
    let id = alert["id"].as_str().unwrap().to_string();

    // The same again from the same agent: one alert, counted twice.
    assert_eq!(leak().await["error"]["code"], -32045);
    let alerts = alerts_until(&fx.app, &fx.admin, "", "the repeat folded in", |a| {
        a.len() == 1 && a[0]["occurrences"] == 2
    })
    .await;
    assert_eq!(alerts[0]["id"], id.as_str());

    // Filters.
    let some = |query: &'static str| {
        send(request(
            &fx.app,
            Method::GET,
            &format!("/api/v1/alerts{query}"),
            Some(&fx.admin),
        ))
    };
    assert_eq!(
        some("?severity=critical&status=open")
            .await
            .expect(200)
            .body["total"],
        1
    );
    assert_eq!(
        some("?alert_type=agent_frozen").await.expect(200).body["total"],
        0
    );
    assert_eq!(some("?status=resolved").await.expect(200).body["total"], 0);
    for bad in [
        "?severity=loud",
        "?status=closed",
        "?alert_type=weather",
        "?limit=0",
        "?colour=red",
    ] {
        send(request(
            &fx.app,
            Method::GET,
            &format!("/api/v1/alerts{bad}"),
            Some(&fx.admin),
        ))
        .await
        .expect_error(400, "bad_request");
    }

    // open → acknowledged → resolved, and nothing backwards.
    let path = format!("/api/v1/alerts/{id}");
    let move_to = |status: &str| {
        send(
            request(&fx.app, Method::PATCH, &path, Some(&fx.admin))
                .json(&json!({"status": status})),
        )
    };
    let acked = move_to("acknowledged").await.expect(200).body;
    assert_eq!(acked["status"], "acknowledged");
    assert!(acked["acknowledged_at"].is_string(), "{acked}");
    assert!(acked["acknowledged_by"].is_string(), "{acked}");
    let msg = move_to("open").await.expect_error(409, "conflict");
    assert!(msg.contains("cannot become open"), "{msg}");
    move_to("shelved")
        .await
        .expect_error(422, "validation_failed");
    let resolved = move_to("resolved").await.expect(200).body;
    assert_eq!(resolved["status"], "resolved");
    assert!(resolved["resolved_by"].is_string(), "{resolved}");
    move_to("resolved").await.expect_error(409, "conflict");
    let detail = send(request(&fx.app, Method::GET, &path, Some(&fx.admin)))
        .await
        .expect(200)
        .body;
    assert_eq!(detail, resolved);

    // Once resolved, a repeat opens a new alert.
    assert_eq!(leak().await["error"]["code"], -32045);
    alerts_until(
        &fx.app,
        &fx.admin,
        "?status=open",
        "a new open alert",
        |a| a.len() == 1 && a[0]["id"] != id.as_str() && a[0]["occurrences"] == 1,
    )
    .await;

    // Unknown ids, bad ids, other tenants, agents.
    let missing = format!("/api/v1/alerts/{}", uuid::Uuid::now_v7());
    send(request(&fx.app, Method::GET, &missing, Some(&fx.admin)))
        .await
        .expect_error(404, "not_found");
    send(request(
        &fx.app,
        Method::GET,
        "/api/v1/alerts/nope",
        Some(&fx.admin),
    ))
    .await
    .expect(400);
    let (_, other) = tenant_admin(&fx.app, "Other Co", "other-admin").await;
    send(request(&fx.app, Method::GET, &path, Some(&other)))
        .await
        .expect_error(404, "not_found");
    let theirs = send(request(
        &fx.app,
        Method::GET,
        "/api/v1/alerts",
        Some(&other),
    ))
    .await
    .expect(200)
    .body;
    assert_eq!(theirs["total"], 0);
    send(request(
        &fx.app,
        Method::GET,
        "/api/v1/alerts",
        Some(&fx.agent_token),
    ))
    .await
    .expect(401);
}
