//! Clients for the MCP servers behind the gateway.
//!
//! One [`Upstream`] per registered server (per replica) owns one supervised
//! connection: a child process for stdio, or an MCP session for Streamable
//! HTTP and legacy HTTP+SSE. Every agent session that uses the server is
//! multiplexed over it: request ids and progress tokens are rewritten on the
//! way out and restored on the way back, so agents never see each other's
//! traffic. When the connection fails, calls in flight fail at once with a
//! clear error, new calls are refused (never queued indefinitely), and the
//! supervisor reconnects with exponential backoff.

mod http;
mod legacy_sse;
mod stdio;

pub use stdio::Sandbox;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use crate::jsonrpc::{Id, Message, RpcError, codes};
use crate::protocol::LATEST_WITH_INITIALIZE;

/// How to reach an upstream server.
#[derive(Clone)]
pub enum Transport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        sandbox: Sandbox,
    },
    StreamableHttp {
        url: String,
        headers: Vec<(String, String)>,
    },
    Sse {
        url: String,
        headers: Vec<(String, String)>,
    },
}

impl std::fmt::Debug for Transport {
    // Headers and environment carry credentials: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Stdio { command, args, .. } => {
                write!(f, "Stdio({command} {})", args.join(" "))
            }
            Transport::StreamableHttp { url, .. } => write!(f, "StreamableHttp({url})"),
            Transport::Sse { url, .. } => write!(f, "Sse({url})"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// For logs and errors.
    pub name: String,
    pub transport: Transport,
    /// How long one call may take before the agent gets a timeout error.
    pub request_timeout: Duration,
    /// How long connecting and the initialize handshake may take.
    pub connect_timeout: Duration,
    /// Checks every address an HTTP transport connects to.
    pub outbound: crate::outbound::AddressGuard,
}

/// Connection state, as reported to operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamState {
    Connecting,
    Ready,
    /// Failed; the supervisor retries after the backoff.
    Failed {
        error: String,
        retry_in: Duration,
    },
    Stopped,
}

impl UpstreamState {
    pub fn label(&self) -> &'static str {
        match self {
            UpstreamState::Connecting => "connecting",
            UpstreamState::Ready => "ready",
            UpstreamState::Failed { .. } => "failed",
            UpstreamState::Stopped => "stopped",
        }
    }
}

/// What a call yields, in order: zero or more related messages, then the
/// response.
#[derive(Clone, Debug)]
pub enum UpstreamEvent {
    /// A notification tied to the call (e.g. progress), with the caller's
    /// progress token restored.
    Notification(Value),
    /// A request from the server tied to the call (sampling, elicitation,
    /// roots). Its id is the gateway's; answer with [`Upstream::respond`].
    ServerRequest(Value),
    Response(Result<Value, RpcError>),
}

/// What [`Upstream::call`] returns.
#[derive(Debug)]
pub enum Call {
    /// The response came back on the request's own exchange, with nothing
    /// else related to it; `size` is its length on the wire.
    Answered {
        outcome: Result<Value, RpcError>,
        size: usize,
    },
    /// Related messages may precede the response, which ends the stream.
    Streaming(mpsc::Receiver<UpstreamEvent>),
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{0}` is not connected: {1}")]
    Unavailable(String, String),
    #[error("upstream `{0}` did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("upstream `{0}` connection failed: {1}")]
    Link(String, String),
}

impl UpstreamError {
    pub fn to_rpc(&self) -> RpcError {
        match self {
            UpstreamError::Timeout(..) => RpcError::new(codes::UPSTREAM_TIMEOUT, self.to_string()),
            _ => RpcError::new(codes::UPSTREAM_UNAVAILABLE, self.to_string()),
        }
    }
}

/// A message from the upstream, tagged with the gateway request whose HTTP
/// exchange carried it (when the transport tells us).
pub(crate) struct Inbound {
    pub origin: Option<u64>,
    pub message: Value,
}

/// The transport-specific half of a connection.
#[async_trait::async_trait]
pub(crate) trait Link: Send + Sync {
    /// Sends one message. `origin` is the gateway request id the message
    /// belongs to (for transports that answer on the same HTTP exchange).
    async fn send(&self, message: Value, origin: Option<u64>) -> Result<(), String>;
    /// Sends a request and, when the transport carries its response on the
    /// same exchange (Streamable HTTP answering with JSON), returns that
    /// response and its size in bytes instead of routing it through the
    /// inbound channel. Anything else the exchange carries is routed as
    /// `send` would. The default never answers directly.
    async fn exchange(
        &self,
        message: Value,
        origin: u64,
    ) -> Result<Option<(Value, usize)>, String> {
        self.send(message, Some(origin)).await.map(|()| None)
    }
    /// Remembers what initialize negotiated (HTTP transports add headers).
    fn initialized(&self, _protocol_version: &str) {}
    /// Ends the connection politely.
    async fn close(&self);
}

/// Inbound messages plus a signal that the link has died.
pub(crate) struct LinkChannels {
    pub inbound: mpsc::Sender<Inbound>,
    pub closed: mpsc::Sender<String>,
}

struct Pending {
    events: mpsc::Sender<UpstreamEvent>,
    /// The caller's original progress token, restored on progress
    /// notifications.
    progress_token: Option<Value>,
}

/// A server-to-client request awaiting the agent's answer.
struct ServerRequest {
    upstream_id: Value,
}

struct Inner {
    config: UpstreamConfig,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    server_requests: Mutex<HashMap<String, ServerRequest>>,
    link: Mutex<Option<Arc<dyn Link>>>,
    state: watch::Sender<UpstreamState>,
    server_info: Mutex<Option<Value>>,
    broadcasts: broadcast::Sender<Value>,
    stop: watch::Sender<bool>,
}

/// A supervised connection to one upstream MCP server. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Upstream {
    /// Starts connecting in the background and returns at once.
    pub fn start(config: UpstreamConfig) -> Upstream {
        let (state, _) = watch::channel(UpstreamState::Connecting);
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            config,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            server_requests: Mutex::new(HashMap::new()),
            link: Mutex::new(None),
            state,
            server_info: Mutex::new(None),
            broadcasts: broadcast::channel(256).0,
            stop,
        });
        tokio::spawn(supervise(inner.clone()));
        Upstream { inner }
    }

    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    pub fn state(&self) -> UpstreamState {
        self.inner.state.borrow().clone()
    }

    /// Waits while the connection is being established; true when it is
    /// ready. Returns false at once when the last attempt failed, so a
    /// caller never waits out a whole backoff for a broken server.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.state.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|s| *s != UpstreamState::Connecting)).await
        {
            Ok(Ok(state)) => *state == UpstreamState::Ready,
            _ => false,
        }
    }

    /// The upstream's `initialize` result (capabilities, serverInfo).
    pub fn server_info(&self) -> Option<Value> {
        lock(&self.inner.server_info).clone()
    }

    /// Notifications not tied to any call (e.g. `tools/list_changed`).
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.inner.broadcasts.subscribe()
    }

    fn link(&self) -> Result<Arc<dyn Link>, UpstreamError> {
        let state = self.state();
        match (&state, lock(&self.inner.link).clone()) {
            (UpstreamState::Ready, Some(link)) => Ok(link),
            _ => Err(UpstreamError::Unavailable(
                self.inner.config.name.clone(),
                match state {
                    UpstreamState::Failed { error, retry_in } => {
                        format!("{error}; retrying in {}s", retry_in.as_secs())
                    }
                    other => other.label().to_string(),
                },
            )),
        }
    }

    /// Sends a request. A response carried on the request's own exchange
    /// comes back as [`Call::Answered`] at once, without passing through the
    /// connection's routing task; otherwise [`Call::Streaming`] yields related
    /// messages and finally the response. A timeout or a dropped connection
    /// ends either with an error response, so a caller never waits forever.
    pub async fn call(&self, method: &str, params: Option<Value>) -> Result<Call, UpstreamError> {
        let link = self.link()?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(32);
        let (params, progress_token) = rewrite_progress_token(params, id);
        lock(&self.inner.pending).insert(
            id,
            Pending {
                events: tx.clone(),
                progress_token,
            },
        );
        let message = Message::Request {
            id: Id::Number(id as i64),
            method: method.to_string(),
            params,
        };
        let timeout = self.inner.config.request_timeout;
        let started = tokio::time::Instant::now();
        let timed_out = || {
            lock(&self.inner.pending).remove(&id);
            let inner = self.inner.clone();
            tokio::spawn(async move { cancel(&inner, id, "timed out at the gateway").await });
            let err = UpstreamError::Timeout(self.inner.config.name.clone(), timeout);
            Ok(Call::Answered {
                outcome: Err(err.to_rpc()),
                size: 0,
            })
        };
        match tokio::time::timeout(timeout, link.exchange(message.to_value(), id)).await {
            Err(_) => return timed_out(),
            Ok(Err(e)) => {
                lock(&self.inner.pending).remove(&id);
                return Err(UpstreamError::Link(self.inner.config.name.clone(), e));
            }
            Ok(Ok(Some((response, size)))) => {
                lock(&self.inner.pending).remove(&id);
                let outcome = match Message::from_value(response) {
                    Ok(Message::Response { outcome, .. }) => outcome,
                    _ => Err(RpcError::new(
                        codes::UPSTREAM_UNAVAILABLE,
                        format!(
                            "upstream `{}` sent a malformed response",
                            self.inner.config.name
                        ),
                    )),
                };
                return Ok(Call::Answered { outcome, size });
            }
            Ok(Ok(None)) => {}
        }
        // The response will arrive through the connection's routing task.
        // The deadline: answer the caller with a timeout and tell the
        // upstream to stop working on it.
        let inner = self.inner.clone();
        let deadline = started + timeout;
        tokio::spawn(async move {
            tokio::select! {
                _ = tx.closed() => {
                    // Caller went away before the response arrived.
                    let was_pending = lock(&inner.pending).remove(&id).is_some();
                    if was_pending {
                        cancel(&inner, id, "the client went away").await;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let pending = lock(&inner.pending).remove(&id);
                    if let Some(p) = pending {
                        let err = UpstreamError::Timeout(inner.config.name.clone(), timeout);
                        let _ = p.events.send(UpstreamEvent::Response(Err(err.to_rpc()))).await;
                        cancel(&inner, id, "timed out at the gateway").await;
                    }
                }
            }
        });
        Ok(Call::Streaming(rx))
    }

    /// Convenience: a call reduced to its final response.
    pub async fn request(&self, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
        let mut rx = match self.call(method, params).await.map_err(|e| e.to_rpc())? {
            Call::Answered { outcome, .. } => return outcome,
            Call::Streaming(rx) => rx,
        };
        while let Some(event) = rx.recv().await {
            if let UpstreamEvent::Response(r) = event {
                return r;
            }
        }
        Err(RpcError::new(
            codes::UPSTREAM_UNAVAILABLE,
            "upstream closed the call without a response",
        ))
    }

    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), UpstreamError> {
        let link = self.link()?;
        let message = Message::Notification {
            method: method.to_string(),
            params,
        };
        link.send(message.to_value(), None)
            .await
            .map_err(|e| UpstreamError::Link(self.inner.config.name.clone(), e))
    }

    /// Delivers the agent's answer to a server-to-client request.
    pub async fn respond(
        &self,
        gateway_id: &str,
        outcome: Result<Value, RpcError>,
    ) -> Result<(), UpstreamError> {
        let Some(req) = lock(&self.inner.server_requests).remove(gateway_id) else {
            return Err(UpstreamError::Unavailable(
                self.inner.config.name.clone(),
                format!("no pending server request `{gateway_id}`"),
            ));
        };
        let link = self.link()?;
        let id = Id::from_value(&req.upstream_id).unwrap_or(Id::Number(0));
        link.send(Message::Response { id, outcome }.to_value(), None)
            .await
            .map_err(|e| UpstreamError::Link(self.inner.config.name.clone(), e))
    }

    /// Stops the connection (and the child process) for good.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        let link = lock(&self.inner.link).take();
        if let Some(link) = link {
            link.close().await;
        }
        fail_pending(&self.inner, "the upstream was stopped").await;
        self.inner.state.send_replace(UpstreamState::Stopped);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn rewrite_progress_token(params: Option<Value>, id: u64) -> (Option<Value>, Option<Value>) {
    let Some(mut params) = params else {
        return (None, None);
    };
    let original = params
        .get_mut("_meta")
        .and_then(|m| m.as_object_mut())
        .and_then(|m| m.insert("progressToken".into(), json!(format!("bhv-{id}"))));
    if original.is_none()
        && let Some(meta) = params.get_mut("_meta").and_then(|m| m.as_object_mut())
    {
        meta.remove("progressToken");
    }
    (Some(params), original)
}

async fn cancel(inner: &Arc<Inner>, id: u64, reason: &str) {
    let link = lock(&inner.link).clone();
    if let Some(link) = link {
        let note = Message::Notification {
            method: "notifications/cancelled".into(),
            params: Some(json!({"requestId": id, "reason": reason})),
        };
        let _ = link.send(note.to_value(), None).await;
    }
}

async fn fail_pending(inner: &Arc<Inner>, why: &str) {
    let pending: Vec<Pending> = lock(&inner.pending).drain().map(|(_, p)| p).collect();
    for p in pending {
        let err = RpcError::new(
            codes::UPSTREAM_UNAVAILABLE,
            format!("upstream `{}` failed: {why}", inner.config.name),
        );
        let _ = p.events.send(UpstreamEvent::Response(Err(err))).await;
    }
    lock(&inner.server_requests).clear();
}

/// Routes one inbound message to the call it belongs to.
async fn dispatch(inner: &Arc<Inner>, inbound: Inbound) {
    let Inbound { origin, message } = inbound;
    let parsed = match Message::from_value(message.clone()) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(upstream = %inner.config.name, error = %e, "ignoring a malformed message from the upstream");
            return;
        }
    };
    match parsed {
        Message::Response { id, outcome } => {
            let Id::Number(n) = id else { return };
            let pending = lock(&inner.pending).remove(&(n as u64));
            if let Some(p) = pending {
                let _ = p.events.send(UpstreamEvent::Response(outcome)).await;
            }
        }
        Message::Notification { method, params } => {
            // Progress: find the call by our token and restore the caller's.
            let token = params
                .as_ref()
                .and_then(|p| p.get("progressToken"))
                .and_then(Value::as_str)
                .and_then(|t| t.strip_prefix("bhv-"))
                .and_then(|t| t.parse::<u64>().ok());
            let target = token.or(if method == "notifications/progress" {
                None
            } else {
                origin
            });
            let routed = match target {
                Some(call) => {
                    let sender = lock(&inner.pending)
                        .get(&call)
                        .map(|p| (p.events.clone(), p.progress_token.clone()));
                    match sender {
                        Some((tx, original)) => {
                            let mut params = params.clone();
                            if let (Some(p), Some(orig)) = (params.as_mut(), original)
                                && let Some(obj) = p.as_object_mut()
                                && obj.contains_key("progressToken")
                            {
                                obj.insert("progressToken".into(), orig);
                            }
                            let note = Message::Notification {
                                method: method.clone(),
                                params,
                            };
                            let _ = tx.send(UpstreamEvent::Notification(note.to_value())).await;
                            true
                        }
                        None => false,
                    }
                }
                None => false,
            };
            if !routed && method != "notifications/progress" {
                let _ = inner.broadcasts.send(message);
            }
        }
        Message::Request { id, method, params } => {
            // Tie it to the call whose exchange carried it, else to the most
            // recent call in flight (stdio gives no better clue).
            let call = origin.or_else(|| lock(&inner.pending).keys().max().copied());
            let sender = call.and_then(|c| lock(&inner.pending).get(&c).map(|p| p.events.clone()));
            match sender {
                Some(tx) => {
                    let gateway_id =
                        format!("bhv-srv-{}", inner.next_id.fetch_add(1, Ordering::Relaxed));
                    lock(&inner.server_requests).insert(
                        gateway_id.clone(),
                        ServerRequest {
                            upstream_id: id.to_value(),
                        },
                    );
                    let forwarded = Message::Request {
                        id: Id::String(gateway_id),
                        method,
                        params,
                    };
                    let _ = tx
                        .send(UpstreamEvent::ServerRequest(forwarded.to_value()))
                        .await;
                }
                None => {
                    // Nobody to ask: answer so the server does not wait.
                    let link = lock(&inner.link).clone();
                    if let Some(link) = link {
                        let reply = Message::error(
                            id,
                            RpcError::new(
                                codes::METHOD_NOT_FOUND,
                                "no client is waiting for this request at the gateway",
                            ),
                        );
                        let _ = link.send(reply.to_value(), None).await;
                    }
                }
            }
        }
    }
}

async fn connect(inner: &Arc<Inner>, channels: LinkChannels) -> Result<Arc<dyn Link>, String> {
    match &inner.config.transport {
        Transport::Stdio {
            command,
            args,
            env,
            sandbox,
        } => Ok(Arc::new(stdio::StdioLink::spawn(
            &inner.config.name,
            command,
            args,
            env,
            sandbox,
            channels,
        )?)),
        Transport::StreamableHttp { url, headers } => Ok(Arc::new(http::HttpLink::new(
            url,
            headers,
            inner.config.request_timeout,
            &inner.config.outbound,
            channels,
        )?)),
        Transport::Sse { url, headers } => Ok(Arc::new(
            legacy_sse::SseLink::connect(
                url,
                headers,
                inner.config.connect_timeout,
                &inner.config.outbound,
                channels,
            )
            .await?,
        )),
    }
}

/// The initialize handshake, done by the gateway itself.
async fn initialize(
    inner: &Arc<Inner>,
    link: &Arc<dyn Link>,
    inbound: &mut mpsc::Receiver<Inbound>,
) -> Result<Value, String> {
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    let request = Message::Request {
        id: Id::Number(id as i64),
        method: "initialize".into(),
        params: Some(json!({
            "protocolVersion": LATEST_WITH_INITIALIZE,
            "capabilities": {},
            "clientInfo": {"name": "behavry", "version": env!("CARGO_PKG_VERSION")},
        })),
    };
    link.send(request.to_value(), Some(id)).await?;
    let result = loop {
        let Some(msg) = inbound.recv().await else {
            return Err("connection closed during initialize".into());
        };
        match Message::from_value(msg.message) {
            Ok(Message::Response {
                id: Id::Number(n),
                outcome,
            }) if n as u64 == id => {
                break outcome.map_err(|e| format!("initialize refused: {e}"))?;
            }
            _ => continue, // pre-initialize noise (logs, priming events)
        }
    };
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or(LATEST_WITH_INITIALIZE)
        .to_string();
    link.initialized(&version);
    link.send(
        Message::Notification {
            method: "notifications/initialized".into(),
            params: None,
        }
        .to_value(),
        None,
    )
    .await?;
    Ok(result)
}

async fn supervise(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let mut backoff = Duration::from_millis(500);
    loop {
        if *stop.borrow() {
            return;
        }
        inner.state.send_replace(UpstreamState::Connecting);
        let (in_tx, mut in_rx) = mpsc::channel::<Inbound>(256);
        let (closed_tx, mut closed_rx) = mpsc::channel::<String>(1);
        let attempt = async {
            let link = connect(
                &inner,
                LinkChannels {
                    inbound: in_tx,
                    closed: closed_tx,
                },
            )
            .await?;
            match tokio::time::timeout(
                inner.config.connect_timeout,
                initialize(&inner, &link, &mut in_rx),
            )
            .await
            {
                Ok(Ok(info)) => Ok((link, info)),
                Ok(Err(e)) => {
                    link.close().await;
                    Err(e)
                }
                Err(_) => {
                    link.close().await;
                    Err(format!(
                        "no initialize response within {:?}",
                        inner.config.connect_timeout
                    ))
                }
            }
        };
        let error = match attempt.await {
            Ok((link, info)) => {
                *lock(&inner.server_info) = Some(info);
                *lock(&inner.link) = Some(link);
                inner.state.send_replace(UpstreamState::Ready);
                tracing::info!(upstream = %inner.config.name, "upstream connected");
                backoff = Duration::from_millis(500);
                // Serve until the link dies or we are told to stop.
                let why = loop {
                    tokio::select! {
                        msg = in_rx.recv() => match msg {
                            Some(m) => dispatch(&inner, m).await,
                            None => break "connection closed".to_string(),
                        },
                        why = closed_rx.recv() => break why.unwrap_or_else(|| "connection closed".into()),
                        _ = stop.changed() => {
                            if *stop.borrow() { return; }
                        }
                    }
                };
                let link = lock(&inner.link).take();
                if let Some(link) = link {
                    link.close().await;
                }
                fail_pending(&inner, &why).await;
                why
            }
            Err(e) => e,
        };
        tracing::warn!(upstream = %inner.config.name, error = %error, retry_in = ?backoff, "upstream unavailable");
        inner.state.send_replace(UpstreamState::Failed {
            error,
            retry_in: backoff,
        });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => if *stop.borrow() { return; },
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Used by links to hand over a response that cannot be delivered (e.g.
/// the HTTP exchange failed): the call gets an error instead of hanging.
pub(crate) fn link_error_response(origin: u64, error: &str) -> Inbound {
    Inbound {
        origin: Some(origin),
        message: Message::error(
            Id::Number(origin as i64),
            RpcError::new(codes::UPSTREAM_UNAVAILABLE, error.to_string()),
        )
        .to_value(),
    }
}
