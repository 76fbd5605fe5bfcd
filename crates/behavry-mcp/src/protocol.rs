//! Protocol versions the gateway speaks, and header names.

/// Newest first. 2026-07-28 is the stateless revision (no sessions, no
/// initialize handshake); the others use `initialize` and, over HTTP, the
/// `Mcp-Session-Id` header.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "2026-07-28",
    "2025-11-25",
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
];

/// The newest version that still uses the initialize handshake.
pub const LATEST_WITH_INITIALIZE: &str = "2025-11-25";

pub const STATELESS_VERSION: &str = "2026-07-28";

/// Assumed when an HTTP client sends no `MCP-Protocol-Version` header and
/// nothing else says otherwise (as the 2025-06-18 transport rules direct).
pub const DEFAULT_HTTP_VERSION: &str = "2025-03-26";

pub const HEADER_SESSION_ID: &str = "mcp-session-id";
pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
pub const HEADER_METHOD: &str = "mcp-method";
pub const HEADER_NAME: &str = "mcp-name";

pub fn is_supported(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// The version to answer an `initialize` with: the client's when we speak
/// it (and it uses the handshake), else our newest handshake version.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    match requested {
        Some(v) if v != STATELESS_VERSION => SUPPORTED_VERSIONS
            .iter()
            .find(|s| **s == v)
            .copied()
            .unwrap_or(LATEST_WITH_INITIALIZE),
        _ => LATEST_WITH_INITIALIZE,
    }
}

/// Whether a version uses stateless requests (no session, no initialize).
pub fn is_stateless(version: &str) -> bool {
    version >= STATELESS_VERSION
}

/// Methods whose results are cacheable in 2026-07-28 (`ttlMs`, `cacheScope`).
const CACHEABLE: &[&str] = &[
    "prompts/list",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "server/discover",
    "tools/list",
];

/// Shapes a result for the client's protocol version: 2026-07-28 results
/// carry `resultType`, and cacheable ones `ttlMs` and `cacheScope`. Lists
/// are filtered per agent, so they are never shared (`private`, no TTL).
pub fn adapt_result(version: &str, method: &str, result: &mut serde_json::Value) {
    if !is_stateless(version) {
        return;
    }
    let Some(obj) = result.as_object_mut() else {
        return;
    };
    obj.entry("resultType").or_insert_with(|| "complete".into());
    if CACHEABLE.contains(&method) {
        obj.entry("ttlMs").or_insert_with(|| 0.into());
        obj.entry("cacheScope").or_insert_with(|| "private".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("2099-01-01")), LATEST_WITH_INITIALIZE);
        assert_eq!(negotiate(Some("2026-07-28")), LATEST_WITH_INITIALIZE);
        assert_eq!(negotiate(None), LATEST_WITH_INITIALIZE);
        assert!(is_stateless("2026-07-28"));
        assert!(!is_stateless("2025-11-25"));
    }
}
