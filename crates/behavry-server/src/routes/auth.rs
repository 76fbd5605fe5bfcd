//! Admin login and the public signing keys.

use axum::Json;
use axum::extract::State;
use behavry_core::{
    AdminRole, AdminStatus, AdminUserId, AgentId, AgentStatus, RiskTier, Secret, TenantId,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{
    AGENT_TOKEN_TTL_SECS, AGENT_TOKEN_TYPE, AdminClaims, AgentClaims, verify_password,
};
use crate::error::{ApiError, ApiJson};
use crate::routes::agents::hash_client_secret;
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub client_id: String,
    #[schema(value_type = String, format = Password)]
    pub client_secret: Secret,
    /// Must be `client_credentials`.
    pub grant_type: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub agent_id: AgentId,
    pub risk_tier: RiskTier,
}

/// OAuth 2.0 client-credentials grant for agents: exchanges a client id
/// and secret for a short-lived RS256 access token.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Access token", body = TokenResponse),
        (status = 401, description = "Bad client credentials", body = crate::error::ErrorBody),
        (status = 403, description = "Agent suspended or revoked, or tenant suspended", body = crate::error::ErrorBody),
        (status = 422, description = "Malformed body or unsupported grant type", body = crate::error::ErrorBody),
        (status = 429, description = "Too many attempts", body = crate::error::ErrorBody)))]
pub async fn agent_token(
    State(state): State<AppState>,
    ip: ClientIp,
    body: Result<ApiJson<TokenRequest>, ApiError>,
) -> Result<Json<TokenResponse>, ApiError> {
    state
        .limits
        .token_ip
        .acquire(&ip.key())
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
    let ApiJson(req) = body?;
    if req.grant_type != "client_credentials" {
        return Err(ApiError::Validation(
            "grant_type must be `client_credentials`".into(),
        ));
    }
    let found = state
        .store
        .auth()
        .find_agent_credentials(req.client_id.trim())
        .await?;
    let given = hash_client_secret(req.client_secret.expose());
    // Compare digests of the hashes: constant time in the secret.
    let matches =
        |stored: &str| Sha256::digest(stored.as_bytes()) == Sha256::digest(given.as_bytes());
    let creds = match found {
        Some(c) if matches(&c.client_secret_hash) => c,
        _ => return Err(ApiError::Unauthorized("invalid client credentials".into())),
    };
    match creds.agent.status {
        AgentStatus::Active => {}
        other => {
            return Err(ApiError::Forbidden(format!(
                "the agent is {}",
                other.as_str()
            )));
        }
    }
    if creds.tenant_frozen {
        return Err(ApiError::Forbidden(
            "the agent's tenant is suspended".into(),
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let agent = creds.agent;
    let claims = AgentClaims {
        iss: state.keys.issuer().to_string(),
        sub: agent.id,
        iat: now,
        exp: now + AGENT_TOKEN_TTL_SECS,
        typ: AGENT_TOKEN_TYPE.into(),
        tenant: agent.tenant_id,
        client_id: agent.client_id.clone(),
        roles: agent.roles.clone(),
        risk_tier: agent.risk_tier,
    };
    let access_token = state.keys.sign(&claims).map_err(ApiError::internal)?;
    Ok(Json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: AGENT_TOKEN_TTL_SECS,
        agent_id: agent.id,
        risk_tier: agent.risk_tier,
    }))
}
