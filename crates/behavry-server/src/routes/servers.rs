//! Registration of upstream MCP servers (per tenant). Credentials given
//! here are encrypted before they are stored and never returned.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use behavry_core::AdminRole;
use behavry_core::TenantId;
use behavry_store::{McpServerPatch, McpServerRecord, NewAuditEvent, NewMcpServer, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::auth::{AdminClaims, SuperAdmin, TenantAdmin, TenantWriter, require_role};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::mcp::catalog::CatalogView;
use crate::mcp::registry::ServerSecrets;
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServerRequest {
    pub name: String,
    /// `stdio`, `streamable_http` or `sse` (legacy HTTP+SSE).
    pub transport: String,
    /// stdio: the operator's catalogue entry to run (`GET /api/v1/mcp-catalog`).
    pub catalog: Option<String>,
    /// stdio: the program to run. Platform operators only; tenants enable a
    /// catalogue entry instead.
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// HTTP transports: the server's MCP endpoint.
    pub url: Option<String>,
    /// stdio: environment variables (stored encrypted). For a catalogue
    /// entry, only the variables the entry lets tenants set.
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
    /// stdio: the catalogue entry this server runs.
    pub catalog: Option<String>,
    /// stdio: the command was set by a platform operator.
    pub operator_defined: bool,
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
        catalog: r.catalog_entry,
        operator_defined: r.operator_defined,
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

/// Who registers a server, and for which tenant. A tenant admin may not
/// choose a program to run on the gateway host; a platform operator may.
pub(super) struct Registrar<'a> {
    pub tenant: TenantId,
    pub requester: &'a AdminClaims,
    pub operator: bool,
}

const TENANT_COMMAND_REFUSED: &str = "tenants cannot choose a program to run on the gateway host: enable one of the operator's stdio catalogue entries with `catalog` (GET /api/v1/mcp-catalog lists them), or ask a platform operator to offer one (BEHAVRY_STDIO_CATALOG) or to register the server for you (POST /api/v1/superadmin/tenants/{tenant_id}/mcp-servers)";

/// Checks an upstream URL against the outbound address policy as it
/// resolves now; a refusal is audited. Connections are checked again at
/// connect time, so a name that later resolves elsewhere is still refused.
async fn check_url(state: &AppState, by: &Registrar<'_>, url: &str) -> Result<(), ApiError> {
    let bad = || ApiError::Validation("url must be an http:// or https:// URL".into());
    let parsed = reqwest::Url::parse(url).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(bad());
    }
    if let Err(e) = state.upstreams.outbound().check_url_now(&parsed).await {
        let event = NewAuditEvent {
            id: Uuid::now_v7(),
            timestamp: Utc::now(),
            action: "OUTBOUND_REFUSED".into(),
            target: Some(parsed.host_str().unwrap_or_default().to_string()),
            dlp_findings: json!([]),
            extra: json!({"phase": "registration", "reason": e.to_string()}),
            requester_id: Some(by.requester.sub.to_string()),
            ..NewAuditEvent::default()
        };
        state
            .audit
            .record(by.tenant, event)
            .await
            .map_err(|e| ApiError::Unavailable(Box::new(e)))?;
        return Err(ApiError::Validation(format!("url refused: {e}")));
    }
    Ok(())
}

/// The stdio part of a registration: what runs, and which variables the
/// registrar may set.
fn check_stdio(
    state: &AppState,
    by: &Registrar<'_>,
    req: &CreateServerRequest,
) -> Result<(), ApiError> {
    let launcher = state.upstreams.launcher();
    if !launcher.enabled {
        return Err(ApiError::Forbidden(
            "stdio servers are disabled on this gateway (BEHAVRY_ALLOW_STDIO_SERVERS)".into(),
        ));
    }
    if req.url.is_some() || !req.headers.is_empty() {
        return Err(ApiError::Validation(
            "a stdio server takes `catalog` or `command`, `args` and `env`, not `url` or `headers`"
                .into(),
        ));
    }
    let commanded = req.command.is_some() || !req.args.is_empty();
    if commanded && !by.operator {
        return Err(ApiError::Forbidden(TENANT_COMMAND_REFUSED.into()));
    }
    match (&req.catalog, commanded) {
        (Some(_), true) => Err(ApiError::Validation(
            "give either `catalog` or `command`, not both".into(),
        )),
        (Some(name), false) => {
            let entry = launcher.catalog.get(name).ok_or_else(|| {
                ApiError::Validation(format!(
                    "the operator's stdio catalogue has no entry `{name}` (GET /api/v1/mcp-catalog lists them)"
                ))
            })?;
            let mut unknown: Vec<&str> = req
                .env
                .keys()
                .filter(|k| !entry.tenant_env.contains(k))
                .map(String::as_str)
                .collect();
            unknown.sort_unstable();
            if !unknown.is_empty() {
                return Err(ApiError::Validation(format!(
                    "the catalogue entry `{name}` does not let tenants set {}; it accepts only: {}",
                    unknown.join(", "),
                    if entry.tenant_env.is_empty() {
                        "nothing".to_string()
                    } else {
                        entry.tenant_env.join(", ")
                    }
                )));
            }
            Ok(())
        }
        (None, _) if req.command.as_deref().is_none_or(|c| c.trim().is_empty()) => {
            Err(ApiError::Validation(if by.operator {
                "a stdio server needs `catalog` or `command`".into()
            } else {
                "a stdio server needs `catalog`: the operator's catalogue entry to run (GET /api/v1/mcp-catalog)".into()
            }))
        }
        (None, _) => Ok(()),
    }
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
pub(super) async fn new_server(
    state: &AppState,
    by: &Registrar<'_>,
    req: CreateServerRequest,
) -> Result<NewMcpServer, ApiError> {
    let name = check_name(&req.name)?;
    match req.transport.as_str() {
        "stdio" => check_stdio(state, by, &req)?,
        "streamable_http" | "sse" => {
            let url = req
                .url
                .as_deref()
                .ok_or_else(|| ApiError::Validation("an HTTP server needs `url`".into()))?;
            if req.command.is_some()
                || req.catalog.is_some()
                || !req.args.is_empty()
                || !req.env.is_empty()
            {
                return Err(ApiError::Validation(
                    "an HTTP server takes `url` and `headers`, not `catalog`, `command`, `args` or `env`"
                        .into(),
                ));
            }
            check_url(state, by, url).await?;
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
    let operator_defined = by.operator && req.command.is_some();
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
        catalog_entry: req.catalog,
        operator_defined,
    })
}

/// Checks and stores one server for the registrar's tenant.
async fn register(
    state: &AppState,
    by: &Registrar<'_>,
    req: CreateServerRequest,
) -> Result<McpServerRecord, ApiError> {
    let new = new_server(state, by, req).await?;
    state
        .store
        .tenant(by.tenant)
        .create_mcp_server(new)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::Conflict("a server with this name already exists".into())
            }
            other => other.into(),
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
    let by = Registrar {
        tenant: admin.tenant,
        requester: &admin.claims,
        operator: false,
    };
    let record = register(&state, &by, req).await?;
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
    if req.command.is_some() || req.args.is_some() {
        return Err(ApiError::Forbidden(TENANT_COMMAND_REFUSED.into()));
    }
    if let Some(env) = &req.env
        && current.transport == "stdio"
    {
        // Only what the server's catalogue entry declares, and nothing of
        // a server whose program a platform operator set up.
        let allowed: &[String] = match &current.catalog_entry {
            Some(name) => state
                .upstreams
                .launcher()
                .catalog
                .get(name)
                .map_or(&[], |e| e.tenant_env.as_slice()),
            None => &[],
        };
        if let Some(k) = env.keys().find(|k| !allowed.contains(k)) {
            return Err(ApiError::Forbidden(format!(
                "tenants cannot set `{k}` for this server: only the variables its catalogue entry declares ({})",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
    }
    if let Some(url) = &req.url {
        if current.transport == "stdio" {
            return Err(ApiError::Validation("a stdio server has no `url`".into()));
        }
        let by = Registrar {
            tenant: admin.tenant,
            requester: &admin.claims,
            operator: false,
        };
        check_url(&state, &by, url).await?;
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
        command: None,
        args: None,
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

/// The stdio servers the operator offers: what a tenant may enable with
/// `"transport": "stdio", "catalog": "<name>"`.
#[utoipa::path(get, path = "/api/v1/mcp-catalog", tag = "mcp",
    security(("bearer" = [])),
    responses((status = 200, description = "The operator's stdio catalogue", body = CatalogView)))]
pub async fn catalog(State(state): State<AppState>, _admin: TenantAdmin) -> Json<CatalogView> {
    Json(CatalogView::of(state.upstreams.launcher()))
}

/// Registers a server for a tenant as a platform operator, who may name
/// the program a stdio server runs (the single-tenant quick start, or a
/// server the operator sets up for one tenant only).
#[utoipa::path(post, path = "/api/v1/superadmin/tenants/{tenant_id}/mcp-servers", tag = "superadmin",
    security(("bearer" = [])),
    params(("tenant_id" = String, Path, description = "Tenant id (UUID)")),
    request_body = CreateServerRequest,
    responses(
        (status = 201, description = "Registered", body = ServerView),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 409, description = "Name taken", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid input", body = crate::error::ErrorBody)))]
pub async fn operator_create(
    State(state): State<AppState>,
    operator: SuperAdmin,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<CreateServerRequest>,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    let tenant = TenantId(raw.parse().map_err(|_| {
        ApiError::BadRequest(format!("`{raw}` is not a tenant id (expected a UUID)"))
    })?);
    state
        .store
        .platform(&operator.grant)
        .get_tenant(tenant)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound(format!("no tenant with id {}", tenant.0)),
            other => other.into(),
        })?;
    let by = Registrar {
        tenant,
        requester: &operator.claims,
        operator: true,
    };
    let record = register(&state, &by, req).await?;
    let event = NewAuditEvent {
        id: Uuid::now_v7(),
        timestamp: Utc::now(),
        action: "MCP_SERVER_REGISTERED".into(),
        target: Some(record.id.to_string()),
        dlp_findings: json!([]),
        extra: json!({"name": record.name, "transport": record.transport, "by_operator": true,
            "command": record.command, "catalog": record.catalog_entry}),
        requester_id: Some(operator.claims.sub.to_string()),
        ..NewAuditEvent::default()
    };
    if let Err(e) = state.audit.record(tenant, event).await {
        tracing::error!(tenant = %tenant, error = %e, "a server registration could not be written to the audit trail");
    }
    tracing::info!(server = %record.id, tenant = %tenant, by = %operator.claims.sub, "MCP server registered by a platform operator");
    Ok((StatusCode::CREATED, Json(view(&state, record))))
}
