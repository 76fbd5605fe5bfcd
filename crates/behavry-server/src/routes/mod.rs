//! HTTP routing: which path goes to which handler, and the layers around
//! them (metrics, body limit, panic safety net, JSON fallbacks).

pub mod agents;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod escalations;
pub mod events;
pub mod health;
pub mod policies;
pub mod servers;
pub mod servers_import;
pub mod sessions;
pub mod settings;
pub mod superadmin;
pub mod tenants;
pub mod tool_changes;

use std::any::Any;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::openapi;
use crate::state::AppState;

/// Largest request body accepted by the API.
pub const BODY_LIMIT: usize = 1024 * 1024;

pub fn api_router(state: AppState) -> Router {
    Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/.well-known/jwks.json", get(auth::jwks))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/api/v1/auth/admin/login", post(auth::admin_login))
        .route("/api/v1/auth/token", post(auth::agent_token))
        .route("/api/v1/agents", get(agents::list).post(agents::create))
        .route("/api/v1/agents/heartbeat", post(agents::heartbeat))
        .route(
            "/api/v1/agents/enrollment-tokens",
            post(agents::create_enrollment_token),
        )
        .route(
            "/api/v1/agents/{agent_id}",
            get(agents::detail).patch(agents::update),
        )
        .route("/api/v1/agents/{agent_id}/risk", get(agents::risk))
        .route("/api/v1/agents/{agent_id}/suspend", post(agents::suspend))
        .route(
            "/api/v1/agents/{agent_id}/reactivate",
            post(agents::reactivate),
        )
        .route("/api/v1/agents/{agent_id}/revoke", post(agents::revoke))
        .route("/api/v1/agents/{agent_id}/unfreeze", post(agents::unfreeze))
        .route(
            "/api/v1/settings/blast-radius",
            get(settings::get_blast_radius).put(settings::put_blast_radius),
        )
        .route(
            "/api/v1/agents/{agent_id}/rotate-secret",
            post(agents::rotate_secret),
        )
        .route("/api/v1/enroll/agent", post(agents::enroll))
        .route(
            "/api/v1/mcp-servers",
            get(servers::list).post(servers::create),
        )
        .route("/api/v1/mcp-servers/import", post(servers_import::import))
        .route("/api/v1/mcp-catalog", get(servers::catalog))
        .route(
            "/api/v1/mcp-servers/{server_id}",
            get(servers::detail)
                .patch(servers::update)
                .delete(servers::delete),
        )
        .route(
            "/api/v1/policies",
            get(policies::list).post(policies::create),
        )
        .route("/api/v1/policies/validate", post(policies::validate))
        .route("/api/v1/policies/evaluate", post(policies::evaluate))
        .route(
            "/api/v1/policies/base-pack",
            get(policies::base_pack).put(policies::set_base_pack),
        )
        .route(
            "/api/v1/policies/{policy_id}",
            get(policies::detail)
                .patch(policies::update)
                .delete(policies::delete),
        )
        .route(
            "/api/v1/policies/{policy_id}/versions",
            get(policies::versions),
        )
        .route(
            "/api/v1/policies/{policy_id}/versions/{version}/restore",
            post(policies::restore),
        )
        .route("/api/v1/sessions", get(sessions::list))
        .route("/api/v1/tool-changes", get(tool_changes::list))
        .route(
            "/api/v1/tool-changes/{server_id}/{tool_name}/approve",
            post(tool_changes::approve),
        )
        .route(
            "/api/v1/tool-changes/{server_id}/{tool_name}/reject",
            post(tool_changes::reject),
        )
        .route("/api/v1/dlp/patterns", get(settings::list_patterns))
        .route(
            "/api/v1/dlp/patterns/{name}",
            put(settings::put_pattern).delete(settings::delete_pattern),
        )
        .route(
            "/api/v1/settings/data-protection",
            get(settings::get_data_protection).put(settings::put_data_protection),
        )
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/webhooks/deliveries", get(alerts::deliveries))
        .route("/api/v1/events/stream", get(events::stream))
        .route("/api/v1/escalations", get(escalations::list))
        .route("/api/v1/escalations/{id}", get(escalations::get))
        .route(
            "/api/v1/escalations/{id}/approve",
            post(escalations::approve),
        )
        .route("/api/v1/escalations/{id}/deny", post(escalations::deny))
        .route(
            "/api/v1/escalation-exceptions",
            get(escalations::list_exceptions),
        )
        .route(
            "/api/v1/escalation-exceptions/{id}",
            delete(escalations::delete_exception),
        )
        .route(
            "/api/v1/alerts/{id}",
            get(alerts::get).patch(alerts::update),
        )
        .route("/api/v1/audit/events", get(audit::search))
        .route("/api/v1/audit/events/{id}/payload", get(audit::payload))
        .route("/api/v1/audit/export", get(audit::export))
        .route("/api/v1/audit/verify", get(audit::verify))
        .route("/api/v1/signup", post(tenants::signup))
        .route("/api/v1/admin/setup-status", get(tenants::setup_status))
        .route("/api/v1/admin/usage", get(tenants::usage))
        .route(
            "/api/v1/superadmin/tenants",
            get(superadmin::list).post(superadmin::provision),
        )
        .route(
            "/api/v1/superadmin/tenants/{tenant_id}",
            get(superadmin::detail).patch(superadmin::update),
        )
        .route(
            "/api/v1/superadmin/tenants/{tenant_id}/mcp-servers",
            post(servers::operator_create),
        )
        .route(
            "/api/v1/superadmin/tenants/{tenant_id}/suspend",
            post(superadmin::suspend),
        )
        .route(
            "/api/v1/superadmin/tenants/{tenant_id}/usage",
            get(superadmin::usage),
        )
        .merge(crate::mcp::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see /api/v1/openapi.json".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Last line of defence: a panic in a handler becomes an opaque 500 with a
/// correlation id instead of a dropped connection.
fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    ApiError::internal(format!("handler panicked: {detail}")).into_response()
}

/// A list endpoint's `limit` (default `default`, at most 500) and `offset`
/// (default 0), checked.
pub(crate) fn paging(
    limit: Option<i64>,
    offset: Option<i64>,
    default: i64,
) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be from 1 to 500".into()));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::BadRequest("offset must not be negative".into()));
    }
    Ok((limit, offset))
}
