//! Alerts for admins: list, detail, and the move from open to acknowledged
//! to resolved.

use axum::Json;
use axum::extract::{Query, State};
use behavry_core::{AdminRole, AgentId, AlertSeverity, AlertStatus, AlertType};
use behavry_store::{AlertFilter, AlertRecord, StoreError};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{TenantAdmin, TenantWriter, require_role};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    /// open, acknowledged or resolved.
    pub status: Option<String>,
    /// e.g. dlp_violation, injection_detected, agent_frozen.
    pub alert_type: Option<String>,
    /// At least this severity: info, warning or critical.
    pub severity: Option<String>,
    pub agent_id: Option<AgentId>,
    /// 1 to 500, default 50.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertList {
    /// Most recently seen first.
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<AlertRecord>,
    pub total: i64,
}

fn parse<T: std::str::FromStr<Err = String>>(value: Option<String>) -> Result<Option<T>, ApiError> {
    value
        .map(|v| v.parse().map_err(ApiError::BadRequest))
        .transpose()
}

/// The caller's alerts, filtered.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts",
    security(("bearer" = [])),
    params(AlertsQuery),
    responses(
        (status = 200, description = "A page of alerts", body = AlertList),
        (status = 400, description = "Bad filter", body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    admin: TenantAdmin,
    query: Result<Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AlertList>, ApiError> {
    let Query(q) = query?;
    let (limit, offset) = super::paging(q.limit, q.offset, 50)?;
    let filter = AlertFilter {
        status: parse::<AlertStatus>(q.status)?,
        alert_type: parse::<AlertType>(q.alert_type)?,
        min_severity: parse::<AlertSeverity>(q.severity)?,
        agent_id: q.agent_id,
        limit,
        offset,
    };
    let (alerts, total) = state
        .store
        .tenant(admin.tenant)
        .list_alerts(&filter)
        .await?;
    Ok(Json(AlertList { alerts, total }))
}

fn not_found(id: Uuid) -> impl FnOnce(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("no alert {id}")),
        e => e.into(),
    }
}

/// One alert.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Alert id (UUID)")),
    responses(
        (status = 200, description = "The alert", body = Object),
        (status = 404, description = "No such alert", body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    admin: TenantAdmin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<AlertRecord>, ApiError> {
    let alert = state
        .store
        .tenant(admin.tenant)
        .get_alert(id)
        .await
        .map_err(not_found(id))?;
    Ok(Json(alert))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertUpdate {
    /// `acknowledged` or `resolved`.
    pub status: String,
}

/// Moves an alert forward: open → acknowledged → resolved (an open alert
/// may be resolved directly). Who did it, and when, is kept on the alert.
#[utoipa::path(patch, path = "/api/v1/alerts/{id}", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Alert id (UUID)")),
    request_body = AlertUpdate,
    responses(
        (status = 200, description = "The alert as it is now", body = Object),
        (status = 403, description = "Role below analyst", body = crate::error::ErrorBody),
        (status = 404, description = "No such alert", body = crate::error::ErrorBody),
        (status = 409, description = "The alert cannot move to that status", body = crate::error::ErrorBody),
        (status = 422, description = "Unknown status", body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<AlertUpdate>,
) -> Result<Json<AlertRecord>, ApiError> {
    require_role(&admin.claims, AdminRole::Analyst)?;
    let to: AlertStatus = req.status.parse().map_err(ApiError::Validation)?;
    let store = state.store.tenant(admin.tenant);
    let current = store.get_alert(id).await.map_err(not_found(id))?;
    if !current.status.may_become(to) {
        return Err(ApiError::Conflict(format!(
            "the alert is {}; it cannot become {} (alerts move open → acknowledged → resolved)",
            current.status.as_str(),
            to.as_str()
        )));
    }
    let moved = store
        .set_alert_status(id, current.status, to, admin.claims.sub, Utc::now())
        .await?
        .ok_or_else(|| {
            ApiError::Conflict("the alert changed meanwhile; read it again and retry".into())
        })?;
    tracing::info!(alert = %id, tenant = %admin.tenant, by = %admin.claims.sub, status = to.as_str(), "alert updated");
    Ok(Json(moved))
}

/// The alert webhook delivery log of the caller's tenant, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/deliveries", tag = "alerts",
    security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, description = "1 to 500, default 100")),
    responses((status = 200, description = "Deliveries: url, status (pending, delivered, failed), attempts, last response code or error", body = Vec<Object>)))]
pub async fn deliveries(
    State(state): State<AppState>,
    admin: TenantAdmin,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<behavry_store::WebhookDelivery>>, ApiError> {
    require_role(&admin.claims, AdminRole::Analyst)?;
    let Query(q) = query?;
    let (limit, _) = super::paging(q.limit, None, 100)?;
    Ok(Json(
        state
            .store
            .tenant(admin.tenant)
            .list_webhook_deliveries(limit)
            .await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    pub limit: Option<i64>,
}
