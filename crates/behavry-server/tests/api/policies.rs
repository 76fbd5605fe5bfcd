//! Policy management: validation with line numbers, versions, activation,
//! the base pack switch and override, the dry-run evaluator, and policy
//! changes reaching live MCP traffic (on one replica and across two).

use std::time::{Duration, Instant};

use behavry_test_support::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::mcp::{Fixture, initialize, raw, text_of, ts_client};
use crate::support::{get, patch, post, request, send, tenant_admin};

both_backends!(
    policies_are_validated_versioned_and_audited,
    policy_changes_apply_to_the_next_call,
);

const GUARD_V1: &str = "package behavry.policies.no_prod_writes

deny contains \"no writes to production\" if {
\tinput.request.mcp_server == \"prod\"
\tinput.request.action == \"write\"
}
";

const GUARD_V2: &str = "package behavry.policies.no_prod_writes

deny contains \"no writes or deletes in production\" if {
\tinput.request.mcp_server == \"prod\"
\tinput.request.action in {\"write\", \"delete\"}
}
";

const BROKEN: &str = "package behavry.policies.broken

deny if {
\tinput.request.tool_name ==
}
";

const NO_ECHO: &str = "package behavry.policies.no_echo

deny contains \"echo is switched off\" if input.request.tool_name == \"echo\"
";

const BASE_OVERRIDE: &str = "package behavry.policies.base

allow contains \"reads are fine\" if input.request.action == \"read\"
";

async fn policies_are_validated_versioned_and_audited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = tenant_admin(&app, "Policy Co", "admin@policy.example").await;

    // A policy that does not compile is refused with its line number.
    let refused = post(
        &app,
        "/api/v1/policies",
        Some(&admin),
        &json!({"name": "broken", "content": BROKEN}),
    )
    .await
    .expect(422)
    .body;
    let line = refused["error"]["problems"][0]["line"].as_u64();
    assert!(
        matches!(line, Some(4..=5)),
        "the error points at the broken rule: {refused}"
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line"),
        "{refused}"
    );
    // So is one outside the policies namespace.
    let foreign = post(
        &app,
        "/api/v1/policies",
        Some(&admin),
        &json!({"name": "foreign", "content": "package other\n\nallow := true\n"}),
    )
    .await
    .expect(422)
    .body;
    assert!(
        foreign.to_string().contains("behavry.policies"),
        "{foreign}"
    );
    // Validation without saving says the same.
    let checked = post(
        &app,
        "/api/v1/policies/validate",
        Some(&admin),
        &json!({"content": BROKEN}),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(checked["valid"], false);
    assert_eq!(checked["errors"][0]["line"].as_u64(), line);
    let fine = post(
        &app,
        "/api/v1/policies/validate",
        Some(&admin),
        &json!({"content": GUARD_V1}),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(fine["valid"], true);
    assert_eq!(fine["package"], "behavry.policies.no_prod_writes");
    assert!(
        get(&app, "/api/v1/policies", Some(&admin))
            .await
            .expect(200)
            .body["policies"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was stored"
    );

    // Create (a draft by default), change, activate: each a version.
    let created = post(
        &app,
        "/api/v1/policies",
        Some(&admin),
        &json!({"name": "No prod writes", "description": "production is read-only", "content": GUARD_V1}),
    )
    .await
    .expect(201)
    .body;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["version"], 1);
    assert_eq!(created["status"], "draft");
    assert_eq!(created["mode"], "enforce");
    assert_eq!(created["package"], "behavry.policies.no_prod_writes");
    let path = format!("/api/v1/policies/{id}");
    let v2 = patch(
        &app,
        &path,
        Some(&admin),
        &json!({"content": GUARD_V2, "version": 1}),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["content"], GUARD_V2);
    // A change based on an old version is refused.
    patch(
        &app,
        &path,
        Some(&admin),
        &json!({"description": "stale", "version": 1}),
    )
    .await
    .expect(409);
    // A broken change leaves the policy as it was.
    patch(&app, &path, Some(&admin), &json!({"content": BROKEN}))
        .await
        .expect(422);
    let v3 = patch(&app, &path, Some(&admin), &json!({"status": "active"}))
        .await
        .expect(200)
        .body;
    assert_eq!(v3["version"], 3);
    assert_eq!(v3["status"], "active");
    // Two active policies cannot declare one package.
    let clash = post(
        &app,
        "/api/v1/policies",
        Some(&admin),
        &json!({"name": "clash", "content": GUARD_V1, "status": "active"}),
    )
    .await
    .expect(409)
    .body;
    assert!(clash.to_string().contains("No prod writes"), "{clash}");
    // Bad enumerations are named.
    let bad_mode = patch(&app, &path, Some(&admin), &json!({"mode": "loud"}))
        .await
        .expect(422)
        .body;
    assert!(bad_mode.to_string().contains("monitor"), "{bad_mode}");

    // The history, and going back to version 1 as version 4.
    let versions = get(&app, &format!("{path}/versions"), Some(&admin))
        .await
        .expect(200)
        .body;
    let numbers: Vec<i64> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(versions["versions"][0]["content"], GUARD_V1);
    let v4 = post(
        &app,
        &format!("{path}/versions/1/restore"),
        Some(&admin),
        &json!({}),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(v4["version"], 4);
    assert_eq!(v4["content"], GUARD_V1);
    assert_eq!(v4["status"], "active", "restoring keeps the status");
    post(
        &app,
        &format!("{path}/versions/9/restore"),
        Some(&admin),
        &json!({}),
    )
    .await
    .expect(404);

    // The evaluator: the active set, then with a candidate text, then
    // with a stored draft, all without changing anything.
    let write_to_prod = json!({"request": {"tool_name": "write_file", "mcp_server": "prod",
        "parameters": {"path": "/srv/app.txt"}}});
    let verdict = post(
        &app,
        "/api/v1/policies/evaluate",
        Some(&admin),
        &json!({"input": write_to_prod}),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(verdict["decision"]["result"], "deny", "{verdict}");
    assert_eq!(verdict["decision"]["policy_id"], id.as_str());
    assert_eq!(
        verdict["input"]["request"]["action"], "write",
        "the action is derived from the tool name"
    );
    let read = post(
        &app,
        "/api/v1/policies/evaluate",
        Some(&admin),
        &json!({"input": {"request": {"tool_name": "read_file", "mcp_server": "prod"}}}),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(
        read["decision"]["result"], "allow",
        "the base pack allows reads"
    );
    let candidate = post(
        &app,
        "/api/v1/policies/evaluate",
        Some(&admin),
        &json!({"input": {"request": {"tool_name": "read_file", "mcp_server": "prod"}},
                "content": "package behavry.policies.lockdown\n\ndeny contains \"locked down\" if true\n"}),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(candidate["decision"]["result"], "deny");
    assert!(
        candidate["decision"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("locked down"),
        "{candidate}"
    );
    let draft = post(
        &app,
        "/api/v1/policies",
        Some(&admin),
        &json!({"name": "lockdown", "content": "package behavry.policies.lockdown\n\ndeny contains \"locked down\" if true\n"}),
    )
    .await
    .expect(201)
    .body;
    let monitored = post(
        &app,
        "/api/v1/policies/evaluate",
        Some(&admin),
        &json!({"input": {"request": {"tool_name": "read_file"}}, "policy_id": draft["id"], "mode": "monitor"}),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(monitored["decision"]["result"], "allow", "{monitored}");
    assert_eq!(monitored["decision"]["monitor_result"], "deny");
    post(
        &app,
        "/api/v1/policies/evaluate",
        Some(&admin),
        &json!({"input": ["not", "an", "object"]}),
    )
    .await
    .expect(422);

    // Deleting keeps the history.
    send(request(&app, Method::DELETE, &path, Some(&admin)))
        .await
        .expect(204);
    get(&app, &path, Some(&admin)).await.expect(404);
    let kept = get(&app, &format!("{path}/versions"), Some(&admin))
        .await
        .expect(200)
        .body;
    assert_eq!(kept["versions"].as_array().unwrap().len(), 4);

    // Every change is in the audit trail, by whom, and the chain holds.
    let events = get(&app, "/api/v1/audit/events?limit=1000", Some(&admin))
        .await
        .expect(200)
        .body;
    let actions: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == id.as_str())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "POLICY_CREATED",
        "POLICY_UPDATED",
        "POLICY_ACTIVATED",
        "POLICY_RESTORED",
        "POLICY_DELETED",
    ] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["target"] == id.as_str())
            .all(|e| e["requester_id"].is_string()),
        "each change names the admin who made it"
    );
    let report = get(&app, "/api/v1/audit/verify", Some(&admin))
        .await
        .expect(200)
        .body;
    assert_eq!(report["first_broken"], Value::Null);
}

/// One `tools/call` of echo over raw Streamable HTTP; returns the answer.
async fn echo(app: &TestApp, url: &str, token: &str, session: &str) -> Value {
    let (status, _, body) = raw(
        app,
        url,
        token,
        Some(session),
        &[],
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"message": "hi"}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn listed_tools(app: &TestApp, url: &str, token: &str, session: &str) -> Vec<String> {
    let (_, _, body) = raw(
        app,
        url,
        token,
        Some(session),
        &[],
        json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list"}),
    )
    .await;
    body["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tool list: {body}"))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect()
}

async fn policy_changes_apply_to_the_next_call(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let (app, admin, token, url) = (&fx.app, &fx.admin, &fx.agent_token, fx.url());
    let session = initialize(app, &url, token).await;
    assert!(echo(app, &url, token, &session).await["result"].is_object());

    // An active policy applies to the very next call, without a restart.
    let policy = post(
        app,
        "/api/v1/policies",
        Some(admin),
        &json!({"name": "no echo", "content": NO_ECHO, "status": "active"}),
    )
    .await
    .expect(201)
    .body;
    let policy_id = policy["id"].as_str().unwrap();
    let denied = echo(app, &url, token, &session).await;
    assert_eq!(denied["error"]["code"], -32040, "{denied}");
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .contains("echo is switched off"),
        "{denied}"
    );
    assert_eq!(denied["error"]["data"]["policy"], policy_id);
    // The agent no longer sees the tool it may not call.
    let tools = listed_tools(app, &url, token, &session).await;
    assert!(!tools.contains(&"echo".to_string()), "{tools:?}");
    assert!(tools.contains(&"get-sum".to_string()), "{tools:?}");
    // The official SDK client sees the same refusal.
    let sdk = ts_client(
        &url,
        token,
        "call",
        json!({"name": "echo", "arguments": {"message": "x"}}),
    )
    .await;
    assert_eq!(sdk["error"]["code"], -32040, "{sdk}");

    // Monitor mode: recorded, not enforced.
    let path = format!("/api/v1/policies/{policy_id}");
    patch(app, &path, Some(admin), &json!({"mode": "monitor"}))
        .await
        .expect(200);
    let allowed = echo(app, &url, token, &session).await;
    assert_eq!(text_of(&allowed["result"]), "Echo: hi", "{allowed}");
    let events = fx
        .audit_until("a monitored call", |ev| {
            ev.iter()
                .any(|e| e["action"] == "TOOL_CALL" && e["extra"]["monitor_result"] == "deny")
        })
        .await;
    let watched = events
        .iter()
        .find(|e| e["action"] == "TOOL_CALL" && e["extra"]["monitor_result"] == "deny")
        .unwrap();
    assert_eq!(watched["policy_result"], "allow");
    assert!(
        watched["extra"]["monitored"]
            .to_string()
            .contains("echo is switched off"),
        "{watched}"
    );

    // Back to a draft: out of the decision entirely.
    patch(
        app,
        &path,
        Some(admin),
        &json!({"mode": "enforce", "status": "draft"}),
    )
    .await
    .expect(200);
    assert!(echo(app, &url, token, &session).await["result"].is_object());

    // Without the base pack nothing allows, so the call is denied by default.
    let off = send(
        request(app, Method::PUT, "/api/v1/policies/base-pack", Some(admin))
            .json(&json!({"enabled": false})),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(off["in_force"], false);
    let default_deny = echo(app, &url, token, &session).await;
    assert_eq!(default_deny["error"]["code"], -32040, "{default_deny}");
    assert!(
        default_deny["error"]["message"]
            .as_str()
            .unwrap()
            .contains("default deny"),
        "{default_deny}"
    );

    // A tenant policy declaring the base package overrides the built-in one.
    send(
        request(app, Method::PUT, "/api/v1/policies/base-pack", Some(admin))
            .json(&json!({"enabled": true})),
    )
    .await
    .expect(200);
    let replacement = post(
        app,
        "/api/v1/policies",
        Some(admin),
        &json!({"name": "our base", "content": BASE_OVERRIDE, "status": "active"}),
    )
    .await
    .expect(201)
    .body;
    let pack = get(app, "/api/v1/policies/base-pack", Some(admin))
        .await
        .expect(200)
        .body;
    assert_eq!(pack["enabled"], true);
    assert_eq!(pack["in_force"], false);
    assert_eq!(pack["overridden_by"], replacement["id"]);
    assert!(
        pack["content"]
            .as_str()
            .unwrap()
            .contains("package behavry.policies.base")
    );
    let by_override = echo(app, &url, token, &session).await;
    assert!(by_override["result"].is_object(), "{by_override}");
    let events = fx
        .audit_until("the override's decision", |ev| {
            ev.iter().any(|e| e["policy_id"] == replacement["id"])
        })
        .await;
    assert!(events.iter().any(|e| e["action"] == "BASE_PACK_DISABLED"));
}

#[tokio::test]
async fn a_policy_change_on_one_replica_reaches_the_other() {
    let fx = Fixture::new(Backend::Postgres).await;
    let other = fx.app.replica().await;
    let url = other.url(&format!("/mcp/v1/{}", fx.server_id));
    let token = &fx.agent_token;
    let session = initialize(&other, &url, token).await;
    assert!(echo(&other, &url, token, &session).await["result"].is_object());

    post(
        &fx.app,
        "/api/v1/policies",
        Some(&fx.admin),
        &json!({"name": "no echo", "content": NO_ECHO, "status": "active"}),
    )
    .await
    .expect(201);
    // The other replica polls the policy revision; it must not take a
    // restart, only a moment.
    let changed = Instant::now();
    loop {
        let answer = echo(&other, &url, token, &session).await;
        if answer["error"]["code"] == -32040 {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(10),
            "the other replica still allows the call: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn malformed_policy_requests_get_clear_errors() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_, admin) = tenant_admin(&app, "Hostile Co", "admin@hostile.example").await;
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or_default().to_string();

    // Paths.
    let r = get(&app, "/api/v1/policies/not-a-uuid", Some(&admin))
        .await
        .expect(400)
        .body;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("policy id"),
        "{r}"
    );
    let id = uuid::Uuid::new_v4();
    get(&app, &format!("/api/v1/policies/{id}"), Some(&admin))
        .await
        .expect(404);
    post(
        &app,
        &format!("/api/v1/policies/{id}/versions/abc/restore"),
        Some(&admin),
        &json!({}),
    )
    .await
    .expect(400);

    // Bodies: syntax, unknown fields, wrong types, size.
    let r = send(
        request(&app, Method::POST, "/api/v1/policies", Some(&admin))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await
    .expect(400)
    .body;
    assert_eq!(code(&r), "bad_request");
    post(
        &app,
        "/api/v1/policies",
        Some(&admin),
        &json!({"name": "x", "content": NO_ECHO, "colour": "red"}),
    )
    .await
    .expect(422);
    post(
        &app,
        "/api/v1/policies",
        Some(&admin),
        &json!({"name": 7, "content": NO_ECHO}),
    )
    .await
    .expect(422);
    post(
        &app,
        "/api/v1/policies",
        Some(&admin),
        &json!({"name": "", "content": NO_ECHO}),
    )
    .await
    .expect(422);
    let huge = format!("{NO_ECHO}\n# {}\n", "x".repeat(300 * 1024));
    let r = post(
        &app,
        "/api/v1/policies/validate",
        Some(&admin),
        &json!({"content": huge}),
    )
    .await
    .expect(422)
    .body;
    assert!(
        r["error"]["message"].as_str().unwrap().contains("at most"),
        "{r}"
    );

    // Evaluation: give one of content / policy_id; the input must be a
    // policy input; deep nesting and endless rules end in a 422, not a 500
    // or a hang.
    post(
        &app,
        "/api/v1/policies/evaluate",
        Some(&admin),
        &json!({"input": {}, "content": NO_ECHO, "policy_id": id}),
    )
    .await
    .expect(422);
    post(
        &app,
        "/api/v1/policies/evaluate",
        Some(&admin),
        &json!({"input": {"request": "delete everything"}}),
    )
    .await
    .expect(422);
    let mut deep = json!("bottom");
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let r = post(
        &app,
        "/api/v1/policies/evaluate",
        Some(&admin),
        &json!({"input": {"request": {"tool_name": "read_file", "parameters": {"x": deep}}}}),
    )
    .await
    .expect(400)
    .body;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recursion limit"),
        "{r}"
    );
    let endless = "package behavry.policies.endless\n\ndeny contains n if {\n\tsome n in numbers.range(1, 100000000)\n\tn < 0\n}\n";
    let r = post(
        &app,
        "/api/v1/policies/evaluate",
        Some(&admin),
        &json!({"input": {"request": {"tool_name": "read_file"}}, "content": endless}),
    )
    .await
    .body;
    assert_eq!(code(&r), "validation_failed", "{r}");

    // Agent tokens cannot manage policies.
    let fx = Fixture::new(Backend::Sqlite).await;
    get(&fx.app, "/api/v1/policies", Some(&fx.agent_token))
        .await
        .expect(401);
}
