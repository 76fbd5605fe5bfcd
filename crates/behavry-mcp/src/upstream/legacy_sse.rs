//! Upstream over the legacy HTTP+SSE transport (protocol 2024-11-05): a GET
//! stream carries every server message; the first event names the URL to
//! POST client messages to.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::sync::{Mutex, oneshot};

use super::{Inbound, Link, LinkChannels};
use crate::sse::Decoder;

const MAX_EVENT: usize = 16 * 1024 * 1024;

pub(crate) struct SseLink {
    client: reqwest::Client,
    headers: HeaderMap,
    post_url: reqwest::Url,
    reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SseLink {
    pub(crate) async fn connect(
        url: &str,
        headers: &[(String, String)],
        timeout: Duration,
        outbound: &crate::outbound::AddressGuard,
        channels: LinkChannels,
    ) -> Result<Self, String> {
        let base =
            reqwest::Url::parse(url).map_err(|e| format!("invalid upstream URL `{url}`: {e}"))?;
        outbound.check_url(&base).map_err(|e| e.to_string())?;
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
            .build()
            .map_err(|e| e.to_string())?;
        let response = client
            .get(base.clone())
            .headers(map.clone())
            .header(ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| {
                format!(
                    "opening the event stream failed: {}",
                    crate::outbound::describe(&e)
                )
            })?;
        if !response.status().is_success() {
            return Err(format!(
                "opening the event stream failed: the server answered HTTP {}",
                response.status().as_u16()
            ));
        }
        let (endpoint_tx, endpoint_rx) = oneshot::channel::<String>();
        let LinkChannels { inbound, closed } = channels;
        let reader = tokio::spawn(async move {
            let mut endpoint_tx = Some(endpoint_tx);
            let mut decoder = Decoder::new(MAX_EVENT);
            let mut body = response.bytes_stream();
            let why = loop {
                match body.next().await {
                    None => break "the upstream closed its event stream".to_string(),
                    Some(Err(e)) => break format!("the upstream event stream broke: {e}"),
                    Some(Ok(chunk)) => match decoder.feed(&chunk) {
                        Err(e) => break e.to_string(),
                        Ok(events) => {
                            for ev in events {
                                match ev.event.as_deref() {
                                    Some("endpoint") => {
                                        if let Some(tx) = endpoint_tx.take() {
                                            let _ = tx.send(ev.data.trim().to_string());
                                        }
                                    }
                                    None | Some("message") => {
                                        if let Ok(message) = serde_json::from_str::<Value>(&ev.data)
                                        {
                                            let _ = inbound
                                                .send(Inbound {
                                                    origin: None,
                                                    message,
                                                })
                                                .await;
                                        }
                                    }
                                    Some(_) => {}
                                }
                            }
                        }
                    },
                }
            };
            let _ = closed.send(why).await;
        });
        let endpoint = tokio::time::timeout(timeout, endpoint_rx)
            .await
            .map_err(|_| "the upstream sent no `endpoint` event".to_string())?
            .map_err(|_| {
                "the upstream event stream ended before the `endpoint` event".to_string()
            })?;
        let post_url = base
            .join(&endpoint)
            .map_err(|_| "the upstream's `endpoint` event is not a URL".to_string())?;
        if post_url.origin() != base.origin() {
            reader.abort();
            return Err(
                "the upstream's `endpoint` event names another origin; refusing".to_string(),
            );
        }
        Ok(Self {
            client,
            headers: map,
            post_url,
            reader: Mutex::new(Some(reader)),
        })
    }
}

#[async_trait::async_trait]
impl Link for SseLink {
    async fn send(&self, message: Value, _origin: Option<u64>) -> Result<(), String> {
        let response = self
            .client
            .post(self.post_url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&message).map_err(|e| e.to_string())?)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| crate::outbound::describe(&e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "the server answered HTTP {}",
                response.status().as_u16()
            ))
        }
    }

    async fn close(&self) {
        if let Some(r) = self.reader.lock().await.take() {
            r.abort();
        }
    }
}
