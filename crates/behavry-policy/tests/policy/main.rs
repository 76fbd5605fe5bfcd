//! Engine-level tests: the embedded engine's hot swap, and the OPA client
//! against a stand-in OPA server. One binary, one module per engine.

// Test helpers outside #[test] functions may unwrap too: a panic is the report.
#![allow(clippy::unwrap_used)]

mod embedded;
mod opa;

use behavry_policy::{Action, PolicyInput, PolicySource};
use serde_json::Value as Json;

pub fn source(id: &str, content: &str) -> PolicySource {
    PolicySource {
        id: id.to_owned(),
        name: format!("{id} policy"),
        content: content.to_owned(),
        monitor: false,
    }
}

pub fn call(tool: &str, parameters: Json) -> Json {
    let mut input = PolicyInput::default();
    input.request.tool_name = tool.to_owned();
    input.request.action = Action::classify(tool, None);
    input.request.resource = behavry_policy::extract_resource(&parameters);
    input.request.parameters = parameters;
    input.request.mcp_server = "filesystem".to_owned();
    input.to_json()
}
