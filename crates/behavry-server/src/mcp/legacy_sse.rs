//! The legacy HTTP+SSE transport towards agents (protocol 2024-11-05), for
//! clients that predate Streamable HTTP:
//!
//! - `GET /mcp/v1/{server_id}/sse` opens the event stream. Its first event,
//!   `endpoint`, names the URL to POST messages to:
//!   `/mcp/v1/{server_id}/messages?session_id=<id>`.
//! - Each POST there is answered `202 Accepted` at once; the JSON-RPC
//!   answers (and the call's progress and server requests, and the
//!   upstream's own notifications) go out on the stream as `message`
//!   events.
//!
//! Both carry the agent's bearer token, and the session id is bound to the
//! agent and the server that opened it. Messages are handled by the same
//! code as Streamable HTTP ([`super::endpoint::dispatch`]), so every
//! governed call goes through the same pipeline.
//!
//! The stream *is* the session: the session lives on the replica that
//! holds the stream, and ends when the stream does (client gone, client
//! stalled, session ended by an admin, server shutting down).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use behavry_core::{AgentId, TenantId};
use behavry_mcp::jsonrpc::{Id, Message, RpcError, codes, error_without_id};
use behavry_mcp::sse::format_event;
use behavry_mcp::upstream::Upstream;
use futures_util::future::{AbortHandle, Abortable};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};
use uuid::Uuid;

use super::endpoint::{
    Ctx, Reply, StreamItem, async_stream, dispatch, header, no_answer, prepare, rpc_http,
    shutting_down, sse_response, unavailable,
};
use super::sessions::{SessionInfo, new_session_id};
use crate::auth::AgentAuth;
use crate::error::ApiPath;
use crate::state::AppState;

/// The protocol revision this transport belongs to; assumed until the
/// client's `initialize` negotiates one.
const LEGACY_VERSION: &str = "2024-11-05";
/// Comment lines sent while nothing else is, so proxies keep the stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A client that takes no data for this long is gone: its session ends.
const STALL_LIMIT: Duration = Duration::from_secs(60);
/// Open legacy streams per agent on one replica.
const MAX_STREAMS_PER_AGENT: usize = 32;
/// Messages of one session being handled at once.
const MAX_IN_FLIGHT: usize = 64;

/// One open stream and its session.
struct LegacySession {
    id: String,
    tenant: TenantId,
    agent: AgentId,
    server_id: Uuid,
    /// Messages for the stream.
    out: mpsc::Sender<Value>,
    /// The stored session, once `initialize` has created it.
    stored: Mutex<Option<SessionInfo>>,
    in_flight: Arc<Semaphore>,
    /// Requests being handled, by JSON-RPC id, for `notifications/cancelled`.
    calls: Mutex<HashMap<String, AbortHandle>>,
}

/// The legacy SSE sessions whose streams this replica holds.
#[derive(Default)]
pub struct LegacySessions {
    open: Mutex<HashMap<String, Arc<LegacySession>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LegacySessions {
    /// Registers a session; refused (with the count) when the agent already
    /// holds too many streams.
    fn insert(&self, session: Arc<LegacySession>) -> Result<(), usize> {
        let mut open = lock(&self.open);
        let held = open.values().filter(|s| s.agent == session.agent).count();
        if held >= MAX_STREAMS_PER_AGENT {
            return Err(held);
        }
        open.insert(session.id.clone(), session);
        Ok(())
    }

    fn get(&self, id: &str) -> Option<Arc<LegacySession>> {
        lock(&self.open).get(id).cloned()
    }

    fn remove(&self, id: &str) {
        lock(&self.open).remove(id);
    }

    /// How many streams are open on this replica.
    pub fn len(&self) -> usize {
        lock(&self.open).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Unregisters the session when the stream's task ends, however it ends.
struct Unregister {
    sessions: Arc<LegacySessions>,
    id: String,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        self.sessions.remove(&self.id);
    }
}

/// `GET /mcp/v1/{server_id}/sse`: opens the event stream and the session.
pub async fn open(
    State(state): State<AppState>,
    ApiPath(raw_server): ApiPath<String>,
    AgentAuth(claims): AgentAuth,
    headers: HeaderMap,
) -> Response {
    if let Some(accept) = header(&headers, ACCEPT.as_str())
        && !(accept.contains("text/event-stream") || accept.contains("*/*"))
    {
        return rpc_http(
            StatusCode::NOT_ACCEPTABLE,
            None,
            RpcError::new(
                codes::INVALID_REQUEST,
                "Accept must include text/event-stream",
            ),
        );
    }
    let (_, server, upstream) = match prepare(&state, &claims, &raw_server).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (out, out_rx) = mpsc::channel(64);
    let session = Arc::new(LegacySession {
        id: new_session_id(),
        tenant: claims.tenant,
        agent: claims.sub,
        server_id: server.id,
        out,
        stored: Mutex::new(None),
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        calls: Mutex::new(HashMap::new()),
    });
    if let Err(held) = state.legacy_sse.insert(session.clone()) {
        return rpc_http(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            RpcError::new(
                codes::SERVER_ERROR,
                format!("this agent already holds {held} legacy SSE streams; close one first"),
            ),
        );
    }
    let guard = Unregister {
        sessions: state.legacy_sse.clone(),
        id: session.id.clone(),
    };
    let endpoint = format!("/mcp/v1/{}/messages?session_id={}", server.id, session.id);
    let stream = async_stream(move |tx| async move {
        let _guard = guard;
        pump(&state, &session, &tx, out_rx, &upstream, &endpoint).await;
        // The stream is gone: so is the session, and whatever it was doing.
        for (_, call) in lock(&session.calls).drain() {
            call.abort();
        }
        let stored = lock(&session.stored).clone();
        if let Some(info) = stored
            && let Err(e) = state
                .sessions
                .end(state.store.as_ref(), session.tenant, &info.id)
                .await
        {
            tracing::warn!(session = %info.id, error = %e, "could not record the end of a legacy SSE session");
        }
    });
    sse_response(stream)
}

/// Feeds the stream until the client goes away or stalls, the session is
/// ended, or the server shuts down.
async fn pump(
    state: &AppState,
    session: &LegacySession,
    tx: &mpsc::Sender<String>,
    mut out: mpsc::Receiver<Value>,
    upstream: &Upstream,
    endpoint: &str,
) {
    if !send_chunk(tx, format_event(Some("endpoint"), None, endpoint)).await {
        return;
    }
    let mut closing: watch::Receiver<bool> = state.closing.subscribe();
    let mut notes = Some(upstream.subscribe());
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    loop {
        let chunk = tokio::select! {
            _ = tx.closed() => return,
            _ = shutting_down(&mut closing) => return,
            m = out.recv() => match m {
                Some(v) => message_event(&v),
                None => return,
            },
            n = next_note(&mut notes) => match n {
                Some(v) => message_event(&v),
                None => continue,
            },
            _ = tick.tick() => {
                if ended(state, session).await {
                    return;
                }
                ": keep-alive\n\n".to_string()
            }
        };
        if !send_chunk(tx, chunk).await {
            return;
        }
    }
}

fn message_event(v: &Value) -> String {
    format_event(Some("message"), None, &v.to_string())
}

/// Queues a chunk for the client; false when it is gone or has taken
/// nothing for [`STALL_LIMIT`].
async fn send_chunk(tx: &mpsc::Sender<String>, chunk: String) -> bool {
    matches!(
        tokio::time::timeout(STALL_LIMIT, tx.send(chunk)).await,
        Ok(Ok(()))
    )
}

/// The upstream's next notification not tied to a call; `None` when the
/// upstream connection was replaced (its notifications stop; the session
/// carries on).
async fn next_note(notes: &mut Option<broadcast::Receiver<Value>>) -> Option<Value> {
    let Some(rx) = notes.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(v) => return Some(v),
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    *notes = None;
    None
}

/// Whether the stored session was ended (the agent suspended or revoked).
/// Storage trouble keeps the stream: POSTs are refused meanwhile.
async fn ended(state: &AppState, session: &LegacySession) -> bool {
    let stored = lock(&session.stored).clone();
    let Some(info) = stored else {
        return false;
    };
    match state
        .sessions
        .get(state.store.as_ref(), session.tenant, &info.id)
        .await
    {
        Ok(Some(s)) => s.ended,
        Ok(None) => true,
        Err(_) => false,
    }
}

/// The session id from the query string (`session_id`, or `sessionId` as
/// some clients spell it).
fn session_param(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "session_id" || *k == "sessionId")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn unknown_session() -> Response {
    rpc_http(
        StatusCode::NOT_FOUND,
        None,
        RpcError::new(
            codes::SERVER_ERROR,
            "unknown or ended session; open a new event stream (GET /mcp/v1/{server_id}/sse). \
             A legacy SSE session exists only on the gateway replica holding its stream",
        ),
    )
}

fn bad_request(code: i64, message: impl Into<String>) -> Response {
    rpc_http(StatusCode::BAD_REQUEST, None, RpcError::new(code, message))
}

/// `POST /mcp/v1/{server_id}/messages?session_id=…`: one JSON-RPC message
/// (or a batch), answered on the session's stream.
pub async fn message(
    State(state): State<AppState>,
    ApiPath(raw_server): ApiPath<String>,
    AgentAuth(claims): AgentAuth,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(sid) = session_param(query.as_deref()) else {
        return bad_request(
            codes::SERVER_ERROR,
            "missing `session_id` query parameter: POST to the URL named by the `endpoint` \
             event of GET /mcp/v1/{server_id}/sse",
        );
    };
    if let Some(ct) = header(&headers, CONTENT_TYPE.as_str())
        && !ct.starts_with("application/json")
    {
        return rpc_http(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            RpcError::new(
                codes::INVALID_REQUEST,
                "Content-Type must be application/json",
            ),
        );
    }
    // Another agent's session, another server's, or none at all: the same
    // answer, so ids cannot be probed.
    let Some(session) = state.legacy_sse.get(sid).filter(|s| {
        s.tenant == claims.tenant && s.agent == claims.sub && s.server_id.to_string() == raw_server
    }) else {
        return unknown_session();
    };
    let (agent, server, upstream) = match prepare(&state, &claims, &raw_server).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let stored = lock(&session.stored).clone();
    let stored = match stored {
        None => None,
        Some(info) => match state
            .sessions
            .get(state.store.as_ref(), claims.tenant, &info.id)
            .await
        {
            Ok(Some(s)) if !s.ended => Some(s),
            Ok(_) => return unknown_session(),
            Err(e) => return unavailable(e),
        },
    };

    let value: Value = match behavry_mcp::jsonrpc::parse_strict(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(e.code(), e.to_string()),
    };
    let batch = value.is_array();
    let items = match value {
        Value::Array(items) if items.is_empty() => {
            return bad_request(codes::INVALID_REQUEST, "empty batch");
        }
        Value::Array(items) if items.len() > 100 => {
            return bad_request(
                codes::INVALID_REQUEST,
                "batches may hold at most 100 messages",
            );
        }
        Value::Array(items) => items,
        one => vec![one],
    };
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match Message::from_value(item) {
            Ok(m) => messages.push(m),
            Err(e) if batch => {
                return bad_request(codes::INVALID_REQUEST, format!("message {i}: {e}"));
            }
            Err(e) => return bad_request(codes::INVALID_REQUEST, e),
        }
    }
    if stored.is_none()
        && let Some(method) = messages.iter().find_map(|m| match m {
            Message::Request { method, .. } if method != "initialize" && method != "ping" => {
                Some(method)
            }
            _ => None,
        })
    {
        return bad_request(
            codes::SERVER_ERROR,
            format!("`{method}` before initialize: send initialize first"),
        );
    }
    // Cancellations stop the call they name here: there is no response
    // stream per call to close.
    messages.retain(|m| match m {
        Message::Notification { method, params } if method == "notifications/cancelled" => {
            if let Some(id) = params.as_ref().and_then(|p| p.get("requestId")) {
                let call = lock(&session.calls).remove(&id.to_string());
                if let Some(call) = call {
                    call.abort();
                }
            }
            false
        }
        _ => true,
    });
    if messages.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    let Ok(permit) = session.in_flight.clone().try_acquire_owned() else {
        return rpc_http(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            RpcError::new(
                codes::SERVER_ERROR,
                format!("{MAX_IN_FLIGHT} messages of this session are already being handled"),
            ),
        );
    };

    let version = stored
        .as_ref()
        .map(|s| s.protocol_version.clone())
        .unwrap_or_else(|| LEGACY_VERSION.to_string());
    let ctx = Ctx {
        state,
        claims,
        agent,
        server,
        upstream,
        session: stored,
        version,
        request_size: body.len(),
        assigned_session_id: Some(session.id.clone()),
    };
    // A lone request can be cancelled by its id.
    let call_key = match messages.as_slice() {
        [Message::Request { id, .. }] => Some(id.to_value().to_string()),
        _ => None,
    };
    let (abort, registration) = AbortHandle::new_pair();
    if let Some(key) = &call_key {
        lock(&session.calls).insert(key.clone(), abort);
    }
    tokio::spawn(async move {
        let work = Abortable::new(handle(ctx, messages, batch, &session, permit), registration);
        tokio::select! {
            _ = work => {}
            // The stream ended: nobody is left to answer.
            _ = session.out.closed() => {}
        }
        if let Some(key) = call_key {
            lock(&session.calls).remove(&key);
        }
    });
    StatusCode::ACCEPTED.into_response()
}

/// Handles a POST's messages in order, answering on the stream.
async fn handle(
    mut ctx: Ctx,
    messages: Vec<Message>,
    batch: bool,
    session: &LegacySession,
    _permit: OwnedSemaphorePermit,
) {
    for message in messages {
        let id = match &message {
            Message::Request { id, .. } => Some(id.clone()),
            _ => None,
        };
        let reply = dispatch(&mut ctx, message, batch).await;
        // `initialize` created the stored session: later POSTs use it. Set
        // before the answer goes out, so the client's next message finds it.
        if let Some(info) = &ctx.session {
            let mut stored = lock(&session.stored);
            if stored.is_none() {
                *stored = Some(info.clone());
            }
        }
        deliver(session, id, reply).await;
    }
}

async fn deliver(session: &LegacySession, id: Option<Id>, reply: Reply) {
    match reply {
        Reply::Nothing => {}
        Reply::Message(v) => {
            let _ = session.out.send(v).await;
        }
        Reply::Refused(_, error) => {
            let v = match id {
                Some(id) => Message::error(id, error).to_value(),
                None => error_without_id(error),
            };
            let _ = session.out.send(v).await;
        }
        Reply::Stream(mut rx) => {
            while let Some(item) = rx.recv().await {
                let last = matches!(item, StreamItem::Final(_));
                if session.out.send(item.into_value()).await.is_err() {
                    return;
                }
                if last {
                    return;
                }
            }
            let _ = session.out.send(no_answer(id)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_parameter() {
        assert_eq!(session_param(Some("session_id=bhv_1")), Some("bhv_1"));
        assert_eq!(session_param(Some("a=b&sessionId=x")), Some("x"));
        assert_eq!(session_param(Some("session_id=")), None);
        assert_eq!(session_param(Some("other=1")), None);
        assert_eq!(session_param(None), None);
    }
}
