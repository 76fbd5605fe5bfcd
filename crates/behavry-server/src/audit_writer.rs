//! The audit writer: one task that appends events in batches.
//!
//! Callers that must not proceed before their event is durable (an allowed
//! call is forwarded only after its decision is recorded) await the
//! acknowledgement; many such callers share one transaction per tenant
//! (group commit), so durability costs one commit per batch, not per call.
//! If the store cannot write, the acknowledgement is an error and the call
//! is refused: the gateway fails closed rather than act unrecorded.

use std::collections::HashMap;
use std::sync::Arc;

use behavry_core::TenantId;
use behavry_store::{NewAuditEvent, Store};
use tokio::sync::{mpsc, oneshot};

use crate::bus::{Bus, Event, Kind};

const MAX_BATCH: usize = 512;

struct Job {
    tenant: TenantId,
    event: NewAuditEvent,
    ack: Option<oneshot::Sender<Result<(), String>>>,
}

#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Job>,
}

#[derive(Debug, thiserror::Error)]
#[error("the audit trail cannot record events: {0}")]
pub struct AuditUnavailable(pub String);

impl AuditWriter {
    /// Committed events are published on `bus`.
    pub fn start(store: Arc<dyn Store>, bus: Arc<Bus>) -> Self {
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(run(store, bus, rx));
        Self { tx }
    }

    /// Appends an event and waits until it is committed.
    pub async fn record(
        &self,
        tenant: TenantId,
        event: NewAuditEvent,
    ) -> Result<(), AuditUnavailable> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job {
                tenant,
                event,
                ack: Some(ack),
            })
            .await
            .map_err(|_| AuditUnavailable("the writer has stopped".into()))?;
        done.await
            .map_err(|_| AuditUnavailable("the writer has stopped".into()))?
            .map_err(AuditUnavailable)
    }

    /// Appends an event without waiting (outcomes of calls already made).
    pub fn record_later(&self, tenant: TenantId, event: NewAuditEvent) {
        let job = Job {
            tenant,
            event,
            ack: None,
        };
        if let Err(e) = self.tx.try_send(job) {
            // Full queue: hand it to a task rather than drop it.
            let tx = self.tx.clone();
            let job = e.into_inner();
            tokio::spawn(async move {
                let _ = tx.send(job).await;
            });
        }
    }
}

async fn run(store: Arc<dyn Store>, bus: Arc<Bus>, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Keep each tenant's events in arrival order.
        let mut by_tenant: HashMap<TenantId, Vec<Job>> = HashMap::new();
        for job in batch.drain(..) {
            by_tenant.entry(job.tenant).or_default().push(job);
        }
        for (tenant, jobs) in by_tenant {
            let (events, acks): (Vec<NewAuditEvent>, Vec<_>) =
                jobs.into_iter().map(|j| (j.event, j.ack)).unzip();
            let stored = store.tenant(tenant).append_audit_events(&events).await;
            let result = match stored {
                Ok(stored) => {
                    for event in stored {
                        publish(&bus, tenant, event);
                    }
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(tenant = %tenant, events = events.len(), error = %e, "audit append failed");
                    Err(e.to_string())
                }
            };
            for ack in acks.into_iter().flatten() {
                let _ = ack.send(result.clone());
            }
        }
    }
}

/// Publishes a committed event. Payloads kept with it (`extra.payload`)
/// stay in the audit trail: streams and other replicas get the record
/// without them.
fn publish(bus: &Bus, tenant: TenantId, event: behavry_store::audit::AuditEvent) {
    let action = event.action.clone();
    let mut data = serde_json::to_value(event).unwrap_or_default();
    if let Some(extra) = data
        .get_mut("extra")
        .and_then(serde_json::Value::as_object_mut)
    {
        extra.remove("payload");
    }
    bus.publish(Event::new(tenant, Kind::Audit, action, data));
}
