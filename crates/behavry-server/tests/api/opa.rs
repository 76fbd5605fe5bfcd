//! The gateway deciding through an external OPA, end to end. The OPA here is
//! a stand-in: a small axum server written for this test that answers the
//! parts of OPA's REST API the gateway uses (policy PUT/GET/DELETE, data
//! queries, `GET /health`) with canned answers. It is not OPA; it compiles
//! nothing and decides by tool name, which is what lets the test tell its
//! decisions from the embedded engine's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json as AxumJson;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use behavry_test_support::Backend;
use serde_json::{Value, json};

use crate::mcp::{Fixture, text_of};
use crate::rmcp::{call, listed, rmcp_client};

/// The reason the stand-in gives for refusing `get-sum`: nothing in the
/// gateway's own policies says this.
const STAND_IN_REASON: &str = "the stand-in OPA forbids sums today";

/// How the stand-in answers data queries and health checks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Canned decisions by tool name.
    Decide,
    /// HTTP 500 to everything but policy management.
    Fail,
    /// Never answers.
    Hang,
}

#[derive(Clone)]
struct StandInOpa {
    mode: Arc<Mutex<Mode>>,
    modules: Arc<Mutex<BTreeMap<String, String>>>,
    /// (path, input, mode it was received in) of every data query.
    queries: Arc<Mutex<Vec<(String, Value, Mode)>>>,
}

impl StandInOpa {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// What an OPA restart does to policies given over its REST API (no
    /// bundles, no persistence): they are gone.
    fn restart(&self) {
        self.modules.lock().unwrap().clear();
    }

    /// Whether the tenant namespace of a data path (`behavry/t_<tenant>/…`)
    /// has modules; OPA answers an undefined result for one that has none.
    fn has_modules_for(&self, path: &str) -> bool {
        let Some(segment) = path
            .strip_prefix("behavry/t_")
            .and_then(|rest| rest.split('/').next())
        else {
            return false;
        };
        self.modules.lock().unwrap().keys().any(|id| {
            id.split('/')
                .nth(1)
                .is_some_and(|tenant| tenant.replace('-', "_") == segment)
        })
    }

    fn queries_in(&self, mode: Mode) -> Vec<(String, Value)> {
        self.queries
            .lock()
            .unwrap()
            .iter()
            .filter(|q| q.2 == mode)
            .map(|q| (q.0.clone(), q.1.clone()))
            .collect()
    }
}

async fn health(State(s): State<StandInOpa>) -> Response {
    match s.mode() {
        Mode::Decide => AxumJson(json!({})).into_response(),
        Mode::Fail => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Mode::Hang => std::future::pending().await,
    }
}

async fn list_policies(State(s): State<StandInOpa>) -> AxumJson<Value> {
    let modules = s.modules.lock().unwrap();
    AxumJson(json!({
        "result": modules.iter().map(|(id, raw)| json!({"id": id, "raw": raw})).collect::<Vec<_>>()
    }))
}

async fn put_policy(
    State(s): State<StandInOpa>,
    Path(id): Path<String>,
    body: String,
) -> AxumJson<Value> {
    s.modules.lock().unwrap().insert(id, body);
    AxumJson(json!({}))
}

async fn delete_policy(State(s): State<StandInOpa>, Path(id): Path<String>) -> StatusCode {
    match s.modules.lock().unwrap().remove(&id) {
        Some(_) => StatusCode::OK,
        None => StatusCode::NOT_FOUND,
    }
}

async fn query(
    State(s): State<StandInOpa>,
    Path(path): Path<String>,
    AxumJson(body): AxumJson<Value>,
) -> Response {
    let mode = s.mode();
    let input = body["input"].clone();
    s.queries
        .lock()
        .unwrap()
        .push((format!("/v1/data/{path}"), input.clone(), mode));
    match mode {
        Mode::Fail => (
            StatusCode::INTERNAL_SERVER_ERROR,
            AxumJson(json!({"code": "internal_error", "message": "stand-in failure"})),
        )
            .into_response(),
        Mode::Hang => std::future::pending().await,
        Mode::Decide if !s.has_modules_for(&path) => AxumJson(json!({})).into_response(),
        Mode::Decide => {
            // The policies document of the tenant: the base pack's package
            // (installed by the gateway, so known to it) allows everything,
            // even what the real base pack would escalate; a package the
            // gateway never installed denies `get-sum`.
            let mut document = json!({"base": {"allow": ["the stand-in allows it"]}});
            if input["request"]["tool_name"] == "get-sum" {
                document["standin_rules"] = json!({"deny": [STAND_IN_REASON]});
            }
            AxumJson(json!({ "result": document })).into_response()
        }
    }
}

async fn start_stand_in() -> (StandInOpa, String) {
    let state = StandInOpa {
        mode: Arc::new(Mutex::new(Mode::Decide)),
        modules: Arc::default(),
        queries: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/health", get(health))
        .route("/v1/policies", get(list_policies))
        .route("/v1/policies/{*id}", put(put_policy).delete(delete_policy))
        .route("/v1/data/{*path}", post(query))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, url)
}

async fn readiness(fx: &Fixture) -> (u16, Value) {
    let ready = fx
        .app
        .client
        .get(fx.app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    (ready.status().as_u16(), ready.json().await.unwrap())
}

#[tokio::test]
async fn decisions_come_from_opa_and_its_failures_refuse_calls() {
    let (opa, url) = start_stand_in().await;
    let fx = Fixture::with(
        Backend::Sqlite,
        |v| {
            v.insert("BEHAVRY_OPA_URL".into(), url.clone());
            v.insert("BEHAVRY_OPA_TIMEOUT_SECONDS".into(), "2".into());
        },
        60_000,
    )
    .await;
    let (status, body) = readiness(&fx).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["components"]["policy_engine"]["status"], "ok",
        "{body}"
    );

    let client = rmcp_client(&fx.url(), &fx.agent_token).await;
    // The list is filtered by OPA's decisions: `get-sum` is hidden.
    let tools = listed(&client).await;
    assert!(tools.iter().any(|t| t == "echo"), "{tools:?}");
    assert!(!tools.iter().any(|t| t == "get-sum"), "{tools:?}");

    // (a) OPA's deny, with its reason, reaches the agent.
    let denied = call(&client, "get-sum", json!({"a": 1, "b": 2}))
        .await
        .unwrap_err();
    assert_eq!(denied.code.0, -32040, "{denied:?}");
    assert!(denied.message.contains(STAND_IN_REASON), "{denied:?}");
    let data = denied.data.clone().unwrap();
    assert_eq!(data["policy"], "standin_rules", "{data}");

    // (b) OPA's allow lets calls through, including one the embedded base
    // pack would have escalated.
    let echo = call(&client, "echo", json!({"message": "via opa"}))
        .await
        .unwrap();
    assert_eq!(text_of(&echo), "Echo: via opa");
    let toggled = call(&client, "toggle-subscriber-updates", json!({}))
        .await
        .unwrap();
    assert!(
        text_of(&toggled).starts_with("Started simulated resource updated notifications"),
        "{toggled}"
    );

    // The gateway installed the tenant's policies in its own namespace and
    // asked with the call's input.
    let modules: Vec<String> = opa.modules.lock().unwrap().keys().cloned().collect();
    assert_eq!(
        modules,
        [
            format!("behavry/{}/behavry-authz", fx.tenant),
            format!("behavry/{}/behavry-base", fx.tenant),
        ]
    );
    let asked = opa.queries_in(Mode::Decide);
    let (path, input) = asked
        .iter()
        .find(|(_, i)| {
            i["request"]["tool_name"] == "get-sum" && i["request"]["parameters"]["a"] == 1
        })
        .unwrap_or_else(|| panic!("OPA was never asked about the get-sum call: {asked:?}"));
    assert_eq!(
        *path,
        format!(
            "/v1/data/behavry/t_{}/policies",
            fx.tenant.replace('-', "_")
        )
    );
    assert_eq!(input["agent"]["id"], fx.agent_id.as_str(), "{input}");
    assert_eq!(input["request"]["mcp_server"], "everything", "{input}");
    assert_eq!(input["request"]["action"], "read", "{input}");

    let events = fx
        .audit_until("the three decisions and two outcomes", |ev| {
            ev.iter().filter(|e| e["action"] == "TOOL_CALL").count() == 3
                && ev.iter().filter(|e| e["action"] == "TOOL_RESULT").count() == 2
        })
        .await;
    let sum = events
        .iter()
        .find(|e| e["action"] == "TOOL_CALL" && e["tool_name"] == "get-sum")
        .unwrap();
    assert_eq!(sum["policy_result"], "deny", "{sum}");
    assert_eq!(sum["policy_id"], "standin_rules", "{sum}");
    assert!(
        sum["policy_reason"]
            .as_str()
            .unwrap()
            .contains(STAND_IN_REASON),
        "{sum}"
    );
    let toggle = events
        .iter()
        .find(|e| e["action"] == "TOOL_CALL" && e["tool_name"] == "toggle-subscriber-updates")
        .unwrap();
    assert_eq!(toggle["policy_result"], "allow", "{toggle}");
    assert_eq!(toggle["policy_id"], "behavry-base", "{toggle}");
    assert_eq!(toggle["extra"]["action"], "execute", "{toggle}");

    // (c) OPA answers 500: the call is refused, closed, and audited; the
    // gateway reports itself not ready.
    opa.set(Mode::Fail);
    let refused = call(&client, "echo", json!({"message": "during the outage"}))
        .await
        .unwrap_err();
    assert_eq!(refused.code.0, -32040, "{refused:?}");
    assert!(
        refused.message.contains("policy engine unavailable"),
        "{refused:?}"
    );
    assert!(
        !refused.message.contains(&url),
        "OPA's address stays inside the gateway: {refused:?}"
    );
    assert!(
        opa.queries_in(Mode::Fail)
            .iter()
            .any(|(_, i)| i["request"]["parameters"]["message"] == "during the outage"),
        "OPA was asked and failed"
    );
    let (status, body) = readiness(&fx).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["components"]["policy_engine"]["status"], "unavailable",
        "{body}"
    );

    // OPA never answers: the gateway's own time limit refuses the call.
    opa.set(Mode::Hang);
    let refused = call(&client, "echo", json!({"message": "while it hangs"}))
        .await
        .unwrap_err();
    assert_eq!(refused.code.0, -32040, "{refused:?}");
    assert!(
        refused.message.contains("policy engine unavailable"),
        "{refused:?}"
    );
    assert!(
        opa.queries_in(Mode::Hang)
            .iter()
            .any(|(_, i)| i["request"]["parameters"]["message"] == "while it hangs"),
        "OPA was asked and never answered"
    );

    // Both refusals are audited as fail-closed denials, and neither call
    // was forwarded.
    let events = fx
        .audit_until("the two fail-closed refusals", |ev| {
            ev.iter()
                .filter(|e| e["action"] == "TOOL_CALL" && e["tool_name"] == "echo")
                .count()
                == 3
        })
        .await;
    let closed: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["action"] == "TOOL_CALL" && e["tool_name"] == "echo" && e["policy_result"] == "deny"
        })
        .collect();
    assert_eq!(closed.len(), 2, "{events:?}");
    for row in closed {
        assert!(
            row["policy_reason"]
                .as_str()
                .unwrap()
                .contains("fail closed"),
            "{row}"
        );
        assert_eq!(row["policy_id"], Value::Null, "{row}");
    }

    // OPA is back: calls go through again.
    opa.set(Mode::Decide);
    let echo = call(&client, "echo", json!({"message": "recovered"}))
        .await
        .unwrap();
    assert_eq!(text_of(&echo), "Echo: recovered");

    // OPA restarts and has forgotten the tenant's policies (it answers
    // "undefined"): the gateway gives them again, and the call goes
    // through, instead of failing closed until the gateway restarts too.
    opa.restart();
    let echo = call(&client, "echo", json!({"message": "after the restart"}))
        .await
        .unwrap();
    assert_eq!(text_of(&echo), "Echo: after the restart");
    assert_eq!(opa.modules.lock().unwrap().len(), 2, "installed again");

    let events = fx
        .audit_until("the outcomes after recovery and restart", |ev| {
            ev.iter().filter(|e| e["action"] == "TOOL_RESULT").count() == 4
        })
        .await;
    let mut forwarded: Vec<&str> = events
        .iter()
        .filter(|e| e["action"] == "TOOL_RESULT")
        .map(|e| {
            assert_eq!(e["response_code"], 0, "{e}");
            e["tool_name"].as_str().unwrap()
        })
        .collect();
    forwarded.sort_unstable();
    assert_eq!(
        forwarded,
        ["echo", "echo", "echo", "toggle-subscriber-updates"],
        "only allowed calls were forwarded"
    );
    let _ = client.cancel().await;
}
