//! The MCP proxy end to end, with real peers: the reference server
//! `@modelcontextprotocol/server-everything` (run by the gateway over
//! stdio, or over Streamable HTTP) and the official TypeScript SDK client
//! (driven by tests/peers/client.mjs). `./scripts/test` installs both from
//! tests/peers/package-lock.json.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use behavry_test_support::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{operator_token, patch, post, request, send, tenant_admin};

both_backends!(
    list_and_call_through_the_gateway,
    escalated_and_denied_calls_never_reach_the_upstream,
    the_python_sdk_works_in_every_mode,
    legacy_sse_clients_are_governed_like_the_others,
);

pub(crate) fn peers() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers");
    assert!(
        dir.join("node_modules/@modelcontextprotocol/server-everything")
            .exists(),
        "MCP test peers are not installed: run the suite with ./scripts/test (it runs npm ci in tests/peers)"
    );
    dir
}

/// Registers a server for a tenant: by its admin, or, for a stdio server
/// with a command, by the platform operator. Returns the server view.
pub(crate) async fn register(app: &TestApp, tenant: &str, admin: &str, server: &Value) -> Value {
    if server.get("command").is_some() {
        let operator = operator_token(app).await;
        let path = format!("/api/v1/superadmin/tenants/{tenant}/mcp-servers");
        post(app, &path, Some(&operator), server)
            .await
            .expect(201)
            .body
    } else {
        post(app, "/api/v1/mcp-servers", Some(admin), server)
            .await
            .expect(201)
            .body
    }
}

/// Settings variables adding an operator stdio catalogue (written to the
/// data directory): `everything`, the reference server, whose tenants may
/// set `EVERYTHING_SECRET` and `OTHER_SETTING`; and `probe`, a server that
/// reports what its process can see, whose tenants may set `PROBE_TOKEN`;
/// and `dictionary`, whose tool description tenants set (`TOOL_DESCRIPTION`).
pub(crate) fn with_catalog(vars: &mut std::collections::BTreeMap<String, String>) {
    let dir = PathBuf::from(&vars["BEHAVRY_DATA_DIR"]);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stdio-catalog.yaml");
    let catalog = json!({"servers": [
        {"name": "everything", "description": "The MCP reference server",
         "command": "node", "args": [everything_js(), "stdio"],
         "tenant_env": ["EVERYTHING_SECRET", "OTHER_SETTING"]},
        {"name": "probe", "command": "node",
         "args": [peers().join("probe_server.mjs").display().to_string()],
         "env": {"PROBE_FIXED": "set-by-the-operator"},
         "tenant_env": ["PROBE_TOKEN"]},
        {"name": "dictionary",
         "command": peers().join(".venv/bin/python").display().to_string(),
         "args": [peers().join("rug_pull_server.py").display().to_string()],
         "tenant_env": ["TOOL_DESCRIPTION"]},
    ]});
    // JSON is YAML.
    std::fs::write(&path, catalog.to_string()).unwrap();
    vars.insert("BEHAVRY_STDIO_CATALOG".into(), path.display().to_string());
}

pub(crate) fn everything_js() -> String {
    peers()
        .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
        .display()
        .to_string()
}

/// A tenant with an admin, an upstream (by default the reference server
/// over stdio) and an agent with a token.
pub(crate) struct Fixture {
    pub(crate) app: TestApp,
    pub(crate) admin: String,
    pub(crate) tenant: String,
    pub(crate) server_id: String,
    pub(crate) agent_id: String,
    pub(crate) agent_token: String,
}

impl Fixture {
    pub(crate) async fn new(backend: Backend) -> Self {
        Self::with(backend, |_| {}, 60_000).await
    }

    pub(crate) async fn with(
        backend: Backend,
        vars: impl FnOnce(&mut std::collections::BTreeMap<String, String>),
        timeout_ms: i64,
    ) -> Self {
        let app = TestApp::spawn_with(backend, vars).await;
        let (fx, server) = Self::serving(
            app,
            json!({
                "name": "everything",
                "transport": "stdio",
                "command": "node",
                "args": [everything_js(), "stdio"],
                "env": {"EVERYTHING_SECRET": "do-not-leak"},
                "timeout_ms": timeout_ms,
            }),
        )
        .await;
        assert_eq!(server["env_keys"], json!(["EVERYTHING_SECRET"]));
        assert!(
            !server.to_string().contains("do-not-leak"),
            "secrets are never returned"
        );
        fx
    }

    /// A tenant on a running app, the upstream registered as `server` (the
    /// body of `POST /api/v1/mcp-servers`) and an agent; also returns the
    /// server as the API showed it. A stdio server with a command is
    /// registered by the platform operator, since tenants cannot name
    /// programs to run.
    pub(crate) async fn serving(app: TestApp, server: Value) -> (Self, Value) {
        let (tenant, admin) = tenant_admin(&app, "Agents Inc", "admin@agents.example").await;
        let server = register(&app, &tenant, &admin, &server).await;
        let (agent_id, agent_token) = agent(&app, &admin, "assistant").await;
        let fx = Self {
            server_id: server["id"].as_str().unwrap().to_string(),
            app,
            admin,
            tenant,
            agent_id,
            agent_token,
        };
        (fx, server)
    }

    /// The agent's `tools/call` with these params, through the official
    /// TypeScript SDK.
    pub(crate) async fn call(&self, params: Value) -> Value {
        ts_client(&self.url(), &self.agent_token, "call", params).await
    }

    pub(crate) fn url(&self) -> String {
        self.app.url(&format!("/mcp/v1/{}", self.server_id))
    }

    /// The legacy HTTP+SSE event stream.
    fn sse_url(&self) -> String {
        self.app.url(&format!("/mcp/v1/{}/sse", self.server_id))
    }

    pub(crate) async fn audit(&self) -> Vec<Value> {
        let page = send(request(
            &self.app,
            Method::GET,
            "/api/v1/audit/events?limit=1000",
            Some(&self.admin),
        ))
        .await
        .expect(200)
        .body;
        page["events"].as_array().cloned().unwrap_or_default()
    }

    /// The session as listed, once it shows as ended (or as last seen,
    /// if it never does).
    pub(crate) async fn session_when_ended(&self, id: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..100 {
            let sessions = send(request(
                &self.app,
                Method::GET,
                "/api/v1/sessions?active=false",
                Some(&self.admin),
            ))
            .await
            .expect(200)
            .body;
            last = sessions["sessions"]
                .as_array()
                .and_then(|all| all.iter().find(|x| x["id"] == id))
                .cloned()
                .unwrap_or(Value::Null);
            if last["ended_at"].is_string() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last
    }

    /// Outcomes are recorded after the answer is sent: wait for them.
    pub(crate) async fn audit_until(
        &self,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        for _ in 0..100 {
            let events = self.audit().await;
            if done(&events) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("audit trail never showed {what}: {:?}", self.audit().await);
    }
}

/// Registers an agent and exchanges its credentials for a token.
pub(crate) async fn agent(app: &TestApp, admin: &str, name: &str) -> (String, String) {
    agent_with(app, admin, json!({"name": name})).await
}

/// Registers an agent as described by `body` (`POST /api/v1/agents`) and
/// exchanges its credentials for a token: (agent id, token).
pub(crate) async fn agent_with(app: &TestApp, admin: &str, body: Value) -> (String, String) {
    let created = post(app, "/api/v1/agents", Some(admin), &body)
        .await
        .expect(201)
        .body;
    let token = post(
        app,
        "/api/v1/auth/token",
        None,
        &json!({
            "client_id": created["client_id"],
            "client_secret": created["client_secret"],
            "grant_type": "client_credentials",
        }),
    )
    .await
    .expect(200)
    .body;
    (
        created["agent"]["id"].as_str().unwrap().to_string(),
        token["access_token"].as_str().unwrap().to_string(),
    )
}

/// Runs the TypeScript SDK client; returns what it reported.
pub(crate) async fn ts_client(url: &str, token: &str, scenario: &str, args: Value) -> Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(peers().join("client.mjs"))
        .args([url, token, scenario, &args.to_string()]);
    run_peer(cmd, "the TypeScript client").await
}

/// Runs a peer client and parses the JSON line it prints last.
async fn run_peer(mut cmd: tokio::process::Command, what: &str) -> Value {
    let out = cmd.stdin(Stdio::null()).output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 60 s"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "{what} output is not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub(crate) fn text_of(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn list_and_call_through_the_gateway(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let out = ts_client(&fx.url(), &fx.agent_token, "list-call", json!({})).await;
    assert!(out.get("fatal").is_none(), "{out}");
    assert_eq!(out["server"]["name"], "behavry/everything");
    let session = out["session"].as_str().expect("a session id");
    assert!(
        session.starts_with("bhv_") && session.len() >= 36,
        "{session}"
    );
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"echo") && tools.contains(&"get-sum"),
        "{tools:?}"
    );
    assert_eq!(text_of(&out["echo"]), "Echo: hello through behavry");
    assert_eq!(text_of(&out["sum"]), "The sum of 2 and 3 is 5.");

    // Every request is in the audit trail, and the chain verifies.
    let events = fx
        .audit_until("both call outcomes", |ev| {
            ev.iter().filter(|e| e["action"] == "TOOL_RESULT").count() == 2
        })
        .await;
    let calls: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "TOOL_CALL")
        .collect();
    assert_eq!(calls.len(), 2, "{events:?}");
    for c in &calls {
        assert_eq!(c["policy_result"], "allow");
        assert_eq!(c["agent_id"], fx.agent_id.as_str());
        assert_eq!(c["session_id"], session);
        assert_eq!(c["mcp_server"], "everything");
        assert!(c["input_hash"].as_str().is_some_and(|h| h.len() == 64));
    }
    let results: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "TOOL_RESULT")
        .collect();
    assert_eq!(results.len(), 2, "{events:?}");
    assert!(
        results
            .iter()
            .all(|r| r["response_code"] == 0 && r["latency_ms"].as_f64().is_some())
    );
    assert!(events.iter().any(|e| e["action"] == "SESSION_START"));
    assert!(events.iter().any(|e| e["action"] == "TOOLS_LIST"));
    let report = send(request(
        &fx.app,
        Method::GET,
        "/api/v1/audit/verify",
        Some(&fx.admin),
    ))
    .await
    .expect(200)
    .body;
    assert_eq!(report["first_broken"], Value::Null);
    assert!(report["events_checked"].as_u64().unwrap() >= 6);

    // The server list shows the live connection.
    let server = send(request(
        &fx.app,
        Method::GET,
        &format!("/api/v1/mcp-servers/{}", fx.server_id),
        Some(&fx.admin),
    ))
    .await
    .expect(200)
    .body;
    assert_eq!(server["status"], "ready");
    // The session was recorded, with its calls, and ended by the client.
    let sessions = send(request(
        &fx.app,
        Method::GET,
        "/api/v1/sessions?active=false",
        Some(&fx.admin),
    ))
    .await
    .expect(200)
    .body;
    let s = sessions["sessions"]
        .as_array()
        .and_then(|all| all.iter().find(|x| x["id"] == session))
        .cloned()
        .expect("the session is listed");
    assert_eq!(s["client_name"], "behavry-test-client");
    assert_eq!(s["protocol_version"], "2025-11-25");
    assert!(s["call_count"].as_i64().unwrap() >= 3, "{s}");
    assert!(s["ended_at"].is_string(), "the client ended it: {s}");
    let agent = send(request(
        &fx.app,
        Method::GET,
        &format!("/api/v1/agents/{}", fx.agent_id),
        Some(&fx.admin),
    ))
    .await
    .expect(200)
    .body;
    assert_eq!(agent["online"], true, "calls count as activity");
    let _ = fx.tenant;
}

async fn escalated_and_denied_calls_never_reach_the_upstream(backend: Backend) {
    let fx = Fixture::new(backend).await;
    // The base pack escalates tools it cannot classify as reads: unanswered
    // within the hold, the agent is told it waits for approval.
    let out = ts_client(
        &fx.url(),
        &fx.agent_token,
        "call",
        json!({"name": "toggle-simulated-logging"}),
    )
    .await;
    assert_eq!(out["error"]["code"], -32041, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("approval"),
        "{out}"
    );
    assert_eq!(out["error"]["data"]["policy"], "behavry-base");
    let events = fx.audit().await;
    let call = events
        .iter()
        .find(|e| e["action"] == "TOOL_CALL")
        .expect("the refusal is audited");
    assert_eq!(call["policy_result"], "escalate");
    assert_eq!(call["policy_id"], "behavry-base");
    assert!(
        call["extra"]["rules"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "decision trace kept"
    );
    assert!(
        !events.iter().any(|e| e["action"] == "TOOL_RESULT"),
        "a refused call is never forwarded: {events:?}"
    );
}

/// Raw Streamable HTTP, for protocol-level checks the SDK would hide.
pub(crate) async fn raw(
    app: &TestApp,
    url: &str,
    token: &str,
    session: Option<&str>,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app
        .client
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    // SSE answers: take the last data line.
    let value = serde_json::from_str(&text).unwrap_or_else(|_| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .next_back()
            .unwrap_or(Value::Null)
    });
    assert!(
        status < 500 || status == 502 || status == 503,
        "HTTP {status}: {text}"
    );
    (status, headers, value)
}

pub(crate) async fn initialize(app: &TestApp, url: &str, token: &str) -> String {
    let (status, headers, body) = raw(
        app,
        url,
        token,
        None,
        &[],
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["protocolVersion"], "2025-06-18");
    headers["mcp-session-id"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn sessions_are_bound_to_their_agent() {
    let fx = Fixture::new(Backend::Sqlite).await;
    let session = initialize(&fx.app, &fx.url(), &fx.agent_token).await;
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "x"}}});
    let (status, _, body) = raw(
        &fx.app,
        &fx.url(),
        &fx.agent_token,
        Some(&session),
        &[("mcp-protocol-version", "2025-06-18")],
        call.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "Echo: x");

    // Another agent of the same tenant presenting the session id is refused
    // exactly as an unknown session would be.
    let (_, other) = agent(&fx.app, &fx.admin, "intruder").await;
    let (status, _, body) = raw(
        &fx.app,
        &fx.url(),
        &other,
        Some(&session),
        &[],
        call.clone(),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = raw(
        &fx.app,
        &fx.url(),
        &other,
        Some("bhv_00000000000000000000000000000000"),
        &[],
        call.clone(),
    )
    .await;
    assert_eq!(status, 404);
    // No session at all, for a session-based version.
    let (status, _, body) = raw(&fx.app, &fx.url(), &fx.agent_token, None, &[], call.clone()).await;
    assert_eq!(status, 400, "{body}");
    // Admin tokens are not agent tokens.
    let (status, _, _) = raw(
        &fx.app,
        &fx.url(),
        &fx.admin,
        Some(&session),
        &[],
        call.clone(),
    )
    .await;
    assert_eq!(status, 401);

    // Ending the session ends it.
    let resp = fx
        .app
        .client
        .delete(fx.url())
        .bearer_auth(&fx.agent_token)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (status, _, _) = raw(
        &fx.app,
        &fx.url(),
        &fx.agent_token,
        Some(&session),
        &[],
        call,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn suspension_stops_the_agent_at_once() {
    let fx = Fixture::new(Backend::Sqlite).await;
    let session = initialize(&fx.app, &fx.url(), &fx.agent_token).await;
    post(
        &fx.app,
        &format!("/api/v1/agents/{}/suspend", fx.agent_id),
        Some(&fx.admin),
        &json!({}),
    )
    .await
    .expect(200);
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "x"}}});
    let (status, _, body) = raw(
        &fx.app,
        &fx.url(),
        &fx.agent_token,
        Some(&session),
        &[],
        call.clone(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], -32043);
    // The agent's sessions were ended too: reactivation does not revive them.
    post(
        &fx.app,
        &format!("/api/v1/agents/{}/reactivate", fx.agent_id),
        Some(&fx.admin),
        &json!({}),
    )
    .await
    .expect(200);
    let (status, _, _) = raw(
        &fx.app,
        &fx.url(),
        &fx.agent_token,
        Some(&session),
        &[],
        call.clone(),
    )
    .await;
    assert_eq!(status, 404);

    // A suspended tenant blocks its agents.
    let operator = operator_token(&fx.app).await;
    post(
        &fx.app,
        &format!("/api/v1/superadmin/tenants/{}/suspend", fx.tenant),
        Some(&operator),
        &json!({}),
    )
    .await
    .expect(200);
    let (status, _, body) = raw(
        &fx.app,
        &fx.url(),
        &fx.agent_token,
        None,
        &[],
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn stateless_requests_need_matching_headers() {
    let fx = Fixture::new(Backend::Sqlite).await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "get-sum", "arguments": {"a": 1, "b": 1},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let good = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "get-sum"),
    ];
    // Wait for the upstream: the first stateless call may race its start.
    let mut answer = Value::Null;
    for _ in 0..60 {
        let (status, _, body) = raw(
            &fx.app,
            &fx.url(),
            &fx.agent_token,
            None,
            &good,
            call.clone(),
        )
        .await;
        answer = json!({"status": status, "body": body});
        if status == 200 && body.get("result").is_some() {
            answer = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        answer["result"]["content"][0]["text"], "The sum of 1 and 1 is 2.",
        "{answer}"
    );
    let bad = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ];
    let (status, _, body) = raw(
        &fx.app,
        &fx.url(),
        &fx.agent_token,
        None,
        &bad,
        call.clone(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], -32020);
    let (status, _, body) = raw(
        &fx.app,
        &fx.url(),
        &fx.agent_token,
        None,
        &[("mcp-protocol-version", "1999-01-01")],
        call,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], -32022);
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}});
    let (status, _, body) = raw(
        &fx.app,
        &fx.url(),
        &fx.agent_token,
        None,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "server/discover"),
        ],
        discover,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );
}

#[tokio::test]
async fn malformed_mcp_requests_get_json_rpc_errors() {
    let fx = Fixture::new(Backend::Sqlite).await;
    let session = initialize(&fx.app, &fx.url(), &fx.agent_token).await;
    for (body, code) in [
        (json!({"id": 1, "method": "tools/list"}), -32600),
        (json!({"jsonrpc": "2.0", "id": 1, "method": 5}), -32600),
        (json!([]), -32600),
    ] {
        let (status, _, answer) = raw(
            &fx.app,
            &fx.url(),
            &fx.agent_token,
            Some(&session),
            &[],
            body.clone(),
        )
        .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
    }
    let resp = fx
        .app
        .client
        .post(fx.url())
        .bearer_auth(&fx.agent_token)
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["error"]["code"], -32700);
    // Missing tool name.
    let (_, _, answer) = raw(
        &fx.app,
        &fx.url(),
        &fx.agent_token,
        Some(&session),
        &[],
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {}}),
    )
    .await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    // Unknown server id and a non-UUID one.
    for path in [
        "/mcp/v1/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "/mcp/v1/nope",
    ] {
        let (status, _, _) = raw(
            &fx.app,
            &fx.app.url(path),
            &fx.agent_token,
            None,
            &[],
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
        )
        .await;
        assert_eq!(status, 404, "{path}");
    }
}

#[tokio::test]
async fn rate_limit_and_upstream_timeout_are_json_rpc_errors() {
    let fx = Fixture::with(
        Backend::Sqlite,
        |v| {
            v.insert("BEHAVRY_RATE_LIMIT_BURST".into(), "2".into());
        },
        1_000,
    )
    .await;
    let operator = operator_token(&fx.app).await;
    patch(
        &fx.app,
        &format!("/api/v1/superadmin/tenants/{}", fx.tenant),
        Some(&operator),
        &json!({"max_rpm_per_agent": 1}),
    )
    .await
    .expect(200);
    let session = initialize(&fx.app, &fx.url(), &fx.agent_token).await;
    // The upstream takes 5 s; the server's limit is 1 s.
    let slow = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "trigger-long-running-operation", "arguments": {"duration": 5, "steps": 1}}});
    let started = std::time::Instant::now();
    let (_, _, answer) = raw(
        &fx.app,
        &fx.url(),
        &fx.agent_token,
        Some(&session),
        &[],
        slow,
    )
    .await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout cut the call short"
    );
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "x"}}});
    let (_, _, answer) = raw(
        &fx.app,
        &fx.url(),
        &fx.agent_token,
        Some(&session),
        &[],
        call.clone(),
    )
    .await;
    assert!(
        answer.get("result").is_some(),
        "second call within the burst: {answer}"
    );
    let (_, _, answer) = raw(
        &fx.app,
        &fx.url(),
        &fx.agent_token,
        Some(&session),
        &[],
        call,
    )
    .await;
    assert_eq!(
        answer["error"]["code"], -32042,
        "third call exceeds the burst: {answer}"
    );
    fx.audit_until("the rate-limit refusal and the timeout", |ev| {
        ev.iter()
            .any(|e| e["policy_id"] == "rate_limit" && e["policy_result"] == "deny")
            && ev
                .iter()
                .any(|e| e["action"] == "TOOL_RESULT" && e["response_code"] == -32001)
    })
    .await;
}

#[tokio::test]
async fn a_crashing_upstream_gives_a_clear_error() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (tenant, admin) = tenant_admin(&app, "Crash Co", "admin@crash.example").await;
    let server = register(
        &app,
        &tenant,
        &admin,
        &json!({"name": "broken", "transport": "stdio", "command": "node", "args": ["-e", "process.exit(3)"]}),
    )
    .await;
    let (_, token) = agent(&app, &admin, "a").await;
    let url = app.url(&format!("/mcp/v1/{}", server["id"].as_str().unwrap()));
    let started = std::time::Instant::now();
    let (status, _, body) = raw(
        &app,
        &url,
        &token,
        None,
        &[],
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["error"]["code"], -32002, "{body}");
    assert!(started.elapsed() < Duration::from_secs(20), "no hang");
    let view = send(request(
        &app,
        Method::GET,
        &format!("/api/v1/mcp-servers/{}", server["id"].as_str().unwrap()),
        Some(&admin),
    ))
    .await
    .expect(200)
    .body;
    assert_eq!(view["status"], "failed", "{view}");
    assert!(view["status_detail"].as_str().is_some(), "{view}");
}

/// Runs the Python SDK client; returns what it reported.
async fn py_client(url: &str, token: &str, mode: &str) -> Value {
    let python = peers().join(".venv/bin/python");
    assert!(
        python.exists(),
        "the Python MCP client is not installed: run the suite with ./scripts/test"
    );
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(peers().join("py_client.py"))
        .args([url, token, mode]);
    run_peer(cmd, "the Python client").await
}

async fn the_python_sdk_works_in_every_mode(backend: Backend) {
    let fx = Fixture::new(backend).await;
    // "legacy": the initialize handshake and a session.
    let out = py_client(&fx.url(), &fx.agent_token, "legacy").await;
    assert!(out.get("fatal").is_none(), "{out}");
    assert_eq!(out["protocol"], "2025-11-25");
    assert_eq!(out["echo"], "Echo: from python");
    assert_eq!(out["is_error"], false);
    // "auto" probes the stateless revision first and gets it; "2026-07-28"
    // insists on it.
    for mode in ["auto", "2026-07-28"] {
        let out = py_client(&fx.url(), &fx.agent_token, mode).await;
        assert!(out.get("fatal").is_none(), "{mode}: {out}");
        assert_eq!(out["sum"], "The sum of 20 and 22 is 42.", "{mode}: {out}");
        assert!(
            out["tools"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("echo")))
        );
    }
}

/// The reference server run as an HTTP service; killed with the test.
pub(crate) struct HttpPeer {
    child: tokio::process::Child,
    pub(crate) port: u16,
}

impl HttpPeer {
    pub(crate) async fn start(mode: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new("node")
            .args([everything_js().as_str(), mode])
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start server-everything");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self { child, port };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("server-everything ({mode}) did not start listening on {port}");
    }
}

impl Drop for HttpPeer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn http_upstreams_streamable_and_legacy_sse() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_, admin) = tenant_admin(&app, "Http Co", "admin@http.example").await;
    let (_, token) = agent(&app, &admin, "a").await;
    let streamable = HttpPeer::start("streamableHttp").await;
    let sse = HttpPeer::start("sse").await;
    for (name, transport, url) in [
        (
            "streamable",
            "streamable_http",
            format!("http://127.0.0.1:{}/mcp", streamable.port),
        ),
        (
            "legacy",
            "sse",
            format!("http://127.0.0.1:{}/sse", sse.port),
        ),
    ] {
        let server = post(
            &app,
            "/api/v1/mcp-servers",
            Some(&admin),
            &json!({"name": name, "transport": transport, "url": url, "headers": {"X-Upstream-Key": "kept-server-side"}}),
        )
        .await
        .expect(201)
        .body;
        assert_eq!(server["header_keys"], json!(["X-Upstream-Key"]));
        let gateway = app.url(&format!("/mcp/v1/{}", server["id"].as_str().unwrap()));
        let out = ts_client(&gateway, &token, "list-call", json!({})).await;
        assert!(out.get("fatal").is_none(), "{transport}: {out}");
        assert_eq!(
            text_of(&out["echo"]),
            "Echo: hello through behavry",
            "{transport}: {out}"
        );
        assert_eq!(
            text_of(&out["sum"]),
            "The sum of 2 and 3 is 5.",
            "{transport}: {out}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_opa_fails_closed() {
    // Nothing listens on this port: the external policy engine is down.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fx = Fixture::with(
        Backend::Sqlite,
        |v| {
            v.insert(
                "BEHAVRY_OPA_URL".into(),
                format!("http://127.0.0.1:{closed}"),
            );
            v.insert("BEHAVRY_OPA_TIMEOUT_SECONDS".into(), "0.5".into());
        },
        60_000,
    )
    .await;
    let out = ts_client(
        &fx.url(),
        &fx.agent_token,
        "call",
        json!({"name": "echo", "arguments": {"message": "x"}}),
    )
    .await;
    assert_eq!(out["error"]["code"], -32040, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unavailable"),
        "{out}"
    );
    let call = fx
        .audit_until("the refused call", |ev| {
            ev.iter().any(|e| e["action"] == "TOOL_CALL")
        })
        .await
        .into_iter()
        .find(|e| e["action"] == "TOOL_CALL")
        .unwrap();
    assert_eq!(call["policy_result"], "deny");
    assert!(
        !fx.audit()
            .await
            .iter()
            .any(|e| e["action"] == "TOOL_RESULT"),
        "never forwarded"
    );
    // Readiness says so (503 is the intended answer here).
    let ready = fx
        .app
        .client
        .get(fx.app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        body["components"]["policy_engine"]["status"], "unavailable",
        "{body}"
    );
}

async fn legacy_sse_clients_are_governed_like_the_others(backend: Backend) {
    let fx = Fixture::new(backend).await;

    // The official Python SDK's legacy transport (`sse_client`).
    let out = py_client(&fx.sse_url(), &fx.agent_token, "sse").await;
    assert!(out.get("fatal").is_none(), "{out}");
    let session = out["session"]
        .as_str()
        .expect("the endpoint URL carries the session id")
        .to_string();
    assert!(
        session.starts_with("bhv_") && session.len() == 36,
        "{session}"
    );
    assert_eq!(out["server"], "behavry/everything");
    assert_eq!(out["protocol"], "2025-11-25", "the SDK's newest, even here");
    assert!(
        out["tools"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("echo")) && t.contains(&json!("get-sum"))),
        "{out}"
    );
    assert_eq!(out["echo"], "Echo: over legacy sse");
    assert_eq!(out["sum"], "The sum of 40 and 2 is 42.");
    let escalated = &out["refused"]["toggle-simulated-logging"];
    assert_eq!(escalated["code"], -32041, "{out}");
    assert_eq!(escalated["data"]["policy"], "behavry-base", "{out}");
    let denied = &out["refused"]["send-email"];
    assert_eq!(denied["code"], -32040, "{out}");

    // The official TypeScript SDK's `SSEClientTransport`.
    let ts = ts_client(
        &fx.sse_url(),
        &fx.agent_token,
        "list-call",
        json!({"transport": "sse"}),
    )
    .await;
    assert!(ts.get("fatal").is_none(), "{ts}");
    assert_eq!(text_of(&ts["echo"]), "Echo: hello through behavry");
    assert_eq!(text_of(&ts["sum"]), "The sum of 2 and 3 is 5.");
    let ts_session = ts["session"].as_str().expect("a session id").to_string();
    assert_ne!(ts_session, session);
    let ts_denied = ts_client(
        &fx.sse_url(),
        &fx.agent_token,
        "call",
        json!({"transport": "sse", "name": "send-email", "arguments": {"to": "x"}}),
    )
    .await;
    assert_eq!(ts_denied["error"]["code"], -32040, "{ts_denied}");

    // The same audit trail as Streamable HTTP: decisions with the session,
    // outcomes for the forwarded calls only.
    let events = fx
        .audit_until("the outcomes of both Python calls", |ev| {
            ev.iter()
                .filter(|e| e["action"] == "TOOL_RESULT" && e["session_id"] == session.as_str())
                .count()
                == 2
        })
        .await;
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["session_id"] == session.as_str())
        .collect();
    let decision = |tool: &str| {
        mine.iter()
            .find(|e| e["action"] == "TOOL_CALL" && e["tool_name"] == tool)
            .map(|e| e["policy_result"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(decision("echo"), "allow", "{mine:?}");
    assert_eq!(decision("get-sum"), "allow", "{mine:?}");
    assert_eq!(decision("toggle-simulated-logging"), "escalate", "{mine:?}");
    assert_eq!(decision("send-email"), "deny", "{mine:?}");
    assert!(mine.iter().any(|e| e["action"] == "SESSION_START"));
    assert!(mine.iter().any(|e| e["action"] == "TOOLS_LIST"));
    assert!(
        mine.iter()
            .all(|e| e["agent_id"] == fx.agent_id.as_str() && e["mcp_server"] == "everything")
    );
    let report = send(request(
        &fx.app,
        Method::GET,
        "/api/v1/audit/verify",
        Some(&fx.admin),
    ))
    .await
    .expect(200)
    .body;
    assert_eq!(report["first_broken"], Value::Null);

    // Both sessions were recorded, and ended when their streams closed.
    for id in [&session, &ts_session] {
        let last = fx.session_when_ended(id).await;
        assert!(last["ended_at"].is_string(), "{id} ended: {last}");
        assert_eq!(last["agent_id"], fx.agent_id.as_str(), "{last}");
        assert_eq!(last["server_id"], fx.server_id.as_str(), "{last}");
    }
    let ts_record = session_record(&fx, &ts_session).await;
    assert_eq!(ts_record["client_name"], "behavry-test-client");
    assert_eq!(ts_record["protocol_version"], "2025-11-25");
    // Nothing is left behind on the replica.
    for _ in 0..100 {
        if fx.app.state.legacy_sse.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fx.app.state.legacy_sse.is_empty(), "streams left open");
}

async fn session_record(fx: &Fixture, id: &str) -> Value {
    let sessions = send(request(
        &fx.app,
        Method::GET,
        "/api/v1/sessions?active=false",
        Some(&fx.admin),
    ))
    .await
    .expect(200)
    .body;
    sessions["sessions"]
        .as_array()
        .and_then(|all| all.iter().find(|x| x["id"] == id))
        .cloned()
        .unwrap_or(Value::Null)
}

/// A raw legacy SSE stream, for protocol-level checks.
struct EventStream {
    response: reqwest::Response,
    decoder: behavry_mcp::sse::Decoder,
    pending: std::collections::VecDeque<behavry_mcp::sse::Event>,
}

impl EventStream {
    async fn open(app: &TestApp, url: &str, token: &str) -> Self {
        let response = app
            .client
            .get(url)
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("GET the event stream");
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            response,
            decoder: behavry_mcp::sse::Decoder::new(1 << 20),
            pending: Default::default(),
        }
    }

    async fn next(&mut self) -> behavry_mcp::sse::Event {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return e;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("an event within 30 s")
                .expect("the stream is readable")
                .expect("the stream is still open");
            self.pending.extend(self.decoder.feed(&chunk).unwrap());
        }
    }

    /// Waits for the server to end the stream.
    async fn ends(&mut self) {
        loop {
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("the stream ends within 30 s");
            if let Ok(None) | Err(_) = chunk {
                return;
            }
        }
    }

    /// The URL the `endpoint` event names, made absolute.
    async fn endpoint(&mut self, app: &TestApp) -> String {
        let e = self.next().await;
        assert_eq!(e.event.as_deref(), Some("endpoint"), "{e:?}");
        app.url(&e.data)
    }

    /// The response to request `id`, past notifications (the upstream's
    /// own, like `tools/list_changed`, come on the stream too).
    async fn response(&mut self, id: i64) -> Value {
        loop {
            let e = self.next().await;
            if e.event.as_deref() != Some("message") {
                continue;
            }
            let m: Value = serde_json::from_str(&e.data).expect("a JSON-RPC message");
            if m.get("method").is_none() {
                assert_eq!(m["id"], id, "responses come in order here: {m}");
                return m;
            }
        }
    }
}

async fn post_message(
    app: &TestApp,
    url: &str,
    token: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let resp = app
        .client
        .post(url)
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("POST a message");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert!(status < 500, "HTTP {status}: {text}");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn legacy_sse_sessions_are_bound_to_their_agent() {
    let fx = Fixture::new(Backend::Sqlite).await;
    // The stream needs an agent token, like everything under /mcp.
    let resp = fx.app.client.get(fx.sse_url()).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = fx
        .app
        .client
        .get(fx.sse_url())
        .bearer_auth(&fx.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let mut stream = EventStream::open(&fx.app, &fx.sse_url(), &fx.agent_token).await;
    let endpoint = stream.endpoint(&fx.app).await;
    let prefix = format!("/mcp/v1/{}/messages?session_id=bhv_", fx.server_id);
    assert!(endpoint.contains(&prefix), "{endpoint}");
    let session = endpoint.rsplit('=').next().unwrap().to_string();
    assert_eq!(session.len(), 36, "128 random bits: {session}");
    let json = "application/json";
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "x"}}})
    .to_string();

    // No session, a made-up one, another server's path: clear refusals.
    let no_session = fx.app.url(&format!("/mcp/v1/{}/messages", fx.server_id));
    let (status, body) = post_message(&fx.app, &no_session, &fx.agent_token, json, &call).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session_id"),
        "{body}"
    );
    let made_up = format!("{no_session}?session_id=bhv_00000000000000000000000000000000");
    let (status, _) = post_message(&fx.app, &made_up, &fx.agent_token, json, &call).await;
    assert_eq!(status, 404);
    let elsewhere = endpoint.replace(&fx.server_id, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    let (status, _) = post_message(&fx.app, &elsewhere, &fx.agent_token, json, &call).await;
    assert_eq!(status, 404);
    // Without a token, or with an admin token.
    let resp = fx
        .app
        .client
        .post(&endpoint)
        .body(call.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Calls before the handshake, and malformed messages.
    let (status, body) = post_message(&fx.app, &endpoint, &fx.agent_token, json, &call).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("initialize")
    );
    let (status, body) = post_message(&fx.app, &endpoint, &fx.agent_token, json, "{nope").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!(-32700))
    );
    let (status, body) =
        post_message(&fx.app, &endpoint, &fx.agent_token, json, r#"{"id": 1}"#).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!(-32600))
    );
    let (status, _) = post_message(&fx.app, &endpoint, &fx.agent_token, "text/plain", &call).await;
    assert_eq!(status, 415);

    // The handshake and a call, answered on the stream.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "raw-sse", "version": "0"}}})
    .to_string();
    let (status, _) = post_message(&fx.app, &endpoint, &fx.agent_token, json, &init).await;
    assert_eq!(status, 202);
    let answer = stream.response(1).await;
    assert_eq!(
        answer["result"]["protocolVersion"], "2024-11-05",
        "{answer}"
    );
    let (status, _) = post_message(&fx.app, &endpoint, &fx.agent_token, json, &init).await;
    assert_eq!(status, 202);
    let again = stream.response(1).await;
    assert_eq!(again["error"]["code"], -32600, "initialized once: {again}");
    let (status, _) = post_message(
        &fx.app,
        &endpoint,
        &fx.agent_token,
        json,
        r#"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#,
    )
    .await;
    assert_eq!(status, 202);
    let (status, _) = post_message(&fx.app, &endpoint, &fx.agent_token, json, &call).await;
    assert_eq!(status, 202);
    let answer = stream.response(2).await;
    assert_eq!(
        answer["result"]["content"][0]["text"], "Echo: x",
        "{answer}"
    );

    // Another agent of the same tenant presenting the session id is refused
    // exactly as an unknown session would be, and nothing reaches the
    // upstream or the stream.
    let (intruder_id, intruder) = agent(&fx.app, &fx.admin, "intruder").await;
    let (status, body) = post_message(&fx.app, &endpoint, &intruder, json, &call).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], -32000, "{body}");
    let (status, _) = post_message(&fx.app, &endpoint, &fx.admin, json, &call).await;
    assert_eq!(status, 401);
    let events = fx.audit().await;
    assert!(
        !events.iter().any(|e| e["agent_id"] == intruder_id.as_str()),
        "{events:?}"
    );
    let calls: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "TOOL_CALL")
        .collect();
    assert_eq!(calls.len(), 1, "{events:?}");
    assert_eq!(calls[0]["session_id"], session.as_str());

    // Closing the stream ends the session: its URL is dead and the session
    // is recorded as ended.
    drop(stream);
    for _ in 0..100 {
        if fx.app.state.legacy_sse.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        fx.app.state.legacy_sse.is_empty(),
        "the stream's session is gone"
    );
    let (status, _) = post_message(&fx.app, &endpoint, &fx.agent_token, json, &call).await;
    assert_eq!(status, 404);
    let ended = fx.session_when_ended(&session).await;
    assert!(ended["ended_at"].is_string(), "{ended}");
    assert_eq!(ended["client_name"], "raw-sse");
    assert_eq!(ended["protocol_version"], "2024-11-05");

    // Shutting down ends every event stream (legacy, and Streamable HTTP's
    // GET stream), so a graceful shutdown does not wait for the clients.
    let mut legacy = EventStream::open(&fx.app, &fx.sse_url(), &fx.agent_token).await;
    legacy.endpoint(&fx.app).await;
    let streamable_session = initialize(&fx.app, &fx.url(), &fx.agent_token).await;
    let response = fx
        .app
        .client
        .get(fx.url())
        .bearer_auth(&fx.agent_token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &streamable_session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut streamable = EventStream {
        response,
        decoder: behavry_mcp::sse::Decoder::new(1 << 20),
        pending: Default::default(),
    };
    fx.app.state.closing.send_replace(true);
    legacy.ends().await;
    streamable.ends().await;
}
