//! Rows as the storage layer hands them out and takes them in.

use behavry_core::{
    AdminRole, AdminStatus, AdminUserId, AgentId, DeploymentMode, PlanTier, Tenant, TenantConfig,
    TenantId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A tenant with its configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub tenant: Tenant,
    pub config: TenantConfig,
}

/// An admin account. `password_hash` is a bcrypt hash; the plaintext is never
/// stored.
#[derive(Clone, PartialEq)]
pub struct AdminUserRecord {
    pub id: AdminUserId,
    pub tenant_id: Option<TenantId>,
    pub username: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub role: AdminRole,
    pub status: AdminStatus,
    pub is_super_admin: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for AdminUserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminUserRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("status", &self.status)
            .field("is_super_admin", &self.is_super_admin)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct NewAdminUser {
    pub username: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub role: AdminRole,
}

impl std::fmt::Debug for NewAdminUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAdminUser")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// An enrollment token to create with a tenant. Only its SHA-256 hash is
/// stored; the plaintext is returned to the caller once.
#[derive(Clone, Debug)]
pub struct NewEnrollmentToken {
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct NewTenant {
    pub name: String,
    /// Preferred slug; the store appends `-2`, `-3`, … when it is taken.
    pub slug_base: String,
    pub config: TenantConfig,
    pub admin: NewAdminUser,
    pub enrollment_token: Option<NewEnrollmentToken>,
}

#[derive(Clone, Debug)]
pub struct CreatedTenant {
    pub record: TenantRecord,
    pub admin: AdminUserRecord,
}

/// Fields a super-admin may change. `None` leaves a field as it is; the
/// nested options of nullable fields distinguish "set to null" (`Some(None)`).
#[derive(Clone, Debug, Default)]
pub struct TenantPatch {
    pub plan_tier: Option<PlanTier>,
    pub max_agents: Option<i32>,
    pub max_rpm_per_agent: Option<i32>,
    pub audit_retention_days: Option<i32>,
    pub deployment_mode: Option<DeploymentMode>,
    pub license_key: Option<Option<String>>,
    pub license_expires_at: Option<Option<DateTime<Utc>>>,
    /// `Some(false)` suspends the tenant, `Some(true)` lifts a suspension.
    pub is_active: Option<bool>,
}

impl TenantPatch {
    pub fn suspend() -> Self {
        Self {
            is_active: Some(false),
            ..Self::default()
        }
    }

    /// Applies the patch to a tenant in memory; backends persist the result.
    pub fn apply(&self, record: &mut TenantRecord, now: DateTime<Utc>) {
        let c = &mut record.config;
        if let Some(v) = self.plan_tier {
            c.plan_tier = v;
        }
        if let Some(v) = self.max_agents {
            c.max_agents = v;
        }
        if let Some(v) = self.max_rpm_per_agent {
            c.max_rpm_per_agent = v;
        }
        if let Some(v) = self.audit_retention_days {
            c.audit_retention_days = v;
        }
        if let Some(v) = self.deployment_mode {
            c.deployment_mode = v;
        }
        if let Some(v) = &self.license_key {
            c.license_key = v.clone();
        }
        if let Some(v) = self.license_expires_at {
            c.license_expires_at = v;
        }
        match self.is_active {
            Some(false) if !record.tenant.is_frozen => {
                record.tenant.is_frozen = true;
                c.suspended_at = Some(now);
            }
            Some(true) => {
                record.tenant.is_frozen = false;
                c.suspended_at = None;
            }
            _ => {}
        }
    }
}

/// An audit event to append. The store gives it its place in the tenant's
/// hash chain (`seq`, `previous_hash`, `event_hash`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NewAuditEvent {
    pub id: Uuid,
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
    pub response_code: Option<i32>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    pub request_size: i64,
    pub response_size: i64,
    pub extra: serde_json::Value,
    pub requester_id: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct NewEscalation {
    pub id: Uuid,
    pub agent_id: Option<AgentId>,
    pub status: String,
    pub summary: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The audit event of the decision that escalated the call.
    pub audit_event_id: Option<Uuid>,
    /// Identifies the call (agent, server, tool, arguments), so that the
    /// agent retrying it picks up the decision.
    pub call_key: Option<String>,
}

/// An escalation as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EscalationRecord {
    pub id: Uuid,
    pub agent_id: Option<AgentId>,
    pub audit_event_id: Option<Uuid>,
    pub status: behavry_core::EscalationStatus,
    /// What the approver sees: agent, server, tool, action, resource, the
    /// rules that fired, findings, and the arguments as the tenant's
    /// payload storage allows.
    pub summary: serde_json::Value,
    pub decided_by: Option<Uuid>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub call_key: Option<String>,
    /// When the held call (or its retry) used the decision.
    pub consumed_at: Option<DateTime<Utc>>,
    /// The exception an approval added, if any.
    pub exception_id: Option<Uuid>,
}

/// Which escalations to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct EscalationFilter {
    pub status: Option<behavry_core::EscalationStatus>,
    pub agent_id: Option<AgentId>,
    pub limit: i64,
    pub offset: i64,
}

/// A decision on a pending escalation.
#[derive(Clone, Debug)]
pub struct EscalationDecision {
    pub status: behavry_core::EscalationStatus,
    /// The admin who decided; `None` when it timed out.
    pub by: Option<AdminUserId>,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
    pub exception_id: Option<Uuid>,
}

/// An approval that outlives its call: the same agent calling the same
/// tool (on the same resource, when one is named) is not escalated again
/// until it expires.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EscalationException {
    pub id: Uuid,
    pub agent_id: AgentId,
    pub server_id: Uuid,
    pub tool_name: String,
    pub resource: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub escalation_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// What one maintenance pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceOutcome {
    pub partitions_created: u32,
}

/// An agent to create. `client_secret_hash` is the SHA-256 of a 256-bit
/// random secret: the secret's entropy makes a slow hash unnecessary.
#[derive(Clone)]
pub struct NewAgent {
    pub name: String,
    pub agent_type: String,
    pub owner: Option<String>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub tags: Vec<String>,
    pub client_id: String,
    pub client_secret_hash: String,
}

impl std::fmt::Debug for NewAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAgent")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Changes to an agent's descriptive fields; `None` leaves a field as is.
#[derive(Clone, Debug, Default)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub owner: Option<Option<String>>,
    pub agent_type: Option<String>,
    pub roles: Option<Vec<String>>,
    pub permissions: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default)]
pub struct AgentFilter {
    pub status: Option<behavry_core::AgentStatus>,
    pub limit: i64,
    pub offset: i64,
}

/// What the token endpoint needs to check a client secret.
#[derive(Clone)]
pub struct AgentCredentials {
    pub agent: behavry_core::Agent,
    pub client_secret_hash: String,
    pub tenant_frozen: bool,
}

/// An upstream MCP server registered by a tenant. `secrets` holds the
/// encrypted environment variables and HTTP headers (credentials); the
/// store never sees them in clear.
#[derive(Clone, PartialEq)]
pub struct McpServerRecord {
    pub id: Uuid,
    pub tenant_id: behavry_core::TenantId,
    pub name: String,
    /// `stdio`, `streamable_http` or `sse`.
    pub transport: String,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub url: Option<String>,
    pub secrets: Option<String>,
    pub tags: Vec<String>,
    pub timeout_ms: i64,
    pub enabled: bool,
    /// stdio: the operator's catalogue entry this server runs.
    pub catalog_entry: Option<String>,
    /// stdio: `command` and `args` were set by a platform operator. A
    /// command without this (registered before tenants lost the right to
    /// name programs) is never run.
    pub operator_defined: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for McpServerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServerRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct NewMcpServer {
    pub name: String,
    pub transport: String,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub url: Option<String>,
    pub secrets: Option<String>,
    pub tags: Vec<String>,
    pub timeout_ms: i64,
    pub enabled: bool,
    pub catalog_entry: Option<String>,
    pub operator_defined: bool,
}

/// Changes to a server; `None` leaves a field as it is.
#[derive(Clone, Default)]
pub struct McpServerPatch {
    pub name: Option<String>,
    pub command: Option<Option<String>>,
    pub args: Option<Vec<String>>,
    pub url: Option<Option<String>>,
    pub secrets: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub timeout_ms: Option<i64>,
    pub enabled: Option<bool>,
}

/// An agent's MCP session at the gateway.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionRecord {
    pub id: String,
    pub tenant_id: behavry_core::TenantId,
    pub agent_id: AgentId,
    pub server_id: Option<String>,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    pub protocol_version: Option<String>,
    pub started_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub call_count: i64,
    pub ended_at: Option<DateTime<Utc>>,
    /// The session received tool output flagged high by the injection
    /// scanner.
    pub tainted: bool,
    /// `[{pattern_class, severity}]` seen in the session's tool output.
    pub inbound_findings: serde_json::Value,
    /// The session has read content from a tool tagged untrusted.
    pub read_untrusted: bool,
    /// The session has read data from a tool tagged private, or a result
    /// with a data-protection finding.
    pub read_private: bool,
}

/// Flags raised on a session; a raised flag is never lowered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionFlags {
    pub tainted: bool,
    pub read_untrusted: bool,
    pub read_private: bool,
}

#[derive(Clone, Debug)]
pub struct NewSession {
    pub id: String,
    pub agent_id: AgentId,
    pub server_id: String,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    pub protocol_version: String,
}

/// Whether a policy takes part in decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyStatus {
    /// Saved and validated, but not evaluated on traffic.
    Draft,
    /// Evaluated on every call.
    Active,
}

impl PolicyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyStatus::Draft => "draft",
            PolicyStatus::Active => "active",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "draft" => Some(PolicyStatus::Draft),
            "active" => Some(PolicyStatus::Active),
            _ => None,
        }
    }
}

/// How an active policy's votes are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    /// Its votes decide.
    Enforce,
    /// Its votes are recorded next to the decision but change nothing.
    Monitor,
}

impl PolicyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "enforce",
            PolicyMode::Monitor => "monitor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enforce" => Some(PolicyMode::Enforce),
            "monitor" => Some(PolicyMode::Monitor),
            _ => None,
        }
    }
}

/// A tenant's policy as it stands now.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyRecord {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub name: String,
    pub description: String,
    /// Rego source.
    pub content: String,
    /// The Rego package the content declares, e.g. `behavry.policies.guard`.
    pub package: String,
    pub status: PolicyStatus,
    pub mode: PolicyMode,
    /// 1 at creation, one more for every change.
    pub version: i32,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A policy as it was at one version. Versions are never changed and
/// outlive the policy itself.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyVersionRecord {
    pub policy_id: Uuid,
    pub version: i32,
    pub name: String,
    pub description: String,
    pub content: String,
    pub package: String,
    pub status: PolicyStatus,
    pub mode: PolicyMode,
    /// Who made this version.
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct NewPolicy {
    pub name: String,
    pub description: String,
    pub content: String,
    pub package: String,
    pub status: PolicyStatus,
    pub mode: PolicyMode,
    pub created_by: Option<Uuid>,
}

/// A change to a policy, stored as its next version; `None` leaves a field
/// as it is.
#[derive(Clone, Debug, Default)]
pub struct PolicyChange {
    pub name: Option<String>,
    pub description: Option<String>,
    /// New content with the package it declares.
    pub content: Option<(String, String)>,
    pub status: Option<PolicyStatus>,
    pub mode: Option<PolicyMode>,
    /// When set, the change applies only if the policy is still at this
    /// version (Conflict otherwise): protects against lost updates.
    pub expected_version: Option<i32>,
    pub changed_by: Option<Uuid>,
}

/// A tenant's policy-wide settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicySettings {
    /// Whether the built-in base pack is combined with the tenant's policies.
    pub base_pack_enabled: bool,
    /// Grows with every policy change; replicas compare it to what they
    /// have compiled to know when to reload.
    pub revision: i64,
}

/// A tool definition pinned for a tenant's server, and a changed
/// definition waiting for an admin, if any.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolPin {
    pub server_id: Uuid,
    pub tool_name: String,
    /// SHA-256 of the approved definition's canonical JSON.
    pub hash: String,
    pub definition: serde_json::Value,
    pub approved_at: DateTime<Utc>,
    /// An admin's id, or `first_use`.
    pub approved_by: String,
    pub pending_hash: Option<String>,
    pub pending_definition: Option<serde_json::Value>,
    pub pending_since: Option<DateTime<Utc>>,
    pub rejected_hash: Option<String>,
}

/// An alert to raise. A repeat (same type, same agent) while an earlier
/// one is unresolved and was last seen after `fold_since` is folded into
/// it: its count goes up, its details and last-seen time are replaced, and
/// its severity rises if this one is worse.
#[derive(Clone, Debug)]
pub struct NewAlert {
    pub agent_id: Option<AgentId>,
    pub alert_type: behavry_core::AlertType,
    pub severity: behavry_core::AlertSeverity,
    pub title: String,
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
    pub fold_since: DateTime<Utc>,
}

/// An alert as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertRecord {
    pub id: Uuid,
    pub agent_id: Option<AgentId>,
    pub alert_type: behavry_core::AlertType,
    pub severity: behavry_core::AlertSeverity,
    pub status: behavry_core::AlertStatus,
    pub title: String,
    pub details: serde_json::Value,
    /// How many times it was raised (repeats are folded into one alert).
    pub occurrences: i64,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<Uuid>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<Uuid>,
}

/// Which alerts to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    pub status: Option<behavry_core::AlertStatus>,
    pub alert_type: Option<behavry_core::AlertType>,
    pub min_severity: Option<behavry_core::AlertSeverity>,
    pub agent_id: Option<AgentId>,
    pub limit: i64,
    pub offset: i64,
}

/// One alert sent (or being sent) to one webhook URL.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookDelivery {
    pub id: Uuid,
    pub alert_id: Option<Uuid>,
    pub url: String,
    /// `pending` (being retried), `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    /// The receiver's last HTTP status, if it answered.
    pub response_code: Option<i32>,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One agent's calls of one tool in one clock hour, as rolled up from the
/// audit trail into `agent_activity`.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityRow {
    pub agent_id: AgentId,
    pub hour: DateTime<Utc>,
    /// Empty for calls without a tool name.
    pub tool_name: String,
    pub calls: i64,
    pub denies: i64,
    pub escalations: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub flagged: i64,
}

/// Folds per-tool rows into each agent's hours.
pub fn fold_activity(
    rows: Vec<ActivityRow>,
) -> std::collections::BTreeMap<AgentId, Vec<behavry_core::risk::HourUsage>> {
    use std::collections::BTreeMap;
    let mut by_agent: BTreeMap<AgentId, BTreeMap<DateTime<Utc>, behavry_core::risk::HourUsage>> =
        BTreeMap::new();
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    for r in rows {
        let h = by_agent
            .entry(r.agent_id)
            .or_default()
            .entry(r.hour)
            .or_insert_with(|| behavry_core::risk::HourUsage {
                hour: r.hour,
                ..Default::default()
            });
        h.calls += count(r.calls);
        h.denies += count(r.denies);
        h.escalations += count(r.escalations);
        h.bytes_in += count(r.bytes_in);
        h.bytes_out += count(r.bytes_out);
        h.flagged += count(r.flagged);
        if !r.tool_name.is_empty() && r.calls > 0 {
            *h.tools.entry(r.tool_name).or_default() += count(r.calls);
        }
    }
    by_agent
        .into_iter()
        .map(|(agent, hours)| (agent, hours.into_values().collect()))
        .collect()
}

/// What the risk job stores on an agent.
#[derive(Clone, Debug, PartialEq)]
pub struct RiskUpdate {
    pub score: i32,
    pub tier: behavry_core::RiskTier,
    pub baseline_status: behavry_core::BaselineStatus,
    pub has_recent_drift: bool,
    pub factors: behavry_core::RiskFactors,
    pub reported: std::collections::BTreeMap<String, DateTime<Utc>>,
    pub at: DateTime<Utc>,
}
