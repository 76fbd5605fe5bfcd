//! Alert webhooks: every new alert at or above `BEHAVRY_WEBHOOK_MIN_SEVERITY`
//! is POSTed as JSON to each `BEHAVRY_WEBHOOK_URL`, signed, retried with
//! backoff, and logged per tenant (`GET /api/v1/webhooks/deliveries`).
//!
//! The body carries a `timestamp` and a delivery `id`;
//! `X-Behavry-Signature: sha256=<hex>` is the HMAC-SHA256 of the exact body
//! with `BEHAVRY_WEBHOOK_SECRET`. A receiver recomputes it over the raw body,
//! compares in constant time, rejects timestamps older than a few minutes
//! and ids it has seen: a captured request cannot be replayed later or
//! altered. Only the replica that raised an alert sends it.

use std::sync::Arc;
use std::time::Duration;

use behavry_core::{AlertSeverity, Secret, TenantId};
use behavry_store::{Store, WebhookDelivery};
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::bus::{Bus, Kind};

/// Attempts per delivery, and the wait before each retry (doubling).
const ATTEMPTS: i32 = 6;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Webhooks {
    urls: Vec<String>,
    secret: Secret,
    min: AlertSeverity,
    client: reqwest::Client,
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhooks {
    /// Starts the sender when URLs are configured.
    pub fn start(settings: &behavry_core::config::Settings, store: Arc<dyn Store>, bus: &Bus) {
        let Some(secret) = settings.webhook_secret.clone() else {
            return;
        };
        if settings.webhook_urls.is_empty() {
            return;
        }
        let client = match behavry_mcp::outbound::client_builder()
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!("behavry/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhooks are configured but no HTTP client could be built; alerts are not sent");
                return;
            }
        };
        let hooks = Arc::new(Self {
            urls: settings.webhook_urls.clone(),
            secret,
            min: settings.webhook_min_severity,
            client,
        });
        let mut rx = bus.subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        if event.remote || event.kind != Kind::Alert || !hooks.wanted(&event.data) {
                            continue;
                        }
                        for url in &hooks.urls {
                            tokio::spawn(hooks.clone().deliver(
                                store.clone(),
                                event.tenant,
                                url.clone(),
                                event.data.clone(),
                            ));
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::error!(
                            missed = n,
                            "the webhook sender fell behind; some alerts were not sent"
                        );
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    /// New alerts (not repeats folded into one) at or above the minimum.
    fn wanted(&self, alert: &Value) -> bool {
        let severity = alert["severity"]
            .as_str()
            .and_then(|s| s.parse::<AlertSeverity>().ok());
        alert["occurrences"] == 1 && severity.is_some_and(|s| s >= self.min)
    }

    async fn deliver(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        tenant: TenantId,
        url: String,
        alert: Value,
    ) {
        let now = Utc::now();
        let mut log = WebhookDelivery {
            id: Uuid::now_v7(),
            alert_id: alert["id"].as_str().and_then(|s| s.parse().ok()),
            url: url.clone(),
            status: "pending".into(),
            attempts: 0,
            response_code: None,
            error: None,
            created_at: now,
            updated_at: now,
        };
        let mut wait = FIRST_RETRY;
        loop {
            log.attempts += 1;
            let body = json!({
                "type": "alert",
                "id": log.id,
                "attempt": log.attempts,
                "timestamp": Utc::now().timestamp(),
                "tenant_id": tenant,
                "alert": alert,
            })
            .to_string();
            let sent = self
                .client
                .post(&url)
                .header("content-type", "application/json")
                .header(
                    "x-behavry-signature",
                    signature(&self.secret, body.as_bytes()),
                )
                .header("x-behavry-delivery", log.id.to_string())
                .body(body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    log.status = "delivered".into();
                    log.response_code = Some(i32::from(r.status().as_u16()));
                    log.error = None;
                }
                Ok(r) => {
                    log.response_code = Some(i32::from(r.status().as_u16()));
                    log.error = Some(format!("HTTP {}", r.status().as_u16()));
                }
                Err(e) => {
                    log.response_code = None;
                    log.error = Some(describe(&e));
                }
            }
            let done = log.status == "delivered" || log.attempts >= ATTEMPTS;
            if done && log.status != "delivered" {
                log.status = "failed".into();
                tracing::error!(url = %url, alert = ?log.alert_id, error = ?log.error, "an alert webhook could not be delivered");
            }
            log.updated_at = Utc::now();
            if let Err(e) = store.tenant(tenant).record_webhook_delivery(&log).await {
                tracing::warn!(error = %e, "a webhook delivery could not be logged");
            }
            if done {
                return;
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
}

/// What went wrong, without the URL (which may carry a token).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        std::error::Error::source(e).map_or_else(|| "request failed".into(), |s| s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let s = signature(&Secret::new("Jefe"), b"what do ya want for nothing?");
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
