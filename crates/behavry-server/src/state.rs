//! Shared application state handed to every handler.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use behavry_core::config::Settings;
use behavry_store::Store;
use tokio::sync::watch;

use crate::audit_writer::AuditWriter;
use crate::auth::keys::JwtKeys;
use crate::error::ApiError;
use crate::mcp::gate::Gate;
use crate::mcp::legacy_sse::LegacySessions;
use crate::mcp::registry::UpstreamRegistry;
use crate::mcp::sessions::Sessions;
use crate::metrics::Metrics;
use crate::ratelimit::SlidingWindow;
use crate::secrets::SecretCipher;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub keys: Arc<JwtKeys>,
    pub policy: Arc<crate::policy::Policies>,
    pub audit: AuditWriter,
    /// Audit events, alerts, escalation and configuration changes, across
    /// replicas.
    pub bus: Arc<crate::bus::Bus>,
    /// Stores raised alerts, off the request path.
    pub alerts: crate::alerts::Alerts,
    /// Calls held on this replica for an escalation decision.
    pub waiters: Arc<crate::escalations::Waiters>,
    pub cipher: Arc<SecretCipher>,
    /// Seals and opens payloads kept under `encrypted` storage.
    pub vault: Arc<crate::payloads::PayloadVault>,
    pub upstreams: Arc<UpstreamRegistry>,
    pub gate: Arc<Gate>,
    pub sessions: Arc<Sessions>,
    /// Legacy HTTP+SSE sessions whose event streams this replica holds.
    pub legacy_sse: Arc<LegacySessions>,
    /// Set when the server shuts down: long-lived event streams end, so
    /// the graceful shutdown is not held up by them.
    pub closing: Arc<watch::Sender<bool>>,
    pub verified_tokens: Arc<crate::auth::VerifiedTokens>,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<Limits>,
    /// A bcrypt hash of a random password at the configured cost, verified
    /// against when a login names an unknown user so that the response
    /// takes as long as for a known one.
    pub dummy_hash: Arc<String>,
    pub started: Instant,
    /// Data-protection scanners: the built-in detectors plus each tenant's
    /// patterns; fingerprints keyed from SECRET_KEY.
    pub scanners: Arc<crate::scanners::Scanners>,
    /// Findings in arguments at or above this block the call.
    pub dlp_block: behavry_dlp::Severity,
    /// Per-agent blast-radius windows on this replica.
    pub windows: Arc<crate::mcp::blast::Windows>,
    /// The injection scanner for tool output and tool definitions.
    pub injection: Arc<behavry_dlp::InjectionScanner>,
    /// Tool output with injection findings at or above this is withheld.
    pub inbound_block: behavry_dlp::Severity,
}

/// Abuse limits on unauthenticated endpoints.
pub struct Limits {
    /// Self-service signups per client address.
    pub signup: SlidingWindow,
    /// Login attempts per client address.
    pub login_ip: SlidingWindow,
    /// Failed logins per username.
    pub login_user: SlidingWindow,
    /// Agent token requests and enrollments per client address.
    pub token_ip: SlidingWindow,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            signup: SlidingWindow::new(5, Duration::from_secs(3600)),
            login_ip: SlidingWindow::new(30, Duration::from_secs(300)),
            login_user: SlidingWindow::new(10, Duration::from_secs(900)),
            token_ip: SlidingWindow::new(600, Duration::from_secs(60)),
        }
    }
}

impl AppState {
    /// Must be called inside a Tokio runtime (it starts the audit writer).
    pub fn new(
        settings: Settings,
        store: Arc<dyn Store>,
        keys: JwtKeys,
        policy: crate::policy::Policies,
        secret_key: &behavry_core::Secret,
        upstreams: UpstreamRegistry,
    ) -> Result<Self, ApiError> {
        let dlp_block = settings
            .dlp_block_severity
            .parse::<behavry_dlp::Severity>()
            .map_err(ApiError::internal)?;
        let inbound_block = settings
            .inbound_block_severity
            .parse::<behavry_dlp::Severity>()
            .map_err(ApiError::internal)?;
        let scanners = crate::scanners::Scanners::new(&behavry_dlp::fingerprint_key(
            secret_key.expose().as_bytes(),
        ));
        let vault = Arc::new(crate::payloads::PayloadVault::new(
            settings.payload_master_key.as_ref(),
            secret_key,
        ));
        let bus = crate::bus::Bus::start(store.event_channel());
        crate::webhooks::Webhooks::start(&settings, store.clone(), &bus);
        let dummy = uuid::Uuid::new_v4().to_string();
        let dummy_hash = crate::auth::password::hash(&dummy, settings.bcrypt_cost)
            .map_err(ApiError::internal)?;
        Ok(Self {
            settings: Arc::new(settings),
            audit: AuditWriter::start(store.clone(), bus.clone()),
            alerts: crate::alerts::Alerts::start(store.clone(), bus.clone()),
            bus,
            waiters: Arc::new(crate::escalations::Waiters::default()),
            store,
            keys: Arc::new(keys),
            policy: Arc::new(policy),
            cipher: Arc::new(SecretCipher::new(secret_key)),
            vault,
            upstreams: Arc::new(upstreams),
            gate: Arc::new(Gate::default()),
            sessions: Arc::new(Sessions::default()),
            legacy_sse: Arc::new(LegacySessions::default()),
            closing: Arc::new(watch::channel(false).0),
            verified_tokens: Arc::new(crate::auth::VerifiedTokens::default()),
            metrics: Arc::new(Metrics::default()),
            limits: Arc::new(Limits::default()),
            dummy_hash: Arc::new(dummy_hash),
            started: Instant::now(),
            scanners: Arc::new(scanners),
            dlp_block,
            injection: Arc::new(behavry_dlp::InjectionScanner::new()),
            windows: Arc::new(crate::mcp::blast::Windows::default()),
            inbound_block,
        })
    }
}

/// The client's address: the TCP peer, or — only when
/// BEHAVRY_TRUST_FORWARDED_FOR is set, i.e. behind a trusted proxy — the
/// last hop of `X-Forwarded-For` (the one that proxy appended).
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    pub fn key(&self) -> String {
        self.0
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "unknown".into())
    }
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.settings.trust_forwarded_for
            && let Some(ip) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return Ok(ClientIp(Some(ip)));
        }
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

impl AppState {
    /// An agent changed (status, freeze, credentials): drop it from this
    /// replica's cache and tell the others.
    pub fn changed_agent(&self, tenant: behavry_core::TenantId, agent: behavry_core::AgentId) {
        self.gate.invalidate_agent(agent);
        self.bus.publish(crate::bus::Event::new(
            tenant,
            crate::bus::Kind::Config,
            "agent",
            serde_json::json!({"agent_id": agent}),
        ));
    }

    /// A tenant's settings or status changed (`what`: `tenant`,
    /// `data_protection`, `blast_radius`, `policies`): drop it from this
    /// replica's cache and tell the others.
    pub fn changed_tenant(&self, tenant: behavry_core::TenantId, what: &str) {
        self.gate.invalidate_tenant(tenant);
        self.bus.publish(crate::bus::Event::new(
            tenant,
            crate::bus::Kind::Config,
            what,
            serde_json::json!({}),
        ));
    }
}
