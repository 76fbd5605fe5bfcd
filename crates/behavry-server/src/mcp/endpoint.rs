//! The agent-facing MCP endpoint, `/mcp/v1/{server_id}`, speaking
//! Streamable HTTP (2025-03-26, 2025-06-18, 2025-11-25 with sessions, and
//! the stateless 2026-07-28).
//!
//! The gateway terminates MCP towards the agent: it answers `initialize`
//! itself, keeps the agent's session, and forwards each request over its
//! own upstream connection. That lets agents and servers speak different
//! protocol versions, and puts every call through the same pipeline.
//!
//! [`dispatch`] is the transport-neutral part: the legacy HTTP+SSE
//! transport (`legacy_sse.rs`) hands its messages to it too.

use behavry_mcp::upstream::UpstreamState;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use behavry_mcp::jsonrpc::{Id, Message, RpcError, codes, error_without_id};
use behavry_mcp::protocol::{
    self, HEADER_METHOD, HEADER_NAME, HEADER_PROTOCOL_VERSION, HEADER_SESSION_ID,
    STATELESS_VERSION, SUPPORTED_VERSIONS,
};
use behavry_mcp::sse::format_event;
use behavry_mcp::upstream::{Upstream, UpstreamEvent};
use behavry_policy::DecisionResult;
use behavry_store::{McpServerRecord, NewSession, StoreError};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::gate::{AgentState, Gate, Refusal};
use super::pipeline::record_withheld_tool;
use super::pipeline::{
    Caller, Forwarded, Recorded, Target, decide, guarded_call, policy_input, record_request,
};
use super::sessions::{SessionInfo, new_session_id};
use crate::auth::{AgentAuth, AgentClaims};
use crate::error::ApiPath;
use crate::state::AppState;

/// Everything a request is handled with, whatever the transport.
pub(super) struct Ctx {
    pub state: AppState,
    pub claims: AgentClaims,
    pub agent: AgentState,
    pub server: McpServerRecord,
    pub upstream: Upstream,
    pub session: Option<SessionInfo>,
    pub version: String,
    pub request_size: usize,
    /// The id `initialize` must give the session: legacy SSE hands it out
    /// with the event stream, before the handshake. `None`: a fresh one.
    pub assigned_session_id: Option<String>,
}

/// An HTTP answer carrying a JSON-RPC error.
pub(super) fn rpc_http(status: StatusCode, id: Option<Id>, error: RpcError) -> Response {
    let body = match id {
        Some(id) => Message::error(id, error).to_value(),
        None => error_without_id(error),
    };
    (status, axum::Json(body)).into_response()
}

fn json_reply(value: Value, session: Option<&str>, version: &str) -> Response {
    let mut r = (StatusCode::OK, axum::Json(value)).into_response();
    add_headers(&mut r, session, version);
    r
}

fn add_headers(r: &mut Response, session: Option<&str>, version: &str) {
    if let Some(s) = session
        && let Ok(v) = HeaderValue::from_str(s)
    {
        r.headers_mut().insert(HEADER_SESSION_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(version) {
        r.headers_mut().insert(HEADER_PROTOCOL_VERSION, v);
    }
}

/// An SSE response fed by a channel of JSON-RPC messages.
fn sse_reply(
    state: &AppState,
    mut rx: mpsc::Receiver<Value>,
    session: Option<&str>,
    version: &str,
) -> Response {
    let mut closing = state.closing.subscribe();
    let stream = async_stream(move |tx| async move {
        loop {
            tokio::select! {
                // The server is shutting down: end the stream so the
                // graceful shutdown is not held up by it.
                _ = shutting_down(&mut closing) => return,
                msg = rx.recv() => match msg {
                    Some(m) => {
                        if tx.send(format_event(Some("message"), None, &m.to_string())).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                // Keep-alive comments so proxies do not cut a long call.
                _ = tokio::time::sleep(Duration::from_secs(15)) => {
                    if tx.send(": keep-alive\n\n".to_string()).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut r = sse_response(stream);
    add_headers(&mut r, session, version);
    r
}

/// Resolves once the server starts shutting down.
pub(crate) async fn shutting_down(closing: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

/// A `text/event-stream` response around a stream of SSE chunks.
pub(crate) fn sse_response(
    stream: impl futures_util::Stream<Item = Result<String, Infallible>> + Send + 'static,
) -> Response {
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// A stream of SSE text chunks produced by a task.
pub(crate) fn async_stream<F, Fut>(
    f: F,
) -> impl futures_util::Stream<Item = Result<String, Infallible>>
where
    F: FnOnce(mpsc::Sender<String>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<String>(32);
    tokio::spawn(f(tx));
    futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|c| (Ok(c), rx)) },
    )
}

pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Loads the server, the agent's state and the upstream, refusing early
/// with the right HTTP status.
pub(super) async fn prepare(
    state: &AppState,
    claims: &AgentClaims,
    raw_server: &str,
) -> Result<(AgentState, McpServerRecord, Upstream), Response> {
    let server_id: Uuid = raw_server.parse().map_err(|_| {
        rpc_http(
            StatusCode::NOT_FOUND,
            None,
            RpcError::new(
                codes::INVALID_REQUEST,
                format!("`{raw_server}` is not a server id"),
            ),
        )
    })?;
    let agent = state
        .gate
        .agent(state.store.as_ref(), claims.tenant, claims.sub)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => rpc_http(
                StatusCode::UNAUTHORIZED,
                None,
                RpcError::new(codes::AGENT_SUSPENDED, "the agent no longer exists"),
            ),
            other => unavailable(other),
        })?;
    if let Err(Refusal::Suspended(why)) = Gate::admit(&agent) {
        return Err(rpc_http(
            StatusCode::FORBIDDEN,
            None,
            RpcError::new(codes::AGENT_SUSPENDED, why),
        ));
    }
    let server = match state.upstreams.cached_record(claims.tenant, server_id) {
        Some(r) => r,
        None => {
            let r = state
                .store
                .tenant(claims.tenant)
                .get_mcp_server(server_id)
                .await
                .map_err(|e| match e {
                    StoreError::NotFound => rpc_http(
                        StatusCode::NOT_FOUND,
                        None,
                        RpcError::new(
                            codes::INVALID_REQUEST,
                            format!("no MCP server {server_id} in this tenant"),
                        ),
                    ),
                    other => unavailable(other),
                })?;
            state.upstreams.cache_record(&r);
            r
        }
    };
    if !server.enabled {
        return Err(rpc_http(
            StatusCode::NOT_FOUND,
            None,
            RpcError::new(
                codes::INVALID_REQUEST,
                format!("MCP server `{}` is disabled", server.name),
            ),
        ));
    }
    let upstream = state.upstreams.get(&server, &state.cipher).map_err(|e| {
        rpc_http(
            StatusCode::BAD_GATEWAY,
            None,
            RpcError::new(
                codes::UPSTREAM_UNAVAILABLE,
                format!("upstream `{}` is misconfigured: {e}", server.name),
            ),
        )
    })?;
    Ok((agent, server, upstream))
}

pub(super) fn unavailable(e: StoreError) -> Response {
    rpc_http(StatusCode::SERVICE_UNAVAILABLE, None, unavailable_error(e))
}

/// The opaque error for a storage failure; the cause goes to the log under
/// the correlation id it carries.
fn unavailable_error(e: StoreError) -> RpcError {
    let id = Uuid::new_v4();
    tracing::error!(correlation_id = %id, error = %e, "MCP request failed on storage");
    RpcError::new(codes::INTERNAL_ERROR, "service temporarily unavailable")
        .with_data(json!({"correlation_id": id.to_string()}))
}

/// POST: one JSON-RPC message (or, for 2025-03-26 clients, a batch).
pub async fn post(
    State(state): State<AppState>,
    ApiPath(raw_server): ApiPath<String>,
    AgentAuth(claims): AgentAuth,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let accept = header(&headers, ACCEPT.as_str()).unwrap_or("*/*");
    let wants_sse = accept.contains("text/event-stream");
    if !(accept.contains("application/json") || wants_sse || accept.contains("*/*")) {
        return rpc_http(
            StatusCode::NOT_ACCEPTABLE,
            None,
            RpcError::new(
                codes::INVALID_REQUEST,
                "Accept must include application/json or text/event-stream",
            ),
        );
    }
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
    let value: Value = match behavry_mcp::jsonrpc::parse_strict(&body) {
        Ok(v) => v,
        Err(e) => {
            return rpc_http(
                StatusCode::BAD_REQUEST,
                None,
                RpcError::new(e.code(), e.to_string()),
            );
        }
    };
    let header_version = header(&headers, HEADER_PROTOCOL_VERSION);
    if let Some(v) = header_version
        && !protocol::is_supported(v)
    {
        return rpc_http(
            StatusCode::BAD_REQUEST,
            None,
            RpcError::new(
                codes::UNSUPPORTED_PROTOCOL_VERSION,
                format!("unsupported MCP-Protocol-Version `{v}`"),
            )
            .with_data(json!({"supported": SUPPORTED_VERSIONS, "requested": v})),
        );
    }

    let (agent, server, upstream) = match prepare(&state, &claims, &raw_server).await {
        Ok(p) => p,
        Err(r) => return r,
    };

    // Batches: each element handled in turn, answers collected.
    let messages = match value {
        Value::Array(items) if items.is_empty() => {
            return rpc_http(
                StatusCode::BAD_REQUEST,
                None,
                RpcError::new(codes::INVALID_REQUEST, "empty batch"),
            );
        }
        Value::Array(items) => items,
        one => vec![one],
    };
    let batch = messages.len() > 1;
    if messages.len() > 100 {
        return rpc_http(
            StatusCode::BAD_REQUEST,
            None,
            RpcError::new(
                codes::INVALID_REQUEST,
                "batches may hold at most 100 messages",
            ),
        );
    }

    // Session: required after initialize for session-based versions.
    let session_header = header(&headers, HEADER_SESSION_ID).map(str::to_string);
    let first_method = messages
        .first()
        .and_then(|m| m.get("method"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let is_initialize = first_method.as_deref() == Some("initialize");
    let stateless = header_version == Some(STATELESS_VERSION)
        || messages
            .first()
            .and_then(|m| m.pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion"))
            .and_then(Value::as_str)
            == Some(STATELESS_VERSION)
        || first_method.as_deref() == Some("server/discover");
    let session = match (&session_header, is_initialize, stateless) {
        (Some(id), false, _) => match state
            .sessions
            .get(state.store.as_ref(), claims.tenant, id)
            .await
        {
            Ok(Some(s))
                if !s.ended
                    && s.agent == claims.sub
                    && s.server_id.as_deref() == Some(&server.id.to_string()) =>
            {
                Some(s)
            }
            Ok(_) => {
                // Unknown, ended, another agent's or another server's: the
                // same answer for all, so ids cannot be probed.
                return rpc_http(
                    StatusCode::NOT_FOUND,
                    None,
                    RpcError::new(
                        codes::SERVER_ERROR,
                        "unknown or ended session; initialize a new one",
                    ),
                );
            }
            Err(e) => return unavailable(e),
        },
        (_, true, _) | (None, false, true) => None,
        (None, false, false) => {
            return rpc_http(
                StatusCode::BAD_REQUEST,
                None,
                RpcError::new(
                    codes::SERVER_ERROR,
                    "missing Mcp-Session-Id header; send initialize first",
                ),
            );
        }
    };
    let version = if stateless {
        STATELESS_VERSION.to_string()
    } else {
        session
            .as_ref()
            .map(|s| s.protocol_version.clone())
            .or(header_version.map(str::to_string))
            .unwrap_or_else(|| protocol::DEFAULT_HTTP_VERSION.to_string())
    };

    // 2026-07-28: routing headers must agree with the body.
    if stateless
        && !batch
        && let Some(refusal) = check_stateless_headers(&headers, &messages[0])
    {
        return refusal;
    }

    let mut ctx = Ctx {
        state,
        claims,
        agent,
        server,
        upstream,
        session,
        version,
        request_size: body.len(),
        assigned_session_id: None,
    };

    if !batch {
        let Some(message) = messages.into_iter().next() else {
            return rpc_http(
                StatusCode::BAD_REQUEST,
                None,
                RpcError::new(codes::INVALID_REQUEST, "empty body"),
            );
        };
        return handle(&mut ctx, message, wants_sse).await;
    }
    let mut answers = Vec::new();
    for m in messages {
        match handle_to_value(&mut ctx, m).await {
            Some(v) => answers.push(v),
            None => continue,
        }
    }
    let session = ctx.session.as_ref().map(|s| s.id.clone());
    if answers.is_empty() {
        let mut r = StatusCode::ACCEPTED.into_response();
        add_headers(&mut r, session.as_deref(), &ctx.version);
        return r;
    }
    json_reply(Value::Array(answers), session.as_deref(), &ctx.version)
}

/// The refusal, when the 2026-07-28 routing headers disagree with the body.
fn check_stateless_headers(headers: &HeaderMap, message: &Value) -> Option<Response> {
    let method = message.get("method").and_then(Value::as_str);
    let mismatch = |what: &str| {
        rpc_http(
            StatusCode::BAD_REQUEST,
            None,
            RpcError::new(
                codes::HEADER_MISMATCH,
                format!("{what} header does not match the request body"),
            ),
        )
    };
    if let Some(m) = method {
        if header(headers, HEADER_METHOD) != Some(m) {
            return Some(mismatch("Mcp-Method"));
        }
        let name = match m {
            "tools/call" | "prompts/get" => message.pointer("/params/name").and_then(Value::as_str),
            "resources/read" => message.pointer("/params/uri").and_then(Value::as_str),
            _ => None,
        };
        if let Some(n) = name
            && header(headers, HEADER_NAME) != Some(n)
        {
            return Some(mismatch("Mcp-Name"));
        }
    }
    None
}

/// What handling one message produced, whatever the transport carries it.
pub(super) enum Reply {
    /// Nothing goes back: a notification, or the answer to a server request.
    Nothing,
    /// One JSON-RPC message.
    Message(Value),
    /// Messages related to a call (progress, server requests), then its
    /// response.
    Stream(mpsc::Receiver<StreamItem>),
    /// Refused before a JSON-RPC answer could be made (storage down): the
    /// HTTP status a direct answer carries, and the error.
    Refused(StatusCode, RpcError),
}

/// Handles one parsed message: the part both transports share. Every
/// governed method goes through [`request`] and so through the pipeline.
pub(super) async fn dispatch(ctx: &mut Ctx, message: Message, in_batch: bool) -> Reply {
    if let Err(error) = behavry_mcp::jsonrpc::check_shape(&message) {
        return match &message {
            Message::Request { id, .. } => {
                Reply::Message(Message::error(id.clone(), error).to_value())
            }
            _ => Reply::Refused(StatusCode::BAD_REQUEST, error),
        };
    }
    match message {
        Message::Notification { method, params } => {
            notify(ctx, &method, params).await;
            Reply::Nothing
        }
        Message::Response { id, outcome } => {
            if let Id::String(gateway_id) = &id {
                let _ = ctx.upstream.respond(gateway_id, outcome).await;
            }
            Reply::Nothing
        }
        Message::Request { id, method, params } => {
            if method == "initialize" {
                if in_batch {
                    return Reply::Message(
                        Message::error(
                            id,
                            RpcError::new(
                                codes::INVALID_REQUEST,
                                "initialize cannot be part of a batch",
                            ),
                        )
                        .to_value(),
                    );
                }
                return initialize(ctx, id, params).await;
            }
            match request(ctx, id, &method, params).await {
                Answer::Value(v) => Reply::Message(v),
                Answer::Stream(rx) => Reply::Stream(rx),
            }
        }
    }
}

/// Handles one message and produces the HTTP answer.
async fn handle(ctx: &mut Ctx, value: Value, wants_sse: bool) -> Response {
    let message = match Message::from_value(value) {
        Ok(m) => m,
        Err(e) => {
            return rpc_http(
                StatusCode::BAD_REQUEST,
                None,
                RpcError::new(codes::INVALID_REQUEST, e),
            );
        }
    };
    let id = match &message {
        Message::Request { id, .. } => Some(id.clone()),
        _ => None,
    };
    let reply = dispatch(ctx, message, false).await;
    // `initialize` may just have opened the session.
    let session = ctx.session.as_ref().map(|s| s.id.clone());
    match reply {
        Reply::Nothing => accepted(ctx),
        Reply::Message(v) => json_reply(v, session.as_deref(), &ctx.version),
        Reply::Refused(status, error) => rpc_http(status, None, error),
        Reply::Stream(mut rx) => {
            if wants_sse {
                let (tx, out) = mpsc::channel(32);
                tokio::spawn(async move {
                    while let Some(ev) = rx.recv().await {
                        let done = matches!(ev, StreamItem::Final(_));
                        let v = ev.into_value();
                        if tx.send(v).await.is_err() || done {
                            break;
                        }
                    }
                });
                sse_reply(&ctx.state, out, session.as_deref(), &ctx.version)
            } else {
                // JSON only: the final answer; progress is dropped.
                let final_value = final_of(&mut rx).await;
                let v = final_value.unwrap_or_else(|| no_answer(id));
                json_reply(v, session.as_deref(), &ctx.version)
            }
        }
    }
}

/// The response at the end of a call's stream, if it came.
async fn final_of(rx: &mut mpsc::Receiver<StreamItem>) -> Option<Value> {
    while let Some(ev) = rx.recv().await {
        if let StreamItem::Final(v) = ev {
            return Some(v);
        }
    }
    None
}

/// The error for a call whose stream ended without a response.
pub(super) fn no_answer(id: Option<Id>) -> Value {
    let error = RpcError::new(
        codes::UPSTREAM_UNAVAILABLE,
        "the upstream ended the call without an answer",
    );
    match id {
        Some(id) => Message::error(id, error).to_value(),
        None => error_without_id(error),
    }
}

/// Batch element: the JSON answer, if any.
async fn handle_to_value(ctx: &mut Ctx, value: Value) -> Option<Value> {
    let message = match Message::from_value(value) {
        Ok(m) => m,
        Err(e) => return Some(error_without_id(RpcError::new(codes::INVALID_REQUEST, e))),
    };
    let id = match &message {
        Message::Request { id, .. } => Some(id.clone()),
        _ => None,
    };
    match dispatch(ctx, message, true).await {
        Reply::Nothing => None,
        Reply::Message(v) => Some(v),
        Reply::Refused(_, error) => Some(match id {
            Some(id) => Message::error(id, error).to_value(),
            None => error_without_id(error),
        }),
        Reply::Stream(mut rx) => Some(final_of(&mut rx).await.unwrap_or_else(|| no_answer(id))),
    }
}

fn accepted(ctx: &Ctx) -> Response {
    let mut r = StatusCode::ACCEPTED.into_response();
    add_headers(
        &mut r,
        ctx.session.as_ref().map(|s| s.id.as_str()),
        &ctx.version,
    );
    r
}

async fn notify(ctx: &Ctx, method: &str, params: Option<Value>) {
    match method {
        // The gateway did the handshake with the upstream itself.
        "notifications/initialized" => {}
        // Closing the response stream already cancels the upstream call.
        "notifications/cancelled" => {}
        _ => {
            let _ = ctx.upstream.notify(method, params).await;
        }
    }
}

async fn initialize(ctx: &mut Ctx, id: Id, params: Option<Value>) -> Reply {
    if ctx.assigned_session_id.is_some() && ctx.session.is_some() {
        // Legacy SSE: the stream is the session; it is initialized once.
        return Reply::Message(
            Message::error(
                id,
                RpcError::new(
                    codes::INVALID_REQUEST,
                    "this session is already initialized; open a new event stream for a new session",
                ),
            )
            .to_value(),
        );
    }
    let params = params.unwrap_or(Value::Null);
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let version = protocol::negotiate(requested);
    if !ctx.upstream.wait_ready(Duration::from_secs(30)).await {
        let err = RpcError::new(
            codes::UPSTREAM_UNAVAILABLE,
            format!(
                "upstream `{}` is not available: {}",
                ctx.server.name,
                match ctx.upstream.state() {
                    UpstreamState::Failed { error, .. } => error,
                    other => other.label().to_string(),
                }
            ),
        );
        return Reply::Message(Message::error(id, err).to_value());
    }
    let client = params.get("clientInfo");
    let session = match ctx
        .state
        .sessions
        .create(
            ctx.state.store.as_ref(),
            ctx.claims.tenant,
            NewSession {
                id: ctx
                    .assigned_session_id
                    .clone()
                    .unwrap_or_else(new_session_id),
                agent_id: ctx.claims.sub,
                server_id: ctx.server.id.to_string(),
                client_name: client
                    .and_then(|c| c.get("name"))
                    .and_then(Value::as_str)
                    .map(|s| s.chars().take(200).collect()),
                client_version: client
                    .and_then(|c| c.get("version"))
                    .and_then(Value::as_str)
                    .map(|s| s.chars().take(100).collect()),
                protocol_version: version.to_string(),
            },
        )
        .await
    {
        Ok(s) => s,
        Err(e) => return Reply::Refused(StatusCode::SERVICE_UNAVAILABLE, unavailable_error(e)),
    };
    ctx.version = version.to_string();
    let result = initialize_result(ctx, version);
    let caller = Caller {
        tenant: ctx.claims.tenant,
        agent: &ctx.agent,
        session: Some(&session),
    };
    record_request(
        &ctx.state,
        &caller,
        &ctx.server,
        Recorded::SessionStart,
        ctx.request_size,
        None,
    );
    ctx.session = Some(session);
    Reply::Message(Message::result(id, result).to_value())
}

fn initialize_result(ctx: &Ctx, version: &str) -> Value {
    let upstream = ctx.upstream.server_info().unwrap_or(Value::Null);
    // Offer what the upstream offers, limited to what the gateway relays.
    let caps = upstream
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut capabilities = serde_json::Map::new();
    for key in ["tools", "resources", "prompts", "logging", "completions"] {
        if let Some(v) = caps.get(key) {
            capabilities.insert(key.into(), v.clone());
        }
    }
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": {
            "name": format!("behavry/{}", ctx.server.name),
            "version": env!("CARGO_PKG_VERSION"),
        },
    });
    if let Some(i) = upstream.get("instructions") {
        result["instructions"] = i.clone();
    }
    result
}

enum Answer {
    Value(Value),
    Stream(mpsc::Receiver<StreamItem>),
}

/// One message of a call's stream.
pub(super) enum StreamItem {
    /// Progress, a log line or a server request tied to the call.
    Related(Value),
    /// The call's response; nothing follows.
    Final(Value),
}

impl StreamItem {
    pub(super) fn into_value(self) -> Value {
        match self {
            StreamItem::Related(v) | StreamItem::Final(v) => v,
        }
    }
}

async fn request(ctx: &mut Ctx, id: Id, method: &str, params: Option<Value>) -> Answer {
    let version = ctx.version.clone();
    let reply = |outcome: Result<Value, RpcError>| {
        let outcome = outcome.map(|mut v| {
            protocol::adapt_result(&version, method, &mut v);
            v
        });
        Answer::Value(
            Message::Response {
                id: id.clone(),
                outcome,
            }
            .to_value(),
        )
    };
    if let Some(s) = &ctx.session {
        ctx.state
            .sessions
            .count_call(ctx.claims.tenant, ctx.claims.sub, &s.id);
    }
    let caller = Caller {
        tenant: ctx.claims.tenant,
        agent: &ctx.agent,
        session: ctx.session.as_ref(),
    };
    match method {
        "ping" => reply(Ok(json!({}))),
        "server/discover" => reply(Ok(json!({
            "supportedVersions": SUPPORTED_VERSIONS,
            "capabilities": initialize_result(ctx, STATELESS_VERSION)["capabilities"].clone(),
            "serverInfo": {"name": format!("behavry/{}", ctx.server.name), "version": env!("CARGO_PKG_VERSION")},
        }))),
        "tools/list" | "resources/list" | "prompts/list" => {
            let result = ctx.upstream.request(method, params).await;
            let result = match result {
                Ok(v) => Ok(filter_list(ctx, &caller, method, v).await),
                Err(e) => Err(e),
            };
            record_request(
                &ctx.state,
                &caller,
                &ctx.server,
                Recorded::Method(method),
                ctx.request_size,
                result.as_ref().err(),
            );
            reply(result)
        }
        "tools/call" | "resources/read" | "prompts/get" => {
            let params = params.unwrap_or_else(|| json!({}));
            if method == "tools/call"
                && !ctx
                    .state
                    .upstreams
                    .has_tools(ctx.server.tenant_id, ctx.server.id)
            {
                // Annotations classify the call; learn them once.
                if let Ok(list) = ctx.upstream.request("tools/list", None).await {
                    let _ = filter_list(ctx, &caller, "tools/list", list).await;
                }
            }
            let Some(target) = Target::from_request(&ctx.state, &ctx.server, method, &params)
            else {
                let what = if method == "resources/read" {
                    "`params.uri`"
                } else {
                    "`params.name`"
                };
                return reply(Err(RpcError::new(
                    codes::INVALID_PARAMS,
                    format!("{method} needs {what} as a string"),
                )));
            };
            match guarded_call(
                &ctx.state,
                &caller,
                &ctx.server,
                &ctx.upstream,
                target,
                params,
                ctx.request_size,
            )
            .await
            {
                Err(e) => reply(Err(e)),
                Ok(Forwarded::Answered(outcome)) => reply(outcome),
                Ok(Forwarded::Streaming(mut upstream_rx)) => {
                    let (tx, rx) = mpsc::channel(32);
                    let id = id.clone();
                    let version = ctx.version.clone();
                    let method = method.to_string();
                    tokio::spawn(async move {
                        while let Some(ev) = upstream_rx.recv().await {
                            let item = match ev {
                                UpstreamEvent::Notification(v)
                                | UpstreamEvent::ServerRequest(v) => StreamItem::Related(v),
                                UpstreamEvent::Response(outcome) => {
                                    let outcome = outcome.map(|mut v| {
                                        protocol::adapt_result(&version, &method, &mut v);
                                        v
                                    });
                                    StreamItem::Final(
                                        Message::Response {
                                            id: id.clone(),
                                            outcome,
                                        }
                                        .to_value(),
                                    )
                                }
                            };
                            let last = matches!(item, StreamItem::Final(_));
                            if tx.send(item).await.is_err() || last {
                                break;
                            }
                        }
                    });
                    Answer::Stream(rx)
                }
            }
        }
        _ => {
            // Everything else (templates, completion, logging level,
            // subscriptions) is relayed as is.
            let result = ctx.upstream.request(method, params).await;
            record_request(
                &ctx.state,
                &caller,
                &ctx.server,
                Recorded::Method(method),
                ctx.request_size,
                result.as_ref().err(),
            );
            reply(result)
        }
    }
}

/// Hides from a list what the agent may not use: an agent never sees a
/// tool (or resource, or prompt) its policy would deny.
async fn filter_list(ctx: &Ctx, caller: &Caller<'_>, method: &str, mut result: Value) -> Value {
    let (key, call) = match method {
        "tools/list" => ("tools", "tools/call"),
        "resources/list" => ("resources", "resources/read"),
        _ => ("prompts", "prompts/get"),
    };
    let Some(items) = result.get_mut(key).and_then(Value::as_array_mut) else {
        return result;
    };
    if key == "tools" {
        // Poisoned definitions are withheld; each is audited once, when it
        // is first seen (or changes).
        let newly = ctx.state.upstreams.remember_tools(
            ctx.server.tenant_id,
            ctx.server.id,
            items,
            &ctx.state.injection,
            behavry_dlp::Severity::High,
        );
        for (name, findings) in newly {
            record_withheld_tool(&ctx.state, caller, &ctx.server, &name, &findings);
        }
        items.retain(|t| {
            t.get("name").and_then(Value::as_str).is_none_or(|n| {
                ctx.state
                    .upstreams
                    .withheld(ctx.server.tenant_id, ctx.server.id, n)
                    .is_none()
            })
        });
        // Rug pulls: a definition that differs from its pin is held.
        let changed = super::pins::check(&ctx.state, caller, &ctx.server, items).await;
        items.retain(|t| {
            t.get("name")
                .and_then(Value::as_str)
                .is_none_or(|n| !changed.contains(n))
        });
        ctx.state
            .upstreams
            .set_changed(ctx.server.tenant_id, ctx.server.id, changed);
    }
    let mut kept = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        let params = match key {
            "tools" => {
                json!({"name": item.get("name").cloned().unwrap_or(Value::Null), "arguments": {}})
            }
            "resources" => json!({"uri": item.get("uri").cloned().unwrap_or(Value::Null)}),
            _ => json!({"name": item.get("name").cloned().unwrap_or(Value::Null)}),
        };
        let Some(target) = Target::from_request(&ctx.state, &ctx.server, call, &params) else {
            continue;
        };
        let input = policy_input(caller, &ctx.server, &target, &[]);
        let decision = decide(&ctx.state, caller.tenant, &input).await;
        if decision.result != DecisionResult::Deny {
            kept.push(item);
        }
    }
    *items = kept;
    result
}

/// GET: the server-to-client stream for notifications not tied to a call.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(raw_server): ApiPath<String>,
    AgentAuth(claims): AgentAuth,
    headers: HeaderMap,
) -> Response {
    if !header(&headers, ACCEPT.as_str())
        .unwrap_or_default()
        .contains("text/event-stream")
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
    let Some(sid) = header(&headers, HEADER_SESSION_ID) else {
        // Stateless clients have no server-to-client stream.
        let mut r = rpc_http(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            RpcError::new(
                codes::INVALID_REQUEST,
                "GET needs an Mcp-Session-Id (stateless clients have no stream)",
            ),
        );
        r.headers_mut()
            .insert("allow", HeaderValue::from_static("POST"));
        return r;
    };
    let session = match state
        .sessions
        .get(state.store.as_ref(), claims.tenant, sid)
        .await
    {
        Ok(Some(s))
            if !s.ended
                && s.agent == claims.sub
                && s.server_id.as_deref() == Some(&server.id.to_string()) =>
        {
            s
        }
        Ok(_) => {
            return rpc_http(
                StatusCode::NOT_FOUND,
                None,
                RpcError::new(codes::SERVER_ERROR, "unknown or ended session"),
            );
        }
        Err(e) => return unavailable(e),
    };
    let mut notes = upstream.subscribe();
    let (tx, rx) = mpsc::channel(32);
    tokio::spawn(async move {
        loop {
            match notes.recv().await {
                Ok(v) => {
                    if tx.send(v).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    });
    sse_reply(&state, rx, Some(&session.id), &session.protocol_version)
}

/// DELETE: the agent ends its session.
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(raw_server): ApiPath<String>,
    AgentAuth(claims): AgentAuth,
    headers: HeaderMap,
) -> Response {
    let Some(sid) = header(&headers, HEADER_SESSION_ID) else {
        return rpc_http(
            StatusCode::BAD_REQUEST,
            None,
            RpcError::new(codes::INVALID_REQUEST, "DELETE needs an Mcp-Session-Id"),
        );
    };
    match state
        .sessions
        .get(state.store.as_ref(), claims.tenant, sid)
        .await
    {
        Ok(Some(s))
            if !s.ended
                && s.agent == claims.sub
                && s.server_id.as_deref() == Some(raw_server.as_str()) =>
        {
            match state
                .sessions
                .end(state.store.as_ref(), claims.tenant, sid)
                .await
            {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => unavailable(e),
            }
        }
        Ok(_) => rpc_http(
            StatusCode::NOT_FOUND,
            None,
            RpcError::new(codes::SERVER_ERROR, "unknown or ended session"),
        ),
        Err(e) => unavailable(e),
    }
}
