//! Liveness, readiness and metrics.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Live {
    pub status: &'static str,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process is running", body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ComponentStatus {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Components {
    pub database: ComponentStatus,
    pub policy_engine: ComponentStatus,
    pub escalation_queue: ComponentStatus,
    pub event_bus: ComponentStatus,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready` when every built component is healthy, else `not_ready`.
    pub status: &'static str,
    pub version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_sha: Option<String>,
    pub components: Components,
}

/// Readiness: per-component health. 503 when a component that exists is
/// unhealthy, so a load balancer stops sending traffic.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "A component is unhealthy", body = Ready)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let start = Instant::now();
    let database = match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping())
        .await
    {
        Ok(Ok(())) => ComponentStatus {
            status: "ok",
            detail: Some(state.store.backend().to_string()),
            latency_ms: Some((start.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0),
        },
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            ComponentStatus {
                status: "unavailable",
                detail: Some(format!("{} unreachable", state.store.backend())),
                latency_ms: None,
            }
        }
        Err(_) => ComponentStatus {
            status: "unavailable",
            detail: Some(format!(
                "{} did not answer within 2 s",
                state.store.backend()
            )),
            latency_ms: None,
        },
    };
    let policy_engine = match state.policy.health().await {
        Ok(()) => ComponentStatus {
            status: "ok",
            detail: Some(state.policy.kind().to_string()),
            latency_ms: None,
        },
        Err(e) => ComponentStatus {
            status: "unavailable",
            detail: Some(e),
            latency_ms: None,
        },
    };
    let held = state.waiters.held();
    let escalation_queue = ComponentStatus {
        status: if state.waiters.healthy() {
            "ok"
        } else {
            "unavailable"
        },
        detail: Some(format!(
            "{held} escalations with calls held on this replica"
        )),
        latency_ms: None,
    };
    let (bus_ok, bus_detail) = state.bus.health();
    let event_bus = ComponentStatus {
        status: if bus_ok { "ok" } else { "unavailable" },
        detail: Some(bus_detail),
        latency_ms: None,
    };
    let healthy = database.status == "ok"
        && policy_engine.status == "ok"
        && escalation_queue.status == "ok"
        && event_bus.status == "ok";
    let body = Ready {
        status: if healthy { "ready" } else { "not_ready" },
        version: env!("CARGO_PKG_VERSION"),
        build_sha: state.settings.build_sha.clone(),
        components: Components {
            database,
            policy_engine,
            escalation_queue,
            event_bus,
        },
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics. When BEHAVRY_METRICS_TOKEN is set, the request must
/// carry it as a bearer token.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain"),
        (status = 401, description = "Missing or wrong metrics token", body = crate::error::ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.settings.metrics_token {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .unwrap_or_default();
        // Compare digests so the comparison time does not depend on how
        // much of the token matched.
        if Sha256::digest(given.as_bytes()) != Sha256::digest(expected.expose().as_bytes()) {
            return Err(ApiError::Unauthorized(
                "metrics require `Authorization: Bearer <BEHAVRY_METRICS_TOKEN>`".into(),
            ));
        }
    }
    let body = state.metrics.render(
        env!("CARGO_PKG_VERSION"),
        state.settings.build_sha.as_deref(),
        state.started.elapsed().as_secs_f64(),
    );
    let mut response = body.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
