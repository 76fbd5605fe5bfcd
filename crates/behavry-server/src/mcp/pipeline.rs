//! The governed call: admission, rate limit, policy decision, durable
//! audit record, forward, outcome record. Every `tools/call`,
//! `resources/read` and `prompts/get` goes through [`guarded_call`].

use std::time::Instant;

use behavry_core::TenantId;
use behavry_dlp::Finding;
use behavry_mcp::jsonrpc::{RpcError, codes};
use behavry_mcp::upstream::{Call, Upstream, UpstreamEvent};
use behavry_policy::{
    Action, AgentInput, ContextInput, Decision, DecisionResult, DlpFinding, DlpInput, PolicyInput,
    RequestInput, SessionInput, extract_resource, fail_closed_decision,
};
use behavry_store::{McpServerRecord, NewAuditEvent};
use chrono::Utc;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::gate::{AgentState, Refusal};

use crate::state::AppState;

/// What is being called, in policy terms.
pub struct Target {
    pub method: &'static str,
    pub tool_name: String,
    pub action: Action,
    pub resource: Option<String>,
    pub arguments: Value,
}

impl Target {
    /// Classifies a governed request; `None` for other methods.
    pub fn from_request(
        state: &AppState,
        server: &McpServerRecord,
        method: &str,
        params: &Value,
    ) -> Option<Target> {
        match method {
            "tools/call" => {
                let name = params.get("name")?.as_str()?.to_string();
                let arguments = params
                    .get("arguments")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                let annotations = state
                    .upstreams
                    .tool(server.tenant_id, server.id, &name)
                    .and_then(|t| t.get("annotations").cloned());
                Some(Target {
                    method: "tools/call",
                    action: Action::classify(&name, annotations.as_ref()),
                    resource: extract_resource(&arguments),
                    tool_name: name,
                    arguments,
                })
            }
            "resources/read" => {
                let uri = params.get("uri")?.as_str()?.to_string();
                Some(Target {
                    method: "resources/read",
                    tool_name: "resources/read".into(),
                    action: Action::Read,
                    resource: Some(uri),
                    arguments: params.clone(),
                })
            }
            "prompts/get" => {
                let name = params.get("name")?.as_str()?.to_string();
                Some(Target {
                    method: "prompts/get",
                    tool_name: format!("prompts/get:{name}"),
                    action: Action::Read,
                    resource: Some(name),
                    arguments: params
                        .get("arguments")
                        .cloned()
                        .unwrap_or_else(|| json!({})),
                })
            }
            _ => None,
        }
    }

    fn audit_action(&self) -> &'static str {
        match self.method {
            "tools/call" => "TOOL_CALL",
            "resources/read" => "RESOURCE_READ",
            _ => "PROMPT_GET",
        }
    }
}

pub struct Caller<'a> {
    pub tenant: TenantId,
    pub agent: &'a AgentState,
    pub session_id: Option<&'a str>,
    pub call_count: u64,
}

/// The policy input for a call; `findings` are the data-protection
/// findings in its arguments (`input.dlp`).
pub fn policy_input(
    caller: &Caller<'_>,
    server: &McpServerRecord,
    target: &Target,
    findings: &[Finding],
) -> Value {
    let a = &caller.agent.agent;
    PolicyInput {
        dlp: DlpInput {
            has_findings: !findings.is_empty(),
            findings: findings
                .iter()
                .map(|f| DlpFinding {
                    pattern: f.pattern.clone(),
                    severity: f.severity.as_str().into(),
                    field: f.field.clone(),
                })
                .collect(),
        },
        agent: AgentInput {
            id: a.id.to_string(),
            name: a.name.clone(),
            roles: a.roles.clone(),
            permissions: a.permissions.clone(),
            risk_tier: a.risk_tier.as_str().into(),
        },
        request: RequestInput {
            tool_name: target.tool_name.clone(),
            action: target.action,
            resource: target.resource.clone(),
            parameters: target.arguments.clone(),
            mcp_server: server.name.clone(),
            resource_count: 1,
        },
        session: SessionInput {
            id: caller.session_id.unwrap_or_default().to_string(),
            tainted: false,
            call_count: caller.call_count,
        },
        context: ContextInput {
            time: Utc::now().to_rfc3339(),
            source: "mcp".into(),
        },
        ..PolicyInput::default()
    }
    .to_json()
}

/// The decision, failing closed when the engine cannot answer (unless the
/// operator explicitly chose otherwise).
pub async fn decide(state: &AppState, tenant: TenantId, input: &Value) -> Decision {
    match state
        .policy
        .decide(state.store.as_ref(), tenant, input)
        .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(tenant = %tenant, error = %e, "policy engine failed");
            if state.settings.opa_fail_closed {
                fail_closed_decision(&e)
            } else {
                Decision {
                    result: DecisionResult::Allow,
                    reason: format!(
                        "policy engine unavailable ({e}); allowed because BEHAVRY_OPA_FAIL_CLOSED=false"
                    ),
                    policy_id: None,
                    rules: Vec::new(),
                    monitored: Vec::new(),
                    monitor_result: None,
                }
            }
        }
    }
}

/// Who an audit event is about.
#[derive(Clone)]
struct Who {
    tenant: TenantId,
    agent: behavry_core::AgentId,
    session: Option<String>,
}

impl Who {
    fn of(caller: &Caller<'_>) -> Self {
        Who {
            tenant: caller.tenant,
            agent: caller.agent.agent.id,
            session: caller.session_id.map(str::to_string),
        }
    }
}

fn base_event(who: &Who, server: &McpServerRecord, action: &str) -> NewAuditEvent {
    NewAuditEvent {
        id: Uuid::now_v7(),
        timestamp: Utc::now(),
        agent_id: Some(who.agent),
        session_id: who.session.clone(),
        action: action.to_string(),
        mcp_server: Some(server.name.clone()),
        dlp_findings: json!([]),
        extra: json!({ "server_id": server.id }),
        ..NewAuditEvent::default()
    }
}

/// Records a request that is not a governed call (list, initialize...).
pub fn record_request(
    state: &AppState,
    caller: &Caller<'_>,
    server: &McpServerRecord,
    method: &str,
    request_size: usize,
    error: Option<&RpcError>,
) {
    let mut e = base_event(
        &Who::of(caller),
        server,
        &method.replace('/', "_").to_uppercase(),
    );
    e.request_size = request_size as i64;
    e.error = error.map(|e| e.message.clone());
    e.response_code = error.map(|e| e.code as i32);
    state.audit.record_later(caller.tenant, e);
}

/// Appends a decision and waits until it is durable; a decision that
/// cannot be recorded refuses the call.
async fn record_decision(
    state: &AppState,
    tenant: TenantId,
    event: NewAuditEvent,
) -> Result<(), RpcError> {
    state.audit.record(tenant, event).await.map_err(|e| {
        tracing::error!(error = %e, "refusing a call that cannot be audited");
        RpcError::new(
            codes::AUDIT_UNAVAILABLE,
            "the call was refused because the audit trail cannot record it; try again later",
        )
    })
}

/// A JSON Pointer as people read it: `/` for the whole document.
fn display_field(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

/// What a call that passed the pipeline got from the upstream.
pub enum Forwarded {
    /// The response, already recorded.
    Answered(Result<Value, RpcError>),
    /// Related messages, then the response; the outcome is recorded when
    /// the response passes by.
    Streaming(mpsc::Receiver<UpstreamEvent>),
}

/// Runs the pipeline and forwards an allowed call.
pub async fn guarded_call(
    state: &AppState,
    caller: &Caller<'_>,
    server: &McpServerRecord,
    upstream: &Upstream,
    target: Target,
    params: Value,
    request_size: usize,
) -> Result<Forwarded, RpcError> {
    let started = Instant::now();
    let who = Who::of(caller);
    let mut event = base_event(&who, server, target.audit_action());
    event.tool_name = Some(target.tool_name.clone());
    event.target = target.resource.clone();
    event.request_size = request_size as i64;
    event.input_hash = Some(hex::encode(Sha256::digest(
        target.arguments.to_string().as_bytes(),
    )));

    // Rate limit before spending policy time on a call that cannot run.
    if let Err(Refusal::RateLimited { retry_after }) = state.gate.take(
        caller.agent.agent.id,
        caller.agent.max_rpm,
        state.settings.rate_limit_burst,
    ) {
        let reason = format!(
            "rate limit of {} calls per minute exceeded; retry in {:.1}s",
            caller.agent.max_rpm,
            retry_after.as_secs_f64()
        );
        event.policy_result = Some("deny".into());
        event.policy_id = Some("rate_limit".into());
        event.policy_reason = Some(reason.clone());
        state.audit.record_later(caller.tenant, event);
        return Err(RpcError::new(codes::RATE_LIMITED, reason)
            .with_data(json!({"retry_after_ms": retry_after.as_millis() as u64})));
    }

    // Data protection before policy: what must not leave is refused
    // whatever the policies say; lesser findings are recorded and given to
    // the policies (`input.dlp`).
    let findings = state.dlp.scan_json(&target.arguments);
    let blocking: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity >= state.dlp_block)
        .collect();
    event.dlp_findings = serde_json::to_value(&findings).unwrap_or_else(|_| json!([]));
    event.dlp_action = Some(
        if !blocking.is_empty() {
            "block"
        } else if findings.is_empty() {
            "allow"
        } else {
            "warn"
        }
        .into(),
    );
    if !blocking.is_empty() {
        let what = blocking
            .iter()
            .map(|f| {
                format!(
                    "{} ({}) in {}",
                    f.pattern,
                    f.severity,
                    display_field(&f.field)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let reason = format!("the arguments carry data that must not leave: {what}");
        event.policy_result = Some("deny".into());
        event.policy_id = Some("dlp".into());
        event.policy_reason = Some(reason.clone());
        record_decision(state, caller.tenant, event).await?;
        let summary: Vec<Value> = blocking
            .iter()
            .map(|f| json!({"pattern": f.pattern, "severity": f.severity, "field": f.field}))
            .collect();
        return Err(RpcError::new(
            codes::DLP_BLOCKED,
            format!("blocked by data protection: {what}"),
        )
        .with_data(json!({"policy": "dlp", "reason": reason, "findings": summary})));
    }

    let input = policy_input(caller, server, &target, &findings);
    let decision = decide(state, caller.tenant, &input).await;
    event.policy_result = Some(decision.result.as_str().into());
    event.policy_id = decision.policy_id.clone();
    event.policy_reason = Some(decision.reason.clone());
    event.extra = json!({
        "server_id": server.id,
        "action": target.action.as_str(),
        "rules": decision.rules,
        "monitored": decision.monitored,
        "monitor_result": decision.monitor_result,
    });
    let call_event_id = event.id;

    // Durable before anything happens: if it cannot be recorded, it does
    // not happen.
    record_decision(state, caller.tenant, event).await?;

    match decision.result {
        DecisionResult::Allow => {}
        DecisionResult::Deny => {
            return Err(RpcError::new(codes::POLICY_DENIED, format!("denied by policy: {}", decision.reason))
                .with_data(json!({"policy": decision.policy_id, "reason": decision.reason, "rules": decision.rules})));
        }
        DecisionResult::Escalate => {
            return Err(RpcError::new(
                codes::APPROVAL_REQUIRED,
                format!("this call requires human approval, which this gateway does not offer yet: {}", decision.reason),
            )
            .with_data(json!({"policy": decision.policy_id, "reason": decision.reason, "rules": decision.rules})));
        }
    }

    let outcome = Outcome {
        who,
        server: server.clone(),
        tool: target.tool_name,
        call_event_id,
        started,
    };
    let mut from_upstream = match upstream.call(target.method, Some(params)).await {
        Ok(Call::Answered {
            outcome: answer,
            size,
        }) => {
            outcome.record(state, answer.as_ref(), size);
            return Ok(Forwarded::Answered(answer));
        }
        Ok(Call::Streaming(rx)) => rx,
        Err(e) => {
            let rpc = e.to_rpc();
            outcome.record(state, Err(&rpc), 0);
            return Err(rpc);
        }
    };
    // Relay, and record the outcome when the response passes by.
    let (tx, rx) = mpsc::channel(32);
    let state = state.clone();
    tokio::spawn(async move {
        while let Some(ev) = from_upstream.recv().await {
            if let UpstreamEvent::Response(result) = &ev {
                let size = result.as_ref().map_or(0, |v| v.to_string().len());
                outcome.record(&state, result.as_ref(), size);
            }
            if tx.send(ev).await.is_err() {
                break;
            }
        }
    });
    Ok(Forwarded::Streaming(rx))
}

/// Results up to this size are scanned before the response goes back (a
/// few tens of microseconds); larger ones on the blocking pool.
const SCAN_INLINE_UP_TO: usize = 64 * 1024;

fn note_findings(e: &mut NewAuditEvent, findings: Vec<Finding>) {
    e.dlp_action = Some(if findings.is_empty() { "allow" } else { "warn" }.into());
    e.dlp_findings = serde_json::to_value(&findings).unwrap_or_else(|_| json!([]));
}

/// The outcome record of an allowed call, linked to its decision record.
struct Outcome {
    who: Who,
    server: McpServerRecord,
    tool: String,
    call_event_id: Uuid,
    started: Instant,
}

impl Outcome {
    /// `response_size` is the answer's size; for an error it is the
    /// error message's.
    ///
    /// A successful result is scanned like the arguments were: what it
    /// carries (a credential read from a file, a card number from a
    /// database) is recorded in `dlp_findings`, never the data itself.
    fn record(&self, state: &AppState, result: Result<&Value, &RpcError>, response_size: usize) {
        let mut e = base_event(&self.who, &self.server, "TOOL_RESULT");
        e.tool_name = Some(self.tool.clone());
        e.latency_ms =
            Some((self.started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0);
        e.response_size = response_size as i64;
        e.extra = json!({"server_id": self.server.id, "call_event_id": self.call_event_id});
        let tenant = self.who.tenant;
        match result {
            Err(err) => {
                e.response_code = Some(err.code as i32);
                e.error = Some(err.message.clone());
                e.response_size = err.message.len() as i64;
                state.audit.record_later(tenant, e);
            }
            Ok(value) if response_size <= SCAN_INLINE_UP_TO => {
                e.response_code = Some(0);
                note_findings(&mut e, state.dlp.scan_json(value));
                state.audit.record_later(tenant, e);
            }
            Ok(value) => {
                // A large result is scanned off the response path.
                e.response_code = Some(0);
                let (value, state) = (value.clone(), state.clone());
                tokio::task::spawn_blocking(move || {
                    note_findings(&mut e, state.dlp.scan_json(&value));
                    state.audit.record_later(tenant, e);
                });
            }
        }
    }
}
