// Inputs shared by both benches: typical tools/call documents as the gateway
// would build them.

use behavry_policy::{Action, PolicyInput, extract_resource};
use serde_json::{Value as Json, json};

fn input(tool: &str, parameters: Json, permissions: &[&str]) -> Json {
    let mut input = PolicyInput::default();
    input.agent.id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into();
    input.agent.name = "release-bot".into();
    input.agent.roles = vec!["ci".into()];
    input.agent.permissions = permissions.iter().map(|p| (*p).to_owned()).collect();
    input.agent.risk_tier = "low".into();
    input.request.tool_name = tool.into();
    input.request.action = Action::classify(tool, None);
    input.request.resource = extract_resource(&parameters);
    input.request.parameters = parameters;
    input.request.mcp_server = "filesystem".into();
    input.request.resource_count = 1;
    input.session.id = "sess-1".into();
    input.session.call_count = 12;
    input.context.time = "2026-11-22T07:00:00Z".into();
    input.context.source = "mcp".into();
    input.to_json()
}

/// `read_file` on an ordinary path.
pub fn read_call() -> Json {
    input(
        "read_file",
        json!({"path": "/srv/data/report.csv"}),
        &["filesystem:read"],
    )
}

/// `write_file` with a 2 KB argument object: the path, a 1.7 KB body and a
/// handful of small fields, so the base pack walks a dozen strings.
pub fn write_call_2kb() -> Json {
    let line = "The quarterly numbers are in; see the attached summary for details.\n";
    let content: String = line
        .repeat(1700 / line.len() + 1)
        .chars()
        .take(1700)
        .collect();
    let parameters = json!({
        "path": "/srv/data/summary.md",
        "content": content,
        "encoding": "utf-8",
        "mode": "overwrite",
        "create_directories": true,
        "metadata": {
            "author": "release-bot",
            "tags": ["finance", "q3", "summary", "draft", "internal", "weekly"],
            "reviewers": ["alice@example.com", "bob@example.com"],
            "revision": 7
        }
    });
    let size = parameters.to_string().len();
    assert!(
        (1900..2300).contains(&size),
        "argument object is {size} bytes"
    );
    input("write_file", parameters, &["filesystem:write"])
}
