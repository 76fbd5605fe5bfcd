//! The dashboard listener (port 3000 by default).
//!
//! This version serves a status page and the same API under the same
//! origin; the full web dashboard is not part of it yet.

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;

use crate::error::ApiError;
use crate::routes::api_router;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .with_state(state.clone())
        .merge(api_router(state))
}

async fn index(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let initialized = state.store.auth().is_initialized().await?;
    let next_step = if initialized {
        "Log in with <code>POST /api/v1/auth/admin/login</code> to get an access token."
    } else {
        "No organization exists yet. Create one with <code>POST /api/v1/signup</code> \
         (organization_name, admin_email, admin_password), or log in as the platform \
         operator if <code>BEHAVRY_ADMIN_PASSWORD</code> was set."
    };
    Ok(Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Behavry</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}\
         code{{background:#f2f2f2;padding:0 .2rem}}</style></head><body>\
         <h1>Behavry {version}</h1>\
         <p>The gateway is running ({backend} storage).</p>\
         <p>{next_step}</p>\
         <p>The web dashboard is not part of this version. The API is described at \
         <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>; health at \
         <a href=\"/health/ready\">/health/ready</a>.</p></body></html>",
        version = env!("CARGO_PKG_VERSION"),
        backend = state.store.backend(),
    )))
}
