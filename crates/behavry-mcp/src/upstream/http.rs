//! Upstream over Streamable HTTP: one POST per message; answers come back as
//! JSON or as an SSE stream on the same exchange.

use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::{Inbound, Link, LinkChannels, link_error_response};
use crate::protocol::{HEADER_PROTOCOL_VERSION, HEADER_SESSION_ID};
use crate::sse::Decoder;

const MAX_EVENT: usize = 16 * 1024 * 1024;
/// How much of an error answer is read to find a JSON-RPC error in it.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// At most `cap` bytes of a response body.
async fn read_capped(response: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk[..chunk.len().min(cap - body.len())]);
        if body.len() >= cap {
            break;
        }
    }
    body
}

/// The JSON-RPC error an error answer carries, its message cut short.
fn rpc_error_of(body: &[u8]) -> Option<crate::jsonrpc::RpcError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let code = error.get("code")?.as_i64()?;
    let message: String = error.get("message")?.as_str()?.chars().take(300).collect();
    Some(crate::jsonrpc::RpcError::new(code, message))
}

pub(crate) struct HttpLink {
    url: reqwest::Url,
    client: reqwest::Client,
    headers: HeaderMap,
    session: Mutex<Option<String>>,
    protocol_version: Mutex<Option<String>>,
    channels: LinkChannels,
}

impl HttpLink {
    pub(crate) fn new(
        url: &str,
        headers: &[(String, String)],
        timeout: Duration,
        outbound: &crate::outbound::AddressGuard,
        channels: LinkChannels,
    ) -> Result<Self, String> {
        let url =
            reqwest::Url::parse(url).map_err(|e| format!("invalid upstream URL `{url}`: {e}"))?;
        outbound.check_url(&url).map_err(|e| e.to_string())?;
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("invalid header name `{k}`"))?;
            let value =
                HeaderValue::from_str(v).map_err(|_| format!("invalid value for header `{k}`"))?;
            map.insert(name, value);
        }
        let client = outbound
            .client_builder()
            .connect_timeout(Duration::from_secs(10))
            // Streams may legitimately stay open as long as a call runs.
            .read_timeout(timeout + Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            url,
            client,
            headers: map,
            session: Mutex::new(None),
            protocol_version: Mutex::new(None),
            channels,
        })
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl Link for HttpLink {
    async fn send(&self, message: Value, origin: Option<u64>) -> Result<(), String> {
        self.post(message, origin, false).await.map(|_| ())
    }

    async fn exchange(
        &self,
        message: Value,
        origin: u64,
    ) -> Result<Option<(Value, usize)>, String> {
        self.post(message, Some(origin), true).await
    }

    fn initialized(&self, protocol_version: &str) {
        *Self::lock(&self.protocol_version) = Some(protocol_version.to_string());
    }

    async fn close(&self) {
        let session = Self::lock(&self.session).take();
        if let Some(s) = session {
            let _ = self
                .client
                .delete(self.url.clone())
                .headers(self.headers.clone())
                .header(HEADER_SESSION_ID, s)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
        }
    }
}

impl HttpLink {
    /// One POST. With `direct`, a JSON answer that is exactly the response
    /// to `origin` is returned rather than routed.
    async fn post(
        &self,
        message: Value,
        origin: Option<u64>,
        direct: bool,
    ) -> Result<Option<(Value, usize)>, String> {
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&message).map_err(|e| e.to_string())?);
        if let Some(s) = Self::lock(&self.session).clone() {
            req = req.header(HEADER_SESSION_ID, s);
        }
        if let Some(v) = Self::lock(&self.protocol_version).clone() {
            req = req.header(HEADER_PROTOCOL_VERSION, v);
        }
        let response = req
            .send()
            .await
            .map_err(|e| crate::outbound::describe(&e))?;
        let status = response.status();
        if let Some(sid) = response
            .headers()
            .get(HEADER_SESSION_ID)
            .and_then(|v| v.to_str().ok())
        {
            Self::lock(&self.session).get_or_insert_with(|| sid.to_string());
        }
        if status.as_u16() == 202 {
            return Ok(None);
        }
        // Only 404 means the upstream forgot our session (the
        // specification's signal). Any other error status answers this one
        // message: it is that message's error, never a reason to drop a
        // connection other agents' calls share.
        let session_lost = Self::lock(&self.session).is_some() && status.as_u16() == 404;
        if !status.is_success() {
            let detail = format!("the server answered HTTP {}", status.as_u16());
            if session_lost {
                let _ = self
                    .channels
                    .closed
                    .try_send(format!("upstream session lost ({detail})"));
                return Err(detail);
            }
            // A JSON-RPC error in the body is the upstream's answer to this
            // message; anything else is described by its status alone.
            if direct && let Some(origin) = origin {
                let body = read_capped(response, MAX_ERROR_BODY).await;
                if let Some(error) = rpc_error_of(&body) {
                    let answer = crate::jsonrpc::Message::error(
                        crate::jsonrpc::Id::Number(origin as i64),
                        error,
                    )
                    .to_value();
                    return Ok(Some((answer, body.len())));
                }
            }
            return Err(detail);
        }
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        let inbound = self.channels.inbound.clone();
        if is_sse {
            // Read the stream in the background: the call's messages arrive
            // over time, and the sender must not wait for the whole body.
            tokio::spawn(async move {
                let mut decoder = Decoder::new(MAX_EVENT);
                let mut body = response.bytes_stream();
                let mut answered = false;
                while let Some(chunk) = body.next().await {
                    let chunk = match chunk {
                        Ok(c) => c,
                        Err(e) => {
                            if let (Some(o), false) = (origin, answered) {
                                let _ = inbound
                                    .send(link_error_response(
                                        o,
                                        &format!("upstream stream broke: {e}"),
                                    ))
                                    .await;
                            }
                            return;
                        }
                    };
                    let events = match decoder.feed(&chunk) {
                        Ok(ev) => ev,
                        Err(e) => {
                            if let Some(o) = origin {
                                let _ = inbound.send(link_error_response(o, &e.to_string())).await;
                            }
                            return;
                        }
                    };
                    for ev in events {
                        if ev.data.trim().is_empty() {
                            continue; // priming event
                        }
                        if let Ok(message) = serde_json::from_str::<Value>(&ev.data) {
                            if message.get("id").and_then(Value::as_u64) == origin
                                && message.get("method").is_none()
                            {
                                answered = true;
                            }
                            let _ = inbound.send(Inbound { origin, message }).await;
                        }
                    }
                }
                if let (Some(o), false) = (origin, answered) {
                    let _ = inbound
                        .send(link_error_response(
                            o,
                            "upstream closed the stream without a response",
                        ))
                        .await;
                }
            });
            return Ok(None);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading the upstream response failed: {e}"))?;
        if bytes.is_empty() {
            return Ok(None);
        }
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("upstream sent invalid JSON: {e}"))?;
        if direct && is_response_to(&value, origin) {
            return Ok(Some((value, bytes.len())));
        }
        let messages = match value {
            Value::Array(items) => items,
            one => vec![one],
        };
        for message in messages {
            let _ = inbound.send(Inbound { origin, message }).await;
        }
        Ok(None)
    }
}

/// A single response (not a batch, not a request) with our id.
fn is_response_to(value: &Value, origin: Option<u64>) -> bool {
    origin.is_some()
        && value.get("method").is_none()
        && value.get("id").and_then(Value::as_u64) == origin
}
