//! Routing and transport errors: unknown paths, wrong methods, oversized
//! bodies, odd inputs. All answers are JSON error bodies; none is a 5xx.

use behavry_test_support::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{PASSWORD, get, operator_token, post, request, send};

/// Just over the 1 MiB body limit, as valid JSON.
fn oversized_json() -> String {
    let padding = "x".repeat(1024 * 1024);
    json!({
        "organization_name": "Big Org",
        "admin_email": "big@org.example",
        "admin_password": PASSWORD,
        "padding": padding,
    })
    .to_string()
}

#[tokio::test]
async fn unknown_paths_are_json_404s() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/api/v1/nope"),
        (Method::POST, "/api/v1/nope"),
        (Method::GET, "/health/live/extra"),
        (
            Method::GET,
            "/api/v1/superadmin/tenants/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/unknown",
        ),
        (Method::DELETE, "/api/v2/signup"),
    ] {
        let reply = send(request(&app, method.clone(), path, None)).await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.text);
        assert!(
            reply
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{method} {path}"
        );
        reply.expect_error(404, "not_found");
    }
}

#[tokio::test]
async fn wrong_methods_are_405s_with_allow() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let operator = operator_token(&app).await;
    for (method, path, allowed) in [
        (Method::DELETE, "/health/live", "GET"),
        (Method::POST, "/health/ready", "GET"),
        (Method::PUT, "/metrics", "GET"),
        (Method::GET, "/api/v1/auth/admin/login", "POST"),
        (Method::GET, "/api/v1/signup", "POST"),
        (Method::POST, "/api/v1/admin/setup-status", "GET"),
        (Method::DELETE, "/api/v1/superadmin/tenants", "GET"),
        (
            Method::DELETE,
            "/api/v1/superadmin/tenants/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "GET",
        ),
        (
            Method::GET,
            "/api/v1/superadmin/tenants/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/suspend",
            "POST",
        ),
    ] {
        let reply = send(request(&app, method.clone(), path, Some(&operator))).await;
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text);
        let allow = reply.header("allow").unwrap_or_default().to_string();
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{method} {path}: Allow `{allow}` lacks {allowed}"
        );
        assert_eq!(
            reply.body["error"]["code"], "method_not_allowed",
            "{method} {path}: {}",
            reply.text
        );
    }
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let operator = operator_token(&app).await;
    let body = oversized_json();
    assert!(body.len() > 1024 * 1024);
    for (path, token) in [
        ("/api/v1/signup", None),
        ("/api/v1/auth/admin/login", None),
        ("/api/v1/superadmin/tenants", Some(operator.as_str())),
    ] {
        let reply = send(
            request(&app, Method::POST, path, token)
                .header("content-type", "application/json")
                .body(body.clone()),
        )
        .await;
        assert_eq!(reply.status, 413, "{path}: {}", reply.text);
        let message = reply.expect_error(413, "payload_too_large");
        assert!(message.contains("1048576"), "{message}");
    }
    // A body just under the limit is read (and then judged on its content).
    let under = json!({ "username": "x".repeat(1024 * 1024 - 100), "password": "y" }).to_string();
    assert!(under.len() < 1024 * 1024);
    send(
        request(&app, Method::POST, "/api/v1/auth/admin/login", None)
            .header("content-type", "application/json")
            .body(under),
    )
    .await
    .expect_error(422, "validation_failed");
}

#[tokio::test]
async fn odd_inputs_never_cause_server_errors() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let operator = operator_token(&app).await;
    let tenants = "/api/v1/superadmin/tenants";
    let raw = |method: Method, path: &str, body: &str| {
        send(
            request(&app, method, path, Some(&operator))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    };
    // (method, path, body, expected status)
    let cases: Vec<(Method, &str, &str, u16)> = vec![
        (Method::POST, tenants, "", 400),
        (Method::POST, tenants, "null", 422),
        (Method::POST, tenants, "[]", 422),
        (Method::POST, tenants, "\"a string\"", 422),
        (Method::POST, tenants, "{\"name\": 1e400}", 400),
        (Method::POST, tenants, "{\"name\": \"\\ud800\"}", 400),
        (
            Method::POST,
            tenants,
            "{\"name\": \"A\", \"name\": \"B\"}",
            422,
        ),
        (Method::POST, "/api/v1/auth/admin/login", "{}", 422),
        (
            Method::POST,
            "/api/v1/auth/admin/login",
            "{\"username\": null, \"password\": null}",
            422,
        ),
        (
            Method::PATCH,
            "/api/v1/superadmin/tenants/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "[]",
            422,
        ),
        (Method::PATCH, "/api/v1/superadmin/tenants/%00", "{}", 400),
        (
            Method::PATCH,
            "/api/v1/superadmin/tenants/%F0%9F%92%A9",
            "{}",
            400,
        ),
    ];
    for (method, path, body, expected) in cases {
        let reply = raw(method.clone(), path, body).await;
        assert_eq!(
            reply.status, expected,
            "{method} {path} {body:?}: {}",
            reply.text
        );
        assert!(
            reply.body["error"]["code"].is_string(),
            "{method} {path} {body:?}: {}",
            reply.text
        );
    }

    // Unusual but valid content.
    let reply = post(
        &app,
        tenants,
        Some(&operator),
        &json!({
            "name": "Ünïcode & Co. 🚀",
            "admin_username": "unicode-admin",
            "admin_password": "пароль-достаточно-длинный",
        }),
    )
    .await
    .expect(201);
    assert_eq!(reply.body["tenant"]["name"], "Ünïcode & Co. 🚀");
    assert_eq!(reply.body["tenant"]["slug"], "n-code-co");
    let name_200 = "n".repeat(200);
    let reply = post(
        &app,
        tenants,
        Some(&operator),
        &json!({ "name": name_200, "admin_username": "long-name-admin", "admin_password": PASSWORD }),
    )
    .await
    .expect(201);
    assert_eq!(reply.body["tenant"]["name"], Value::String(name_200));
    // A quote in the name, and SQL in places it might be interpolated.
    post(
        &app,
        tenants,
        Some(&operator),
        &json!({
            "name": "O'Brien'); DROP TABLE tenants; --",
            "admin_username": "o'brien",
            "admin_password": PASSWORD,
        }),
    )
    .await
    .expect(201);
    let list = get(&app, tenants, Some(&operator)).await.expect(200);
    assert_eq!(list.body["total"], 3);
}
