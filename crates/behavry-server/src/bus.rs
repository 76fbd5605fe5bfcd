//! The event bus: audit events, alerts, escalation changes and
//! configuration changes, published once and seen by every consumer on
//! every replica.
//!
//! On one node it is an in-process broadcast. When the store offers an
//! event channel (PostgreSQL LISTEN/NOTIFY), every event published here is
//! also sent there by a publisher task (off the request path), and a
//! listener task delivers the other replicas' events here. Consumers (the
//! admin event streams, cache invalidation, held calls) subscribe to the
//! local broadcast. A replica keeps its last [`RECENT`] events so a stream
//! can resume after a reconnect (`Last-Event-ID`).
//!
//! Polling stays in place underneath (policy revisions, agent caches, held
//! calls re-reading their escalation), so an event lost while the channel
//! reconnects delays a change by at most the polling interval.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use behavry_core::TenantId;
use behavry_store::EventChannel;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

/// Events a replica keeps for resuming streams.
pub const RECENT: usize = 4096;

/// Events waiting for a slow consumer before it is told it lagged.
const BROADCAST_CAPACITY: usize = 8192;

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Audit,
    Alert,
    Escalation,
    Config,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audit => "audit",
            Kind::Alert => "alert",
            Kind::Escalation => "escalation",
            Kind::Config => "config",
        }
    }
}

/// One event.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// This replica's position for it, for `Last-Event-ID`; assigned on
    /// arrival.
    #[serde(skip)]
    pub seq: u64,
    /// Whether it came from another replica (this replica already acted
    /// on its own events where they were published).
    #[serde(skip)]
    pub remote: bool,
    pub tenant: TenantId,
    pub kind: Kind,
    /// A finer name: the audit action, the alert type, the escalation's
    /// new status, or what configuration changed (`agent`, `tenant`,
    /// `policies`, `settings`).
    pub name: String,
    pub data: Value,
    pub at: DateTime<Utc>,
    /// The event as an SSE frame, made once however many streams send it.
    #[serde(skip)]
    pub sse: std::sync::OnceLock<String>,
}

impl Event {
    pub fn new(tenant: TenantId, kind: Kind, name: impl Into<String>, data: Value) -> Self {
        Self {
            seq: 0,
            remote: false,
            tenant,
            kind,
            name: name.into(),
            data,
            at: Utc::now(),
            sse: std::sync::OnceLock::new(),
        }
    }
}

/// What travels between replicas.
#[derive(Serialize, Deserialize)]
struct Wire {
    origin: Uuid,
    event: Event,
}

pub struct Bus {
    /// Names this replica on the channel, so it skips its own events.
    replica: Uuid,
    tx: broadcast::Sender<Arc<Event>>,
    recent: Mutex<VecDeque<Arc<Event>>>,
    next: AtomicU64,
    outbound: Option<mpsc::Sender<String>>,
    channel: Option<Arc<dyn EventChannel>>,
    /// Whether the listener is subscribed (always true on a single node).
    connected: AtomicBool,
    /// Events that could not be sent to other replicas.
    dropped: AtomicU64,
}

impl Bus {
    /// Starts the publisher and listener tasks when there is a channel.
    /// Must be called inside a Tokio runtime.
    pub fn start(channel: Option<Arc<dyn EventChannel>>) -> Arc<Self> {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (outbound, out_rx) = match channel {
            Some(_) => {
                let (otx, orx) = mpsc::channel::<String>(BROADCAST_CAPACITY);
                (Some(otx), Some(orx))
            }
            None => (None, None),
        };
        let bus = Arc::new(Self {
            replica: Uuid::new_v4(),
            tx,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            next: AtomicU64::new(1),
            outbound,
            connected: AtomicBool::new(channel.is_none()),
            channel: channel.clone(),
            dropped: AtomicU64::new(0),
        });
        if let (Some(channel), Some(out_rx)) = (channel, out_rx) {
            tokio::spawn(publish_loop(channel.clone(), out_rx));
            tokio::spawn(listen_loop(Arc::downgrade(&bus), channel));
        }
        bus
    }

    /// Publishes an event here and to the other replicas.
    pub fn publish(&self, event: Event) {
        if let Some(out) = &self.outbound {
            let max = self
                .channel
                .as_ref()
                .map_or(usize::MAX, |c| c.max_payload());
            let wire = encode(self.replica, &event, max);
            if out.try_send(wire).is_err() {
                // The channel is far behind; local consumers still get it.
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.deliver(event);
    }

    /// Hands an event to this replica's consumers.
    fn deliver(&self, mut event: Event) {
        event.seq = self.next.fetch_add(1, Ordering::Relaxed);
        let event = Arc::new(event);
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        // No subscriber is not an error.
        let _ = self.tx.send(event);
    }

    /// This replica's name on the channel (changes with every start).
    pub fn replica(&self) -> Uuid {
        self.replica
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// The events after `seq` still kept here, oldest first; `None` when
    /// some of them are no longer kept (or `seq` is not from this replica's
    /// current run).
    pub fn since(&self, seq: u64) -> Option<Vec<Arc<Event>>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let newest = self.next.load(Ordering::Relaxed).saturating_sub(1);
        if seq > newest {
            return None;
        }
        let oldest = recent.front().map_or(newest + 1, |e| e.seq);
        if seq + 1 < oldest {
            return None;
        }
        Some(recent.iter().filter(|e| e.seq > seq).cloned().collect())
    }

    /// Waits (at most `limit`) until events from other replicas are being
    /// received, so a replica does not take traffic deaf to them.
    pub async fn wait_listening(&self, limit: Duration) -> bool {
        let start = tokio::time::Instant::now();
        while !self.connected.load(Ordering::Relaxed) {
            if start.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// For `/health/ready`: whether events reach the other replicas.
    pub fn health(&self) -> (bool, String) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        match &self.channel {
            None => (true, "in-process (single node)".into()),
            Some(_) if self.connected.load(Ordering::Relaxed) => (
                true,
                format!("PostgreSQL LISTEN/NOTIFY, listening; {dropped} events not sent"),
            ),
            Some(_) => (
                false,
                "PostgreSQL LISTEN/NOTIFY, not listening (reconnecting)".into(),
            ),
        }
    }
}

/// The wire form of an event, cut to what the channel carries: an event
/// too large loses its data but keeps its identity (`truncated`), and
/// receivers read the rest through the API.
fn encode(origin: Uuid, event: &Event, max: usize) -> String {
    let full = serde_json::to_string(&Wire {
        origin,
        event: event.clone(),
    })
    .unwrap_or_default();
    if full.len() <= max {
        return full;
    }
    let keep = [
        "id",
        "action",
        "agent_id",
        "tool_name",
        "mcp_server",
        "policy_result",
        "status",
        "alert_type",
        "severity",
    ];
    let mut data = serde_json::Map::new();
    if let Value::Object(obj) = &event.data {
        for k in keep {
            if let Some(v) = obj.get(k)
                && v.to_string().len() < 200
            {
                data.insert(k.to_string(), v.clone());
            }
        }
    }
    data.insert("truncated".into(), json!(true));
    let mut small = event.clone();
    small.data = Value::Object(data);
    serde_json::to_string(&Wire {
        origin,
        event: small,
    })
    .unwrap_or_default()
}

async fn publish_loop(channel: Arc<dyn EventChannel>, mut rx: mpsc::Receiver<String>) {
    while let Some(payload) = rx.recv().await {
        if let Err(e) = channel.publish(&payload).await {
            tracing::warn!(error = %e, "an event could not be sent to the other replicas");
        }
    }
}

async fn listen_loop(bus: std::sync::Weak<Bus>, channel: Arc<dyn EventChannel>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut sub = match channel.subscribe().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other replicas' events; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                if bus.strong_count() == 0 {
                    return;
                }
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        let Some(b) = bus.upgrade() else { return };
        b.connected.store(true, Ordering::Relaxed);
        drop(b);
        loop {
            let payload = match sub.next().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "the event channel was interrupted");
                    if let Some(b) = bus.upgrade() {
                        b.connected.store(false, Ordering::Relaxed);
                    }
                    break;
                }
            };
            let Some(b) = bus.upgrade() else { return };
            match serde_json::from_str::<Wire>(&payload) {
                Ok(w) if w.origin == b.replica => {}
                Ok(mut w) => {
                    w.event.remote = true;
                    b.deliver(w.event);
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed event from the channel"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_are_numbered_kept_and_resumable() {
        let bus = Bus::start(None);
        let mut rx = bus.subscribe();
        let t = TenantId::new();
        for i in 0..3 {
            bus.publish(Event::new(t, Kind::Audit, "TOOL_CALL", json!({"n": i})));
        }
        let first = rx.recv().await.unwrap();
        assert_eq!((first.seq, first.data["n"].clone()), (1, json!(0)));
        let after_one: Vec<u64> = bus.since(1).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(after_one, vec![2, 3]);
        assert!(bus.since(3).unwrap().is_empty());
        assert!(bus.since(99).is_none(), "not from this run");
        assert!(bus.health().0);
    }

    #[test]
    fn oversized_events_keep_their_identity() {
        let t = TenantId::new();
        let big = Event::new(
            t,
            Kind::Audit,
            "TOOL_RESULT",
            json!({"id": "e-1", "action": "TOOL_RESULT", "extra": "x".repeat(20_000)}),
        );
        let wire = encode(Uuid::new_v4(), &big, 7900);
        assert!(wire.len() <= 7900, "{}", wire.len());
        let back: Wire = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.event.data["id"], "e-1");
        assert_eq!(back.event.data["truncated"], true);
        assert!(back.event.data.get("extra").is_none());
        let small = Event::new(t, Kind::Alert, "dlp_violation", json!({"id": "a"}));
        let back: Wire = serde_json::from_str(&encode(Uuid::new_v4(), &small, 7900)).unwrap();
        assert_eq!(back.event.data, json!({"id": "a"}));
    }
}
