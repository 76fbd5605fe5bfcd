//! Who is calling: admin tokens, password hashing, request extractors.

pub mod keys;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use behavry_core::{AdminRole, AdminUserId, AgentId, RiskTier, TenantId};
use behavry_store::PlatformGrant;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

/// Claims of an admin access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdminClaims {
    pub iss: String,
    /// The admin user's id.
    pub sub: AdminUserId,
    pub iat: i64,
    pub exp: i64,
    /// Token type; agent tokens carry a different value and are refused here.
    pub typ: String,
    pub username: String,
    /// The tenant the admin belongs to; absent for platform operators.
    #[serde(default)]
    pub tenant: Option<TenantId>,
    pub role: AdminRole,
    /// Platform operator (super-admin).
    #[serde(default)]
    pub sa: bool,
}

pub const ADMIN_TOKEN_TYPE: &str = "admin";

impl AdminClaims {
    pub fn new(
        state: &AppState,
        sub: AdminUserId,
        username: &str,
        tenant: Option<TenantId>,
        role: AdminRole,
        super_admin: bool,
    ) -> Self {
        let now = Utc::now().timestamp();
        Self {
            iss: state.keys.issuer().to_string(),
            sub,
            iat: now,
            exp: now + state.settings.admin_token_ttl.as_secs() as i64,
            typ: ADMIN_TOKEN_TYPE.into(),
            username: username.to_string(),
            tenant,
            role,
            sa: super_admin,
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthorized("missing `Authorization: Bearer <token>` header".into())
        })?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        ApiError::Unauthorized("Authorization header must be `Bearer <token>`".into())
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "Authorization header must be `Bearer <token>`".into(),
        ));
    }
    Ok(token.trim())
}

/// An authenticated admin (any role, any tenant, or a platform operator).
pub struct Admin(pub AdminClaims);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        let claims: AdminClaims = state.keys.verify(token).map_err(|e| {
            tracing::debug!(reason = %e, "admin token refused");
            ApiError::Unauthorized(format!("invalid access token: {e}"))
        })?;
        if claims.typ != ADMIN_TOKEN_TYPE {
            return Err(ApiError::Unauthorized(
                "this endpoint needs an admin access token".into(),
            ));
        }
        Ok(Admin(claims))
    }
}

/// An authenticated admin of a tenant, with the tenant-bound store handle.
pub struct TenantAdmin {
    pub claims: AdminClaims,
    pub tenant: TenantId,
}

impl FromRequestParts<AppState> for TenantAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Admin(claims) = Admin::from_request_parts(parts, state).await?;
        let tenant = claims.tenant.ok_or_else(|| {
            ApiError::Forbidden(
                "platform operators have no tenant; use the /api/v1/superadmin/tenants endpoints"
                    .into(),
            )
        })?;
        Ok(TenantAdmin { claims, tenant })
    }
}

/// An authenticated platform operator. Holding one is what grants
/// cross-tenant store access.
pub struct SuperAdmin {
    pub claims: AdminClaims,
    pub grant: PlatformGrant,
}

impl FromRequestParts<AppState> for SuperAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Admin(claims) = Admin::from_request_parts(parts, state).await?;
        if !claims.sa {
            return Err(ApiError::Forbidden(
                "this endpoint is for platform operators (super-admins) only".into(),
            ));
        }
        Ok(SuperAdmin {
            claims,
            grant: PlatformGrant::operator_verified(),
        })
    }
}

/// Refuses callers below `role`.
pub fn require_role(claims: &AdminClaims, role: AdminRole) -> Result<(), ApiError> {
    if claims.role >= role {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "this action needs the `{}` role (you have `{}`)",
            role.as_str(),
            claims.role.as_str()
        )))
    }
}

/// A tenant admin allowed to change things: at least `admin`... checked by
/// the handler with [`require_role`]; this extractor adds that the tenant is
/// not suspended (a suspended tenant's admins keep read-only access).
pub struct TenantWriter {
    pub claims: AdminClaims,
    pub tenant: TenantId,
}

impl FromRequestParts<AppState> for TenantWriter {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let TenantAdmin { claims, tenant } = TenantAdmin::from_request_parts(parts, state).await?;
        let record = state.store.tenant(tenant).tenant().await?;
        if record.tenant.is_frozen {
            return Err(ApiError::Forbidden(
                "the tenant is suspended: its data is read-only until a platform operator reactivates it".into(),
            ));
        }
        Ok(TenantWriter { claims, tenant })
    }
}

/// Claims of an agent access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgentClaims {
    pub iss: String,
    /// The agent's id.
    pub sub: AgentId,
    pub iat: i64,
    pub exp: i64,
    /// Always `agent`.
    pub typ: String,
    pub tenant: TenantId,
    pub client_id: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub risk_tier: RiskTier,
}

pub const AGENT_TOKEN_TYPE: &str = "agent";
/// Lifetime of agent access tokens.
pub const AGENT_TOKEN_TTL_SECS: i64 = 3600;

/// Agent tokens already verified, so the RSA signature check (the most
/// expensive step of a call) runs once per token, not once per call. Keyed
/// by the whole token, so any altered token misses and is verified afresh;
/// entries are honoured only until the token's own expiry.
#[derive(Default)]
pub struct VerifiedTokens {
    entries: std::sync::Mutex<std::collections::HashMap<String, AgentClaims>>,
}

const VERIFIED_TOKENS_MAX: usize = 50_000;

impl VerifiedTokens {
    fn get(&self, token: &str) -> Option<AgentClaims> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let claims = entries.get(token)?;
        (claims.exp > Utc::now().timestamp()).then(|| claims.clone())
    }

    fn put(&self, token: &str, claims: &AgentClaims) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= VERIFIED_TOKENS_MAX {
            // Crude but bounded: start over rather than grow without limit.
            entries.clear();
        }
        entries.insert(token.to_string(), claims.clone());
    }
}

/// An authenticated agent (bearer token of type `agent`).
pub struct AgentAuth(pub AgentClaims);

impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        if let Some(claims) = state.verified_tokens.get(token) {
            return Ok(AgentAuth(claims));
        }
        let claims: AgentClaims = state.keys.verify(token).map_err(|e| {
            tracing::debug!(reason = %e, "agent token refused");
            ApiError::Unauthorized(format!("invalid access token: {e}"))
        })?;
        if claims.typ == AGENT_TOKEN_TYPE {
            state.verified_tokens.put(token, &claims);
        }
        if claims.typ != AGENT_TOKEN_TYPE {
            return Err(ApiError::Unauthorized(
                "this endpoint needs an agent access token (POST /api/v1/auth/token)".into(),
            ));
        }
        Ok(AgentAuth(claims))
    }
}

pub mod password {
    //! Password hashing. bcrypt reads at most 72 bytes of its input, so
    //! passwords are first reduced to a fixed-length SHA-256 digest (base64):
    //! every character of a long passphrase counts, and no input can
    //! contain the NUL byte bcrypt would stop at.

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use sha2::{Digest, Sha256};

    fn prehash(password: &str) -> String {
        STANDARD.encode(Sha256::digest(password.as_bytes()))
    }

    /// Blocking: call from `spawn_blocking` on the server.
    pub fn hash(password: &str, cost: u32) -> Result<String, bcrypt::BcryptError> {
        bcrypt::hash(prehash(password), cost)
    }

    /// Blocking. A malformed stored hash verifies as false.
    pub fn verify(password: &str, hash: &str) -> bool {
        bcrypt::verify(prehash(password), hash).unwrap_or(false)
    }
}

/// Password hashing off the async runtime: at cost 12 a hash takes a few
/// hundred milliseconds of CPU.
pub async fn hash_password(password: String, cost: u32) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || password::hash(&password, cost))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

pub async fn verify_password(password: String, hash: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || password::verify(&password, &hash))
        .await
        .map_err(ApiError::internal)
}
