//! The audit trail's hash chain.
//!
//! Each tenant's events form one chain ordered by `seq`: every event stores
//! the hash of the one before it (`previous_hash`; the first uses the
//! literal `GENESIS`) and its own `event_hash`, the SHA-256 of a canonical
//! encoding of its fields followed by `previous_hash`. Editing, deleting or
//! reordering any stored event breaks the chain at that point, which
//! [`verify_chain`] reports.

use behavry_core::{AgentId, TenantId};
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const GENESIS: &str = "GENESIS";

/// An audit event as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: Uuid,
    pub tenant_id: TenantId,
    /// Position in the tenant's chain, from 1.
    pub seq: i64,
    pub timestamp: DateTime<Utc>,
    pub agent_id: Option<AgentId>,
    pub session_id: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub tool_name: Option<String>,
    pub mcp_server: Option<String>,
    pub policy_result: Option<String>,
    pub policy_id: Option<String>,
    pub policy_reason: Option<String>,
    pub behavioral_score: Option<f64>,
    pub dlp_findings: serde_json::Value,
    pub dlp_action: Option<String>,
    pub input_hash: Option<String>,
    pub previous_hash: String,
    pub event_hash: String,
    pub response_code: Option<i32>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    pub request_size: i64,
    pub response_size: i64,
    pub extra: serde_json::Value,
    pub requester_id: Option<String>,
}

impl AuditEvent {
    /// Places a new event at position `seq` after `previous_hash` and
    /// computes its hash. Backends call this while holding the chain head.
    pub fn chain(
        new: &crate::NewAuditEvent,
        tenant_id: TenantId,
        seq: i64,
        previous_hash: &str,
    ) -> Self {
        let mut e = AuditEvent {
            id: new.id,
            tenant_id,
            seq,
            timestamp: normalize_time(new.timestamp),
            agent_id: new.agent_id,
            session_id: new.session_id.clone(),
            action: new.action.clone(),
            target: new.target.clone(),
            tool_name: new.tool_name.clone(),
            mcp_server: new.mcp_server.clone(),
            policy_result: new.policy_result.clone(),
            policy_id: new.policy_id.clone(),
            policy_reason: new.policy_reason.clone(),
            behavioral_score: new.behavioral_score,
            dlp_findings: new.dlp_findings.clone(),
            dlp_action: new.dlp_action.clone(),
            input_hash: new.input_hash.clone(),
            previous_hash: previous_hash.to_string(),
            event_hash: String::new(),
            response_code: new.response_code,
            latency_ms: new.latency_ms,
            error: new.error.clone(),
            request_size: new.request_size,
            response_size: new.response_size,
            extra: new.extra.clone(),
            requester_id: new.requester_id.clone(),
        };
        e.event_hash = event_hash(&e);
        e
    }

    /// Chains a batch onto a head (`last_seq`, `last_hash`): consecutive
    /// sequence numbers, each event linked to the one before.
    pub fn chain_batch(
        events: &[crate::NewAuditEvent],
        tenant_id: TenantId,
        last_seq: i64,
        last_hash: &str,
    ) -> Vec<Self> {
        let mut previous = last_hash.to_string();
        events
            .iter()
            .zip(last_seq + 1..)
            .map(|(new, seq)| {
                let e = Self::chain(new, tenant_id, seq, &previous);
                previous.clone_from(&e.event_hash);
                e
            })
            .collect()
    }
}

/// Filters for reading a tenant's audit trail, in chain order.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub agent_id: Option<AgentId>,
    pub mcp_server: Option<String>,
    pub tool_name: Option<String>,
    pub policy_result: Option<String>,
    /// Cursor: only events with a larger `seq`.
    pub after_seq: Option<i64>,
    pub limit: i64,
}

/// Timestamps are kept to the microsecond: both backends store exactly
/// that, so the hash computed before writing matches the row read back.
pub fn normalize_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The canonical bytes hashed for an event: a JSON array of its fields in a
/// fixed order (serde_json writes object keys sorted, so nested JSON is
/// canonical too), then the previous hash.
pub fn event_hash(e: &AuditEvent) -> String {
    let fields = serde_json::json!([
        e.id,
        e.tenant_id,
        e.seq,
        normalize_time(e.timestamp).to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        e.agent_id,
        e.session_id,
        e.action,
        e.target,
        e.tool_name,
        e.mcp_server,
        e.policy_result,
        e.policy_id,
        e.policy_reason,
        e.behavioral_score,
        e.dlp_findings,
        e.dlp_action,
        e.input_hash,
        e.response_code,
        e.latency_ms,
        e.error,
        e.request_size,
        e.response_size,
        e.extra,
        e.requester_id,
    ]);
    let mut h = Sha256::new();
    h.update(fields.to_string().as_bytes());
    h.update(b"\n");
    h.update(e.previous_hash.as_bytes());
    hex::encode(h.finalize())
}

/// Where a chain stops being valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    pub seq: i64,
    pub event_id: Uuid,
    pub reason: String,
}

/// Result of checking one tenant's chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub events_checked: u64,
    pub first_broken: Option<BrokenLink>,
}

/// Incremental verifier: feed events in `seq` order.
#[derive(Default)]
pub struct ChainVerifier {
    expected_seq: i64,
    previous: Option<String>,
    checked: u64,
    broken: Option<BrokenLink>,
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self {
            expected_seq: 1,
            ..Self::default()
        }
    }

    /// Checks the next event; returns false once the chain is broken.
    pub fn push(&mut self, e: &AuditEvent) -> bool {
        if self.broken.is_some() {
            return false;
        }
        self.checked += 1;
        let expected_previous = self.previous.as_deref().unwrap_or(GENESIS);
        let reason = if e.seq != self.expected_seq {
            Some(format!(
                "sequence number {} where {} was expected (an event is missing or was inserted)",
                e.seq, self.expected_seq
            ))
        } else if e.previous_hash != expected_previous {
            Some("previous_hash does not match the event before it".to_string())
        } else if event_hash(e) != e.event_hash {
            Some(
                "event_hash does not match the event's contents (the event was altered)"
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(reason) = reason {
            self.broken = Some(BrokenLink {
                seq: e.seq,
                event_id: e.id,
                reason,
            });
            return false;
        }
        self.previous = Some(e.event_hash.clone());
        self.expected_seq += 1;
        true
    }

    pub fn finish(self) -> ChainReport {
        ChainReport {
            events_checked: self.checked,
            first_broken: self.broken,
        }
    }
}

/// Checks a whole chain given in `seq` order.
pub fn verify_chain<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> ChainReport {
    let mut v = ChainVerifier::new();
    for e in events {
        if !v.push(e) {
            break;
        }
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let tenant = TenantId::new();
        let mut previous = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let mut e = AuditEvent {
                    id: Uuid::now_v7(),
                    tenant_id: tenant,
                    seq,
                    timestamp: normalize_time(Utc::now()),
                    agent_id: Some(AgentId::new()),
                    session_id: None,
                    action: "TOOL_CALL".into(),
                    target: None,
                    tool_name: Some("read_file".into()),
                    mcp_server: Some("fs".into()),
                    policy_result: Some("allow".into()),
                    policy_id: None,
                    policy_reason: None,
                    behavioral_score: None,
                    dlp_findings: serde_json::json!([]),
                    dlp_action: None,
                    input_hash: None,
                    previous_hash: previous.clone(),
                    event_hash: String::new(),
                    response_code: Some(200),
                    latency_ms: Some(1.25),
                    error: None,
                    request_size: 10,
                    response_size: 20,
                    extra: serde_json::json!({"b": 1, "a": [1, 2]}),
                    requester_id: None,
                };
                e.event_hash = event_hash(&e);
                previous = e.event_hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let events = chain(5);
        assert_eq!(events[0].previous_hash, GENESIS);
        let report = verify_chain(&events);
        assert_eq!(report.events_checked, 5);
        assert_eq!(report.first_broken, None);
    }

    #[test]
    fn edits_deletions_and_reordering_are_found() {
        let mut edited = chain(5);
        edited[2].tool_name = Some("delete_file".into());
        let broken = verify_chain(&edited).first_broken.unwrap();
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("altered"));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify_chain(&deleted).first_broken.unwrap().seq, 3);

        let mut swapped = chain(5);
        swapped.swap(1, 2);
        assert!(verify_chain(&swapped).first_broken.is_some());

        // Re-hashing an edited event does not help: the next link breaks.
        let mut rehashed = chain(5);
        rehashed[2].tool_name = Some("delete_file".into());
        rehashed[2].event_hash = event_hash(&rehashed[2]);
        let broken = verify_chain(&rehashed).first_broken.unwrap();
        assert_eq!(broken.seq, 4);
        assert!(broken.reason.contains("previous_hash"));
    }

    #[test]
    fn nested_json_key_order_does_not_matter() {
        let mut a = chain(1).remove(0);
        let mut b = a.clone();
        a.extra = serde_json::from_str(r#"{"x": 1, "y": {"q": 2, "p": 3}}"#).unwrap();
        b.extra = serde_json::from_str(r#"{"y": {"p": 3, "q": 2}, "x": 1}"#).unwrap();
        assert_eq!(event_hash(&a), event_hash(&b));
    }
}
