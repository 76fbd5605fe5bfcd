//! The gateway with rmcp, the official Rust MCP SDK, on either side: as the
//! upstream server (in this process, over Streamable HTTP, reached by the
//! TypeScript SDK client through the gateway) and as the agent's client (in
//! front of the reference server over stdio).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use behavry_test_support::{Backend, TestApp};
use reqwest::Method;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ErrorData, Implementation,
    ProtocolVersion,
};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{
    StreamableHttpClientTransport, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::{
    ClientLifecycleMode, ClientServiceExt, RoleClient, ServerHandler, ServiceError, ServiceExt,
    tool, tool_handler, tool_router,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::mcp::{Fixture, agent_with, text_of, ts_client};
use crate::support::{request, send};

// ---------------------------------------------------------------------------
// rmcp as the upstream server

/// A small records service built with rmcp's tool macros. It remembers every
/// call that reaches it, so a test can tell what the gateway let through.
#[derive(Clone)]
struct Records {
    received: Arc<Mutex<Vec<String>>>,
}

#[derive(Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct RecordId {
    /// The record's id.
    id: String,
}

#[derive(Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct RecordChange {
    id: String,
    value: String,
}

impl Records {
    fn receive(&self, what: String) {
        self.received.lock().unwrap().push(what);
    }
}

#[tool_router]
impl Records {
    #[tool(
        description = "Looks a record up by id.",
        annotations(read_only_hint = true)
    )]
    async fn lookup(&self, Parameters(RecordId { id }): Parameters<RecordId>) -> String {
        self.receive(format!("lookup {id}"));
        format!("record {id}: status=active")
    }

    /// Its name reads as "run a command"; its annotation says it only reads.
    #[tool(
        description = "Runs the records report (reads only).",
        annotations(read_only_hint = true)
    )]
    async fn run_report(&self) -> String {
        self.receive("run_report".into());
        "2 records, 1 active".into()
    }

    #[tool(
        description = "Deletes a record for good.",
        annotations(destructive_hint = true)
    )]
    async fn delete_record(&self, Parameters(RecordId { id }): Parameters<RecordId>) -> String {
        self.receive(format!("delete_record {id}"));
        format!("record {id} deleted")
    }

    #[tool(
        description = "Changes a record's value.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn update_record(
        &self,
        Parameters(RecordChange { id, value }): Parameters<RecordChange>,
    ) -> String {
        self.receive(format!("update_record {id}"));
        format!("record {id} set to {value}")
    }
}

#[tool_handler(name = "rmcp-records", version = "1.0.0")]
impl ServerHandler for Records {}

/// Serves [`Records`] over Streamable HTTP on a free loopback port, with
/// rmcp's default configuration (loopback `Host` check, sessions). Returns
/// the MCP endpoint and the calls the server received.
async fn start_records() -> (String, Arc<Mutex<Vec<String>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let for_sessions = received.clone();
    let service = StreamableHttpService::new(
        move || {
            Ok(Records {
                received: for_sessions.clone(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn tool_names(tools: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = tools
        .as_array()
        .unwrap_or_else(|| panic!("no tool list: {tools}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn an_rmcp_server_behind_the_gateway() {
    let (upstream, received) = start_records().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (fx, server) = Fixture::serving(
        app,
        json!({"name": "records", "transport": "streamable_http", "url": upstream}),
    )
    .await;
    assert_eq!(server["transport"], "streamable_http", "{server}");

    let out = ts_client(
        &fx.url(),
        &fx.agent_token,
        "script",
        json!({"calls": [
            {"name": "lookup", "arguments": {"id": "r-1"}},
            {"name": "run_report"},
            {"name": "delete_record", "arguments": {"id": "r-1"}},
            {"name": "update_record", "arguments": {"id": "r-1", "value": "x"}},
        ]}),
    )
    .await;
    assert!(out.get("fatal").is_none(), "{out}");
    assert_eq!(out["server"]["name"], "behavry/records", "{out}");

    // The list: what the upstream declared, less what this agent's policy
    // denies (a write without a grant); annotations pass through unchanged.
    assert_eq!(
        tool_names(&out["tools"]),
        ["delete_record", "lookup", "run_report"],
        "{out}"
    );
    let tool = |name: &str| {
        out["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(tool("lookup")["annotations"]["readOnlyHint"], true);
    assert_eq!(
        tool("delete_record")["annotations"]["destructiveHint"],
        true
    );
    assert_eq!(
        tool("lookup")["inputSchema"]["properties"]["id"]["type"],
        "string",
        "the upstream's schema is relayed"
    );

    // Reads are allowed: by annotation, even where the name suggests
    // running something.
    let calls = out["calls"].as_array().unwrap();
    assert_eq!(
        text_of(&calls[0]["result"]),
        "record r-1: status=active",
        "{out}"
    );
    assert_eq!(text_of(&calls[1]["result"]), "2 records, 1 active", "{out}");
    // A destructive tool escalates: held (one second in tests), then the
    // agent is told it waits for approval, naming the base pack.
    assert_eq!(calls[2]["error"]["code"], -32041, "{out}");
    assert_eq!(calls[2]["error"]["data"]["policy"], "behavry-base", "{out}");
    assert!(
        calls[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("delete actions need a human's approval"),
        "{out}"
    );
    // A write without a grant is denied by default.
    assert_eq!(calls[3]["error"]["code"], -32040, "{out}");
    assert!(
        calls[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no policy allows"),
        "{out}"
    );
    // Only the allowed calls reached the server.
    assert_eq!(
        *received.lock().unwrap(),
        ["lookup r-1", "run_report"],
        "refused calls must never reach the upstream"
    );

    // Every call is audited with its decision; only allowed ones have an
    // outcome.
    let events = fx
        .audit_until("four decisions and two outcomes", |ev| {
            ev.iter().filter(|e| e["action"] == "TOOL_CALL").count() == 4
                && ev.iter().filter(|e| e["action"] == "TOOL_RESULT").count() == 2
        })
        .await;
    let call = |tool: &str| {
        events
            .iter()
            .find(|e| e["action"] == "TOOL_CALL" && e["tool_name"] == tool)
            .unwrap_or_else(|| panic!("no TOOL_CALL row for {tool}: {events:?}"))
    };
    for (tool, result, action) in [
        ("lookup", "allow", "read"),
        ("run_report", "allow", "read"),
        ("delete_record", "escalate", "delete"),
        ("update_record", "deny", "write"),
    ] {
        let row = call(tool);
        assert_eq!(row["policy_result"], result, "{tool}: {row}");
        assert_eq!(row["extra"]["action"], action, "{tool}: {row}");
        assert_eq!(row["mcp_server"], "records", "{row}");
        assert_eq!(row["agent_id"], fx.agent_id.as_str(), "{row}");
        assert!(row["session_id"].is_string(), "{row}");
    }
    let mut outcomes: Vec<&str> = events
        .iter()
        .filter(|e| e["action"] == "TOOL_RESULT")
        .map(|e| {
            assert_eq!(e["response_code"], 0, "{e}");
            e["tool_name"].as_str().unwrap()
        })
        .collect();
    outcomes.sort_unstable();
    assert_eq!(outcomes, ["lookup", "run_report"]);

    // An agent granted `records:write` sees the write tool and may call it.
    let (_, writer) = agent_with(
        &fx.app,
        &fx.admin,
        json!({"name": "writer", "permissions": ["records:write"]}),
    )
    .await;
    let out = ts_client(
        &fx.url(),
        &writer,
        "script",
        json!({"calls": [{"name": "update_record", "arguments": {"id": "r-2", "value": "y"}}]}),
    )
    .await;
    assert!(out.get("fatal").is_none(), "{out}");
    assert!(
        tool_names(&out["tools"]).contains(&"update_record"),
        "{out}"
    );
    assert_eq!(
        text_of(&out["calls"][0]["result"]),
        "record r-2 set to y",
        "{out}"
    );
    assert_eq!(
        received.lock().unwrap().last().map(String::as_str),
        Some("update_record r-2")
    );
}

// ---------------------------------------------------------------------------
// rmcp as the agent's client

pub(crate) type McpClient = RunningService<RoleClient, ClientConfig>;

fn client_info() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("behavry-rmcp-test", "1.0.0"),
    )
}

fn transport(url: &str, token: &str) -> StreamableHttpClientTransport<reqwest::Client> {
    // The token goes out as `Authorization: Bearer <token>` on every request.
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token),
    )
}

/// An rmcp client that did the `initialize` handshake with the gateway.
pub(crate) async fn rmcp_client(url: &str, token: &str) -> McpClient {
    bounded("initialize", client_info().serve(transport(url, token)))
        .await
        .unwrap_or_else(|e| panic!("rmcp client could not connect to {url}: {e}"))
}

/// An rmcp client on the stateless revision: `server/discover`, no session.
async fn rmcp_stateless_client(url: &str, token: &str) -> McpClient {
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    bounded(
        "server/discover",
        client_info().serve_with_lifecycle(transport(url, token), lifecycle),
    )
    .await
    .unwrap_or_else(|e| panic!("rmcp client could not discover {url}: {e}"))
}

/// Fails the test instead of hanging it when the gateway never answers.
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 60 s"))
}

/// Calls a tool: the result as JSON, or the JSON-RPC error.
pub(crate) async fn call(client: &McpClient, name: &str, args: Value) -> Result<Value, ErrorData> {
    let params = CallToolRequestParams::new(name.to_string())
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    match bounded(name, client.call_tool(params)).await {
        Ok(result) => Ok(serde_json::to_value(result).unwrap()),
        Err(ServiceError::McpError(error)) => Err(error),
        Err(other) => panic!("calling {name} failed below the protocol: {other}"),
    }
}

/// The tools the gateway lists, by name.
pub(crate) async fn listed(client: &McpClient) -> Vec<String> {
    let mut names: Vec<String> = bounded("tools/list", client.list_all_tools())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn the_rmcp_client_through_the_gateway() {
    let fx = Fixture::new(Backend::Sqlite).await;

    // Unauthenticated, the gateway turns the client away.
    let refused = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(fx.url()),
        ))
        .await;
    assert!(refused.is_err(), "no token, no session");

    let client = rmcp_client(&fx.url(), &fx.agent_token).await;
    let info = client.peer_info().expect("initialized");
    assert_eq!(
        info.server_info.as_ref().unwrap().name,
        "behavry/everything"
    );
    assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);
    let tools = listed(&client).await;
    assert!(
        tools.iter().any(|t| t == "echo") && tools.iter().any(|t| t == "get-sum"),
        "{tools:?}"
    );

    let echo = call(&client, "echo", json!({"message": "from rmcp"}))
        .await
        .unwrap();
    assert_eq!(text_of(&echo), "Echo: from rmcp");
    // Escalated: the base pack cannot tell what toggling does.
    let escalated = call(&client, "toggle-simulated-logging", json!({}))
        .await
        .unwrap_err();
    assert_eq!(escalated.code.0, -32041, "{escalated:?}");
    assert_eq!(escalated.data.as_ref().unwrap()["policy"], "behavry-base");
    // Denied: a write, and this agent holds no write grant. The gateway
    // refuses before the upstream could say it has no such tool.
    let denied = call(&client, "set-config", json!({"key": "x"}))
        .await
        .unwrap_err();
    assert_eq!(denied.code.0, -32040, "{denied:?}");
    assert!(denied.message.contains("no policy allows"), "{denied:?}");

    let events = fx
        .audit_until("three decisions and the echo's outcome", |ev| {
            ev.iter().filter(|e| e["action"] == "TOOL_CALL").count() == 3
                && ev.iter().any(|e| e["action"] == "TOOL_RESULT")
        })
        .await;
    let decisions: Vec<(&str, &str)> = ["echo", "toggle-simulated-logging", "set-config"]
        .iter()
        .map(|tool| {
            let row = events
                .iter()
                .find(|e| e["action"] == "TOOL_CALL" && e["tool_name"] == *tool)
                .unwrap_or_else(|| panic!("{tool} not audited: {events:?}"));
            (*tool, row["policy_result"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("echo", "allow"),
            ("toggle-simulated-logging", "escalate"),
            ("set-config", "deny")
        ]
    );
    let results: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "TOOL_RESULT")
        .collect();
    assert_eq!(results.len(), 1, "only the echo was forwarded: {events:?}");
    assert_eq!(results[0]["tool_name"], "echo");

    // Closing the client ends its session at the gateway.
    let _ = client.cancel().await;
    let mut session = Value::Null;
    for _ in 0..100 {
        let listing = send(request(
            &fx.app,
            Method::GET,
            "/api/v1/sessions?active=false",
            Some(&fx.admin),
        ))
        .await
        .expect(200)
        .body;
        session = listing["sessions"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|s| s["client_name"] == "behavry-rmcp-test")
                    .cloned()
            })
            .expect("the rmcp client's session is listed");
        if session["ended_at"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(session["ended_at"].is_string(), "{session}");
    assert_eq!(session["protocol_version"], "2025-11-25", "{session}");

    // The stateless revision: no handshake, no session, same policy.
    let client = rmcp_stateless_client(&fx.url(), &fx.agent_token).await;
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2026_07_28
    );
    assert!(listed(&client).await.iter().any(|t| t == "get-sum"));
    let sum = call(&client, "get-sum", json!({"a": 40, "b": 2}))
        .await
        .unwrap();
    assert_eq!(text_of(&sum), "The sum of 40 and 2 is 42.");
    let escalated = call(&client, "toggle-simulated-logging", json!({}))
        .await
        .unwrap_err();
    assert_eq!(escalated.code.0, -32041, "{escalated:?}");
    let _ = client.cancel().await;
}
