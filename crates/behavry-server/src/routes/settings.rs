//! Tenant settings an admin changes: data protection (what is kept of
//! payloads, block or redact, the trifecta rule) and the tenant's own
//! data-protection patterns.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use behavry_core::{AdminRole, BlastRadiusConfig, DataProtectionPolicy, DlpPattern, TenantId};
use serde::{Deserialize, Serialize};

use crate::auth::{TenantAdmin, TenantWriter, require_role};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;

async fn load(state: &AppState, tenant: TenantId) -> Result<DataProtectionPolicy, ApiError> {
    let record = state.store.tenant(tenant).tenant().await?;
    Ok(DataProtectionPolicy::of(&record.config))
}

/// Validates and stores the settings; they apply at once on this replica
/// and within seconds on the others (the agent-state cache).
async fn save(
    state: &AppState,
    admin: &TenantWriter,
    policy: &DataProtectionPolicy,
) -> Result<(), ApiError> {
    policy.validate().map_err(ApiError::Validation)?;
    for p in &policy.custom_patterns {
        crate::scanners::compile(p).map_err(ApiError::Validation)?;
    }
    let value = serde_json::to_value(policy).map_err(ApiError::internal)?;
    state
        .store
        .tenant(admin.tenant)
        .set_data_protection_policy(&value)
        .await?;
    state.changed_tenant(admin.tenant, "data_protection");
    tracing::info!(tenant = %admin.tenant, admin = %admin.claims.sub, "data-protection settings changed");
    Ok(())
}

/// The tenant's data-protection settings (defaults when never set).
#[utoipa::path(get, path = "/api/v1/settings/data-protection", tag = "settings",
    security(("bearer" = [])),
    responses((status = 200, description = "Data-protection settings", body = DataProtectionPolicy)))]
pub async fn get_data_protection(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<DataProtectionPolicy>, ApiError> {
    Ok(Json(load(&state, admin.tenant).await?))
}

/// Replaces the tenant's data-protection settings: `payload_storage`
/// (`full`, `metadata_only`, `redacted`), `dlp_action` (`block`, `redact`),
/// `dlp_block_severity`, `trifecta_action` and `custom_patterns`. Omitted
/// fields take their defaults. Applies to calls within seconds on every
/// replica (at once on this one).
#[utoipa::path(put, path = "/api/v1/settings/data-protection", tag = "settings",
    security(("bearer" = [])),
    request_body = DataProtectionPolicy,
    responses(
        (status = 200, description = "Saved settings", body = DataProtectionPolicy),
        (status = 403, description = "Needs the admin role", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid or unknown field", body = crate::error::ErrorBody)))]
pub async fn put_data_protection(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiJson(policy): ApiJson<DataProtectionPolicy>,
) -> Result<Json<DataProtectionPolicy>, ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    save(&state, &admin, &policy).await?;
    Ok(Json(policy))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PatternList {
    pub patterns: Vec<DlpPattern>,
}

/// The tenant's own data-protection patterns.
#[utoipa::path(get, path = "/api/v1/dlp/patterns", tag = "settings",
    security(("bearer" = [])),
    responses((status = 200, description = "Custom patterns", body = PatternList)))]
pub async fn list_patterns(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<PatternList>, ApiError> {
    let patterns = load(&state, admin.tenant).await?.custom_patterns;
    Ok(Json(PatternList { patterns }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatternRequest {
    /// A regular expression (Rust `regex` syntax).
    pub regex: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// The finding's category and redaction label (default `custom`).
    pub category: Option<String>,
}

/// Creates or replaces the pattern `name`. Refused (422) when it does not
/// compile, compiles too large, or matches the empty string.
#[utoipa::path(put, path = "/api/v1/dlp/patterns/{name}", tag = "settings",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "1–64 lowercase letters, digits or underscores")),
    request_body = PatternRequest,
    responses(
        (status = 200, description = "Saved pattern", body = DlpPattern),
        (status = 422, description = "Invalid pattern", body = crate::error::ErrorBody)))]
pub async fn put_pattern(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<PatternRequest>,
) -> Result<Json<DlpPattern>, ApiError> {
    require_role(&admin.claims, AdminRole::PolicyAuthor)?;
    let pattern = DlpPattern {
        name,
        regex: req.regex,
        severity: req.severity.to_ascii_lowercase(),
        category: req.category.unwrap_or_else(|| "custom".into()),
    };
    let mut policy = load(&state, admin.tenant).await?;
    match policy
        .custom_patterns
        .iter_mut()
        .find(|p| p.name == pattern.name)
    {
        Some(existing) => *existing = pattern.clone(),
        None => policy.custom_patterns.push(pattern.clone()),
    }
    save(&state, &admin, &policy).await?;
    Ok(Json(pattern))
}

/// Removes the pattern `name`.
#[utoipa::path(delete, path = "/api/v1/dlp/patterns/{name}", tag = "settings",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Pattern name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such pattern", body = crate::error::ErrorBody)))]
pub async fn delete_pattern(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    require_role(&admin.claims, AdminRole::PolicyAuthor)?;
    let mut policy = load(&state, admin.tenant).await?;
    let before = policy.custom_patterns.len();
    policy.custom_patterns.retain(|p| p.name != name);
    if policy.custom_patterns.len() == before {
        return Err(ApiError::NotFound(format!(
            "no custom pattern named `{name}`"
        )));
    }
    save(&state, &admin, &policy).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's blast-radius limits (defaults when never set).
#[utoipa::path(get, path = "/api/v1/settings/blast-radius", tag = "settings",
    security(("bearer" = [])),
    responses((status = 200, description = "Blast-radius limits", body = BlastRadiusConfig)))]
pub async fn get_blast_radius(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<BlastRadiusConfig>, ApiError> {
    let record = state.store.tenant(admin.tenant).tenant().await?;
    Ok(Json(BlastRadiusConfig::of(&record.config)))
}

/// Replaces the tenant's blast-radius limits: the rules on single calls
/// (`min_recursive_delete_depth`, `max_recipients`, `max_bulk_items`,
/// `protected_paths`, `protected_names`) and the per-agent `windows`
/// (`calls_per_session`, `destructive_per_hour`, `bytes_out_per_hour`,
/// `dlp_findings_per_hour`; 0 turns one off). Omitted fields take their
/// defaults.
#[utoipa::path(put, path = "/api/v1/settings/blast-radius", tag = "settings",
    security(("bearer" = [])),
    request_body = BlastRadiusConfig,
    responses(
        (status = 200, description = "Saved limits", body = BlastRadiusConfig),
        (status = 422, description = "Invalid or unknown field", body = crate::error::ErrorBody)))]
pub async fn put_blast_radius(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiJson(config): ApiJson<BlastRadiusConfig>,
) -> Result<Json<BlastRadiusConfig>, ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    config.validate().map_err(ApiError::Validation)?;
    let value = serde_json::to_value(&config).map_err(ApiError::internal)?;
    state
        .store
        .tenant(admin.tenant)
        .set_blast_radius_config(&value)
        .await?;
    state.changed_tenant(admin.tenant, "blast_radius");
    tracing::info!(tenant = %admin.tenant, admin = %admin.claims.sub, "blast-radius limits changed");
    Ok(Json(config))
}
