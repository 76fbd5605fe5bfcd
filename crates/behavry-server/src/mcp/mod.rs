//! The MCP proxy: agents connect here instead of to their MCP servers.

pub mod blast;
pub mod catalog;
pub mod endpoint;
pub mod gate;
pub mod legacy_sse;
pub mod pins;
pub mod pipeline;
pub mod registry;
pub mod sessions;
pub mod trifecta;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::state::AppState;

/// Tool arguments and results can be much larger than admin API bodies.
pub const MCP_BODY_LIMIT: usize = 16 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/mcp/v1/{server_id}",
            post(endpoint::post)
                .get(endpoint::get)
                .delete(endpoint::delete),
        )
        // Legacy HTTP+SSE (2024-11-05) for older clients.
        .route("/mcp/v1/{server_id}/sse", get(legacy_sse::open))
        .route("/mcp/v1/{server_id}/messages", post(legacy_sse::message))
        .layer(DefaultBodyLimit::max(MCP_BODY_LIMIT))
}
