//! Admin login and the public signing keys.

use axum::Json;
use axum::extract::State;
use behavry_core::{AdminRole, AdminStatus, AdminUserId, Secret, TenantId};
use serde::{Deserialize, Serialize};

use crate::auth::{AdminClaims, verify_password};
use crate::error::{ApiError, ApiJson};
use crate::state::{AppState, ClientIp};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminLoginRequest {
    pub username: String,
    #[schema(value_type = String, format = Password)]
    pub password: Secret,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminIdentity {
    pub id: AdminUserId,
    pub username: String,
    pub role: AdminRole,
    pub tenant_id: Option<TenantId>,
    pub is_super_admin: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminLoginResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub admin: AdminIdentity,
}

const BAD_CREDENTIALS: &str = "invalid username or password";

/// Exchanges an admin's username and password for an RS256 access token.
/// A wrong username and a wrong password get the same answer.
#[utoipa::path(post, path = "/api/v1/auth/admin/login", tag = "auth",
    request_body = AdminLoginRequest,
    responses(
        (status = 200, description = "Logged in", body = AdminLoginResponse),
        (status = 401, description = "Wrong username or password", body = crate::error::ErrorBody),
        (status = 403, description = "Account not active", body = crate::error::ErrorBody),
        (status = 422, description = "Malformed body", body = crate::error::ErrorBody),
        (status = 429, description = "Too many attempts", body = crate::error::ErrorBody)))]
pub async fn admin_login(
    State(state): State<AppState>,
    ip: ClientIp,
    body: Result<ApiJson<AdminLoginRequest>, ApiError>,
) -> Result<Json<AdminLoginResponse>, ApiError> {
    state
        .limits
        .login_ip
        .acquire(&ip.key())
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
    let ApiJson(req) = body?;
    let username = req.username.trim().to_lowercase();
    if username.is_empty() || username.len() > 254 {
        return Err(ApiError::Validation(
            "username must be 1 to 254 characters".into(),
        ));
    }
    state
        .limits
        .login_user
        .peek(&username)
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;

    let admin = state.store.auth().find_admin_by_username(&username).await?;
    let hash = admin
        .as_ref()
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(|| state.dummy_hash.as_ref().clone());
    let password_ok = verify_password(req.password.expose().to_string(), hash).await?;
    let admin = match admin {
        Some(admin) if password_ok => admin,
        _ => {
            state.limits.login_user.record(&username);
            tracing::info!(username = %username, "admin login failed");
            return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
        }
    };
    if admin.status != AdminStatus::Active {
        return Err(ApiError::Forbidden(format!(
            "this account is {}; ask an administrator to activate it",
            admin.status.as_str()
        )));
    }
    state.store.auth().record_admin_login(admin.id).await?;
    let claims = AdminClaims::new(
        &state,
        admin.id,
        &admin.username,
        admin.tenant_id,
        admin.role,
        admin.is_super_admin,
    );
    let access_token = state.keys.sign(&claims).map_err(ApiError::internal)?;
    tracing::info!(admin = %admin.id, "admin logged in");
    Ok(Json(AdminLoginResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.settings.admin_token_ttl.as_secs(),
        admin: AdminIdentity {
            id: admin.id,
            username: admin.username,
            role: admin.role,
            tenant_id: admin.tenant_id,
            is_super_admin: admin.is_super_admin,
        },
    }))
}

/// The public keys that verify tokens issued by this gateway (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "JSON Web Key Set", body = Object)))]
pub async fn jwks(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.keys.jwks().clone())
}
