//! The live event stream for admins: the tenant's audit events, alerts,
//! escalation changes and configuration changes as Server-Sent Events.
//!
//! Each event carries an id (`<replica>:<seq>`); a client that reconnects
//! with `Last-Event-ID` gets what it missed while this replica still keeps
//! it, or a `reset` event when it does not (the client should reload what
//! it shows). A client too slow to keep up is sent a `lagged` event and
//! disconnected: the gateway never waits for it, and what it holds in
//! memory is the bus's shared ring, whatever the number of clients.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use behavry_core::{AdminRole, TenantId};
use behavry_mcp::sse::format_event;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{TenantAdmin, require_role};
use crate::bus::{Bus, Event};
use crate::error::ApiError;
use crate::mcp::endpoint::{async_stream, shutting_down, sse_response};
use crate::state::AppState;

/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A client that does not take an event within this time is disconnected.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one chunk; false when the client is gone or too slow to take it.
async fn send(tx: &tokio::sync::mpsc::Sender<String>, chunk: String) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, tx.send(chunk)).await,
        Ok(Ok(()))
    )
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Comma-separated kinds (`audit`, `alert`, `escalation`, `config`) or
    /// kind.name pairs (`audit.TOOL_CALL`, `alert.dlp_violation`,
    /// `escalation.pending`); default everything.
    pub types: Option<String>,
    /// Resume after this event id (as `Last-Event-ID`, for clients that
    /// cannot set headers).
    pub last_event_id: Option<String>,
}

/// Which events a stream wants.
struct Filter {
    /// (kind, optional name) pairs; empty means everything.
    wanted: Vec<(String, Option<String>)>,
}

impl Filter {
    fn parse(types: Option<&str>) -> Result<Self, ApiError> {
        let mut wanted = Vec::new();
        for t in types.unwrap_or_default().split(',').map(str::trim) {
            if t.is_empty() {
                continue;
            }
            let (kind, name) = match t.split_once('.') {
                Some((k, n)) => (k, Some(n.to_string())),
                None => (t, None),
            };
            if !["audit", "alert", "escalation", "config"].contains(&kind) {
                return Err(ApiError::BadRequest(format!(
                    "unknown event type `{t}` (kinds: audit, alert, escalation, config; optionally .name)"
                )));
            }
            wanted.push((kind.to_string(), name));
        }
        Ok(Self { wanted })
    }

    fn admits(&self, tenant: TenantId, event: &Event) -> bool {
        event.tenant == tenant
            && (self.wanted.is_empty()
                || self.wanted.iter().any(|(k, n)| {
                    k == event.kind.as_str() && n.as_ref().is_none_or(|n| n == &event.name)
                }))
    }
}

fn id_of(bus: &Bus, event: &Event) -> String {
    format!("{}:{}", bus.replica(), event.seq)
}

/// The event's SSE frame: serialised once, on first use, and shared by
/// every stream that sends it.
fn frame(bus: &Bus, event: &Event) -> String {
    event
        .sse
        .get_or_init(|| {
            let body = json!({
                "kind": event.kind.as_str(),
                "name": event.name,
                "at": event.at,
                "data": event.data,
            });
            format_event(
                Some(event.kind.as_str()),
                Some(&id_of(bus, event)),
                &body.to_string(),
            )
        })
        .clone()
}

/// Live events of the caller's tenant (Server-Sent Events).
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events",
    security(("bearer" = [])),
    params(StreamQuery),
    responses(
        (status = 200, description = "text/event-stream of events: `audit`, `alert`, `escalation`, `config`; `reset` when a resume is not possible; `lagged` before a slow client is disconnected", content_type = "text/event-stream"),
        (status = 400, description = "Unknown event type", body = crate::error::ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    admin: TenantAdmin,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_role(&admin.claims, AdminRole::Viewer)?;
    let Query(q) = query?;
    let filter = Filter::parse(q.types.as_deref())?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.last_event_id);
    let bus = state.bus.clone();
    // Subscribe before reading the backlog, so nothing falls in between
    // (a duplicate is skipped by its sequence number).
    let mut rx = bus.subscribe();
    let backlog: Option<Vec<Arc<Event>>> = match resume.as_deref() {
        None => Some(Vec::new()),
        Some(id) => id
            .split_once(':')
            .filter(|(replica, _)| *replica == bus.replica().to_string())
            .and_then(|(_, seq)| seq.parse::<u64>().ok())
            .and_then(|seq| bus.since(seq)),
    };
    let tenant = admin.tenant;
    let mut closing = state.closing.subscribe();
    let body = async_stream(move |tx| async move {
        let mut last = 0u64;
        match backlog {
            None => {
                let note = json!({"reason": "the events after Last-Event-ID are no longer kept here; reload"});
                if !send(&tx, format_event(Some("reset"), None, &note.to_string())).await {
                    return;
                }
            }
            Some(events) => {
                for e in events {
                    last = e.seq;
                    if filter.admits(tenant, &e) && !send(&tx, frame(&bus, &e)).await {
                        return;
                    }
                }
            }
        }
        // Opens the stream for clients that wait for the first bytes.
        if !send(&tx, ": connected\n\n".to_string()).await {
            return;
        }
        loop {
            tokio::select! {
                _ = shutting_down(&mut closing) => return,
                got = rx.recv() => match got {
                    Ok(e) => {
                        if e.seq <= last || !filter.admits(tenant, &e) {
                            continue;
                        }
                        last = e.seq;
                        if !send(&tx, frame(&bus, &e)).await {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        let note = json!({"missed": missed, "reason": "this client fell too far behind; reconnect with Last-Event-ID"});
                        let _ = tx.try_send(format_event(Some("lagged"), None, &note.to_string()));
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(KEEP_ALIVE) => {
                    if !send(&tx, ": keep-alive\n\n".to_string()).await {
                        return;
                    }
                }
            }
        }
    });
    Ok(sse_response(body))
}
