//! Tool definitions that changed since they were approved (rug pulls),
//! for admins to approve or reject.

use axum::Json;
use axum::extract::State;
use behavry_core::AdminRole;
use behavry_store::ToolPin;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::{TenantAdmin, TenantWriter, require_role};
use crate::error::{ApiError, ApiPath};
use crate::mcp::pins;
use crate::state::AppState;

/// A pending change: what was approved, what the server offers now, and
/// the fields that differ.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ToolChange {
    pub server_id: Uuid,
    pub tool_name: String,
    #[schema(value_type = Object)]
    pub approved_definition: Value,
    pub approved_hash: String,
    pub approved_at: chrono::DateTime<chrono::Utc>,
    pub approved_by: String,
    #[schema(value_type = Object)]
    pub pending_definition: Option<Value>,
    pub pending_hash: Option<String>,
    pub pending_since: Option<chrono::DateTime<chrono::Utc>>,
    #[schema(value_type = Vec<Object>)]
    pub diff: Vec<Value>,
}

impl From<ToolPin> for ToolChange {
    fn from(p: ToolPin) -> Self {
        let diff = p
            .pending_definition
            .as_ref()
            .map(|after| pins::diff(&p.definition, after))
            .unwrap_or_default();
        ToolChange {
            server_id: p.server_id,
            tool_name: p.tool_name,
            approved_definition: p.definition,
            approved_hash: p.hash,
            approved_at: p.approved_at,
            approved_by: p.approved_by,
            pending_definition: p.pending_definition,
            pending_hash: p.pending_hash,
            pending_since: p.pending_since,
            diff,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ToolChangeList {
    pub changes: Vec<ToolChange>,
}

/// Tool definitions that changed since they were approved and are withheld
/// from agents until an admin decides.
#[utoipa::path(get, path = "/api/v1/tool-changes", tag = "mcp",
    security(("bearer" = [])),
    responses((status = 200, description = "Pending changes", body = ToolChangeList)))]
pub async fn list(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<ToolChangeList>, ApiError> {
    let pending = state
        .store
        .tenant(admin.tenant)
        .pending_tool_changes()
        .await?;
    Ok(Json(ToolChangeList {
        changes: pending.into_iter().map(ToolChange::from).collect(),
    }))
}

async fn decide(
    state: &AppState,
    admin: &TenantWriter,
    server: &str,
    tool: &str,
    approve: bool,
) -> Result<Json<ToolChange>, ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    let server_id: Uuid = server
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{server}` is not a server id (UUID)")))?;
    let pin = state
        .store
        .tenant(admin.tenant)
        .decide_tool_change(server_id, tool, approve, &admin.claims.sub.to_string())
        .await
        .map_err(|e| match e {
            behavry_store::StoreError::NotFound => ApiError::NotFound(format!(
                "no pending change of tool `{tool}` on server {server_id}"
            )),
            other => other.into(),
        })?;
    if approve {
        state.upstreams.clear_changed(admin.tenant, server_id, tool);
    }
    tracing::warn!(tenant = %admin.tenant, server = %server_id, tool, approve, by = %admin.claims.sub, "tool change decided");
    Ok(Json(pin.into()))
}

/// Approves a changed definition: it becomes the pin and the tool is
/// offered again.
#[utoipa::path(post, path = "/api/v1/tool-changes/{server_id}/{tool_name}/approve", tag = "mcp",
    security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id (UUID)"),
           ("tool_name" = String, Path, description = "Tool name")),
    responses(
        (status = 200, description = "The new pin", body = ToolChange),
        (status = 404, description = "No pending change", body = crate::error::ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath((server, tool)): ApiPath<(String, String)>,
) -> Result<Json<ToolChange>, ApiError> {
    decide(&state, &admin, &server, &tool, true).await
}

/// Rejects a changed definition: the tool stays withheld while the server
/// offers it, and the same change is not proposed again.
#[utoipa::path(post, path = "/api/v1/tool-changes/{server_id}/{tool_name}/reject", tag = "mcp",
    security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id (UUID)"),
           ("tool_name" = String, Path, description = "Tool name")),
    responses(
        (status = 200, description = "The unchanged pin", body = ToolChange),
        (status = 404, description = "No pending change", body = crate::error::ErrorBody)))]
pub async fn reject(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath((server, tool)): ApiPath<(String, String)>,
) -> Result<Json<ToolChange>, ApiError> {
    decide(&state, &admin, &server, &tool, false).await
}
