//! The approval queue: escalated calls waiting for a person, their
//! decisions, and the exceptions approvals add.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use behavry_core::{AdminRole, AgentId, EscalationStatus};
use behavry_store::{
    EscalationDecision, EscalationException, EscalationFilter, EscalationRecord, StoreError,
};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::auth::{TenantAdmin, TenantWriter, require_role};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EscalationsQuery {
    /// pending, approved, denied or timed_out.
    pub status: Option<String>,
    pub agent_id: Option<AgentId>,
    /// 1 to 500, default 50.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EscalationList {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    pub escalations: Vec<EscalationRecord>,
    pub total: i64,
}

/// The caller's escalations, filtered.
#[utoipa::path(get, path = "/api/v1/escalations", tag = "escalations",
    security(("bearer" = [])),
    params(EscalationsQuery),
    responses(
        (status = 200, description = "A page of escalations", body = EscalationList),
        (status = 400, description = "Bad filter", body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    admin: TenantAdmin,
    query: Result<Query<EscalationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EscalationList>, ApiError> {
    let Query(q) = query?;
    let (limit, offset) = super::paging(q.limit, q.offset, 50)?;
    let status = q
        .status
        .map(|s| s.parse::<EscalationStatus>().map_err(ApiError::BadRequest))
        .transpose()?;
    let (escalations, total) = state
        .store
        .tenant(admin.tenant)
        .list_escalations(&EscalationFilter {
            status,
            agent_id: q.agent_id,
            limit,
            offset,
        })
        .await?;
    Ok(Json(EscalationList { escalations, total }))
}

fn not_found(id: Uuid) -> impl FnOnce(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("no escalation {id}")),
        e => e.into(),
    }
}

/// One escalation, with the summary of the call it holds.
#[utoipa::path(get, path = "/api/v1/escalations/{id}", tag = "escalations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Escalation id (UUID)")),
    responses(
        (status = 200, description = "The escalation", body = Object),
        (status = 404, description = "No such escalation", body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    admin: TenantAdmin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<EscalationRecord>, ApiError> {
    let e = state
        .store
        .tenant(admin.tenant)
        .get_escalation(id)
        .await
        .map_err(not_found(id))?;
    Ok(Json(e))
}

/// An exception to add with an approval.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionRequest {
    /// Limit the exception to the resource this call names (default: any
    /// resource of the tool).
    #[serde(default)]
    pub same_resource: bool,
    /// Hours until it expires: 1 to 720, default 24.
    pub expires_in_hours: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    pub reason: Option<String>,
    /// Also let this agent call this tool without escalation until the
    /// exception expires.
    pub exception: Option<ExceptionRequest>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DenyRequest {
    /// Why: the agent is told.
    pub reason: String,
}

fn clean_reason(reason: Option<String>, required: bool) -> Result<Option<String>, ApiError> {
    let reason = reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    match &reason {
        None if required => Err(ApiError::Validation("a reason is required".into())),
        Some(r) if r.chars().count() > 1000 || r.chars().any(|c| c.is_control() && c != '\n') => {
            Err(ApiError::Validation(
                "reason must be at most 1000 printable characters".into(),
            ))
        }
        _ => Ok(reason),
    }
}

/// Approves a held call: it goes ahead (the waiting request is released,
/// or its retry is allowed). With `exception`, the same agent calling the
/// same tool is not escalated again until the exception expires.
#[utoipa::path(post, path = "/api/v1/escalations/{id}/approve", tag = "escalations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Escalation id (UUID)")),
    request_body = ApproveRequest,
    responses(
        (status = 200, description = "The decided escalation", body = Object),
        (status = 403, description = "Role below analyst", body = crate::error::ErrorBody),
        (status = 404, description = "No such escalation", body = crate::error::ErrorBody),
        (status = 409, description = "Already decided, or timed out", body = crate::error::ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<ApproveRequest>,
) -> Result<Json<EscalationRecord>, ApiError> {
    require_role(&admin.claims, AdminRole::Analyst)?;
    let reason = clean_reason(req.reason, false)?;
    let store = state.store.tenant(admin.tenant);
    let current = pending(&state, &admin, id).await?;
    let exception = match req.exception {
        None => None,
        Some(x) => Some(exception_for(&current, x, &admin)?),
    };
    if let Some(x) = &exception {
        store.add_escalation_exception(x).await?;
    }
    let decision = EscalationDecision {
        status: EscalationStatus::Approved,
        by: Some(admin.claims.sub),
        reason,
        at: Utc::now(),
        exception_id: exception.as_ref().map(|x| x.id),
    };
    let extra = json!({"exception": exception});
    match crate::escalations::decide(&state, admin.tenant, id, decision, extra).await? {
        Some(decided) => Ok(Json(decided)),
        None => {
            if let Some(x) = &exception {
                let _ = store.delete_escalation_exception(x.id).await;
            }
            Err(already_decided(&state, &admin, id).await)
        }
    }
}

/// Denies a held call: that call (or its retry) is refused with the reason.
#[utoipa::path(post, path = "/api/v1/escalations/{id}/deny", tag = "escalations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Escalation id (UUID)")),
    request_body = DenyRequest,
    responses(
        (status = 200, description = "The decided escalation", body = Object),
        (status = 404, description = "No such escalation", body = crate::error::ErrorBody),
        (status = 409, description = "Already decided, or timed out", body = crate::error::ErrorBody),
        (status = 422, description = "No reason given", body = crate::error::ErrorBody)))]
pub async fn deny(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<DenyRequest>,
) -> Result<Json<EscalationRecord>, ApiError> {
    require_role(&admin.claims, AdminRole::Analyst)?;
    let reason = clean_reason(Some(req.reason), true)?;
    pending(&state, &admin, id).await?;
    let decision = EscalationDecision {
        status: EscalationStatus::Denied,
        by: Some(admin.claims.sub),
        reason,
        at: Utc::now(),
        exception_id: None,
    };
    match crate::escalations::decide(&state, admin.tenant, id, decision, json!({})).await? {
        Some(decided) => Ok(Json(decided)),
        None => Err(already_decided(&state, &admin, id).await),
    }
}

/// The escalation, if a decision can still be made on it.
async fn pending(
    state: &AppState,
    admin: &TenantWriter,
    id: Uuid,
) -> Result<EscalationRecord, ApiError> {
    let e = state
        .store
        .tenant(admin.tenant)
        .get_escalation(id)
        .await
        .map_err(not_found(id))?;
    if e.status == EscalationStatus::Pending && e.expires_at <= Utc::now() {
        return Err(ApiError::Conflict(format!(
            "escalation {id} expired at {}; the call was refused",
            e.expires_at.to_rfc3339()
        )));
    }
    if e.status.is_final() {
        return Err(decided_error(&e));
    }
    Ok(e)
}

fn decided_error(e: &EscalationRecord) -> ApiError {
    ApiError::Conflict(format!(
        "escalation {} is already {}",
        e.id,
        e.status.as_str()
    ))
}

async fn already_decided(state: &AppState, admin: &TenantWriter, id: Uuid) -> ApiError {
    match state.store.tenant(admin.tenant).get_escalation(id).await {
        Ok(e) => decided_error(&e),
        Err(e) => e.into(),
    }
}

fn exception_for(
    e: &EscalationRecord,
    req: ExceptionRequest,
    admin: &TenantWriter,
) -> Result<EscalationException, ApiError> {
    let hours = req.expires_in_hours.unwrap_or(24);
    if !(1..=720).contains(&hours) {
        return Err(ApiError::Validation(
            "exception.expires_in_hours must be from 1 to 720".into(),
        ));
    }
    let incomplete = || {
        ApiError::Conflict("this escalation does not name an agent, server and tool; no exception can be made from it".into())
    };
    let agent_id = e.agent_id.ok_or_else(incomplete)?;
    let server_id = e.summary["server"]["id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(incomplete)?;
    let tool_name = e.summary["tool"]
        .as_str()
        .ok_or_else(incomplete)?
        .to_string();
    let resource = if req.same_resource {
        Some(
            e.summary["resource"]
                .as_str()
                .ok_or_else(|| {
                    ApiError::Validation(
                        "exception.same_resource: this call names no resource".into(),
                    )
                })?
                .to_string(),
        )
    } else {
        None
    };
    let now = Utc::now();
    Ok(EscalationException {
        id: Uuid::now_v7(),
        agent_id,
        server_id,
        tool_name,
        resource,
        expires_at: Some(now + Duration::hours(hours)),
        escalation_id: Some(e.id),
        created_by: Some(admin.claims.sub.0),
        created_at: now,
    })
}

/// The exceptions approvals added, newest first.
#[utoipa::path(get, path = "/api/v1/escalation-exceptions", tag = "escalations",
    security(("bearer" = [])),
    responses((status = 200, description = "Exceptions", body = Vec<Object>)))]
pub async fn list_exceptions(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<Vec<EscalationException>>, ApiError> {
    Ok(Json(
        state
            .store
            .tenant(admin.tenant)
            .list_escalation_exceptions()
            .await?,
    ))
}

/// Withdraws an exception: the next such call is escalated again.
#[utoipa::path(delete, path = "/api/v1/escalation-exceptions/{id}", tag = "escalations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Exception id (UUID)")),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 404, description = "No such exception", body = crate::error::ErrorBody)))]
pub async fn delete_exception(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    require_role(&admin.claims, AdminRole::Analyst)?;
    state
        .store
        .tenant(admin.tenant)
        .delete_escalation_exception(id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound(format!("no exception {id}")),
            e => e.into(),
        })?;
    tracing::info!(exception = %id, tenant = %admin.tenant, by = %admin.claims.sub, "escalation exception withdrawn");
    Ok(StatusCode::NO_CONTENT)
}
