//! Policy management: a tenant's Rego policies with their versions, the
//! built-in base pack switch, validation and a dry-run evaluator.
//!
//! Every save is validated (syntax, package convention, and the checks
//! regorus only makes when evaluating), and an activation is compiled with
//! the rest of the tenant's active set before it is stored, so a stored
//! active set always compiles. Each change is stored as a new version,
//! loaded into this replica's engine before the response, picked up by the
//! other replicas within a second, and recorded in the audit trail.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use behavry_core::{AdminRole, TenantId};
use behavry_policy::{Action, CompileError, PolicyError, PolicyInput, PolicySet, PolicySource};
use behavry_store::{
    NewAuditEvent, NewPolicy, PolicyChange, PolicyMode, PolicyRecord, PolicyStatus,
    PolicyVersionRecord, StoreError,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::{AdminClaims, TenantAdmin, TenantWriter, require_role};
use crate::error::{ApiError, ApiJson, ApiPath, Problem};
use crate::policy::{active_sources, base_override_package};
use crate::state::AppState;

/// Policies larger than this are refused; real ones are a few KiB.
const MAX_CONTENT_BYTES: usize = 256 * 1024;

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyView {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// Rego v1 source.
    pub content: String,
    /// The package it declares, `behavry.policies.<name>`.
    pub package: String,
    /// `draft` (stored, not evaluated) or `active`.
    pub status: String,
    /// `enforce`, or `monitor`: evaluated and recorded, never enforced.
    pub mode: String,
    pub version: i32,
    /// Whether this policy takes the place of the built-in base pack
    /// (it declares `behavry.policies.base`).
    pub overrides_base_pack: bool,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn view(p: PolicyRecord) -> PolicyView {
    PolicyView {
        overrides_base_pack: p.package == base_override_package(),
        id: p.id,
        name: p.name,
        description: p.description,
        content: p.content,
        package: p.package,
        status: p.status.as_str().into(),
        mode: p.mode.as_str().into(),
        version: p.version,
        created_by: p.created_by,
        created_at: p.created_at,
        updated_at: p.updated_at,
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyList {
    pub policies: Vec<PolicyView>,
    pub total: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyVersionView {
    pub version: i32,
    pub name: String,
    pub description: String,
    pub content: String,
    pub package: String,
    pub status: String,
    pub mode: String,
    /// The admin who made this version.
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

fn version_view(v: PolicyVersionRecord) -> PolicyVersionView {
    PolicyVersionView {
        version: v.version,
        name: v.name,
        description: v.description,
        content: v.content,
        package: v.package,
        status: v.status.as_str().into(),
        mode: v.mode.as_str().into(),
        created_by: v.created_by,
        created_at: v.created_at,
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyVersionList {
    pub policy_id: Uuid,
    pub versions: Vec<PolicyVersionView>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePolicyRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Rego v1 declaring `package behavry.policies.<name>`.
    pub content: String,
    /// `draft` (default) or `active`.
    pub status: Option<String>,
    /// `enforce` (default) or `monitor`.
    pub mode: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicyRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub content: Option<String>,
    pub status: Option<String>,
    pub mode: Option<String>,
    /// The version this change was based on: when given and the policy
    /// has moved on since, the change is refused with 409.
    pub version: Option<i32>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    pub content: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CompileProblem {
    /// 1-based line in the policy text, when known.
    pub line: Option<u32>,
    pub col: Option<u32>,
    pub message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ValidateResponse {
    pub valid: bool,
    /// The package the policy declares, when it parses.
    pub package: Option<String>,
    pub errors: Vec<CompileProblem>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// A policy input document (`agent`, `request`, `dlp`, `session`, ...).
    /// Missing fields take their defaults; a missing `request.action` is
    /// derived from `request.tool_name` as the gateway does.
    #[schema(value_type = Object)]
    pub input: Value,
    /// Rego to try as if it were active, next to the tenant's active
    /// policies (replacing an active policy of the same package).
    pub content: Option<String>,
    /// A stored policy (e.g. a draft) to try as if it were active.
    pub policy_id: Option<Uuid>,
    /// `enforce` (default) or `monitor`, for `content` / `policy_id`.
    pub mode: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EvaluatedPolicy {
    pub id: String,
    pub name: String,
    pub package: String,
    pub monitor: bool,
    pub builtin: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EvaluateResponse {
    /// `{result, reason, policy_id, rules, monitored, monitor_result}`, as
    /// the gateway would decide and record it.
    #[schema(value_type = Object)]
    pub decision: Value,
    /// The input document as evaluated (defaults filled in).
    #[schema(value_type = Object)]
    pub input: Value,
    /// The policies that took part.
    pub policies: Vec<EvaluatedPolicy>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BasePackView {
    /// Whether the tenant has the base pack switched on.
    pub enabled: bool,
    /// Whether it is in force: enabled and not overridden.
    pub in_force: bool,
    /// The active tenant policy that takes its place, if any.
    pub overridden_by: Option<Uuid>,
    pub package: String,
    /// The built-in Rego, for reading or as a start for an override.
    pub content: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BasePackRequest {
    pub enabled: bool,
}

fn policy_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("`{raw}` is not a policy id (expected a UUID)")))
}

fn not_found(id: Uuid) -> impl FnOnce(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("no policy with id {id}")),
        StoreError::Conflict(what) if what == "policy name" => {
            ApiError::Conflict("a policy with this name already exists".into())
        }
        StoreError::Conflict(what) if what == "active policy package" => ApiError::Conflict(
            "another active policy declares the same package; deactivate it first".into(),
        ),
        StoreError::Conflict(what) => {
            ApiError::Conflict(format!("the policy was changed meanwhile: {what}"))
        }
        other => other.into(),
    }
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::Validation(
            "name must be 1 to 100 characters, without control characters".into(),
        ));
    }
    Ok(name.to_string())
}

fn check_description(d: &str) -> Result<String, ApiError> {
    if d.chars().count() > 2000 {
        return Err(ApiError::Validation(
            "description must be at most 2000 characters".into(),
        ));
    }
    Ok(d.to_string())
}

fn parse_status(s: Option<&str>) -> Result<Option<PolicyStatus>, ApiError> {
    s.map(|s| {
        PolicyStatus::parse(s).ok_or_else(|| {
            ApiError::Validation(format!("status must be `draft` or `active`, not `{s}`"))
        })
    })
    .transpose()
}

fn parse_mode(s: Option<&str>) -> Result<Option<PolicyMode>, ApiError> {
    s.map(|s| {
        PolicyMode::parse(s).ok_or_else(|| {
            ApiError::Validation(format!("mode must be `enforce` or `monitor`, not `{s}`"))
        })
    })
    .transpose()
}

fn problems(errors: &[CompileError]) -> Vec<CompileProblem> {
    errors
        .iter()
        .map(|e| CompileProblem {
            line: e.line,
            col: e.col,
            message: e.message.clone(),
        })
        .collect()
}

fn invalid(message: &str, errors: &[CompileError]) -> ApiError {
    let listed = errors
        .iter()
        .map(|e| match e.line {
            Some(line) => format!("line {line}: {}", e.message),
            None => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::InvalidDocument {
        message: format!("{message}: {listed}"),
        problems: errors
            .iter()
            .map(|e| Problem {
                index: None,
                name: None,
                line: e.line.map(u64::from),
                column: e.col.map(u64::from),
                message: e.message.clone(),
            })
            .collect(),
    }
}

/// Checks one policy text off the async workers (parsing and the dry
/// evaluation take a little CPU); returns the package it declares.
async fn check_content(content: String) -> Result<Result<String, Vec<CompileError>>, ApiError> {
    if content.len() > MAX_CONTENT_BYTES {
        return Err(ApiError::Validation(format!(
            "content must be at most {MAX_CONTENT_BYTES} bytes"
        )));
    }
    tokio::task::spawn_blocking(move || behavry_policy::validate(&content))
        .await
        .map_err(ApiError::internal)
}

/// As [`check_content`], refusing a policy that does not compile.
async fn validate_content(content: String) -> Result<String, ApiError> {
    check_content(content)
        .await?
        .map_err(|errors| invalid("the policy does not compile", &errors))
}

/// A policy that is not stored (yet): what a create would store, or a text
/// tried by the evaluator.
fn unsaved(
    tenant: TenantId,
    name: String,
    description: String,
    content: String,
    package: String,
    mode: PolicyMode,
) -> PolicyRecord {
    PolicyRecord {
        id: Uuid::nil(),
        tenant_id: tenant,
        name,
        description,
        content,
        package,
        status: PolicyStatus::Active,
        mode,
        version: 0,
        created_by: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

/// Compiles what the tenant's active set would be with `candidate` in it,
/// so an activation that breaks the set is refused before it is stored.
async fn check_active_set(
    state: &AppState,
    tenant: TenantId,
    candidate: &PolicyRecord,
) -> Result<(), ApiError> {
    let store = state.store.tenant(tenant);
    let settings = store.policy_settings().await?;
    let mut policies: Vec<PolicyRecord> = store
        .list_policies()
        .await?
        .into_iter()
        .filter(|p| p.id != candidate.id)
        .collect();
    if let Some(other) = policies
        .iter()
        .find(|p| p.status == PolicyStatus::Active && p.package == candidate.package)
    {
        return Err(ApiError::Conflict(format!(
            "the active policy `{}` ({}) already declares package `{}`; deactivate it first",
            other.name, other.id, candidate.package
        )));
    }
    policies.push(candidate.clone());
    let (sources, base_pack) = active_sources(&policies, settings.base_pack_enabled);
    compile(sources, base_pack).await.map(|_| ())
}

async fn compile(sources: Vec<PolicySource>, base_pack: bool) -> Result<PolicySet, ApiError> {
    tokio::task::spawn_blocking(move || PolicySet::compile(sources, base_pack))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            PolicyError::Compile(errors) => {
                invalid("the tenant's active policies would not compile", &errors)
            }
            other => ApiError::Validation(other.to_string()),
        })
}

/// Applies the change here at once, then records it. Other replicas pick
/// it up from the raised revision.
async fn after_change(
    state: &AppState,
    tenant: TenantId,
    claims: &AdminClaims,
    action: &str,
    target: Option<Uuid>,
    extra: Value,
) {
    if let Err(e) = state.policy.load_tenant(state.store.as_ref(), tenant).await {
        // The poller retries; the change is stored either way.
        tracing::warn!(tenant = %tenant, error = %e, "reloading policies after a change failed");
    }
    state.bus.publish(crate::bus::Event::new(
        tenant,
        crate::bus::Kind::Config,
        "policies",
        json!({"action": action, "policy_id": target}),
    ));
    let event = NewAuditEvent {
        id: Uuid::now_v7(),
        timestamp: Utc::now(),
        action: action.into(),
        target: target.map(|t| t.to_string()),
        dlp_findings: json!([]),
        extra,
        requester_id: Some(claims.sub.to_string()),
        ..NewAuditEvent::default()
    };
    if let Err(e) = state.audit.record(tenant, event).await {
        tracing::error!(tenant = %tenant, action, error = %e, "a policy change could not be written to the audit trail");
    }
}

fn change_extra(p: &PolicyRecord) -> Value {
    json!({
        "policy_id": p.id,
        "name": p.name,
        "version": p.version,
        "package": p.package,
        "status": p.status.as_str(),
        "mode": p.mode.as_str(),
        "content_sha256": hex::encode(Sha256::digest(p.content.as_bytes())),
    })
}

/// Lists the tenant's policies.
#[utoipa::path(get, path = "/api/v1/policies", tag = "policies",
    security(("bearer" = [])),
    responses((status = 200, description = "The tenant's policies, by name", body = PolicyList)))]
pub async fn list(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<PolicyList>, ApiError> {
    let policies: Vec<PolicyView> = state
        .store
        .tenant(admin.tenant)
        .list_policies()
        .await?
        .into_iter()
        .map(view)
        .collect();
    Ok(Json(PolicyList {
        total: policies.len(),
        policies,
    }))
}

/// Creates a policy (validated; an active one is compiled with the rest).
#[utoipa::path(post, path = "/api/v1/policies", tag = "policies",
    security(("bearer" = [])),
    request_body = CreatePolicyRequest,
    responses(
        (status = 201, description = "Created (version 1)", body = PolicyView),
        (status = 409, description = "Name taken, or another active policy declares the package", body = crate::error::ErrorBody),
        (status = 422, description = "Does not compile: `error.problems` lists the problems with line numbers", body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiJson(req): ApiJson<CreatePolicyRequest>,
) -> Result<(StatusCode, Json<PolicyView>), ApiError> {
    require_role(&admin.claims, AdminRole::PolicyAuthor)?;
    let name = check_name(&req.name)?;
    let description = check_description(&req.description)?;
    let status = parse_status(req.status.as_deref())?.unwrap_or(PolicyStatus::Draft);
    let mode = parse_mode(req.mode.as_deref())?.unwrap_or(PolicyMode::Enforce);
    let package = validate_content(req.content.clone()).await?;
    let new = NewPolicy {
        name,
        description,
        content: req.content,
        package,
        status,
        mode,
        created_by: Some(admin.claims.sub.0),
    };
    if status == PolicyStatus::Active {
        let candidate = unsaved(
            admin.tenant,
            new.name.clone(),
            new.description.clone(),
            new.content.clone(),
            new.package.clone(),
            mode,
        );
        check_active_set(&state, admin.tenant, &candidate).await?;
    }
    let created = state
        .store
        .tenant(admin.tenant)
        .create_policy(new)
        .await
        .map_err(not_found(Uuid::nil()))?;
    after_change(
        &state,
        admin.tenant,
        &admin.claims,
        "POLICY_CREATED",
        Some(created.id),
        change_extra(&created),
    )
    .await;
    Ok((StatusCode::CREATED, Json(view(created))))
}

/// One policy.
#[utoipa::path(get, path = "/api/v1/policies/{policy_id}", tag = "policies",
    security(("bearer" = [])),
    params(("policy_id" = Uuid, Path)),
    responses((status = 200, body = PolicyView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    admin: TenantAdmin,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<PolicyView>, ApiError> {
    let id = policy_id(&raw)?;
    let p = state
        .store
        .tenant(admin.tenant)
        .get_policy(id)
        .await
        .map_err(not_found(id))?;
    Ok(Json(view(p)))
}

/// Changes a policy: name, description, content, status (`active` to
/// activate, `draft` to deactivate) or mode. Stored as a new version.
#[utoipa::path(patch, path = "/api/v1/policies/{policy_id}", tag = "policies",
    security(("bearer" = [])),
    params(("policy_id" = Uuid, Path)),
    request_body = UpdatePolicyRequest,
    responses(
        (status = 200, description = "The policy at its new version", body = PolicyView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "Stale `version`, name taken, or package clash", body = crate::error::ErrorBody),
        (status = 422, description = "Does not compile", body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<UpdatePolicyRequest>,
) -> Result<Json<PolicyView>, ApiError> {
    require_role(&admin.claims, AdminRole::PolicyAuthor)?;
    let id = policy_id(&raw)?;
    let change = PolicyChange {
        name: req.name.as_deref().map(check_name).transpose()?,
        description: req
            .description
            .as_deref()
            .map(check_description)
            .transpose()?,
        content: match req.content {
            Some(content) => {
                let package = validate_content(content.clone()).await?;
                Some((content, package))
            }
            None => None,
        },
        status: parse_status(req.status.as_deref())?,
        mode: parse_mode(req.mode.as_deref())?,
        expected_version: req.version,
        changed_by: Some(admin.claims.sub.0),
    };
    apply(&state, &admin, id, change, "POLICY_UPDATED").await
}

async fn apply(
    state: &AppState,
    admin: &TenantWriter,
    id: Uuid,
    change: PolicyChange,
    action: &str,
) -> Result<Json<PolicyView>, ApiError> {
    let store = state.store.tenant(admin.tenant);
    let current = store.get_policy(id).await.map_err(not_found(id))?;
    let mut next = current.clone();
    if let Some((content, package)) = &change.content {
        next.content = content.clone();
        next.package = package.clone();
    }
    if let Some(status) = change.status {
        next.status = status;
    }
    if let Some(mode) = change.mode {
        next.mode = mode;
    }
    if next.status == PolicyStatus::Active {
        check_active_set(state, admin.tenant, &next).await?;
    }
    let updated = store
        .update_policy(id, change)
        .await
        .map_err(not_found(id))?;
    let action = match (current.status, updated.status) {
        (PolicyStatus::Draft, PolicyStatus::Active) => "POLICY_ACTIVATED",
        (PolicyStatus::Active, PolicyStatus::Draft) => "POLICY_DEACTIVATED",
        _ => action,
    };
    after_change(
        state,
        admin.tenant,
        &admin.claims,
        action,
        Some(id),
        change_extra(&updated),
    )
    .await;
    Ok(Json(view(updated)))
}

/// Deletes a policy. Its versions are kept.
#[utoipa::path(delete, path = "/api/v1/policies/{policy_id}", tag = "policies",
    security(("bearer" = [])),
    params(("policy_id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(raw): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    require_role(&admin.claims, AdminRole::PolicyAuthor)?;
    let id = policy_id(&raw)?;
    let deleted = state
        .store
        .tenant(admin.tenant)
        .delete_policy(id)
        .await
        .map_err(not_found(id))?;
    after_change(
        &state,
        admin.tenant,
        &admin.claims,
        "POLICY_DELETED",
        Some(id),
        change_extra(&deleted),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Every version of a policy, oldest first (kept after deletion).
#[utoipa::path(get, path = "/api/v1/policies/{policy_id}/versions", tag = "policies",
    security(("bearer" = [])),
    params(("policy_id" = Uuid, Path)),
    responses((status = 200, body = PolicyVersionList), (status = 404, body = crate::error::ErrorBody)))]
pub async fn versions(
    State(state): State<AppState>,
    admin: TenantAdmin,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<PolicyVersionList>, ApiError> {
    let id = policy_id(&raw)?;
    let versions = state
        .store
        .tenant(admin.tenant)
        .list_policy_versions(id)
        .await?;
    if versions.is_empty() {
        return Err(ApiError::NotFound(format!("no policy with id {id}")));
    }
    Ok(Json(PolicyVersionList {
        policy_id: id,
        versions: versions.into_iter().map(version_view).collect(),
    }))
}

/// Makes an earlier version's name, description, content and mode current
/// again, as a new version (the status stays as it is).
#[utoipa::path(post, path = "/api/v1/policies/{policy_id}/versions/{version}/restore", tag = "policies",
    security(("bearer" = [])),
    params(("policy_id" = Uuid, Path), ("version" = i32, Path)),
    responses(
        (status = 200, description = "The policy at its new version", body = PolicyView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 422, description = "The old version no longer compiles with the active set", body = crate::error::ErrorBody)))]
pub async fn restore(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath((raw, version)): ApiPath<(String, i32)>,
) -> Result<Json<PolicyView>, ApiError> {
    require_role(&admin.claims, AdminRole::PolicyAuthor)?;
    let id = policy_id(&raw)?;
    let old = state
        .store
        .tenant(admin.tenant)
        .list_policy_versions(id)
        .await?
        .into_iter()
        .find(|v| v.version == version)
        .ok_or_else(|| ApiError::NotFound(format!("policy {id} has no version {version}")))?;
    // Re-validated: the engine may have changed since it was stored.
    let package = validate_content(old.content.clone()).await?;
    let change = PolicyChange {
        name: Some(old.name),
        description: Some(old.description),
        content: Some((old.content, package)),
        mode: Some(old.mode),
        changed_by: Some(admin.claims.sub.0),
        ..PolicyChange::default()
    };
    apply(&state, &admin, id, change, "POLICY_RESTORED").await
}

/// Checks a policy text without storing it.
#[utoipa::path(post, path = "/api/v1/policies/validate", tag = "policies",
    security(("bearer" = [])),
    request_body = ValidateRequest,
    responses((status = 200, description = "Whether it compiles, and the problems with line numbers", body = ValidateResponse)))]
pub async fn validate(
    _admin: TenantAdmin,
    ApiJson(req): ApiJson<ValidateRequest>,
) -> Result<Json<ValidateResponse>, ApiError> {
    Ok(Json(match check_content(req.content).await? {
        Ok(package) => ValidateResponse {
            valid: true,
            package: Some(package),
            errors: Vec::new(),
        },
        Err(errors) => ValidateResponse {
            valid: false,
            package: None,
            errors: problems(&errors),
        },
    }))
}

/// Decides an input with the tenant's active policies, optionally with a
/// draft or new text tried as if active. Nothing is stored or enforced.
/// Evaluation is in process, also when decisions come from an external OPA.
#[utoipa::path(post, path = "/api/v1/policies/evaluate", tag = "policies",
    security(("bearer" = [])),
    request_body = EvaluateRequest,
    responses(
        (status = 200, description = "The decision and its trace", body = EvaluateResponse),
        (status = 422, description = "The input or the policy text is invalid", body = crate::error::ErrorBody)))]
pub async fn evaluate(
    State(state): State<AppState>,
    admin: TenantAdmin,
    ApiJson(req): ApiJson<EvaluateRequest>,
) -> Result<Json<EvaluateResponse>, ApiError> {
    let store = state.store.tenant(admin.tenant);
    let settings = store.policy_settings().await?;
    let mut policies = store.list_policies().await?;
    let mode = parse_mode(req.mode.as_deref())?.unwrap_or(PolicyMode::Enforce);

    let candidate = match (req.content, req.policy_id) {
        (Some(_), Some(_)) => {
            return Err(ApiError::Validation(
                "give `content` or `policy_id`, not both".into(),
            ));
        }
        (Some(content), None) => {
            let package = validate_content(content.clone()).await?;
            Some(unsaved(
                admin.tenant,
                "candidate".into(),
                String::new(),
                content,
                package,
                mode,
            ))
        }
        (None, Some(id)) => {
            let mut p = policies
                .iter()
                .find(|p| p.id == id)
                .cloned()
                .ok_or_else(|| ApiError::NotFound(format!("no policy with id {id}")))?;
            p.status = PolicyStatus::Active;
            p.mode = mode;
            Some(p)
        }
        (None, None) => None,
    };
    if let Some(c) = candidate {
        policies.retain(|p| {
            p.id != c.id && !(p.status == PolicyStatus::Active && p.package == c.package)
        });
        policies.push(c);
    }
    let (sources, base_pack) = active_sources(&policies, settings.base_pack_enabled);
    let input = normalise_input(req.input)?;
    let set = compile(sources, base_pack).await?;
    let evaluated_input = input.clone();
    let (decision, compiled) = tokio::task::spawn_blocking(move || {
        let decision = set.decide(&evaluated_input);
        (decision, set.policies())
    })
    .await
    .map_err(ApiError::internal)?;
    let decision = decision.map_err(|e| ApiError::Validation(format!("evaluation failed: {e}")))?;
    Ok(Json(EvaluateResponse {
        decision: serde_json::to_value(&decision).map_err(ApiError::internal)?,
        input,
        policies: compiled
            .into_iter()
            .map(|p| EvaluatedPolicy {
                id: p.id,
                name: p.name,
                package: p.package,
                monitor: p.monitor,
                builtin: p.builtin,
            })
            .collect(),
    }))
}

/// Fills in defaults the way the gateway builds inputs, including
/// `request.action` from the tool name when it is not given.
fn normalise_input(raw: Value) -> Result<Value, ApiError> {
    let Value::Object(mut map) = raw else {
        return Err(ApiError::Validation("input must be a JSON object".into()));
    };
    if let Some(Value::Object(request)) = map.get_mut("request")
        && !request.contains_key("action")
        && let Some(tool) = request.get("tool_name").and_then(Value::as_str)
    {
        let action = Action::classify(tool, None);
        request.insert("action".into(), Value::String(action.as_str().into()));
    }
    let parsed: PolicyInput = serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::Validation(format!("input is not a policy input document: {e}")))?;
    Ok(parsed.to_json())
}

/// The built-in base pack and whether it is in force for the tenant.
#[utoipa::path(get, path = "/api/v1/policies/base-pack", tag = "policies",
    security(("bearer" = [])),
    responses((status = 200, body = BasePackView)))]
pub async fn base_pack(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<BasePackView>, ApiError> {
    Ok(Json(base_pack_view(&state, admin.tenant).await?))
}

async fn base_pack_view(state: &AppState, tenant: TenantId) -> Result<BasePackView, ApiError> {
    let store = state.store.tenant(tenant);
    let settings = store.policy_settings().await?;
    let overridden_by = store
        .list_policies()
        .await?
        .into_iter()
        .find(|p| p.status == PolicyStatus::Active && p.package == base_override_package())
        .map(|p| p.id);
    Ok(BasePackView {
        enabled: settings.base_pack_enabled,
        in_force: settings.base_pack_enabled && overridden_by.is_none(),
        overridden_by,
        package: base_override_package(),
        content: behavry_policy::BASE_PACK_REGO.to_string(),
    })
}

/// Switches the base pack on or off for the tenant. Off means only the
/// tenant's own policies decide (and nothing allows by default).
#[utoipa::path(put, path = "/api/v1/policies/base-pack", tag = "policies",
    security(("bearer" = [])),
    request_body = BasePackRequest,
    responses((status = 200, body = BasePackView)))]
pub async fn set_base_pack(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiJson(req): ApiJson<BasePackRequest>,
) -> Result<Json<BasePackView>, ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    state
        .store
        .tenant(admin.tenant)
        .set_base_pack(req.enabled)
        .await?;
    after_change(
        &state,
        admin.tenant,
        &admin.claims,
        if req.enabled {
            "BASE_PACK_ENABLED"
        } else {
            "BASE_PACK_DISABLED"
        },
        None,
        json!({ "enabled": req.enabled }),
    )
    .await;
    Ok(Json(base_pack_view(&state, admin.tenant).await?))
}
