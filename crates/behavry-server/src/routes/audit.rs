//! The audit trail: search, export and chain verification for a tenant.

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use behavry_core::{AdminRole, AgentId};
use behavry_store::audit::{AuditEvent, AuditQuery, ChainReport, ChainVerifier};
use behavry_store::{NewAuditEvent, TenantStore};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{TenantAdmin, require_role};
use crate::error::{ApiError, ApiPath};
use crate::payloads;
use crate::state::AppState;

/// Rows fetched per round trip when exporting or verifying.
const PAGE: i64 = 1000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Inclusive lower bound (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    pub agent_id: Option<AgentId>,
    pub mcp_server: Option<String>,
    pub tool_name: Option<String>,
    /// allow, deny or escalate.
    pub policy_result: Option<String>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<i64>,
    /// 1 to 1000, default 100.
    pub limit: Option<i64>,
    /// Export only: `jsonl` (default) or `csv`.
    pub format: Option<String>,
}

impl AuditParams {
    fn query(&self, default_limit: i64) -> Result<AuditQuery, ApiError> {
        let limit = self.limit.unwrap_or(default_limit);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::BadRequest("limit must be from 1 to 1000".into()));
        }
        if let Some(r) = &self.policy_result
            && !["allow", "deny", "escalate"].contains(&r.as_str())
        {
            return Err(ApiError::BadRequest(
                "policy_result must be allow, deny or escalate".into(),
            ));
        }
        if let (Some(s), Some(u)) = (self.since, self.until)
            && s >= u
        {
            return Err(ApiError::BadRequest("since must be before until".into()));
        }
        Ok(AuditQuery {
            since: self.since,
            until: self.until,
            agent_id: self.agent_id,
            mcp_server: self.mcp_server.clone(),
            tool_name: self.tool_name.clone(),
            policy_result: self.policy_result.clone(),
            after_seq: self.cursor,
            limit,
        })
    }
}

type Params = Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>;

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// Searches the caller's audit trail, oldest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit",
    security(("bearer" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 400, description = "Bad filter", body = crate::error::ErrorBody),
        (status = 403, description = "Role below analyst", body = crate::error::ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    admin: TenantAdmin,
    params: Params,
) -> Result<Json<AuditPage>, ApiError> {
    require_role(&admin.claims, AdminRole::Analyst)?;
    let Query(params) = params?;
    let query = params.query(100)?;
    let events = state
        .store
        .tenant(admin.tenant)
        .list_audit_events(&query)
        .await?;
    let next_cursor = (events.len() as i64 == query.limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage {
        events,
        next_cursor,
    }))
}

const CSV_COLUMNS: &[&str] = &[
    "id",
    "seq",
    "timestamp",
    "agent_id",
    "session_id",
    "action",
    "target",
    "tool_name",
    "mcp_server",
    "policy_result",
    "policy_id",
    "policy_reason",
    "behavioral_score",
    "dlp_findings",
    "dlp_action",
    "input_hash",
    "previous_hash",
    "event_hash",
    "response_code",
    "latency_ms",
    "error",
    "request_size",
    "response_size",
    "extra",
    "requester_id",
];

/// RFC 4180 quoting; cells that a spreadsheet would run as a formula are
/// prefixed with a quote mark.
fn csv_cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn csv_row(e: &AuditEvent) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let num = |v: Option<f64>| v.map(|n| n.to_string()).unwrap_or_default();
    let cells = [
        e.id.to_string(),
        e.seq.to_string(),
        e.timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        e.agent_id.map(|a| a.to_string()).unwrap_or_default(),
        opt(&e.session_id),
        e.action.clone(),
        opt(&e.target),
        opt(&e.tool_name),
        opt(&e.mcp_server),
        opt(&e.policy_result),
        opt(&e.policy_id),
        opt(&e.policy_reason),
        num(e.behavioral_score),
        e.dlp_findings.to_string(),
        opt(&e.dlp_action),
        opt(&e.input_hash),
        e.previous_hash.clone(),
        e.event_hash.clone(),
        e.response_code.map(|c| c.to_string()).unwrap_or_default(),
        num(e.latency_ms),
        opt(&e.error),
        e.request_size.to_string(),
        e.response_size.to_string(),
        e.extra.to_string(),
        opt(&e.requester_id),
    ];
    let mut line = cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// Exports every matching event as JSON Lines or CSV, streamed page by page
/// so memory stays flat whatever the size of the trail.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit",
    security(("bearer" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "application/x-ndjson or text/csv"),
        (status = 400, description = "Bad filter or format", body = crate::error::ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    admin: TenantAdmin,
    params: Params,
) -> Result<Response, ApiError> {
    require_role(&admin.claims, AdminRole::Analyst)?;
    let Query(params) = params?;
    let csv = match params.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format must be jsonl or csv, not `{other}`"
            )));
        }
    };
    let mut query = params.query(PAGE)?;
    query.limit = PAGE;
    let store = state.store.tenant(admin.tenant);
    let header = csv.then(|| format!("{}\r\n", CSV_COLUMNS.join(",")));
    struct Cursor {
        store: Box<dyn TenantStore>,
        query: AuditQuery,
        done: bool,
        header: Option<String>,
    }
    let stream = futures_util::stream::unfold(
        Cursor {
            store,
            query,
            done: false,
            header,
        },
        move |mut c| async move {
            if let Some(h) = c.header.take() {
                return Some((Ok::<_, std::io::Error>(h), c));
            }
            if c.done {
                return None;
            }
            match c.store.list_audit_events(&c.query).await {
                Ok(events) => {
                    c.done = (events.len() as i64) < c.query.limit;
                    c.query.after_seq = events.last().map(|e| e.seq).or(c.query.after_seq);
                    let chunk: String = events
                        .iter()
                        .map(|e| {
                            if csv {
                                csv_row(e)
                            } else {
                                let mut line = serde_json::to_string(e).unwrap_or_default();
                                line.push('\n');
                                line
                            }
                        })
                        .collect();
                    Some((Ok(chunk), c))
                }
                Err(e) => {
                    // Headers are already sent: end the stream with an error
                    // so the client sees a truncated transfer, not a short file.
                    tracing::error!(error = %e, "audit export failed mid-stream");
                    c.done = true;
                    Some((Err(std::io::Error::other("audit export failed")), c))
                }
            }
        },
    );
    let (content_type, file) = if csv {
        ("text/csv; charset=utf-8", "audit.csv")
    } else {
        ("application/x-ndjson", "audit.jsonl")
    };
    let mut response = Body::from_stream(stream).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{file}\""))
            .map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// Walks a tenant's whole chain and reports the first broken link.
pub async fn verify_tenant_chain(
    store: &dyn TenantStore,
) -> Result<ChainReport, behavry_store::StoreError> {
    let mut verifier = ChainVerifier::new();
    let mut query = AuditQuery {
        limit: PAGE,
        ..AuditQuery::default()
    };
    loop {
        let events = store.list_audit_events(&query).await?;
        for e in &events {
            if !verifier.push(e) {
                return Ok(verifier.finish());
            }
        }
        if (events.len() as i64) < PAGE {
            return Ok(verifier.finish());
        }
        query.after_seq = events.last().map(|e| e.seq);
    }
}

/// Verifies the caller's audit hash chain.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    security(("bearer" = [])),
    responses((status = 200, description = "Verification report", body = Object)))]
pub async fn verify(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<ChainReport>, ApiError> {
    require_role(&admin.claims, AdminRole::Analyst)?;
    let report = verify_tenant_chain(state.store.tenant(admin.tenant).as_ref()).await?;
    Ok(Json(report))
}

/// The payload kept with one audit event.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPayload {
    pub event_id: uuid::Uuid,
    /// `arguments` (a call) or `result` (a result), as the tenant's storage
    /// mode kept it; decrypted when it was kept `encrypted`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Whether it was stored encrypted.
    pub encrypted: bool,
}

/// Reads the payload kept with an event, decrypting one stored under
/// `encrypted` payload storage. Admins only; every read is itself recorded
/// in the audit trail (`AUDIT_PAYLOAD_READ`) before anything is returned.
#[utoipa::path(get, path = "/api/v1/audit/events/{id}/payload", tag = "audit",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Audit event id (UUID)")),
    responses(
        (status = 200, description = "The payload", body = EventPayload),
        (status = 403, description = "Role below admin", body = crate::error::ErrorBody),
        (status = 404, description = "No such event, or it kept no payload", body = crate::error::ErrorBody),
        (status = 503, description = "The read could not be recorded, or the key cannot be loaded", body = crate::error::ErrorBody)))]
pub async fn payload(
    State(state): State<AppState>,
    admin: TenantAdmin,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Json<EventPayload>, ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    let store = state.store.tenant(admin.tenant);
    let event = store.get_audit_event(id).await.map_err(|e| match e {
        behavry_store::StoreError::NotFound => ApiError::NotFound(format!("no audit event {id}")),
        e => e.into(),
    })?;
    let kept = match event.extra.get("payload") {
        Some(Value::Object(kept)) if !kept.is_empty() => kept.clone(),
        _ => {
            return Err(ApiError::NotFound(format!(
                "audit event {id} kept no payload (the tenant's payload storage was metadata_only)"
            )));
        }
    };
    let encrypted = kept
        .values()
        .any(|v| v.get("encrypted").and_then(Value::as_str) == Some(payloads::ALGORITHM));
    // Recorded before the payload is read, and refused if it cannot be:
    // nobody reads a payload without a trace of it.
    let record = NewAuditEvent {
        id: uuid::Uuid::now_v7(),
        timestamp: Utc::now(),
        action: "AUDIT_PAYLOAD_READ".into(),
        target: Some(id.to_string()),
        dlp_findings: json!([]),
        extra: json!({"event_id": id, "event_action": event.action, "encrypted": encrypted}),
        requester_id: Some(admin.claims.sub.to_string()),
        ..NewAuditEvent::default()
    };
    state
        .audit
        .record(admin.tenant, record)
        .await
        .map_err(|e| ApiError::Unavailable(Box::new(e)))?;
    let mut payload = serde_json::Map::new();
    for (part, value) in kept {
        let opened = match state.vault.open(store.as_ref(), id, &value).await {
            None => value,
            Some(Ok(v)) => v,
            Some(Err(e @ payloads::VaultError::Store(_))) => {
                return Err(ApiError::Unavailable(Box::new(e)));
            }
            Some(Err(e)) => {
                tracing::error!(tenant = %admin.tenant, event = %id, error = %e, "a stored payload cannot be opened");
                return Err(ApiError::Conflict(e.to_string()));
            }
        };
        payload.insert(part, opened);
    }
    Ok(Json(EventPayload {
        event_id: id,
        payload: Value::Object(payload),
        encrypted,
    }))
}
