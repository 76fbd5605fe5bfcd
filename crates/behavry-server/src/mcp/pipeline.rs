//! The governed call: admission, rate limit, data protection, policy
//! decision, durable audit record, forward, result screening, outcome
//! record. Every `tools/call`, `resources/read` and `prompts/get` goes
//! through [`guarded_call`].

use std::sync::Arc;
use std::time::Instant;

use behavry_core::{AlertSeverity, AlertType, EscalationStatus, TenantId};
use behavry_core::{DlpAction, PayloadStorage, TrifectaAction};
use behavry_dlp::{Finding, InjectionFinding, Scanner, Severity};
use behavry_mcp::jsonrpc::{RpcError, codes};
use behavry_mcp::upstream::{Call, Upstream, UpstreamEvent};
use behavry_policy::{
    Action, AgentInput, ContextInput, Decision, DecisionResult, DlpFinding, DlpInput,
    InboundFinding, InboundInput, PolicyInput, RequestInput, SessionInput, extract_resource,
    fail_closed_decision,
};
use behavry_store::SessionFlags;
use behavry_store::{McpServerRecord, NewAuditEvent};
use chrono::Utc;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::blast;
use super::gate::{AgentState, Refusal};
use super::pins;
use super::sessions::SessionInfo;
use super::trifecta::{self, Exposure};

use crate::alerts::{self, Alert};
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
    /// The MCP session, when the transport has one.
    pub session: Option<&'a SessionInfo>,
}

impl Caller<'_> {
    fn session_id(&self) -> Option<&str> {
        self.session.map(|s| s.id.as_str())
    }
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
            risk_score: a.risk_score,
            has_recent_drift: a.has_recent_drift,
        },
        request: RequestInput {
            tool_name: target.tool_name.clone(),
            action: target.action,
            resource: target.resource.clone(),
            parameters: target.arguments.clone(),
            mcp_server: server.name.clone(),
            resource_count: 1,
        },
        // What earlier results in this session carried (the session's
        // taint and injection findings), for policies that treat a call
        // differently once untrusted instructions have been seen.
        inbound: InboundInput {
            has_findings: caller.session.is_some_and(|s| !s.inbound.is_empty()),
            findings: caller
                .session
                .map(|s| s.inbound.clone())
                .unwrap_or_default(),
        },
        session: SessionInput {
            id: caller.session_id().unwrap_or_default().to_string(),
            tainted: caller.session.is_some_and(|s| s.tainted),
            call_count: caller.session.map_or(0, |s| s.call_count),
            read_untrusted: caller.session.is_some_and(|s| s.read_untrusted),
            read_private: caller.session.is_some_and(|s| s.read_private),
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
            session: caller.session_id().map(str::to_string),
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

/// What a request that is not a governed call was.
pub enum Recorded<'a> {
    /// The gateway opened a session (`SESSION_START`).
    SessionStart,
    /// A method an agent sent.
    Method(&'a str),
}

/// Records a request that is not a governed call (list, initialize...).
pub fn record_request(
    state: &AppState,
    caller: &Caller<'_>,
    server: &McpServerRecord,
    what: Recorded<'_>,
    request_size: usize,
    error: Option<&RpcError>,
) {
    // The action names the method only for methods MCP defines: an agent
    // must not be able to write `TOOL_CALL` (or any other action the audit
    // trail, usage and baselines count) by naming its request so.
    const KNOWN: &[&str] = &[
        "initialize",
        "ping",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "prompts/list",
        "completion/complete",
        "logging/setLevel",
        "resources/subscribe",
        "resources/unsubscribe",
    ];
    let (action, method) = match what {
        Recorded::SessionStart => ("SESSION_START".to_string(), None),
        Recorded::Method(m) if KNOWN.contains(&m) => (m.replace('/', "_").to_uppercase(), Some(m)),
        Recorded::Method(m) => ("MCP_REQUEST".to_string(), Some(m)),
    };
    let mut e = base_event(&Who::of(caller), server, &action);
    if let (Some(method), Some(extra)) = (method, e.extra.as_object_mut()) {
        extra.insert(
            "method".into(),
            json!(method.chars().take(200).collect::<String>()),
        );
    }
    e.request_size = request_size as i64;
    e.error = error.map(|e| e.message.clone());
    e.response_code = error.map(|e| e.code as i32);
    state.audit.record_later(caller.tenant, e);
}

/// Records that a tool was withheld from agents for a poisoned definition.
pub fn record_withheld_tool(
    state: &AppState,
    caller: &Caller<'_>,
    server: &McpServerRecord,
    tool: &str,
    findings: &[InjectionFinding],
) {
    let classes = class_list(findings);
    alerts::raise(
        state,
        caller.tenant,
        Alert::new(
            AlertType::ToolPoisoning,
            AlertSeverity::Critical,
            format!("tool `{tool}` of `{}` withheld: its definition carries instructions aimed at the agent", server.name),
        )
        .details(json!({"server_id": server.id, "server": server.name, "tool": tool, "findings": summaries(findings)})),
    );
    let mut e = base_event(&Who::of(caller), server, "TOOL_WITHHELD");
    e.tool_name = Some(tool.to_string());
    e.policy_result = Some("deny".into());
    e.policy_id = Some("tool_poisoning".into());
    e.policy_reason = Some(format!(
        "the tool's definition carries instructions aimed at the agent ({classes})"
    ));
    e.extra = json!({"server_id": server.id, "inbound": {"action": "block", "findings": findings}});
    state.audit.record_later(caller.tenant, e);
}

/// Freezes an agent whose window was crossed: every later call is refused
/// (on every replica, once its agent cache expires) until an admin
/// unfreezes it.
async fn freeze(state: &AppState, caller: &Caller<'_>, server: &McpServerRecord, crossed: &str) {
    let agent = caller.agent.agent.id;
    if let Err(e) = state
        .store
        .tenant(caller.tenant)
        .set_agent_frozen(agent, Some(crossed))
        .await
    {
        // The window stays crossed, so the next call tries again.
        tracing::error!(agent = %agent, error = %e, "could not record the agent's freeze");
    }
    state.changed_agent(caller.tenant, agent);
    alerts::raise(
        state,
        caller.tenant,
        Alert::new(
            AlertType::AgentFrozen,
            AlertSeverity::Critical,
            format!(
                "agent `{}` frozen by a blast-radius window: {crossed}",
                caller.agent.agent.name
            ),
        )
        .agent(agent)
        .details(json!({"window": crossed, "server": server.name})),
    );
    let mut e = base_event(&Who::of(caller), server, "AGENT_FROZEN");
    e.policy_result = Some("deny".into());
    e.policy_id = Some("blast_radius".into());
    e.policy_reason = Some(crossed.to_string());
    state.audit.record_later(caller.tenant, e);
}

/// Records (and alerts) that a pinned tool's definition changed; the diff
/// names the fields that differ, with both values.
pub fn record_tool_changed(
    state: &AppState,
    caller: &Caller<'_>,
    server: &McpServerRecord,
    tool: &str,
    diff: &[Value],
) {
    alerts::raise(
        state,
        caller.tenant,
        Alert::new(
            AlertType::ToolDefinitionChanged,
            AlertSeverity::Warning,
            format!("tool `{tool}` of `{}` changed since it was approved; withheld until an admin decides", server.name),
        )
        .details(json!({"server_id": server.id, "server": server.name, "tool": tool, "diff": diff})),
    );
    let mut e = base_event(&Who::of(caller), server, "TOOL_DEFINITION_CHANGED");
    e.tool_name = Some(tool.to_string());
    e.policy_result = Some("deny".into());
    e.policy_id = Some("tool_pinning".into());
    e.policy_reason = Some("the definition changed since it was approved".into());
    e.extra = json!({"server_id": server.id, "diff": diff});
    state.audit.record_later(caller.tenant, e);
}

/// What an alert or an agent may see of data-protection findings.
fn findings_summary(found: &[&Finding]) -> Vec<Value> {
    found
        .iter()
        .map(|f| json!({"pattern": f.pattern, "severity": f.severity, "field": f.field}))
        .collect()
}

/// A `dlp_violation` alert: critical when a critical finding was among
/// those stopped, a warning otherwise.
fn dlp_alert(
    state: &AppState,
    tenant: TenantId,
    agent: behavry_core::AgentId,
    found: &[&Finding],
    title: String,
    details: Value,
) {
    let severity = if found.iter().any(|f| f.severity >= Severity::Critical) {
        AlertSeverity::Critical
    } else {
        AlertSeverity::Warning
    };
    alerts::raise(
        state,
        tenant,
        Alert::new(AlertType::DlpViolation, severity, title)
            .agent(agent)
            .details(details),
    );
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
    mut target: Target,
    mut params: Value,
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
        alerts::raise(
            state,
            caller.tenant,
            Alert::new(
                AlertType::RateLimit,
                AlertSeverity::Warning,
                format!("agent `{}` exceeded its rate limit of {} calls per minute", caller.agent.agent.name, caller.agent.max_rpm),
            )
            .agent(caller.agent.agent.id)
            .details(json!({"server": server.name, "tool": target.tool_name, "max_rpm": caller.agent.max_rpm})),
        );
        state.audit.record_later(caller.tenant, event);
        return Err(RpcError::new(codes::RATE_LIMITED, reason)
            .with_data(json!({"retry_after_ms": retry_after.as_millis() as u64})));
    }

    // A tool withheld for a poisoned definition cannot be called, even by
    // an agent that learned its name elsewhere.
    if target.method == "tools/call"
        && let Some(found) = state
            .upstreams
            .withheld(caller.tenant, server.id, &target.tool_name)
    {
        let classes = class_list(&found);
        let reason = format!(
            "tool `{}` is withheld: its definition carries instructions aimed at the agent ({classes})",
            target.tool_name
        );
        event.policy_result = Some("deny".into());
        event.policy_id = Some("tool_poisoning".into());
        event.policy_reason = Some(reason.clone());
        record_decision(state, caller.tenant, event).await?;
        return Err(RpcError::new(codes::TOOL_WITHHELD, reason)
            .with_data(json!({"policy": "tool_poisoning", "findings": summaries(&found)})));
    }

    let protection = Protection::of(state, caller.agent);
    // The lethal trifecta: this session has read untrusted content and
    // private data, and now reaches for a tool that can send data out.
    let exposure = trifecta::exposure(&server.tags, &target.tool_name);
    // An escalation a check asks for is merged with the policies' decision
    // (a policy's deny still wins): the check's name and reason.
    let mut forced: Option<(&'static str, String)> = None;
    if exposure.external
        && protection.trifecta != TrifectaAction::Off
        && caller
            .session
            .is_some_and(|s| (s.tainted || s.read_untrusted) && s.read_private)
    {
        let reason = format!(
            "`{}` can send data out, and this session has read untrusted content and private data",
            target.tool_name
        );
        if protection.trifecta == TrifectaAction::Escalate {
            forced = Some(("trifecta", reason));
        } else {
            event.policy_result = Some("deny".into());
            event.policy_id = Some("trifecta".into());
            event.policy_reason = Some(reason.clone());
            record_decision(state, caller.tenant, event).await?;
            return Err(
                RpcError::new(codes::POLICY_DENIED, format!("denied: {reason}"))
                    .with_data(json!({"policy": "trifecta", "reason": reason})),
            );
        }
    }

    // A tool whose definition changed since it was approved waits for an
    // admin, unless the change was approved since (on any replica).
    if target.method == "tools/call"
        && state
            .upstreams
            .is_changed(caller.tenant, server.id, &target.tool_name)
    {
        if pins::approved_since(state, server, &target.tool_name).await {
            state
                .upstreams
                .clear_changed(caller.tenant, server.id, &target.tool_name);
        } else {
            let reason = format!(
                "tool `{}` is withheld: its definition changed since it was approved, and an admin must approve the change",
                target.tool_name
            );
            event.policy_result = Some("deny".into());
            event.policy_id = Some("tool_pinning".into());
            event.policy_reason = Some(reason.clone());
            record_decision(state, caller.tenant, event).await?;
            return Err(RpcError::new(codes::TOOL_WITHHELD, reason)
                .with_data(json!({"policy": "tool_pinning"})));
        }
    }

    // Data protection before policy: what must not leave is refused (or,
    // when the tenant chose to, replaced in what is forwarded) whatever the
    // policies say; lesser findings are recorded and given to the policies
    // (`input.dlp`).
    let payload = protection
        .payload(state, caller.tenant, event.id, &target.arguments)
        .await;
    let findings = protection.scanner.scan_json(&target.arguments);
    let mut blocking: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity >= protection.block_at)
        .collect();
    let redact = !blocking.is_empty() && protection.action == DlpAction::Redact;
    if redact {
        let mut arguments = target.arguments.clone();
        protection
            .scanner
            .redact_json_at(&mut arguments, protection.block_at);
        if target.method == "resources/read" {
            params = arguments.clone();
        } else {
            params["arguments"] = arguments.clone();
        }
        // The policies judge what will actually be sent.
        target.arguments = arguments;
        dlp_alert(
            state,
            caller.tenant,
            caller.agent.agent.id,
            &blocking,
            format!(
                "data redacted from the arguments of `{}` on `{}`",
                target.tool_name, server.name
            ),
            json!({"server": server.name, "tool": target.tool_name, "audit_event_id": event.id, "findings": findings_summary(&blocking), "action": "redact"}),
        );
        blocking.clear();
    }
    event.dlp_findings = serde_json::to_value(&findings).unwrap_or_else(|_| json!([]));
    // `dlp_action` keeps its three values (allow, warn, block): redacted
    // data was stopped from leaving, so it is `block`, with
    // `extra.dlp_redacted` saying the call itself went ahead.
    event.dlp_action = Some(
        if redact || !blocking.is_empty() {
            "block"
        } else if findings.is_empty() {
            "allow"
        } else {
            "warn"
        }
        .into(),
    );
    if let Some(p) = payload {
        event.extra["payload"] = json!({"arguments": p});
    }
    if redact {
        event.extra["dlp_redacted"] = json!(true);
    }
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
        let event_id = event.id;
        record_decision(state, caller.tenant, event).await?;
        let summary = findings_summary(&blocking);
        dlp_alert(
            state,
            caller.tenant,
            caller.agent.agent.id,
            &blocking,
            format!(
                "`{}` on `{}` blocked: {what}",
                target.tool_name, server.name
            ),
            json!({"server": server.name, "tool": target.tool_name, "audit_event_id": event_id, "findings": summary, "action": "block"}),
        );
        return Err(RpcError::new(
            codes::DLP_BLOCKED,
            format!("blocked by data protection: {what}"),
        )
        .with_data(json!({"policy": "dlp", "reason": reason, "findings": summary})));
    }

    // Blast radius: rules on this call, then the agent's windows, whose
    // crossing freezes the agent.
    // A denial ends the call here; an escalation is combined with the
    // policies' decision below (a policy's deny still wins).
    let limits = &caller.agent.blast;
    match blast::assess(limits, target.action, &target.arguments) {
        Some(blast::Verdict::Deny(reason)) => {
            event.policy_result = Some("deny".into());
            event.policy_id = Some("blast_radius".into());
            event.policy_reason = Some(reason.clone());
            alerts::raise(
                state,
                caller.tenant,
                Alert::new(
                    AlertType::BlastRadius,
                    AlertSeverity::Warning,
                    format!("`{}` on `{}` denied by the blast-radius limits: {reason}", target.tool_name, server.name),
                )
                .agent(caller.agent.agent.id)
                .details(json!({"server": server.name, "tool": target.tool_name, "audit_event_id": event.id, "reason": reason})),
            );
            record_decision(state, caller.tenant, event).await?;
            return Err(RpcError::new(
                codes::POLICY_DENIED,
                format!("denied by the blast-radius limits: {reason}"),
            )
            .with_data(json!({"policy": "blast_radius", "reason": reason})));
        }
        Some(blast::Verdict::Escalate(reason)) if forced.is_none() => {
            forced = Some(("blast_radius", format!("{reason} (blast-radius limits)")));
        }
        Some(blast::Verdict::Escalate(_)) | None => {}
    }
    let usage = blast::Usage {
        session_calls: caller.session.map_or(0, |s| s.call_count + 1),
        destructive: target.action == Action::Delete,
        bytes_out: request_size as u64,
        dlp_findings: findings.len() as u64,
    };
    if limits.enabled
        && let Some(crossed) = state
            .windows
            .count(caller.agent.agent.id, &limits.windows, usage)
    {
        freeze(state, caller, server, &crossed).await;
        let reason = format!("the agent was frozen: {crossed}; an admin must unfreeze it");
        event.policy_result = Some("deny".into());
        event.policy_id = Some("blast_radius".into());
        event.policy_reason = Some(reason.clone());
        record_decision(state, caller.tenant, event).await?;
        return Err(RpcError::new(codes::AGENT_SUSPENDED, reason)
            .with_data(json!({"policy": "blast_radius", "window": crossed})));
    }

    let input = policy_input(caller, server, &target, &findings);
    let mut decision = decide(state, caller.tenant, &input).await;
    if let Some((check, reason)) = forced
        && decision.result == DecisionResult::Allow
    {
        decision.result = DecisionResult::Escalate;
        decision.policy_id = Some(check.into());
        decision.reason = reason;
    }
    // An escalation may already be settled: by an exception an approver
    // added, or by the decision on this same call made earlier.
    let mut held = None;
    if decision.result == DecisionResult::Escalate {
        held = Some(
            settle(
                state,
                caller,
                server,
                &target,
                &protection,
                &mut event,
                &mut decision,
            )
            .await?,
        );
    }
    event.policy_result = Some(decision.result.as_str().into());
    event.policy_id = decision.policy_id.clone();
    event.policy_reason = Some(decision.reason.clone());
    event.extra["action"] = json!(target.action.as_str());
    event.extra["rules"] = json!(decision.rules);
    event.extra["monitored"] = json!(decision.monitored);
    event.extra["monitor_result"] = json!(decision.monitor_result);
    let call_event_id = event.id;

    // Durable before anything happens: if it cannot be recorded, it does
    // not happen.
    record_decision(state, caller.tenant, event).await?;

    match decision.result {
        DecisionResult::Allow => {}
        DecisionResult::Deny => {
            return Err(RpcError::new(codes::POLICY_DENIED, format!("denied by policy: {}", decision.reason))
                .with_data(json!({"policy": decision.policy_id, "reason": decision.reason, "rules": decision.rules, "escalation_id": held.as_ref().and_then(Held::id)})));
        }
        DecisionResult::Escalate => {}
    }

    let outcome = Outcome {
        who,
        protection,
        exposure,
        server: server.clone(),
        method: target.method,
        tool: target.tool_name,
        call_event_id,
        started,
    };
    match held {
        Some(Held::Waiting { escalation, new }) => {
            if new {
                let tier = caller.agent.agent.risk_tier;
                open_escalation(state, caller.tenant, &escalation).await?;
                tracing::info!(escalation = %escalation.id, tier = tier.as_str(), "call held for approval");
            }
            let progress = params
                .get("_meta")
                .and_then(|m| m.get("progressToken"))
                .cloned();
            Ok(hold_then_forward(
                state.clone(),
                upstream.clone(),
                caller.tenant,
                escalation.id,
                escalation.expires_at,
                progress,
                params,
                outcome,
            ))
        }
        _ => Ok(forward(state, upstream, params, outcome).await),
    }
}

/// Forwards an allowed call and screens what comes back.
async fn forward(
    state: &AppState,
    upstream: &Upstream,
    params: Value,
    outcome: Outcome,
) -> Forwarded {
    let mut from_upstream = match upstream.call(outcome.method, Some(params)).await {
        Ok(Call::Answered {
            outcome: answer,
            size,
        }) => {
            return Forwarded::Answered(outcome.finish(state, answer, size).await);
        }
        Ok(Call::Streaming(rx)) => rx,
        Err(e) => {
            return Forwarded::Answered(outcome.finish(state, Err(e.to_rpc()), 0).await);
        }
    };
    // Relay; the response is screened and recorded as it passes by.
    let (tx, rx) = mpsc::channel(32);
    let state = state.clone();
    tokio::spawn(async move {
        let mut outcome = Some(outcome);
        while let Some(ev) = from_upstream.recv().await {
            let ev = match (ev, outcome.take()) {
                (UpstreamEvent::Response(result), Some(o)) => {
                    let size = result.as_ref().map_or(0, |v| v.to_string().len());
                    UpstreamEvent::Response(o.finish(&state, result, size).await)
                }
                (ev, o) => {
                    outcome = o;
                    ev
                }
            };
            if tx.send(ev).await.is_err() {
                break;
            }
        }
    });
    Forwarded::Streaming(rx)
}

/// Where an escalated call stands once exceptions and earlier decisions on
/// the same call are taken into account.
enum Held {
    /// An exception allowed it.
    Excepted,
    /// An earlier decision on this call settled it (approved: allowed;
    /// otherwise: denied).
    Settled(Uuid),
    /// It waits: on a new escalation, or on the one its earlier attempt
    /// opened.
    Waiting {
        escalation: behavry_store::NewEscalation,
        new: bool,
    },
}

impl Held {
    fn id(&self) -> Option<Uuid> {
        match self {
            Held::Excepted => None,
            Held::Settled(id) => Some(*id),
            Held::Waiting { escalation, .. } => Some(escalation.id),
        }
    }
}

/// Settles an escalation decision where it can be settled without a
/// person, adjusting the decision and its audit event; otherwise prepares
/// the escalation the call will wait on. Store failures refuse the call.
async fn settle(
    state: &AppState,
    caller: &Caller<'_>,
    server: &McpServerRecord,
    target: &Target,
    protection: &Protection,
    event: &mut NewAuditEvent,
    decision: &mut behavry_policy::Decision,
) -> Result<Held, RpcError> {
    let unavailable = |e: behavry_store::StoreError| {
        tracing::error!(error = %e, "refusing an escalated call: escalations cannot be read");
        RpcError::new(
            codes::APPROVAL_REQUIRED,
            "the call needs approval, and approvals cannot be checked right now; try again later",
        )
    };
    let store = state.store.tenant(caller.tenant);
    let agent = caller.agent.agent.id;
    let now = Utc::now();
    let key = crate::escalations::call_key(
        agent,
        server.id,
        &target.tool_name,
        event.input_hash.as_deref().unwrap_or_default(),
    );
    if let Some(earlier) = store
        .open_escalation_for_call(&key)
        .await
        .map_err(unavailable)?
    {
        event.extra["escalation_id"] = json!(earlier.id);
        if earlier.status == EscalationStatus::Pending && earlier.expires_at > now {
            return Ok(Held::Waiting {
                escalation: behavry_store::NewEscalation {
                    id: earlier.id,
                    expires_at: earlier.expires_at,
                    ..Default::default()
                },
                new: false,
            });
        }
        if earlier.status.is_final()
            && store
                .consume_escalation(earlier.id, now)
                .await
                .map_err(unavailable)?
        {
            settle_by(decision, &earlier);
            return Ok(Held::Settled(earlier.id));
        }
        // Expired but not yet marked, or used meanwhile by a concurrent
        // retry: an exception, or else a new escalation, below.
    }
    if let Some(ex) = store
        .matching_exception(
            agent,
            server.id,
            &target.tool_name,
            target.resource.as_deref(),
            now,
        )
        .await
        .map_err(unavailable)?
    {
        decision.result = DecisionResult::Allow;
        decision.reason = format!(
            "{} — allowed by an approver's exception {}",
            decision.reason, ex.id
        );
        decision.policy_id = Some("escalation_exception".into());
        event.extra["exception_id"] = json!(ex.id);
        return Ok(Held::Excepted);
    }
    let id = Uuid::now_v7();
    event.extra["escalation_id"] = json!(id);
    let timeout = behavry_core::decision_timeout(caller.agent.agent.risk_tier)
        .min(state.settings.escalation_max_timeout);
    let expires_at =
        now + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::hours(1));
    let mut summary = json!({
        "agent": {"id": agent, "name": caller.agent.agent.name, "risk_tier": caller.agent.agent.risk_tier.as_str()},
        "server": {"id": server.id, "name": server.name},
        "session_id": caller.session.map(|s| s.id.clone()),
        "method": target.method,
        "tool": target.tool_name,
        "action": target.action.as_str(),
        "resource": target.resource,
        "policy_id": decision.policy_id,
        "reason": decision.reason,
        "rules": decision.rules,
        "dlp_findings": event.dlp_findings,
        "payload_storage": protection.storage.as_str(),
    });
    match protection.storage {
        PayloadStorage::Full => summary["arguments"] = target.arguments.clone(),
        PayloadStorage::Redacted => {
            let mut args = target.arguments.clone();
            protection.scanner.redact_json(&mut args);
            summary["arguments"] = args;
        }
        // Kept only sealed with the audit event: read through the audited
        // payload endpoint.
        PayloadStorage::Encrypted | PayloadStorage::MetadataOnly => {}
    }
    Ok(Held::Waiting {
        escalation: behavry_store::NewEscalation {
            id,
            agent_id: Some(agent),
            status: EscalationStatus::Pending.as_str().into(),
            summary,
            created_at: now,
            expires_at,
            audit_event_id: Some(event.id),
            call_key: Some(key),
        },
        new: true,
    })
}

/// What an escalation's decision means for its call.
fn verdict(e: &behavry_store::EscalationRecord) -> (DecisionResult, String) {
    let why = e.decision_reason.as_deref().unwrap_or("no reason given");
    match e.status {
        EscalationStatus::Approved => (
            DecisionResult::Allow,
            format!("approved in escalation {}: {why}", e.id),
        ),
        EscalationStatus::Denied => (
            DecisionResult::Deny,
            format!("denied in escalation {}: {why}", e.id),
        ),
        _ => (
            DecisionResult::Deny,
            format!("escalation {} was not decided in time", e.id),
        ),
    }
}

/// Turns an escalation decision into the call's decision.
fn settle_by(decision: &mut behavry_policy::Decision, e: &behavry_store::EscalationRecord) {
    (decision.result, decision.reason) = verdict(e);
    decision.policy_id = Some("escalation".into());
}

/// Stores a new escalation; a call that cannot be held is refused.
async fn open_escalation(
    state: &AppState,
    tenant: TenantId,
    escalation: &behavry_store::NewEscalation,
) -> Result<(), RpcError> {
    state
        .store
        .tenant(tenant)
        .record_escalation(escalation.clone())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "refusing an escalated call: the escalation cannot be stored");
            RpcError::new(
                codes::APPROVAL_REQUIRED,
                "the call needs approval, and it cannot be queued right now; try again later",
            )
        })?;
    state.bus.publish(crate::bus::Event::new(
        tenant,
        crate::bus::Kind::Escalation,
        EscalationStatus::Pending.as_str(),
        json!({
            "id": escalation.id,
            "agent_id": escalation.agent_id,
            "audit_event_id": escalation.audit_event_id,
            "status": EscalationStatus::Pending.as_str(),
            "summary": escalation.summary,
            "created_at": escalation.created_at,
            "expires_at": escalation.expires_at,
        }),
    ));
    Ok(())
}

/// How often a held call tells a client that asked for progress that it
/// is still waiting.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Holds the call on its escalation in a task of its own (so the response
/// can stream keep-alives), then forwards it or refuses it.
#[allow(clippy::too_many_arguments)]
fn hold_then_forward(
    state: AppState,
    upstream: Upstream,
    tenant: TenantId,
    id: Uuid,
    expires_at: chrono::DateTime<Utc>,
    progress: Option<Value>,
    params: Value,
    outcome: Outcome,
) -> Forwarded {
    let (tx, rx) = mpsc::channel(32);
    tokio::spawn(async move {
        let until = tokio::time::Instant::now() + state.settings.escalation_hold;
        let mut last_progress = tokio::time::Instant::now();
        let mut step = 0u64;
        let progress_tx = tx.clone();
        let tick = || {
            if let Some(token) = &progress
                && last_progress.elapsed() >= PROGRESS_EVERY
            {
                last_progress = tokio::time::Instant::now();
                step += 1;
                let _ = progress_tx.try_send(UpstreamEvent::Notification(json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/progress",
                    "params": {
                        "progressToken": token,
                        "progress": step,
                        "message": format!("waiting for approval (escalation {id})"),
                    },
                })));
            }
        };
        let closed = tx.clone();
        let waited = crate::escalations::wait(
            &state,
            tenant,
            id,
            until,
            async move { closed.closed().await },
            tick,
        )
        .await;
        let store = state.store.tenant(tenant);
        let refusal = match waited {
            Ok(crate::escalations::Waited::Gone) => return,
            Ok(crate::escalations::Waited::StillPending(e)) => Some(
                RpcError::new(
                    codes::APPROVAL_REQUIRED,
                    format!(
                        "this call is waiting for approval (escalation {}): {}; make the same call again to pick up the decision",
                        e.id,
                        e.summary["reason"].as_str().unwrap_or("a policy asks for a person's approval")
                    ),
                )
                .with_data(json!({"escalation_id": e.id, "status": "pending", "expires_at": expires_at, "policy": e.summary["policy_id"], "reason": e.summary["reason"]})),
            ),
            Ok(crate::escalations::Waited::Decided(e)) => match store.consume_escalation(e.id, Utc::now()).await {
                Ok(true) if e.status == EscalationStatus::Approved => None,
                Ok(true) => {
                    let (_, reason) = verdict(&e);
                    Some(RpcError::new(codes::POLICY_DENIED, reason).with_data(json!({
                        "policy": "escalation",
                        "escalation_id": e.id,
                        "status": e.status.as_str(),
                    })))
                }
                Ok(false) => Some(RpcError::new(
                    codes::APPROVAL_REQUIRED,
                    format!("the decision of escalation {} was already used by another call; make the call again", e.id),
                ).with_data(json!({"escalation_id": e.id}))),
                Err(err) => {
                    tracing::error!(error = %err, "a held call's decision cannot be recorded as used");
                    Some(RpcError::new(codes::APPROVAL_REQUIRED, "the approval cannot be confirmed right now; make the call again"))
                }
            },
            Err(err) => {
                tracing::error!(error = %err, "a held call lost its escalation");
                Some(RpcError::new(codes::APPROVAL_REQUIRED, "the approval cannot be checked right now; make the call again")
                    .with_data(json!({"escalation_id": id})))
            }
        };
        let forwarded = match refusal {
            None => forward(&state, &upstream, params, outcome).await,
            // Refused before reaching the upstream: the decision's own audit
            // events tell the story; there is no outcome to record.
            Some(err) => {
                drop(outcome);
                Forwarded::Answered(Err(err))
            }
        };
        match forwarded {
            Forwarded::Answered(result) => {
                let _ = tx.send(UpstreamEvent::Response(result)).await;
            }
            Forwarded::Streaming(mut inner) => {
                while let Some(ev) = inner.recv().await {
                    if tx.send(ev).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    Forwarded::Streaming(rx)
}

/// Results up to this size are scanned on the response path's thread (a
/// few tens of microseconds); larger ones on the blocking pool, still
/// before the response goes back, since a result may be withheld.
const SCAN_INLINE_UP_TO: usize = 64 * 1024;

/// The classes found, for messages: `imperative_override, hidden_text`.
fn class_list(found: &[InjectionFinding]) -> String {
    let mut classes: Vec<&str> = found.iter().map(|f| f.pattern_class.as_str()).collect();
    classes.sort_unstable();
    classes.dedup();
    classes.join(", ")
}

/// What a policy or an agent may see of injection findings: class,
/// severity, where.
fn summaries(found: &[InjectionFinding]) -> Vec<Value> {
    found
        .iter()
        .map(
            |f| json!({"pattern_class": f.pattern_class, "severity": f.severity, "field": f.field}),
        )
        .collect()
}

/// What the scanners found in a successful result.
#[derive(Default)]
struct Inspection {
    dlp: Vec<Finding>,
    inbound: Vec<InjectionFinding>,
}

fn inspect_now(state: &AppState, scanner: &Scanner, value: &Value) -> Inspection {
    Inspection {
        dlp: scanner.scan_json(value),
        inbound: state.injection.scan_json(value),
    }
}

async fn inspect(
    state: &AppState,
    scanner: &Arc<Scanner>,
    value: &Value,
    size: usize,
) -> Inspection {
    if size <= SCAN_INLINE_UP_TO {
        return inspect_now(state, scanner, value);
    }
    let (value, s, scanner) = (value.clone(), state.clone(), scanner.clone());
    match tokio::task::spawn_blocking(move || inspect_now(&s, &scanner, &value)).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "result scan failed; scanning on the response path");
            Inspection::default()
        }
    }
}

/// What happens to a result given its injection findings.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Screen {
    /// Nothing found, or only lesser findings: delivered, logged.
    Deliver,
    /// High: delivered, the session is tainted and an alert logged.
    Taint,
    /// At or above BEHAVRY_INBOUND_BLOCK_SEVERITY: withheld.
    Withhold,
}

impl Screen {
    fn of(state: &AppState, found: &[InjectionFinding]) -> Screen {
        match behavry_dlp::worst(found) {
            Some(w) if w >= state.inbound_block => Screen::Withhold,
            Some(w) if w >= Severity::High => Screen::Taint,
            _ => Screen::Deliver,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Screen::Deliver => "log",
            Screen::Taint => "taint",
            Screen::Withhold => "block",
        }
    }
}

/// Payloads kept in the audit trail are cut at this size.
const PAYLOAD_CAP: usize = 64 * 1024;

/// The tenant's data-protection settings as they apply to one call.
#[derive(Clone)]
struct Protection {
    block_at: Severity,
    action: DlpAction,
    storage: PayloadStorage,
    trifecta: TrifectaAction,
    /// The built-in detectors and the tenant's own patterns.
    scanner: Arc<Scanner>,
}

impl Protection {
    fn of(state: &AppState, agent: &AgentState) -> Self {
        let p = &agent.protection;
        Protection {
            block_at: p
                .dlp_block_severity
                .as_deref()
                .and_then(|s| s.parse().ok())
                .unwrap_or(state.dlp_block),
            action: p.dlp_action,
            storage: p.payload_storage,
            trifecta: p.trifecta_action,
            scanner: state
                .scanners
                .for_tenant(agent.agent.tenant_id, &p.custom_patterns),
        }
    }

    /// What the audit trail keeps of a payload under the tenant's storage
    /// mode, for the event `event` of `tenant`; `None` for `metadata_only`.
    async fn payload(
        &self,
        state: &AppState,
        tenant: TenantId,
        event: Uuid,
        value: &Value,
    ) -> Option<Value> {
        let kept = match self.storage {
            PayloadStorage::MetadataOnly => return None,
            PayloadStorage::Full | PayloadStorage::Encrypted => value.clone(),
            PayloadStorage::Redacted => {
                let mut v = value.clone();
                self.scanner.redact_json(&mut v);
                v
            }
        };
        let text = kept.to_string();
        let kept = if text.len() <= PAYLOAD_CAP {
            kept
        } else {
            let mut cut = PAYLOAD_CAP;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            json!({"truncated": true, "size": text.len(), "prefix": &text[..cut]})
        };
        if self.storage != PayloadStorage::Encrypted {
            return Some(kept);
        }
        match state
            .vault
            .seal(state.store.tenant(tenant).as_ref(), event, &kept)
            .await
        {
            Ok(sealed) => Some(sealed),
            Err(e) => {
                // Never the payload in the clear instead: the record keeps
                // its metadata, findings and input hash, and says why the
                // payload is missing.
                tracing::error!(tenant = %tenant, error = %e, "a payload could not be sealed");
                Some(json!({"unavailable": "the payload could not be encrypted"}))
            }
        }
    }
}

/// The outcome record of an allowed call, linked to its decision record.
struct Outcome {
    who: Who,
    protection: Protection,
    exposure: Exposure,
    server: McpServerRecord,
    method: &'static str,
    tool: String,
    call_event_id: Uuid,
    started: Instant,
}

impl Outcome {
    /// Records on the session what this result exposed it to: injection
    /// findings (and the taint of a high one), untrusted content, private
    /// data. A withheld result never reached the agent, so it neither
    /// taints the session nor counts as untrusted content read.
    async fn flag_session(
        &self,
        state: &AppState,
        inbound: &[InjectionFinding],
        dlp: &[Finding],
        screen: Screen,
    ) {
        let Some(session) = &self.who.session else {
            return;
        };
        let flags = SessionFlags {
            tainted: screen == Screen::Taint,
            read_untrusted: self.exposure.untrusted && screen != Screen::Withhold,
            read_private: self.exposure.private || !dlp.is_empty(),
        };
        if inbound.is_empty() && flags == SessionFlags::default() {
            return;
        }
        let mut seen: Vec<InboundFinding> = inbound
            .iter()
            .map(|f| InboundFinding {
                pattern_class: f.pattern_class.as_str().into(),
                severity: f.severity.as_str().into(),
            })
            .collect();
        seen.dedup();
        if let Err(err) = state
            .sessions
            .flag(state.store.as_ref(), self.who.tenant, session, &seen, flags)
            .await
        {
            tracing::error!(session = %session, error = %err, "could not record what the session's results exposed it to");
        }
    }

    /// Screens what the upstream answered, records the outcome, and returns
    /// what the agent gets. `response_size` is the answer's size.
    ///
    /// A successful result is scanned twice: for data that must not leak
    /// (recorded in `dlp_findings`, never the data itself) and for
    /// instructions aimed at the agent. An injection at or above the block
    /// severity replaces the result: a tool call gets an error result that
    /// says why, other methods a JSON-RPC error. A high one taints the
    /// session. Either way the session remembers the findings for the
    /// policy input of its later calls.
    async fn finish(
        self,
        state: &AppState,
        result: Result<Value, RpcError>,
        response_size: usize,
    ) -> Result<Value, RpcError> {
        let mut e = base_event(&self.who, &self.server, "TOOL_RESULT");
        e.tool_name = Some(self.tool.clone());
        e.latency_ms =
            Some((self.started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0);
        e.response_size = response_size as i64;
        e.extra = json!({"server_id": self.server.id, "call_event_id": self.call_event_id});
        let tenant = self.who.tenant;
        let value = match result {
            Err(err) => {
                e.response_code = Some(err.code as i32);
                e.error = Some(err.message.clone());
                e.response_size = err.message.len() as i64;
                state.audit.record_later(tenant, e);
                return Err(err);
            }
            Ok(v) => v,
        };
        e.response_code = Some(0);
        let Inspection { dlp, inbound } =
            inspect(state, &self.protection.scanner, &value, response_size).await;
        if let Some(p) = self.protection.payload(state, tenant, e.id, &value).await {
            e.extra["payload"] = json!({"result": p});
        }
        let mut value = value;
        let redact = self.protection.action == DlpAction::Redact
            && dlp.iter().any(|f| f.severity >= self.protection.block_at);
        if redact {
            // What the tenant will not let agents read is replaced before
            // the result reaches the agent.
            self.protection
                .scanner
                .redact_json_at(&mut value, self.protection.block_at);
        }
        if redact {
            e.extra["dlp_redacted"] = json!(true);
            let found: Vec<&Finding> = dlp
                .iter()
                .filter(|f| f.severity >= self.protection.block_at)
                .collect();
            dlp_alert(
                state,
                tenant,
                self.who.agent,
                &found,
                format!(
                    "data redacted from a result of `{}` on `{}`",
                    self.tool, self.server.name
                ),
                json!({"server": self.server.name, "tool": self.tool, "audit_event_id": e.id, "findings": findings_summary(&found), "action": "redact"}),
            );
        }
        e.dlp_action = Some(
            if redact {
                "block"
            } else if dlp.is_empty() {
                "allow"
            } else {
                "warn"
            }
            .into(),
        );
        e.dlp_findings = serde_json::to_value(&dlp).unwrap_or_else(|_| json!([]));
        let screen = if inbound.is_empty() {
            Screen::Deliver
        } else {
            Screen::of(state, &inbound)
        };
        self.flag_session(state, &inbound, &dlp, screen).await;
        if inbound.is_empty() {
            state.audit.record_later(tenant, e);
            return Ok(value);
        }

        let classes = class_list(&inbound);
        let worst = behavry_dlp::worst(&inbound).unwrap_or(Severity::Medium);
        e.extra["inbound"] = json!({"action": screen.as_str(), "findings": inbound});
        if screen != Screen::Deliver {
            let (severity, what) = if screen == Screen::Withhold {
                (AlertSeverity::Critical, "withheld")
            } else {
                (AlertSeverity::Warning, "delivered and the session tainted")
            };
            alerts::raise(
                state,
                tenant,
                Alert::new(
                    AlertType::InjectionDetected,
                    severity,
                    format!("instructions aimed at the agent in a result of `{}` on `{}` ({classes}); {what}", self.tool, self.server.name),
                )
                .agent(self.who.agent)
                .details(json!({
                    "server": self.server.name,
                    "tool": self.tool,
                    "session_id": self.who.session,
                    "audit_event_id": e.id,
                    "severity": worst,
                    "findings": summaries(&inbound),
                    "action": screen.as_str(),
                })),
            );
        }
        if screen != Screen::Withhold {
            state.audit.record_later(tenant, e);
            return Ok(value);
        }
        let reason = format!(
            "the result was withheld: it carries instructions aimed at the agent ({classes}; {worst})"
        );
        e.policy_result = Some("deny".into());
        e.policy_id = Some("inbound".into());
        e.policy_reason = Some(reason.clone());
        e.response_code = Some(codes::INJECTION_BLOCKED as i32);
        let event_id = e.id;
        state.audit.record_later(tenant, e);
        if self.method == "tools/call" {
            // An error result: the agent reads it as a failed tool call
            // and carries on, without the injected text.
            Ok(json!({
                "content": [{
                    "type": "text",
                    "text": format!("Behavry withheld this tool result: it carries instructions aimed at the agent ({classes}). Audit event {event_id}."),
                }],
                "isError": true,
            }))
        } else {
            Err(
                RpcError::new(codes::INJECTION_BLOCKED, reason).with_data(json!({
                    "policy": "inbound",
                    "audit_event_id": event_id,
                    "findings": summaries(&inbound),
                })),
            )
        }
    }
}
