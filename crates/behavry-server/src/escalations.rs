//! Escalations: calls held open until a person approves or denies them.
//!
//! An escalated call gets a row in `escalations` (pending) and is held: the
//! request stays open (SSE keep-alives, and progress notifications when the
//! client asked for them) while this replica waits for the decision. A
//! decision made on this replica wakes the held call at once; one made on
//! another replica is seen by polling the row. When the hold outlives
//! `BEHAVRY_ESCALATION_HOLD_SECONDS`, the agent gets -32041 with the
//! escalation id, and the same call made again (same agent, server, tool and
//! arguments) waits on, or picks up, that escalation instead of opening a
//! new one. Each decision is used by one call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use behavry_core::{AdminUserId, EscalationStatus, TenantId};
use behavry_store::{EscalationDecision, EscalationRecord, NewAuditEvent, StoreError};
use chrono::Utc;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use uuid::Uuid;

use crate::state::AppState;

/// How often a held call re-reads its escalation, to see decisions made on
/// other replicas.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// The held calls of this replica, by escalation id.
pub struct Waiters {
    waiting: Mutex<HashMap<Uuid, watch::Sender<Option<EscalationStatus>>>>,
    /// Whether the last pass timing out expired escalations succeeded.
    sweep_ok: std::sync::atomic::AtomicBool,
}

impl Default for Waiters {
    fn default() -> Self {
        Self {
            waiting: Mutex::default(),
            sweep_ok: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

impl Waiters {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Uuid, watch::Sender<Option<EscalationStatus>>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self, id: Uuid) -> watch::Receiver<Option<EscalationStatus>> {
        self.lock()
            .entry(id)
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Wakes the calls held on `id` with its decision.
    pub fn notify(&self, id: Uuid, status: EscalationStatus) {
        if let Some(tx) = self.lock().get(&id) {
            tx.send_replace(Some(status));
        }
    }

    /// Forgets `id` once no call waits on it any more.
    pub fn release(&self, id: Uuid) {
        let mut waiting = self.lock();
        if waiting.get(&id).is_some_and(|tx| tx.receiver_count() == 0) {
            waiting.remove(&id);
        }
    }

    /// How many escalations have calls held on this replica.
    pub fn held(&self) -> usize {
        self.lock().len()
    }

    /// Whether the queue is being kept: the last expiry pass succeeded.
    pub fn healthy(&self) -> bool {
        self.sweep_ok.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Identifies one call for retries: the same agent calling the same tool of
/// the same server with the same arguments.
pub fn call_key(
    agent: behavry_core::AgentId,
    server: Uuid,
    tool: &str,
    input_hash: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        agent.to_string().as_bytes(),
        server.as_bytes().as_slice(),
        tool.as_bytes(),
        input_hash.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// How a wait ended.
pub enum Waited {
    /// Decided (approved, denied, or timed out).
    Decided(EscalationRecord),
    /// Still pending when the hold ended.
    StillPending(EscalationRecord),
    /// The client went away.
    Gone,
}

/// Holds until the escalation is decided, `until` passes, or `gone`
/// resolves. Reads the row on every wake-up, so the answer is the stored
/// one whichever replica decided. A pending escalation whose time ran out
/// is timed out here.
pub async fn wait(
    state: &AppState,
    tenant: TenantId,
    id: Uuid,
    until: tokio::time::Instant,
    gone: impl std::future::Future<Output = ()>,
    mut tick: impl FnMut(),
) -> Result<Waited, StoreError> {
    let mut rx = state.waiters.subscribe(id);
    tokio::pin!(gone);
    let store = state.store.tenant(tenant);
    let outcome = loop {
        let record = match store.get_escalation(id).await {
            Ok(r) => r,
            Err(e) => break Err(e),
        };
        if record.status.is_final() {
            break Ok(Waited::Decided(record));
        }
        if record.expires_at <= Utc::now() {
            break time_out(state, tenant, record).await.map(Waited::Decided);
        }
        if tokio::time::Instant::now() >= until {
            break Ok(Waited::StillPending(record));
        }
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep(POLL_EVERY) => tick(),
            _ = tokio::time::sleep_until(until) => {}
            _ = &mut gone => break Ok(Waited::Gone),
        }
    };
    drop(rx);
    state.waiters.release(id);
    outcome
}

/// Records a decision (or a time-out) and wakes the calls held on it here.
/// The audit event is durable before anyone is released. `None` when the
/// escalation was no longer pending.
pub async fn decide(
    state: &AppState,
    tenant: TenantId,
    id: Uuid,
    decision: EscalationDecision,
    extra: Value,
) -> Result<Option<EscalationRecord>, StoreError> {
    let store = state.store.tenant(tenant);
    let Some(record) = store.decide_escalation(id, &decision).await? else {
        return Ok(None);
    };
    let action = match decision.status {
        EscalationStatus::Approved => "ESCALATION_APPROVED",
        EscalationStatus::Denied => "ESCALATION_DENIED",
        _ => "ESCALATION_TIMED_OUT",
    };
    let mut event_extra = json!({
        "escalation_id": id,
        "audit_event_id": record.audit_event_id,
        "reason": decision.reason,
    });
    if let (Value::Object(into), Value::Object(more)) = (&mut event_extra, extra) {
        into.extend(more);
    }
    let event = NewAuditEvent {
        id: Uuid::now_v7(),
        timestamp: decision.at,
        agent_id: record.agent_id,
        action: action.into(),
        target: Some(id.to_string()),
        tool_name: record.summary["tool"].as_str().map(str::to_string),
        mcp_server: record.summary["server"]["name"]
            .as_str()
            .map(str::to_string),
        policy_result: Some(
            if decision.status == EscalationStatus::Approved {
                "allow"
            } else {
                "deny"
            }
            .into(),
        ),
        policy_id: Some("escalation".into()),
        policy_reason: decision.reason.clone(),
        dlp_findings: json!([]),
        extra: event_extra,
        requester_id: decision.by.map(|b: AdminUserId| b.to_string()),
        ..NewAuditEvent::default()
    };
    if let Err(e) = state.audit.record(tenant, event).await {
        // The decision stands (it is stored); the trail says so as soon as
        // it can write again, through the writer's own retry.
        tracing::error!(escalation = %id, error = %e, "an escalation decision could not be audited");
    }
    state.waiters.notify(id, record.status);
    publish(state, tenant, &record);
    Ok(Some(record))
}

/// Tells every replica (its held calls, its admins' streams) where an
/// escalation stands.
pub fn publish(state: &AppState, tenant: TenantId, record: &EscalationRecord) {
    state.bus.publish(crate::bus::Event::new(
        tenant,
        crate::bus::Kind::Escalation,
        record.status.as_str(),
        serde_json::to_value(record).unwrap_or_default(),
    ));
}

async fn time_out(
    state: &AppState,
    tenant: TenantId,
    record: EscalationRecord,
) -> Result<EscalationRecord, StoreError> {
    let decision = EscalationDecision {
        status: EscalationStatus::TimedOut,
        by: None,
        reason: Some("no decision before the escalation expired".into()),
        at: Utc::now(),
        exception_id: None,
    };
    match decide(state, tenant, record.id, decision, json!({})).await? {
        Some(r) => Ok(r),
        // Decided meanwhile: read what it became.
        None => state.store.tenant(tenant).get_escalation(record.id).await,
    }
}

/// Times out every pending escalation whose time ran out, so the queue
/// shows what agents will get. Returns how many.
pub async fn expire_once(state: &AppState) -> Result<usize, StoreError> {
    let grant = behavry_store::PlatformGrant::background_job();
    let expired = state
        .store
        .platform(&grant)
        .expired_escalations(Utc::now())
        .await?;
    let mut n = 0;
    for (tenant, id) in expired {
        let record = state.store.tenant(tenant).get_escalation(id).await?;
        if record.status == EscalationStatus::Pending {
            time_out(state, tenant, record).await?;
            n += 1;
        }
    }
    Ok(n)
}

pub async fn expiry_loop(state: AppState, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let ok = match expire_once(&state).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "timing out expired escalations failed; retrying");
                false
            }
        };
        state
            .waiters
            .sweep_ok
            .store(ok, std::sync::atomic::Ordering::Relaxed);
    }
}
