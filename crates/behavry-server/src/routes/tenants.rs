//! Self-service signup, setup status and tenant usage.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use behavry_core::config::SignupMode;
use behavry_core::validate::{is_plausible_email, password_problem, slugify};
use behavry_core::{AdminRole, Secret, TenantConfig, TenantId, UsageSummary};
use behavry_store::{NewAdminUser, NewEnrollmentToken, NewTenant, PlatformGrant, StoreError};
use chrono::{Duration, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{TenantAdmin, hash_password};
use crate::error::{ApiError, ApiJson};
use crate::state::{AppState, ClientIp};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub organization_name: String,
    pub admin_email: String,
    /// At least 12 characters.
    #[schema(value_type = String, format = Password)]
    pub admin_password: Secret,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SignupResponse {
    pub tenant_id: TenantId,
    pub admin_username: String,
    /// Single-use, valid for 24 hours; shown only in this response.
    pub enrollment_token: String,
    pub dashboard_url: &'static str,
    /// Environment block to paste into an agent's configuration.
    pub sdk_env_block: String,
}

/// Generates an opaque random token (32 bytes, URL-safe base64) and the
/// SHA-256 hash under which it is stored.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    (token, hash)
}

pub(crate) fn validate_org_name(name: &str) -> Result<(String, String), ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::Validation(
            "organization name must not be empty".into(),
        ));
    }
    if name.chars().count() > 200 {
        return Err(ApiError::Validation(
            "organization name must be at most 200 characters".into(),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::Validation(
            "organization name must not contain control characters".into(),
        ));
    }
    let slug = slugify(name).ok_or_else(|| {
        ApiError::Validation("organization name must contain at least one letter or digit".into())
    })?;
    Ok((name.to_string(), slug))
}

/// Creates a tenant, its configuration, its first admin and a 24-hour
/// enrollment token in one transaction.
#[utoipa::path(post, path = "/api/v1/signup", tag = "tenants",
    request_body = SignupRequest,
    responses(
        (status = 201, description = "Tenant created", body = SignupResponse),
        (status = 403, description = "Signup is closed on this gateway (BEHAVRY_SIGNUP)", body = crate::error::ErrorBody),
        (status = 409, description = "Organization or e-mail already registered", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid input", body = crate::error::ErrorBody),
        (status = 429, description = "More than 5 signups from this address in an hour", body = crate::error::ErrorBody)))]
pub async fn signup(
    State(state): State<AppState>,
    ip: ClientIp,
    body: Result<ApiJson<SignupRequest>, ApiError>,
) -> Result<(StatusCode, Json<SignupResponse>), ApiError> {
    // Counted before the body is looked at: malformed attempts count too.
    state
        .limits
        .signup
        .acquire(&ip.key())
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
    let ApiJson(req) = body?;
    // In first-run mode the check and the creation are serialised on this
    // replica, so two racing first signups cannot both get through.
    static FIRST_RUN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _first_run = match state.settings.signup {
        SignupMode::Open => None,
        SignupMode::Closed => {
            return Err(ApiError::Forbidden(
                "self-service signup is closed on this gateway; a platform operator creates tenants (POST /api/v1/superadmin/tenants)".into(),
            ));
        }
        SignupMode::FirstRun => {
            let guard = FIRST_RUN.lock().await;
            if state.store.auth().is_initialized().await? {
                return Err(ApiError::Forbidden(
                    "signup is only open until the first organization exists (BEHAVRY_SIGNUP=first_run); a platform operator creates further tenants (POST /api/v1/superadmin/tenants), or sets BEHAVRY_SIGNUP=open to offer signup to anyone".into(),
                ));
            }
            Some(guard)
        }
    };
    let (name, slug) = validate_org_name(&req.organization_name)?;
    let email = req.admin_email.trim().to_lowercase();
    if !is_plausible_email(&email) {
        return Err(ApiError::Validation(
            "admin_email must be an e-mail address".into(),
        ));
    }
    if let Some(problem) = password_problem(req.admin_password.expose()) {
        return Err(ApiError::Validation(format!("admin_password: {problem}")));
    }
    let password_hash = hash_password(
        req.admin_password.expose().to_string(),
        state.settings.bcrypt_cost,
    )
    .await?;
    let (token, token_hash) = new_token();
    let grant = PlatformGrant::self_service_signup();
    let created = state
        .store
        .platform(&grant)
        .create_tenant(NewTenant {
            name,
            slug_base: slug,
            config: TenantConfig::default(),
            admin: NewAdminUser {
                username: email.clone(),
                email: Some(email.clone()),
                password_hash,
                role: AdminRole::Admin,
            },
            enrollment_token: Some(NewEnrollmentToken {
                token_hash,
                expires_at: Utc::now() + Duration::hours(24),
            }),
        })
        .await
        .map_err(|e| match e {
            // One answer for a taken e-mail and a taken organization name.
            StoreError::Conflict(_) => ApiError::Conflict(
                "an organization or account with these details already exists".into(),
            ),
            other => other.into(),
        })?;
    tracing::info!(tenant = %created.record.tenant.id, slug = %created.record.tenant.slug, "tenant created by signup");
    let sdk_env_block = format!(
        "BEHAVRY_CLIENT_ID=<register an agent first>\nBEHAVRY_CLIENT_SECRET=<register an agent first>\nBEHAVRY_ENROLLMENT_TOKEN={token}"
    );
    Ok((
        StatusCode::CREATED,
        Json(SignupResponse {
            tenant_id: created.record.tenant.id,
            admin_username: created.admin.username,
            enrollment_token: token,
            dashboard_url: "/",
            sdk_env_block,
        }),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SetupStatus {
    /// True once at least one tenant exists.
    pub initialized: bool,
}

/// Whether the platform has been set up (no authentication).
#[utoipa::path(get, path = "/api/v1/admin/setup-status", tag = "tenants",
    responses((status = 200, description = "Setup status", body = SetupStatus)))]
pub async fn setup_status(State(state): State<AppState>) -> Result<Json<SetupStatus>, ApiError> {
    let initialized = state.store.auth().is_initialized().await?;
    Ok(Json(SetupStatus { initialized }))
}

pub(crate) fn usage_window() -> (chrono::DateTime<Utc>, chrono::DateTime<Utc>) {
    let end = Utc::now();
    (end - Duration::days(30), end)
}

/// Usage of the caller's tenant over the last 30 days.
#[utoipa::path(get, path = "/api/v1/admin/usage", tag = "tenants",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Usage summary", body = UsageSummary),
        (status = 401, description = "Not logged in", body = crate::error::ErrorBody),
        (status = 403, description = "Caller has no tenant", body = crate::error::ErrorBody)))]
pub async fn usage(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<UsageSummary>, ApiError> {
    let (since, until) = usage_window();
    let usage = state.store.tenant(admin.tenant).usage(since, until).await?;
    Ok(Json(usage))
}
