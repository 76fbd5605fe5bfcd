//! Data protection on tool-call arguments, through the gateway to the npm
//! reference server, driven by the official TypeScript SDK: a credential is
//! refused before policy and never reaches the upstream, a lesser finding
//! is recorded and handed to the policies as `input.dlp`, results are
//! scanned and their findings recorded, and the audit trail keeps what was
//! found but never the secret itself.

use behavry_test_support::Backend;
use serde_json::{Value, json};

use crate::mcp::{Fixture, ts_client};
use crate::support::post;

both_backends!(secrets_are_blocked_and_findings_reach_policy);

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
