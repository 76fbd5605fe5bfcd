//! Tenant management for platform operators.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use behavry_core::validate::{is_plausible_email, is_valid_slug, password_problem};
use behavry_core::{
    AdminRole, DeploymentMode, PlanTier, Secret, TenantConfig, TenantId, UsageSummary,
};
use behavry_store::{NewAdminUser, NewTenant, TenantPatch, TenantRecord};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::{AdminClaims, SuperAdmin, hash_password};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::routes::tenants::{usage_window, validate_org_name};
use crate::state::AppState;

/// A tenant with its configuration, as operators see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: TenantId,
    pub name: String,
    pub slug: String,
    /// False while the tenant is suspended.
    pub is_active: bool,
    pub is_frozen: bool,
    pub created_at: DateTime<Utc>,
    pub config: TenantConfig,
}

impl From<TenantRecord> for TenantView {
    fn from(r: TenantRecord) -> Self {
        Self {
            id: r.tenant.id,
            is_active: r.tenant.is_active(),
            is_frozen: r.tenant.is_frozen,
            name: r.tenant.name,
            slug: r.tenant.slug,
            created_at: r.tenant.created_at,
            config: r.config,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantView>,
    pub total: usize,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionTenantRequest {
    pub name: String,
    /// Lowercase letters, digits and dashes. Derived from the name when
    /// absent; a numeric suffix is added when taken.
    pub slug: Option<String>,
    pub admin_username: String,
    #[schema(value_type = String, format = Password)]
    pub admin_password: Secret,
    pub admin_email: Option<String>,
    pub plan_tier: Option<PlanTier>,
    pub max_agents: Option<i32>,
    pub max_rpm_per_agent: Option<i32>,
    pub audit_retention_days: Option<i32>,
    pub deployment_mode: Option<DeploymentMode>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProvisionTenantResponse {
    pub tenant: TenantView,
    pub admin_username: String,
    /// An access token for the new tenant's admin, for programmatic setup.
    pub admin_token: String,
}

/// Fields an operator may change. Unknown fields are refused.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantRequest {
    pub plan_tier: Option<PlanTier>,
    pub max_agents: Option<i32>,
    pub max_rpm_per_agent: Option<i32>,
    pub audit_retention_days: Option<i32>,
    pub deployment_mode: Option<DeploymentMode>,
    #[serde(default, deserialize_with = "crate::error::nullable")]
    #[schema(value_type = Option<String>)]
    pub license_key: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::error::nullable")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub license_expires_at: Option<Option<DateTime<Utc>>>,
    /// `false` suspends the tenant; `true` lifts a suspension.
    pub is_active: Option<bool>,
}

fn check_limits(
    max_agents: Option<i32>,
    rpm: Option<i32>,
    retention: Option<i32>,
) -> Result<(), ApiError> {
    if let Some(v) = max_agents
        && v < -1
    {
        return Err(ApiError::Validation(
            "max_agents must be -1 (unlimited) or more".into(),
        ));
    }
    if let Some(v) = rpm
        && !(1..=1_000_000).contains(&v)
    {
        return Err(ApiError::Validation(
            "max_rpm_per_agent must be from 1 to 1000000".into(),
        ));
    }
    if let Some(v) = retention
        && !(1..=3650).contains(&v)
    {
        return Err(ApiError::Validation(
            "audit_retention_days must be from 1 to 3650".into(),
        ));
    }
    Ok(())
}

fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("`{raw}` is not a tenant id (expected a UUID)")))
}

fn not_found_tenant(id: TenantId) -> impl FnOnce(ApiError) -> ApiError {
    move |e| match e {
        ApiError::NotFound(_) => ApiError::NotFound(format!("no tenant with id {id}")),
        other => other,
    }
}

/// Provisions a tenant with its first admin.
#[utoipa::path(post, path = "/api/v1/superadmin/tenants", tag = "superadmin",
    security(("bearer" = [])),
    request_body = ProvisionTenantRequest,
    responses(
        (status = 201, description = "Tenant provisioned", body = ProvisionTenantResponse),
        (status = 403, description = "Caller is not a super-admin", body = crate::error::ErrorBody),
        (status = 409, description = "Name or admin already taken", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid input", body = crate::error::ErrorBody)))]
pub async fn provision(
    State(state): State<AppState>,
    operator: SuperAdmin,
    ApiJson(req): ApiJson<ProvisionTenantRequest>,
) -> Result<(StatusCode, Json<ProvisionTenantResponse>), ApiError> {
    let (name, derived_slug) = validate_org_name(&req.name)?;
    let slug = match req.slug {
        Some(slug) if !is_valid_slug(&slug) => {
            return Err(ApiError::Validation(
                "slug must be 1 to 63 lowercase letters, digits or dashes".into(),
            ));
        }
        Some(slug) => slug,
        None => derived_slug,
    };
    let username = req.admin_username.trim().to_lowercase();
    if username.is_empty() || username.len() > 254 || username.chars().any(char::is_whitespace) {
        return Err(ApiError::Validation(
            "admin_username must be 1 to 254 characters without spaces".into(),
        ));
    }
    let email = req.admin_email.map(|e| e.trim().to_lowercase());
    if let Some(e) = &email
        && !is_plausible_email(e)
    {
        return Err(ApiError::Validation(
            "admin_email must be an e-mail address".into(),
        ));
    }
    if let Some(problem) = password_problem(req.admin_password.expose()) {
        return Err(ApiError::Validation(format!("admin_password: {problem}")));
    }
    check_limits(
        req.max_agents,
        req.max_rpm_per_agent,
        req.audit_retention_days,
    )?;
    let defaults = TenantConfig::default();
    let config = TenantConfig {
        plan_tier: req.plan_tier.unwrap_or(defaults.plan_tier),
        max_agents: req.max_agents.unwrap_or(defaults.max_agents),
        max_rpm_per_agent: req.max_rpm_per_agent.unwrap_or(defaults.max_rpm_per_agent),
        audit_retention_days: req
            .audit_retention_days
            .unwrap_or(defaults.audit_retention_days),
        deployment_mode: req.deployment_mode.unwrap_or(defaults.deployment_mode),
        ..defaults
    };
    let password_hash = hash_password(
        req.admin_password.expose().to_string(),
        state.settings.bcrypt_cost,
    )
    .await?;
    let created = state
        .store
        .platform(&operator.grant)
        .create_tenant(NewTenant {
            name,
            slug_base: slug,
            config,
            admin: NewAdminUser {
                username,
                email,
                password_hash,
                role: AdminRole::Admin,
            },
            enrollment_token: None,
        })
        .await?;
    let claims = AdminClaims::new(
        &state,
        created.admin.id,
        &created.admin.username,
        created.admin.tenant_id,
        created.admin.role,
        false,
    );
    let admin_token = state.keys.sign(&claims).map_err(ApiError::internal)?;
    tracing::info!(tenant = %created.record.tenant.id, by = %operator.claims.sub, "tenant provisioned");
    Ok((
        StatusCode::CREATED,
        Json(ProvisionTenantResponse {
            tenant: created.record.into(),
            admin_username: created.admin.username,
            admin_token,
        }),
    ))
}

/// All tenants, oldest first.
#[utoipa::path(get, path = "/api/v1/superadmin/tenants", tag = "superadmin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Tenants", body = TenantList),
        (status = 403, description = "Caller is not a super-admin", body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    operator: SuperAdmin,
) -> Result<Json<TenantList>, ApiError> {
    let tenants: Vec<TenantView> = state
        .store
        .platform(&operator.grant)
        .list_tenants()
        .await?
        .into_iter()
        .map(TenantView::from)
        .collect();
    Ok(Json(TenantList {
        total: tenants.len(),
        tenants,
    }))
}

/// One tenant.
#[utoipa::path(get, path = "/api/v1/superadmin/tenants/{tenant_id}", tag = "superadmin",
    security(("bearer" = [])),
    params(("tenant_id" = String, Path, description = "Tenant id (UUID)")),
    responses(
        (status = 200, description = "Tenant", body = TenantView),
        (status = 400, description = "Malformed id", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    operator: SuperAdmin,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<TenantView>, ApiError> {
    let id = tenant_id(&raw)?;
    let record = state
        .store
        .platform(&operator.grant)
        .get_tenant(id)
        .await
        .map_err(ApiError::from)
        .map_err(not_found_tenant(id))?;
    Ok(Json(record.into()))
}

/// Changes plan, limits, license or suspension.
#[utoipa::path(patch, path = "/api/v1/superadmin/tenants/{tenant_id}", tag = "superadmin",
    security(("bearer" = [])),
    params(("tenant_id" = String, Path, description = "Tenant id (UUID)")),
    request_body = UpdateTenantRequest,
    responses(
        (status = 200, description = "Updated tenant", body = TenantView),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid or unknown field", body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    operator: SuperAdmin,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateTenantRequest>,
) -> Result<Json<TenantView>, ApiError> {
    let id = tenant_id(&raw)?;
    check_limits(
        req.max_agents,
        req.max_rpm_per_agent,
        req.audit_retention_days,
    )?;
    if let Some(Some(key)) = &req.license_key
        && (key.is_empty() || key.len() > 1024)
    {
        return Err(ApiError::Validation(
            "license_key must be 1 to 1024 characters".into(),
        ));
    }
    let patch = TenantPatch {
        plan_tier: req.plan_tier,
        max_agents: req.max_agents,
        max_rpm_per_agent: req.max_rpm_per_agent,
        audit_retention_days: req.audit_retention_days,
        deployment_mode: req.deployment_mode,
        license_key: req.license_key,
        license_expires_at: req.license_expires_at,
        is_active: req.is_active,
    };
    let record = state
        .store
        .platform(&operator.grant)
        .update_tenant(id, patch)
        .await
        .map_err(ApiError::from)
        .map_err(not_found_tenant(id))?;
    state.changed_tenant(id, "tenant");
    tracing::info!(tenant = %id, by = %operator.claims.sub, active = record.tenant.is_active(), "tenant updated");
    Ok(Json(record.into()))
}

/// Suspends a tenant: its agents are blocked, its admins keep read-only
/// access. Lift with `PATCH {"is_active": true}`.
#[utoipa::path(post, path = "/api/v1/superadmin/tenants/{tenant_id}/suspend", tag = "superadmin",
    security(("bearer" = [])),
    params(("tenant_id" = String, Path, description = "Tenant id (UUID)")),
    responses(
        (status = 200, description = "Suspended tenant", body = TenantView),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody)))]
pub async fn suspend(
    State(state): State<AppState>,
    operator: SuperAdmin,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<TenantView>, ApiError> {
    let id = tenant_id(&raw)?;
    let record = state
        .store
        .platform(&operator.grant)
        .update_tenant(id, TenantPatch::suspend())
        .await
        .map_err(ApiError::from)
        .map_err(not_found_tenant(id))?;
    state.changed_tenant(id, "tenant");
    tracing::warn!(tenant = %id, by = %operator.claims.sub, "tenant suspended");
    Ok(Json(record.into()))
}

/// Usage of any tenant over the last 30 days.
#[utoipa::path(get, path = "/api/v1/superadmin/tenants/{tenant_id}/usage", tag = "superadmin",
    security(("bearer" = [])),
    params(("tenant_id" = String, Path, description = "Tenant id (UUID)")),
    responses(
        (status = 200, description = "Usage summary", body = UsageSummary),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody)))]
pub async fn usage(
    State(state): State<AppState>,
    operator: SuperAdmin,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<UsageSummary>, ApiError> {
    let id = tenant_id(&raw)?;
    let (since, until) = usage_window();
    let usage = state
        .store
        .platform(&operator.grant)
        .usage(id, since, until)
        .await
        .map_err(ApiError::from)
        .map_err(not_found_tenant(id))?;
    Ok(Json(usage))
}
