//! Tool pinning against rug pulls: every tool definition a server offers
//! is pinned (SHA-256 of its canonical JSON) per tenant and server when
//! first seen; a definition that later differs from its pin is withheld
//! from agents until an admin approves the change.

use std::collections::{HashMap, HashSet};

use behavry_store::{McpServerRecord, ToolPin};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::pipeline::{Caller, record_tool_changed};
use crate::state::AppState;

/// The pin hash of a definition. Objects serialise with sorted keys, so
/// equal definitions hash equally whatever order the server sent.
pub fn hash(definition: &Value) -> String {
    hex::encode(Sha256::digest(definition.to_string().as_bytes()))
}

/// The top-level fields that differ between two definitions.
pub fn diff(before: &Value, after: &Value) -> Vec<Value> {
    let empty = serde_json::Map::new();
    let (b, a) = (
        before.as_object().unwrap_or(&empty),
        after.as_object().unwrap_or(&empty),
    );
    let fields: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    fields
        .into_iter()
        .filter(|f| b.get(*f) != a.get(*f))
        .map(|f| json!({"field": f, "before": b.get(f), "after": a.get(f)}))
        .collect()
}

/// Checks a server's tool definitions against their pins; returns the
/// names to withhold. New tools are pinned; changed ones are proposed to
/// admins (recorded and alerted once per change). When the pins cannot be
/// read, every tool is withheld: an unverified definition is not offered.
pub async fn check(
    state: &AppState,
    caller: &Caller<'_>,
    server: &McpServerRecord,
    tools: &[Value],
) -> HashSet<String> {
    let store = state.store.tenant(server.tenant_id);
    let names = || {
        tools
            .iter()
            .filter_map(|t| t.get("name")?.as_str().map(str::to_string))
            .collect::<HashSet<String>>()
    };
    let pins: HashMap<String, ToolPin> = match store.tool_pins(server.id).await {
        Ok(p) => p.into_iter().map(|p| (p.tool_name.clone(), p)).collect(),
        Err(e) => {
            tracing::error!(server = %server.name, error = %e, "cannot read tool pins; withholding the server's tools");
            return names();
        }
    };
    let mut held = HashSet::new();
    for tool in tools {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            continue;
        };
        let h = hash(tool);
        match pins.get(name) {
            None => {
                if let Err(e) = store.pin_tool(server.id, name, &h, tool).await {
                    tracing::error!(tool = name, error = %e, "cannot pin a tool; withholding it");
                    held.insert(name.to_string());
                }
            }
            Some(pin) if pin.hash == h => {}
            Some(pin) => {
                held.insert(name.to_string());
                match store.propose_tool_change(server.id, name, &h, tool).await {
                    Ok(true) => {
                        record_tool_changed(
                            state,
                            caller,
                            server,
                            name,
                            &diff(&pin.definition, tool),
                        );
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(tool = name, error = %e, "cannot record a tool change")
                    }
                }
            }
        }
    }
    held
}

/// Whether a tool held for a change has been approved since (on any
/// replica): its current definition now matches the pin.
pub async fn approved_since(state: &AppState, server: &McpServerRecord, tool: &str) -> bool {
    let Some(definition) = state.upstreams.tool(server.tenant_id, server.id, tool) else {
        return false;
    };
    match state
        .store
        .tenant(server.tenant_id)
        .tool_pins(server.id)
        .await
    {
        Ok(pins) => pins
            .iter()
            .any(|p| p.tool_name == tool && p.hash == hash(&definition)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ignores_key_order_and_diff_names_fields() {
        let a: Value = serde_json::from_str(r#"{"name":"x","description":"d"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"description":"d","name":"x"}"#).unwrap();
        assert_eq!(hash(&a), hash(&b));
        let c = json!({"name": "x", "description": "changed", "annotations": {}});
        let d = diff(&a, &c);
        let fields: Vec<&str> = d.iter().filter_map(|f| f["field"].as_str()).collect();
        assert_eq!(fields, ["annotations", "description"]);
    }
}
