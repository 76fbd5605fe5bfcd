//! MCP sessions of the tenant's agents, for operators.

use axum::Json;
use axum::extract::{Query, State};
use behavry_core::AgentId;
use behavry_store::SessionRecord;
use serde::{Deserialize, Serialize};

use crate::auth::TenantAdmin;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    pub agent_id: Option<AgentId>,
    /// Only sessions that have not ended (default true).
    pub active: Option<bool>,
    /// 1 to 500, default 100.
    pub limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionList {
    #[schema(value_type = Vec<Object>)]
    pub sessions: Vec<SessionRecord>,
}

/// Sessions, most recently active first (agent, client, protocol version,
/// start, last seen, call count).
#[utoipa::path(get, path = "/api/v1/sessions", tag = "mcp",
    security(("bearer" = [])),
    params(SessionQuery),
    responses((status = 200, description = "Sessions", body = SessionList)))]
pub async fn list(
    State(state): State<AppState>,
    admin: TenantAdmin,
    query: Result<Query<SessionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    let Query(q) = query?;
    let (limit, _) = super::paging(q.limit, None, 100)?;
    // Pending activity counts first, so the numbers are current.
    state.sessions.flush(state.store.as_ref()).await;
    let sessions = state
        .store
        .tenant(admin.tenant)
        .list_sessions(q.agent_id, q.active.unwrap_or(true), limit)
        .await?;
    Ok(Json(SessionList { sessions }))
}
