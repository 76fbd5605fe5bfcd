//! The OpenAPI description, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    agents, alerts, audit, auth, escalations, events, health, policies, servers, servers_import,
    sessions, settings, superadmin, tenants, tool_changes,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Behavry API",
        description = "Security gateway for AI agents: administration and tenant API."
    ),
    paths(
        health::live,
        health::ready,
        health::metrics,
        auth::admin_login,
        auth::agent_token,
        agents::create,
        agents::list,
        agents::detail,
        agents::risk,
        agents::update,
        agents::suspend,
        agents::reactivate,
        agents::revoke,
        agents::rotate_secret,
        agents::create_enrollment_token,
        agents::enroll,
        agents::heartbeat,
        servers::create,
        servers::list,
        servers::detail,
        servers::update,
        servers::delete,
        servers::catalog,
        servers::operator_create,
        policies::list,
        policies::create,
        policies::detail,
        policies::update,
        policies::delete,
        policies::versions,
        policies::restore,
        policies::validate,
        policies::evaluate,
        policies::base_pack,
        policies::set_base_pack,
        servers_import::import,
        sessions::list,
        settings::get_data_protection,
        settings::put_data_protection,
        tool_changes::list,
        tool_changes::approve,
        tool_changes::reject,
        settings::get_blast_radius,
        settings::put_blast_radius,
        agents::unfreeze,
        settings::list_patterns,
        settings::put_pattern,
        settings::delete_pattern,
        alerts::list,
        alerts::get,
        alerts::update,
        alerts::deliveries,
        events::stream,
        escalations::list,
        escalations::get,
        escalations::approve,
        escalations::deny,
        escalations::list_exceptions,
        escalations::delete_exception,
        audit::search,
        audit::payload,
        audit::export,
        audit::verify,
        auth::jwks,
        tenants::signup,
        tenants::setup_status,
        tenants::usage,
        superadmin::provision,
        superadmin::list,
        superadmin::detail,
        superadmin::update,
        superadmin::suspend,
        superadmin::usage,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "auth", description = "Admin and agent authentication, signing keys"),
        (name = "agents", description = "Agent identity and enrollment"),
        (name = "policies", description = "Rego policies, versions, the base pack, validation and dry runs"),
        (name = "alerts", description = "Alerts raised by data protection, blast-radius limits and tool pinning: list, acknowledge, resolve"),
        (name = "events", description = "Live events for admins (Server-Sent Events)"),
        (name = "escalations", description = "Calls held for approval: the queue, approve and deny, exceptions"),
        (name = "audit", description = "The hash-chained audit trail"),
        (name = "mcp", description = "Upstream MCP servers (agents connect at /mcp/v1/{server_id}, or with the legacy HTTP+SSE transport at /mcp/v1/{server_id}/sse)"),
        (name = "tenants", description = "Signup, setup status, usage"),
        (name = "settings", description = "Tenant settings: data protection"),
        (name = "superadmin", description = "Tenant management for platform operators"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn spec() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The document as pretty JSON (what `docs/openapi.json` holds).
pub fn document() -> String {
    let mut text = spec()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(spec())
}
