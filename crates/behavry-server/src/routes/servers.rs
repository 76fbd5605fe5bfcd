//! Registration of upstream MCP servers (per tenant). Credentials given
//! here are encrypted before they are stored and never returned.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use behavry_core::AdminRole;
use behavry_store::{McpServerPatch, McpServerRecord, NewMcpServer, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{TenantAdmin, TenantWriter, require_role};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::mcp::registry::ServerSecrets;
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServerRequest {
    pub name: String,
    /// `stdio`, `streamable_http` or `sse` (legacy HTTP+SSE).
    pub transport: String,
    /// stdio: the program to run.
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// HTTP transports: the server's MCP endpoint.
    pub url: Option<String>,
    /// stdio: environment variables (stored encrypted).
    #[serde(default)]
    pub env: HashMap<String, String>,
    /// HTTP transports: headers sent upstream, e.g. an API key (stored
    /// encrypted; agents never see them).
    #[serde(default)]
    pub headers: HashMap<String, String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Per-call time limit in milliseconds (default 60000).
    pub timeout_ms: Option<i64>,
    pub enabled: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ServerView {
    pub id: Uuid,
    pub name: String,
    pub transport: String,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub url: Option<String>,
    /// Names of the stored environment variables (values are never shown).
    pub env_keys: Vec<String>,
    /// Names of the stored headers (values are never shown).
    pub header_keys: Vec<String>,
    pub tags: Vec<String>,
    pub timeout_ms: i64,
    pub enabled: bool,
    /// Connection state on this replica: not_started, connecting, ready,
    /// failed or stopped.
    pub status: String,
    pub status_detail: Option<String>,
    /// Where agents connect (Streamable HTTP).
    pub mcp_endpoint: String,
    /// Where legacy HTTP+SSE (2024-11-05) clients open their event stream.
    pub mcp_sse_endpoint: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(super) fn view(state: &AppState, r: McpServerRecord) -> ServerView {
    let secrets: ServerSecrets = r
        .secrets
        .as_deref()
        .and_then(|s| state.cipher.decrypt(s).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut env_keys: Vec<String> = secrets.env.into_keys().collect();
    env_keys.sort();
    let mut header_keys: Vec<String> = secrets.headers.into_keys().collect();
    header_keys.sort();
    let (status, status_detail) = match state.upstreams.state(r.tenant_id, r.id) {
        None => ("not_started".to_string(), None),
        Some(behavry_mcp::upstream::UpstreamState::Failed { error, retry_in }) => (
            "failed".to_string(),
            Some(format!("{error}; retrying in {}s", retry_in.as_secs())),
        ),
        Some(s) => (s.label().to_string(), None),
    };
    ServerView {
        mcp_endpoint: format!("/mcp/v1/{}", r.id),
        mcp_sse_endpoint: format!("/mcp/v1/{}/sse", r.id),
        id: r.id,
        name: r.name,
        transport: r.transport,
        command: r.command,
        args: r.args,
        url: r.url,
        env_keys,
        header_keys,
        tags: r.tags,
        timeout_ms: r.timeout_ms,
        enabled: r.enabled,
        status,
        status_detail,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
    {
        return Err(ApiError::Validation(
            "name must be 1 to 100 letters, digits, spaces, dashes, dots or underscores".into(),
        ));
    }
    Ok(name.to_string())
}

fn check_url(url: &str) -> Result<(), ApiError> {
    match reqwest_url_scheme(url) {
        Some("http") | Some("https") => Ok(()),
        _ => Err(ApiError::Validation(
            "url must be an http:// or https:// URL".into(),
        )),
    }
}

fn reqwest_url_scheme(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    (!rest.is_empty() && !rest.starts_with('/')).then_some(scheme)
}

fn check_tags(tags: &[String]) -> Result<(), ApiError> {
    tags.iter()
        .try_for_each(|t| crate::mcp::trifecta::check_tag(t))
        .map_err(ApiError::Validation)
}

fn check_timeout(t: Option<i64>) -> Result<i64, ApiError> {
    let t = t.unwrap_or(60_000);
    if !(100..=3_600_000).contains(&t) {
        return Err(ApiError::Validation(
            "timeout_ms must be from 100 to 3600000".into(),
        ));
    }
    Ok(t)
}

fn check_secrets(
    env: &HashMap<String, String>,
    headers: &HashMap<String, String>,
) -> Result<(), ApiError> {
    for k in env.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(ApiError::Validation(format!(
                "invalid environment variable name `{k}`"
            )));
        }
    }
    for (k, v) in headers {
        if axum::http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || axum::http::HeaderValue::from_str(v).is_err()
        {
            return Err(ApiError::Validation(format!("invalid header `{k}`")));
        }
    }
    Ok(())
}

fn server_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("`{raw}` is not a server id (expected a UUID)")))
}

fn not_found(id: Uuid) -> impl FnOnce(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("no MCP server with id {id}")),
        StoreError::Conflict(_) => {
            ApiError::Conflict("a server with this name already exists".into())
        }
        other => other.into(),
    }
}

/// Checks a server definition and turns it into the record to store, its
/// credentials encrypted: what registering one server and importing a file
/// share.
pub(super) fn new_server(
    state: &AppState,
    req: CreateServerRequest,
) -> Result<NewMcpServer, ApiError> {
    let name = check_name(&req.name)?;
    match req.transport.as_str() {
        "stdio" => {
            if !state.settings.allow_stdio_servers {
                return Err(ApiError::Forbidden(
                    "stdio servers are disabled on this gateway (BEHAVRY_ALLOW_STDIO_SERVERS)"
                        .into(),
                ));
            }
            if req.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
                return Err(ApiError::Validation(
                    "a stdio server needs `command`".into(),
                ));
            }
            if req.url.is_some() || !req.headers.is_empty() {
                return Err(ApiError::Validation(
                    "a stdio server takes `command`, `args` and `env`, not `url` or `headers`"
                        .into(),
                ));
            }
        }
        "streamable_http" | "sse" => {
            let url = req
                .url
                .as_deref()
                .ok_or_else(|| ApiError::Validation("an HTTP server needs `url`".into()))?;
            check_url(url)?;
            if req.command.is_some() || !req.args.is_empty() || !req.env.is_empty() {
                return Err(ApiError::Validation(
                    "an HTTP server takes `url` and `headers`, not `command`, `args` or `env`"
                        .into(),
                ));
            }
        }
        other => {
            return Err(ApiError::Validation(format!(
                "transport must be stdio, streamable_http or sse, not `{other}`"
            )));
        }
    }
    check_secrets(&req.env, &req.headers)?;
    check_tags(&req.tags)?;
    let timeout_ms = check_timeout(req.timeout_ms)?;
    let secrets = (!req.env.is_empty() || !req.headers.is_empty()).then(|| {
        let doc = ServerSecrets {
            env: req.env,
            headers: req.headers,
        };
        state
            .cipher
            .encrypt(&serde_json::to_vec(&doc).unwrap_or_default())
    });
    Ok(NewMcpServer {
        name,
        transport: req.transport,
        command: req.command,
        args: req.args,
        url: req.url,
        secrets,
        tags: req.tags,
        timeout_ms,
        enabled: req.enabled.unwrap_or(true),
    })
}

/// Registers an upstream MCP server.
#[utoipa::path(post, path = "/api/v1/mcp-servers", tag = "mcp",
    security(("bearer" = [])),
    request_body = CreateServerRequest,
    responses(
        (status = 201, description = "Registered", body = ServerView),
        (status = 409, description = "Name taken", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid input", body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiJson(req): ApiJson<CreateServerRequest>,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    let new = new_server(&state, req)?;
    let record = state
        .store
        .tenant(admin.tenant)
        .create_mcp_server(new)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::Conflict("a server with this name already exists".into())
            }
            other => other.into(),
        })?;
    tracing::info!(server = %record.id, tenant = %admin.tenant, by = %admin.claims.sub, "MCP server registered");
    Ok((StatusCode::CREATED, Json(view(&state, record))))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ServerList {
    pub servers: Vec<ServerView>,
}

/// The tenant's upstream servers.
#[utoipa::path(get, path = "/api/v1/mcp-servers", tag = "mcp",
    security(("bearer" = [])),
    responses((status = 200, description = "Servers", body = ServerList)))]
pub async fn list(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<ServerList>, ApiError> {
    let servers = state.store.tenant(admin.tenant).list_mcp_servers().await?;
    Ok(Json(ServerList {
        servers: servers.into_iter().map(|r| view(&state, r)).collect(),
    }))
}

/// One server with its connection state.
#[utoipa::path(get, path = "/api/v1/mcp-servers/{server_id}", tag = "mcp",
    security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id (UUID)")),
    responses((status = 200, description = "Server", body = ServerView), (status = 404, description = "Unknown", body = crate::error::ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    admin: TenantAdmin,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<ServerView>, ApiError> {
    let id = server_id(&raw)?;
    let record = state
        .store
        .tenant(admin.tenant)
        .get_mcp_server(id)
        .await
        .map_err(not_found(id))?;
    Ok(Json(view(&state, record)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServerRequest {
    pub name: Option<String>,
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    pub url: Option<String>,
    /// Replaces all stored environment variables.
    pub env: Option<HashMap<String, String>>,
    /// Replaces all stored headers.
    pub headers: Option<HashMap<String, String>>,
    pub tags: Option<Vec<String>>,
    pub timeout_ms: Option<i64>,
    pub enabled: Option<bool>,
}

/// Changes a server; its connection restarts with the new settings.
#[utoipa::path(patch, path = "/api/v1/mcp-servers/{server_id}", tag = "mcp",
    security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id (UUID)")),
    request_body = UpdateServerRequest,
    responses((status = 200, description = "Updated", body = ServerView), (status = 404, description = "Unknown", body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateServerRequest>,
) -> Result<Json<ServerView>, ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    let id = server_id(&raw)?;
    let store = state.store.tenant(admin.tenant);
    let current = store.get_mcp_server(id).await.map_err(not_found(id))?;
    if let Some(url) = &req.url {
        check_url(url)?;
    }
    let secrets = if req.env.is_some() || req.headers.is_some() {
        let mut doc: ServerSecrets = current
            .secrets
            .as_deref()
            .and_then(|s| state.cipher.decrypt(s).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if let Some(env) = req.env {
            doc.env = env;
        }
        if let Some(headers) = req.headers {
            doc.headers = headers;
        }
        check_secrets(&doc.env, &doc.headers)?;
        Some((!doc.env.is_empty() || !doc.headers.is_empty()).then(|| {
            state
                .cipher
                .encrypt(&serde_json::to_vec(&doc).unwrap_or_default())
        }))
    } else {
        None
    };
    if let Some(tags) = &req.tags {
        check_tags(tags)?;
    }
    let patch = McpServerPatch {
        name: req.name.as_deref().map(check_name).transpose()?,
        command: req.command.map(Some),
        args: req.args,
        url: req.url.map(Some),
        secrets,
        tags: req.tags,
        timeout_ms: req.timeout_ms.map(|t| check_timeout(Some(t))).transpose()?,
        enabled: req.enabled,
    };
    let record = store
        .update_mcp_server(id, patch)
        .await
        .map_err(not_found(id))?;
    // Calls on this replica pick up the change at once, not when the
    // cached record expires.
    state.upstreams.forget_record(admin.tenant, id);
    if !record.enabled {
        state.upstreams.stop(admin.tenant, id);
    }
    Ok(Json(view(&state, record)))
}

/// Unregisters a server and stops its connection.
#[utoipa::path(delete, path = "/api/v1/mcp-servers/{server_id}", tag = "mcp",
    security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id (UUID)")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Unknown", body = crate::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(raw): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    let id = server_id(&raw)?;
    state
        .store
        .tenant(admin.tenant)
        .delete_mcp_server(id)
        .await
        .map_err(not_found(id))?;
    state.upstreams.stop(admin.tenant, id);
    Ok(StatusCode::NO_CONTENT)
}
