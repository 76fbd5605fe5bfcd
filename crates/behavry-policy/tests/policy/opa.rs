//! The OPA engine against a stand-in: a small axum server written for these
//! tests that imitates the parts of OPA's REST API the engine uses. It is not
//! OPA; it stores modules without compiling them and answers data queries
//! with whatever document the test sets.

use crate::{call, source};
use axum::Json as AxumJson;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use behavry_policy::{
    BASE_PACK_ID, DecisionResult, OpaEngine, PolicyEngine, PolicyError, PolicySource,
};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TENANT: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
const NAMESPACE: &str = "t_0190a1b2_c3d4_7e5f_8a9b_0c1d2e3f4a5b";

/// How the stand-in answers `POST /v1/data/...`.
#[derive(Clone)]
enum DataReply {
    Document(Json),
    Undefined,
    Status(StatusCode),
    Slow(Duration),
}

/// (method, path, content-type, body) of one request.
type Recorded = (String, String, String, String);

#[derive(Clone)]
struct StandIn {
    modules: Arc<Mutex<BTreeMap<String, String>>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    reply: Arc<Mutex<DataReply>>,
}

impl StandIn {
    fn record(&self, method: &str, path: String, headers: &HeaderMap, body: &str) {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        self.requests.lock().unwrap().push((
            method.to_owned(),
            path,
            content_type,
            body.to_owned(),
        ));
    }

    fn requests(&self, method: &str) -> Vec<(String, String, String)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.0 == method)
            .map(|r| (r.1.clone(), r.2.clone(), r.3.clone()))
            .collect()
    }
}

async fn put_policy(
    State(s): State<StandIn>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, AxumJson<Json>) {
    s.record("PUT", format!("/v1/policies/{id}"), &headers, &body);
    // Stand-in for OPA's compiler: a marker in the text means "does not compile".
    if let Some(line) = body.lines().position(|l| l.contains("SYNTAX_ERROR")) {
        return (
            StatusCode::BAD_REQUEST,
            AxumJson(json!({
                "code": "invalid_parameter",
                "message": "error(s) occurred while compiling module(s)",
                "errors": [{"code": "rego_parse_error", "message": "unexpected ident token",
                            "location": {"file": id, "row": line + 1, "col": 1}}]
            })),
        );
    }
    s.modules.lock().unwrap().insert(id, body);
    (StatusCode::OK, AxumJson(json!({})))
}

async fn list_policies(State(s): State<StandIn>) -> AxumJson<Json> {
    let modules = s.modules.lock().unwrap();
    AxumJson(json!({
        "result": modules.iter().map(|(id, raw)| json!({"id": id, "raw": raw})).collect::<Vec<_>>()
    }))
}

async fn delete_policy(
    State(s): State<StandIn>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> StatusCode {
    s.record("DELETE", format!("/v1/policies/{id}"), &headers, "");
    match s.modules.lock().unwrap().remove(&id) {
        Some(_) => StatusCode::OK,
        None => StatusCode::NOT_FOUND,
    }
}

async fn query_data(
    State(s): State<StandIn>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, AxumJson<Json>) {
    s.record("POST", format!("/v1/data/{path}"), &headers, &body);
    let reply = s.reply.lock().unwrap().clone();
    match reply {
        DataReply::Document(doc) => (StatusCode::OK, AxumJson(json!({ "result": doc }))),
        DataReply::Undefined => (StatusCode::OK, AxumJson(json!({}))),
        DataReply::Status(status) => (status, AxumJson(json!({"code": "internal_error"}))),
        DataReply::Slow(delay) => {
            tokio::time::sleep(delay).await;
            (StatusCode::OK, AxumJson(json!({ "result": {} })))
        }
    }
}

async fn start_stand_in() -> (StandIn, String) {
    let state = StandIn {
        modules: Arc::default(),
        requests: Arc::default(),
        reply: Arc::new(Mutex::new(DataReply::Undefined)),
    };
    let app = Router::new()
        .route("/v1/policies", get(list_policies))
        .route("/v1/policies/{*id}", put(put_policy).delete(delete_policy))
        .route("/v1/data/{*path}", post(query_data))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, url)
}

fn engine(url: &str, timeout: Duration) -> OpaEngine {
    OpaEngine::new(url, timeout).unwrap()
}

fn tenant_sources() -> Vec<PolicySource> {
    vec![
        source(
            "p-prod",
            "# production guard\npackage behavry.policies.prod\n\nimport data.behavry.policies.base\n\n\
             deny contains \"no prod writes\" if {\n    input.request.mcp_server == \"prod\"\n    \
             base.allow[_]\n}\n\nnote := \"data.behavry.policies stays in strings\"\n",
        ),
        PolicySource {
            monitor: true,
            ..source("p-watch", "package behavry.policies.watch\ndeny := true\n")
        },
    ]
}

#[tokio::test]
async fn install_puts_every_module_in_the_tenant_namespace() {
    let (stand_in, url) = start_stand_in().await;
    // Left over from an earlier install, and another tenant's module.
    stand_in.modules.lock().unwrap().insert(
        format!("behavry/{TENANT}/removed-policy"),
        "package x".into(),
    );
    stand_in
        .modules
        .lock()
        .unwrap()
        .insert("behavry/other-tenant/p".into(), "package y".into());

    let opa = engine(&url, Duration::from_secs(5));
    assert_eq!(opa.kind(), "opa");
    opa.install(TENANT, tenant_sources(), true).await.unwrap();

    let puts = stand_in.requests("PUT");
    let paths: Vec<&str> = puts.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("/v1/policies/behavry/{TENANT}/p-prod"),
            format!("/v1/policies/behavry/{TENANT}/p-watch"),
            format!("/v1/policies/behavry/{TENANT}/{BASE_PACK_ID}"),
            format!("/v1/policies/behavry/{TENANT}/behavry-authz"),
        ]
    );
    assert!(puts.iter().all(|p| p.1 == "text/plain"), "{puts:?}");

    let prod = &puts[0].2;
    assert!(
        prod.contains(&format!("package behavry.{NAMESPACE}.policies.prod\n")),
        "{prod}"
    );
    assert!(
        prod.contains(&format!("import data.behavry.{NAMESPACE}.policies.base\n")),
        "{prod}"
    );
    assert!(
        prod.contains("\"data.behavry.policies stays in strings\""),
        "{prod}"
    );
    assert!(prod.starts_with("# production guard\n"), "{prod}");
    let base = &puts[2].2;
    assert!(
        base.contains(&format!("package behavry.{NAMESPACE}.policies.base\n")),
        "{base}"
    );
    let authz = &puts[3].2;
    assert!(
        authz.contains(&format!("package behavry.{NAMESPACE}.authz\n")),
        "{authz}"
    );
    assert!(
        authz.contains(&format!("data.behavry.{NAMESPACE}.policies")),
        "{authz}"
    );
    assert!(!authz.contains(" data.behavry.policies"), "{authz}");
    assert!(authz.contains("\"monitor\":true"), "{authz}");

    // The stale module of this tenant is gone; the other tenant's is not.
    let modules = stand_in.modules.lock().unwrap().clone();
    assert!(!modules.contains_key(&format!("behavry/{TENANT}/removed-policy")));
    assert!(modules.contains_key("behavry/other-tenant/p"));
    assert_eq!(modules.len(), 5);
}

#[tokio::test]
async fn decide_combines_the_returned_document() {
    let (stand_in, url) = start_stand_in().await;
    let opa = engine(&url, Duration::from_secs(5));
    opa.install(TENANT, tenant_sources(), true).await.unwrap();

    *stand_in.reply.lock().unwrap() = DataReply::Document(json!({
        "base": {"allow": ["read-only tool"], "deny": [], "escalate": [], "sensitive_directories": ["/etc"]},
        "prod": {"deny": ["no prod writes"], "note": "x"},
        "watch": {"deny": true},
    }));
    let input = call("read_file", json!({"path": "/a"}));
    let d = opa.decide(TENANT, &input).await.unwrap();
    assert_eq!(d.result, DecisionResult::Deny);
    assert_eq!(d.policy_id.as_deref(), Some("p-prod"));
    assert_eq!(d.reason, "no prod writes (policy: p-prod policy)");
    assert_eq!(d.rules.len(), 2);
    // The monitor-mode policy is reported, not enforced.
    assert_eq!(d.monitored.len(), 1);
    assert_eq!(d.monitored[0].policy_id, "p-watch");
    assert_eq!(d.monitor_result, Some(DecisionResult::Deny));

    let posts = stand_in.requests("POST");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].0, format!("/v1/data/behavry/{NAMESPACE}/policies"));
    let body: Json = serde_json::from_str(&posts[0].2).unwrap();
    assert_eq!(body, json!({ "input": input }));

    // Only the base pack allows: allow, attributed to it.
    *stand_in.reply.lock().unwrap() = DataReply::Document(json!({
        "base": {"allow": ["read-only tool"]},
        "prod": {"deny": []},
    }));
    let d = opa.decide(TENANT, &input).await.unwrap();
    assert_eq!(d.result, DecisionResult::Allow);
    assert_eq!(d.policy_id.as_deref(), Some(BASE_PACK_ID));
    assert_eq!(d.monitor_result, Some(DecisionResult::Allow));

    // Packages this process did not install still count (enforced).
    *stand_in.reply.lock().unwrap() = DataReply::Document(json!({
        "base": {"allow": ["read-only tool"]},
        "stranger": {"escalate": ["ask first"]},
    }));
    let d = opa.decide(TENANT, &input).await.unwrap();
    assert_eq!(d.result, DecisionResult::Escalate);
    assert_eq!(d.policy_id.as_deref(), Some("stranger"));

    // A malformed rule value is an evaluation error, not a guess.
    *stand_in.reply.lock().unwrap() = DataReply::Document(json!({"base": {"allow": "yes"}}));
    let err = opa.decide(TENANT, &input).await.unwrap_err();
    assert!(matches!(err, PolicyError::Evaluation(_)), "{err}");
}

#[tokio::test]
async fn undefined_result_is_unavailable() {
    let (stand_in, url) = start_stand_in().await;
    *stand_in.reply.lock().unwrap() = DataReply::Undefined;
    let err = engine(&url, Duration::from_secs(5))
        .decide(TENANT, &call("read_file", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, PolicyError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("undefined"), "{err}");
}

#[tokio::test]
async fn server_errors_are_unavailable() {
    let (stand_in, url) = start_stand_in().await;
    *stand_in.reply.lock().unwrap() = DataReply::Status(StatusCode::INTERNAL_SERVER_ERROR);
    let err = engine(&url, Duration::from_secs(5))
        .decide(TENANT, &call("read_file", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, PolicyError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("500"), "{err}");
}

#[tokio::test]
async fn server_down_is_unavailable() {
    // A port that was just free: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let opa = engine(&url, Duration::from_secs(2));
    let err = opa
        .decide(TENANT, &call("read_file", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, PolicyError::Unavailable(_)), "{err}");
    let err = opa.install(TENANT, Vec::new(), true).await.unwrap_err();
    assert!(matches!(err, PolicyError::Unavailable(_)), "{err}");

    let d = behavry_policy::fail_closed_decision(&err);
    assert_eq!(d.result, DecisionResult::Deny);
    assert!(
        d.reason.contains("policy engine unavailable"),
        "{}",
        d.reason
    );
}

#[tokio::test]
async fn slow_server_times_out_as_unavailable() {
    let (stand_in, url) = start_stand_in().await;
    *stand_in.reply.lock().unwrap() = DataReply::Slow(Duration::from_secs(5));
    let opa = engine(&url, Duration::from_millis(200));
    let started = Instant::now();
    let err = opa
        .decide(TENANT, &call("read_file", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, PolicyError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn compile_errors_from_opa_keep_their_location() {
    let (stand_in, url) = start_stand_in().await;
    let opa = engine(&url, Duration::from_secs(5));
    let bad = source(
        "p-bad",
        "package behavry.policies.bad\n\nallow if SYNTAX_ERROR\n",
    );
    let err = opa.install(TENANT, vec![bad], false).await.unwrap_err();
    let PolicyError::Compile(errors) = &err else {
        panic!("{err}")
    };
    assert_eq!(errors[0].policy_id.as_deref(), Some("p-bad"));
    assert_eq!(errors[0].line, Some(3));
    assert!(stand_in.modules.lock().unwrap().is_empty());
}

#[tokio::test]
async fn bad_packages_tenants_and_inputs_are_refused_locally() {
    let (stand_in, url) = start_stand_in().await;
    let opa = engine(&url, Duration::from_secs(5));

    let err = opa
        .install(
            TENANT,
            vec![source("x", "# hi\npackage other.place\nallow := true\n")],
            false,
        )
        .await
        .unwrap_err();
    let PolicyError::Compile(errors) = &err else {
        panic!("{err}")
    };
    assert_eq!(errors[0].line, Some(2));

    let dup = vec![
        source("d1", "package behavry.policies.same\n"),
        source("d2", "package behavry.policies.same\n"),
    ];
    let err = opa.install(TENANT, dup, false).await.unwrap_err();
    assert!(matches!(err, PolicyError::DuplicatePackage { .. }), "{err}");

    let err = opa
        .decide("../evil", &call("read_file", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, PolicyError::InvalidTenant(_)), "{err}");
    let err = opa
        .decide(TENANT, &json!("not an object"))
        .await
        .unwrap_err();
    assert!(matches!(err, PolicyError::InvalidInput(_)), "{err}");

    assert!(
        stand_in.requests.lock().unwrap().is_empty(),
        "nothing should reach OPA"
    );
}
