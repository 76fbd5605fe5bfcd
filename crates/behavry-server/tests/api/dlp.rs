//! Data protection on tool-call arguments, through the gateway to the npm
//! reference server, driven by the official TypeScript SDK: a credential is
//! refused before policy and never reaches the upstream, a lesser finding
//! is recorded and handed to the policies as `input.dlp`, results are
//! scanned and their findings recorded, and the audit trail keeps what was
//! found but never the secret itself.

use behavry_test_support::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::mcp::{Fixture, everything_js, text_of, ts_client};
use crate::support::{post, request, send};

both_backends!(
    secrets_are_blocked_and_findings_reach_policy,
    redaction_and_payload_storage_follow_the_tenant_settings,
    encrypted_payloads_open_only_through_an_audited_read,
    tenant_patterns_take_effect_without_restart
);

const TOKEN: &str = "ghp_R8yXq2Lw9ZtK4mVbN7cJ3sHfD6gP1aE0uQ5o";

/// Denies echo whenever its arguments carried any finding.
const NO_FINDINGS_IN_ECHO: &str = "package behavry.policies.dlp_echo

deny contains \"echo may not carry credentials\" if {
    input.request.tool_name == \"echo\"
    input.dlp.has_findings
    some f in input.dlp.findings
    f.pattern == \"generic_credential\"
    f.field == \"/message\"
}
";

fn calls(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["action"] == "TOOL_CALL")
        .collect()
}

async fn secrets_are_blocked_and_findings_reach_policy(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let echo = |message: String| {
        let (url, token) = (fx.url(), fx.agent_token.clone());
        async move {
            ts_client(
                &url,
                &token,
                "call",
                json!({"name": "echo", "arguments": {"message": message}}),
            )
            .await
        }
    };

    // A critical finding: refused with its own code, naming what and where.
    let out = echo(format!("deploy with GITHUB_TOKEN={TOKEN}")).await;
    assert_eq!(out["error"]["code"], -32045, "{out}");
    let message = out["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("github_token") && message.contains("/message"),
        "{out}"
    );
    assert!(
        !out.to_string().contains(TOKEN),
        "the refusal never repeats the secret"
    );

    // A medium finding: forwarded, recorded as a warning.
    let out = echo("connect with password=Tr0ub4dor3x".into()).await;
    assert!(out["error"].is_null(), "{out}");
    assert!(
        out.to_string().contains("Echo"),
        "the upstream answered: {out}"
    );

    // A clean call.
    let out = echo("hello".into()).await;
    assert!(out["error"].is_null(), "{out}");

    let events = fx
        .audit_until("three calls and two results", |e| {
            calls(e).len() == 3 && e.iter().filter(|x| x["action"] == "TOOL_RESULT").count() == 2
        })
        .await;
    assert!(
        !serde_json::to_string(&events).unwrap().contains(TOKEN),
        "the audit trail never holds the secret"
    );
    let calls = calls(&events);
    let blocked = calls
        .iter()
        .find(|e| e["dlp_action"] == "block")
        .expect("the blocked call is audited");
    assert_eq!(blocked["policy_result"], "deny");
    assert_eq!(blocked["policy_id"], "dlp");
    assert_eq!(blocked["dlp_findings"][0]["pattern"], "github_token");
    assert_eq!(blocked["dlp_findings"][0]["severity"], "critical");
    assert_eq!(blocked["dlp_findings"][0]["field"], "/message");
    assert_eq!(
        blocked["dlp_findings"][0]["fingerprint"]
            .as_str()
            .map(str::len),
        Some(32)
    );
    let warned = calls
        .iter()
        .find(|e| e["dlp_action"] == "warn")
        .expect("the warned call is audited");
    assert_eq!(warned["policy_result"], "allow");
    assert_eq!(warned["dlp_findings"][0]["pattern"], "generic_credential");
    assert!(
        calls
            .iter()
            .any(|e| e["dlp_action"] == "allow" && e["dlp_findings"] == json!([]))
    );
    // Results are scanned too: the echo of the credential is recorded on
    // the outcome, a clean result as clean.
    let results: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "TOOL_RESULT")
        .collect();
    let echoed = results
        .iter()
        .find(|e| e["extra"]["call_event_id"] == warned["id"])
        .expect("the warned call's result is audited");
    assert_eq!(echoed["dlp_action"], "warn", "{echoed}");
    assert_eq!(echoed["dlp_findings"][0]["pattern"], "generic_credential");
    assert!(
        echoed["dlp_findings"][0]["field"]
            .as_str()
            .unwrap()
            .starts_with("/content/0/text"),
        "{echoed}"
    );
    assert!(results.iter().any(|e| e["dlp_action"] == "allow"));

    // The findings are in the policy input: a tenant policy can refuse on them.
    post(
        &fx.app,
        "/api/v1/policies",
        Some(&fx.admin),
        &json!({"name": "dlp echo", "content": NO_FINDINGS_IN_ECHO, "status": "active"}),
    )
    .await
    .expect(201);
    let out = echo("connect with password=Tr0ub4dor3x".into()).await;
    assert_eq!(out["error"]["code"], -32040, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may not carry credentials"),
        "{out}"
    );
    let out = echo("hello again".into()).await;
    assert!(
        out["error"].is_null(),
        "a clean call is still allowed: {out}"
    );
}

const SETTINGS: &str = "/api/v1/settings/data-protection";

/// Replaces the tenant's data-protection settings.
pub(crate) async fn put_settings(fx: &Fixture, body: Value) -> crate::support::Reply {
    send(request(&fx.app, Method::PUT, SETTINGS, Some(&fx.admin)).json(&body)).await
}

/// The audit events of one action, oldest first.
fn of_action<'a>(events: &'a [Value], action: &str) -> Vec<&'a Value> {
    let mut v: Vec<&Value> = events.iter().filter(|e| e["action"] == action).collect();
    v.sort_by_key(|e| e["timestamp"].as_str().unwrap_or_default().to_string());
    v
}

async fn redaction_and_payload_storage_follow_the_tenant_settings(backend: Backend) {
    // The reference server started with a credential in its environment,
    // which its `get-env` tool returns.
    let app = TestApp::spawn(backend).await;
    let (fx, _) = Fixture::serving(
        app,
        json!({
            "name": "everything",
            "transport": "stdio",
            "command": "node",
            "args": [everything_js(), "stdio"],
            "env": {"DEPLOY_GITHUB_TOKEN": TOKEN},
            "timeout_ms": 60_000,
        }),
    )
    .await;
    let call = |calls: Value| {
        let (url, token) = (fx.url(), fx.agent_token.clone());
        async move { ts_client(&url, &token, "script", json!({"calls": calls})).await }
    };
    let echo = |m: &str| json!({"name": "echo", "arguments": {"message": m}});

    // Defaults, and what is refused.
    let got = send(request(&fx.app, Method::GET, SETTINGS, Some(&fx.admin)))
        .await
        .expect(200)
        .body;
    assert_eq!(
        got,
        json!({"payload_storage": "metadata_only", "dlp_action": "block", "dlp_block_severity": null, "trifecta_action": "escalate", "custom_patterns": []})
    );
    for bad in [
        json!({"payload_storage": "everything"}),
        json!({"dlp_action": "shrug"}),
        json!({"dlp_block_severity": "extreme"}),
        json!({"retention": 5}),
    ] {
        let reply = put_settings(&fx, bad.clone()).await.expect(422);
        assert_eq!(reply.body["error"]["code"], "validation_failed", "{bad}");
    }

    // metadata_only: no payload kept.
    let out = call(json!([echo("hello metadata")])).await;
    assert!(
        text_of(&out["calls"][0]["result"]).contains("hello metadata"),
        "{out}"
    );

    // full: arguments and results kept as they were.
    put_settings(&fx, json!({"payload_storage": "full"}))
        .await
        .expect(200);
    let out = call(json!([echo("hello full")])).await;
    assert!(
        text_of(&out["calls"][0]["result"]).contains("hello full"),
        "{out}"
    );

    // redacted storage and the redact action: the credential is replaced in
    // what is forwarded (so the upstream never sees it), in what comes
    // back, and in what is kept.
    put_settings(
        &fx,
        json!({"payload_storage": "redacted", "dlp_action": "redact"}),
    )
    .await
    .expect(200);
    let out = call(json!([
        echo(&format!("deploy with GITHUB_TOKEN={TOKEN}")),
        {"name": "get-env", "arguments": {}},
    ]))
    .await;
    let echoed = text_of(&out["calls"][0]["result"]);
    assert!(echoed.contains("[redacted:"), "{out}");
    let env = text_of(&out["calls"][1]["result"]);
    assert!(env.contains("DEPLOY_GITHUB_TOKEN"), "{out}");
    // A stdio server gets its own variables and the few it needs to run,
    // never the gateway's.
    assert!(env.contains("\"PATH\""), "{out}");
    assert!(!env.contains("BEHAVRY_"), "{out}");
    assert!(!env.contains("CARGO_MANIFEST_DIR"), "{out}");
    assert!(env.contains("[redacted:"), "{out}");
    assert!(
        !out.to_string().contains(TOKEN),
        "the agent never sees the credential: {out}"
    );

    let events = fx
        .audit_until("four calls and four results", |e| {
            of_action(e, "TOOL_CALL").len() == 4 && of_action(e, "TOOL_RESULT").len() == 4
        })
        .await;
    assert!(
        !serde_json::to_string(&events).unwrap().contains(TOKEN),
        "the audit trail never holds the credential"
    );
    let calls = of_action(&events, "TOOL_CALL");
    let results = of_action(&events, "TOOL_RESULT");
    assert!(calls[0]["extra"]["payload"].is_null(), "{}", calls[0]);
    assert!(results[0]["extra"]["payload"].is_null(), "{}", results[0]);
    assert_eq!(
        calls[1]["extra"]["payload"]["arguments"],
        json!({"message": "hello full"})
    );
    assert!(
        results[1]["extra"]["payload"]["result"]
            .to_string()
            .contains("Echo: hello full"),
        "{}",
        results[1]
    );
    assert_eq!(calls[2]["dlp_action"], "block", "{}", calls[2]);
    assert_eq!(calls[2]["extra"]["dlp_redacted"], true, "{}", calls[2]);
    assert_eq!(calls[2]["policy_result"], "allow");
    assert_eq!(calls[2]["dlp_findings"][0]["pattern"], "github_token");
    assert!(
        calls[2]["extra"]["payload"]["arguments"]["message"]
            .as_str()
            .unwrap()
            .contains("[redacted:"),
        "{}",
        calls[2]
    );
    let env_result = results
        .iter()
        .find(|e| e["tool_name"] == "get-env")
        .expect("the get-env result is recorded");
    assert_eq!(env_result["dlp_action"], "block", "{env_result}");
    assert_eq!(env_result["extra"]["dlp_redacted"], true, "{env_result}");
    assert!(
        env_result["extra"]["payload"]["result"]
            .to_string()
            .contains("[redacted:"),
        "{env_result}"
    );
}

async fn encrypted_payloads_open_only_through_an_audited_read(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (fx, _) = Fixture::serving(
        app,
        json!({
            "name": "everything",
            "transport": "stdio",
            "command": "node",
            "args": [everything_js(), "stdio"],
            "timeout_ms": 60_000,
        }),
    )
    .await;
    put_settings(&fx, json!({"payload_storage": "encrypted"}))
        .await
        .expect(200);
    // A customer's words, not a detectable secret: encrypted storage keeps
    // payloads whole, so only encryption keeps them from readers.
    const WORDS: &str = "quarterly numbers for the Zephyr acquisition";
    let out = ts_client(
        &fx.url(),
        &fx.agent_token,
        "script",
        json!({"calls": [{"name": "echo", "arguments": {"message": WORDS}}]}),
    )
    .await;
    assert!(text_of(&out["calls"][0]["result"]).contains(WORDS), "{out}");

    let events = fx
        .audit_until("the call and its result", |e| {
            of_action(e, "TOOL_CALL").len() == 1 && of_action(e, "TOOL_RESULT").len() == 1
        })
        .await;
    assert!(
        !serde_json::to_string(&events).unwrap().contains("Zephyr"),
        "the trail holds the payloads only sealed: {events:?}"
    );
    let (call, result) = (
        of_action(&events, "TOOL_CALL")[0],
        of_action(&events, "TOOL_RESULT")[0],
    );
    let sealed = &call["extra"]["payload"]["arguments"];
    assert_eq!(sealed["encrypted"], "AES-256-GCM", "{call}");
    assert!(sealed["ciphertext"].as_str().unwrap().len() > 40, "{call}");
    assert_eq!(
        result["extra"]["payload"]["result"]["encrypted"], "AES-256-GCM",
        "{result}"
    );
    // The input hash is kept in every mode.
    assert!(call["input_hash"].as_str().is_some(), "{call}");
    let export = send(request(
        &fx.app,
        Method::GET,
        "/api/v1/audit/export",
        Some(&fx.admin),
    ))
    .await
    .expect(200);
    assert!(!export.text.contains("Zephyr"), "exports stay sealed too");

    // An admin reads them back, and each read is itself audited.
    let read = |id: &str| {
        send(request(
            &fx.app,
            Method::GET,
            &format!("/api/v1/audit/events/{id}/payload"),
            Some(&fx.admin),
        ))
    };
    let call_id = call["id"].as_str().unwrap();
    let opened = read(call_id).await.expect(200).body;
    assert_eq!(
        opened,
        json!({"event_id": call_id, "encrypted": true, "payload": {"arguments": {"message": WORDS}}})
    );
    let result_id = result["id"].as_str().unwrap();
    let opened = read(result_id).await.expect(200).body;
    assert!(
        opened["payload"]["result"].to_string().contains(WORDS),
        "{opened}"
    );
    let reads = fx
        .audit_until("two payload reads", |e| {
            of_action(e, "AUDIT_PAYLOAD_READ").len() == 2
        })
        .await;
    let reads = of_action(&reads, "AUDIT_PAYLOAD_READ");
    assert_eq!(reads[0]["target"], call_id);
    assert_eq!(reads[0]["extra"]["encrypted"], true);
    assert_eq!(reads[0]["extra"]["event_action"], "TOOL_CALL");
    assert!(reads[0]["requester_id"].as_str().is_some(), "{}", reads[0]);
    assert_eq!(reads[1]["target"], result_id);

    // What has no payload, or does not exist, or is not an id.
    let no_payload = reads[0]["id"].as_str().unwrap();
    let msg = read(no_payload).await.expect_error(404, "not_found");
    assert!(msg.contains("kept no payload"), "{msg}");
    read(&uuid::Uuid::now_v7().to_string())
        .await
        .expect_error(404, "not_found");
    read("not-an-id").await.expect(400);
    // Another tenant's admin cannot read it.
    let (_, other) = crate::support::tenant_admin(&fx.app, "Other Co", "other-admin").await;
    send(request(
        &fx.app,
        Method::GET,
        &format!("/api/v1/audit/events/{call_id}/payload"),
        Some(&other),
    ))
    .await
    .expect_error(404, "not_found");
    // Nor can an agent.
    send(request(
        &fx.app,
        Method::GET,
        &format!("/api/v1/audit/events/{call_id}/payload"),
        Some(&fx.agent_token),
    ))
    .await
    .expect(401);
}

async fn tenant_patterns_take_effect_without_restart(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let pattern = |name: &str, body: Value| {
        send(
            request(
                &fx.app,
                Method::PUT,
                &format!("/api/v1/dlp/patterns/{name}"),
                Some(&fx.admin),
            )
            .json(&body),
        )
    };
    let echo = |message: &str| {
        let (url, token) = (fx.url(), fx.agent_token.clone());
        let args = json!({"name": "echo", "arguments": {"message": message}});
        async move { ts_client(&url, &token, "call", args).await }
    };

    // Patterns that cannot work are refused with the reason.
    for (name, body, why) in [
        (
            "bad",
            json!({"regex": "(", "severity": "high"}),
            "does not compile",
        ),
        (
            "bad",
            json!({"regex": "[0-9]*", "severity": "high"}),
            "empty string",
        ),
        (
            "Bad-Name",
            json!({"regex": "X-[0-9]+", "severity": "high"}),
            "lowercase",
        ),
        (
            "bad",
            json!({"regex": "X-[0-9]+", "severity": "extreme"}),
            "severity",
        ),
        (
            "bad",
            json!({"regex": "[a-z]{1000}{1000}", "severity": "high"}),
            "simplify",
        ),
    ] {
        let reply = pattern(name, body.clone()).await.expect(422);
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{body}: {message}");
    }

    pattern(
        "acme_project",
        json!({"regex": "ACME-[0-9]{6}", "severity": "high", "category": "project"}),
    )
    .await
    .expect(200);
    let listed = send(request(
        &fx.app,
        Method::GET,
        "/api/v1/dlp/patterns",
        Some(&fx.admin),
    ))
    .await
    .expect(200)
    .body;
    assert_eq!(listed["patterns"][0]["name"], "acme_project", "{listed}");

    // In force on the next call: a high finding is refused.
    let out = echo("status of ACME-123456 please").await;
    assert_eq!(out["error"]["code"], -32045, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("acme_project"),
        "{out}"
    );

    // Removed: allowed again.
    let delete = || {
        send(request(
            &fx.app,
            Method::DELETE,
            "/api/v1/dlp/patterns/acme_project",
            Some(&fx.admin),
        ))
    };
    delete().await.expect(204);
    let out = echo("status of ACME-123456 please").await;
    assert!(out["error"].is_null(), "{out}");
    delete().await.expect(404);
}
