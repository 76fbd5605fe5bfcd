//! Request helpers shared by the API tests.
//!
//! Every request goes through [`send`], which fails the test on any 5xx
//! answer: no input, however odd, may make the server fail.

use behavry_test_support::{OPERATOR_PASSWORD, OPERATOR_USERNAME, TestApp};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

/// A password that satisfies the password rules.
pub const PASSWORD: &str = "correct horse battery staple";

/// A response, read completely.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// The body parsed as JSON; `Null` when it is not JSON.
    pub body: Value,
}

impl Reply {
    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status, status,
            "expected HTTP {status}, got {}: {}",
            self.status, self.text
        );
        self
    }

    /// Asserts an error answer: the status, the `{"error":{"code","message"}}`
    /// body with exactly those fields (no correlation id on client errors),
    /// and a non-empty message, which is returned.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> String {
        let reply = self.expect(status);
        let body = reply.body.as_object().unwrap_or_else(|| {
            panic!("error body is not a JSON object: {}", reply.text);
        });
        assert_eq!(body.len(), 1, "error body has extra fields: {}", reply.text);
        let error = body
            .get("error")
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("no `error` object: {}", reply.text));
        let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "message"], "error fields: {}", reply.text);
        assert_eq!(error["code"], code, "error code: {}", reply.text);
        let message = error["message"].as_str().unwrap_or_default().to_string();
        assert!(!message.is_empty(), "empty error message: {}", reply.text);
        message
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request and reads the whole answer. Fails on 5xx.
#[track_caller]
pub fn send(request: RequestBuilder) -> impl Future<Output = Reply> + use<> {
    let caller = std::panic::Location::caller();
    async move {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed ({caller}): {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("reading the body failed ({caller}): {e}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(
            status < 500,
            "server error HTTP {status} for the request at {caller}: {text}"
        );
        Reply {
            status,
            headers,
            text,
            body,
        }
    }
}

pub fn request(app: &TestApp, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
    let builder = app.client.request(method, app.url(path));
    match token {
        Some(token) => builder.bearer_auth(token),
        None => builder,
    }
}

#[track_caller]
pub fn get(app: &TestApp, path: &str, token: Option<&str>) -> impl Future<Output = Reply> + use<> {
    send(request(app, Method::GET, path, token))
}

#[track_caller]
pub fn post(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> impl Future<Output = Reply> + use<> {
    send(request(app, Method::POST, path, token).json(body))
}

#[track_caller]
pub fn patch(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> impl Future<Output = Reply> + use<> {
    send(request(app, Method::PATCH, path, token).json(body))
}

#[track_caller]
pub fn login(app: &TestApp, username: &str, password: &str) -> impl Future<Output = Reply> + use<> {
    post(
        app,
        "/api/v1/auth/admin/login",
        None,
        &json!({ "username": username, "password": password }),
    )
}

#[track_caller]
pub fn signup(
    app: &TestApp,
    organization: &str,
    email: &str,
    password: &str,
) -> impl Future<Output = Reply> + use<> {
    post(
        app,
        "/api/v1/signup",
        None,
        &json!({
            "organization_name": organization,
            "admin_email": email,
            "admin_password": password,
        }),
    )
}

/// Logs in and returns the access token.
pub async fn token(app: &TestApp, username: &str, password: &str) -> String {
    let reply = login(app, username, password).await.expect(200);
    reply.body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

pub async fn operator_token(app: &TestApp) -> String {
    token(app, OPERATOR_USERNAME, OPERATOR_PASSWORD).await
}

/// Provisions a tenant with default settings through the super-admin API
/// and returns the response body (`tenant`, `admin_username`, `admin_token`).
pub async fn provision(app: &TestApp, operator: &str, name: &str, admin: &str) -> Value {
    post(
        app,
        "/api/v1/superadmin/tenants",
        Some(operator),
        &json!({ "name": name, "admin_username": admin, "admin_password": PASSWORD }),
    )
    .await
    .expect(201)
    .body
}

/// A tenant admin: (tenant id, access token), provisioned by the operator.
pub async fn tenant_admin(app: &TestApp, name: &str, admin: &str) -> (String, String) {
    let operator = operator_token(app).await;
    let body = provision(app, &operator, name, admin).await;
    (
        body["tenant"]["id"]
            .as_str()
            .expect("tenant id")
            .to_string(),
        body["admin_token"]
            .as_str()
            .expect("admin_token")
            .to_string(),
    )
}

/// A JSON string field, or a panic naming it.
#[track_caller]
pub fn str_field<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is not a string in {value}"))
}

/// The array `key` of a list endpoint's answer, polled until `done` holds
/// (things written off the request path show up shortly after).
pub async fn list_until(
    app: &TestApp,
    token: &str,
    path: &str,
    key: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    for _ in 0..200 {
        let page = send(request(app, Method::GET, path, Some(token)))
            .await
            .expect(200)
            .body;
        let items = page[key].as_array().cloned().unwrap_or_default();
        if done(&items) {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{path} never showed {what}");
}
