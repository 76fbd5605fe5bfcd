//! Tenant settings an admin changes: data protection (what is kept of
//! payloads, block or redact).

use axum::Json;
use axum::extract::State;
use behavry_core::{AdminRole, DataProtectionPolicy};

use crate::auth::{TenantAdmin, TenantWriter, require_role};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

/// The tenant's data-protection settings (defaults when never set).
#[utoipa::path(get, path = "/api/v1/settings/data-protection", tag = "settings",
    security(("bearer" = [])),
    responses((status = 200, description = "Data-protection settings", body = DataProtectionPolicy)))]
pub async fn get_data_protection(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<DataProtectionPolicy>, ApiError> {
    let record = state.store.tenant(admin.tenant).tenant().await?;
    Ok(Json(DataProtectionPolicy::of(&record.config)))
}

/// Replaces the tenant's data-protection settings: `payload_storage`
/// (`full`, `metadata_only`, `redacted`), `dlp_action` (`block`, `redact`)
/// and `dlp_block_severity`. Omitted fields take their defaults. Applies
/// to calls within seconds on every replica (at once on this one).
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
    policy.validate().map_err(ApiError::Validation)?;
    let value = serde_json::to_value(&policy).map_err(ApiError::internal)?;
    state
        .store
        .tenant(admin.tenant)
        .set_data_protection_policy(&value)
        .await?;
    state.gate.invalidate_tenant(admin.tenant);
    tracing::info!(tenant = %admin.tenant, admin = %admin.claims.sub, settings = %value, "data-protection settings changed");
    Ok(Json(policy))
}
