//! Blast-radius limits through the gateway, with the npm filesystem server
//! as the upstream and the official TypeScript SDK as the agent: a write
//! to a protected name is escalated and never happens, a policy's deny
//! still wins over an escalation, and an agent that crosses a window is
//! frozen until an admin unfreezes it.

use behavry_test_support::tmp::TempDir;
use behavry_test_support::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::alerts::alerts_until;
use crate::mcp::{Fixture, agent_with, peers, text_of, ts_client};
use crate::support::{post, request, send};

both_backends!(protected_writes_are_escalated_and_windows_freeze);

async fn protected_writes_are_escalated_and_windows_freeze(backend: Backend) {
    let dir = TempDir::new("behavry-blast");
    let root = dir.path().canonicalize().unwrap();
    // The server may run as an unprivileged user (when the suite runs as
    // root): it is the directory the operator lets it work in.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let server = peers().join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    let app = TestApp::spawn(backend).await;
    let (fx, _) = Fixture::serving(
        app,
        json!({
            "name": "filesystem",
            "transport": "stdio",
            "command": "node",
            "args": [server.display().to_string(), root.display().to_string()],
            "timeout_ms": 60_000,
        }),
    )
    .await;
    let (writer_id, writer) = agent_with(
        &fx.app,
        &fx.admin,
        json!({"name": "writer", "permissions": ["filesystem:write"]}),
    )
    .await;
    // create_directory is the server's one write that is not marked
    // destructive (a destructive write is a delete, which the base pack
    // escalates anyway).
    let write = |name: &str| {
        json!({"name": "create_directory", "arguments": {
            "path": root.join(name).display().to_string(),
        }})
    };
    let script = |calls: Value| {
        let (url, token) = (fx.url(), writer.clone());
        async move { ts_client(&url, &token, "script", json!({"calls": calls})).await }
    };

    let defaults = send(request(
        &fx.app,
        Method::GET,
        "/api/v1/settings/blast-radius",
        Some(&fx.admin),
    ))
    .await
    .expect(200)
    .body;
    assert_eq!(defaults["max_recipients"], 10, "{defaults}");
    assert_eq!(defaults["protected_names"][1], "MEMORY", "{defaults}");

    let out = script(json!([write("notes"), write("MEMORY.md"), write(".env")])).await;
    let calls = out["calls"].as_array().unwrap_or_else(|| panic!("{out}"));
    assert!(
        calls[0]["error"].is_null(),
        "an ordinary write goes through: {out}"
    );
    assert!(root.join("notes").exists());
    assert_eq!(calls[1]["error"]["code"], -32041, "{out}");
    assert!(
        calls[1]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("protected file `MEMORY`"),
        "{out}"
    );
    assert!(
        !root.join("MEMORY.md").exists(),
        "the escalated write never happened"
    );
    // The base pack denies writing .env outright; the limits only escalate.
    assert_eq!(calls[2]["error"]["code"], -32040, "{out}");
    assert!(!root.join(".env").exists());

    // A window: four requests per session (the listing and three calls).
    send(
        request(
            &fx.app,
            Method::PUT,
            "/api/v1/settings/blast-radius",
            Some(&fx.admin),
        )
        .json(&json!({"windows": {"calls_per_session": 4}})),
    )
    .await
    .expect(200);
    let list = json!({"name": "list_directory", "arguments": {"path": root.display().to_string()}});
    let out = script(json!([list, list, list, list, list])).await;
    let calls = out["calls"].as_array().unwrap_or_else(|| panic!("{out}"));
    for c in &calls[..3] {
        assert!(text_of(&c["result"]).contains("notes"), "{out}");
    }
    assert_eq!(calls[3]["error"]["code"], -32043, "{out}");
    assert!(
        calls[3]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("frozen"),
        "{out}"
    );
    // Frozen: refused in a new session too, until an admin unfreezes it.
    let out = script(json!([list])).await;
    let refused = format!("{out}");
    assert!(
        refused.contains("-32043") || refused.contains("frozen"),
        "{out}"
    );
    let agent = send(request(
        &fx.app,
        Method::GET,
        &format!("/api/v1/agents/{writer_id}"),
        Some(&fx.admin),
    ))
    .await
    .expect(200)
    .body;
    assert!(
        agent["frozen_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("requests in one session"),
        "{agent}"
    );
    post(
        &fx.app,
        &format!("/api/v1/agents/{writer_id}/unfreeze"),
        Some(&fx.admin),
        &json!({}),
    )
    .await
    .expect(200);
    let out = script(json!([list])).await;
    assert!(
        text_of(&out["calls"][0]["result"]).contains("notes"),
        "{out}"
    );

    let events = fx
        .audit_until("the freeze", |e| {
            e.iter().any(|x| x["action"] == "AGENT_FROZEN")
        })
        .await;
    let frozen = events
        .iter()
        .find(|x| x["action"] == "AGENT_FROZEN")
        .unwrap();
    assert_eq!(frozen["policy_id"], "blast_radius");
    let escalated = events.iter().find(|x| {
        x["action"] == "TOOL_CALL"
            && x["policy_id"] == "blast_radius"
            && x["policy_result"] == "escalate"
    });
    assert!(escalated.is_some(), "the escalation is audited");
    let alerts = alerts_until(
        &fx.app,
        &fx.admin,
        "?alert_type=agent_frozen",
        "the freeze alerted",
        |a| !a.is_empty(),
    )
    .await;
    assert_eq!(alerts[0]["severity"], "critical");
    assert_eq!(alerts[0]["agent_id"], writer_id.as_str());
}
