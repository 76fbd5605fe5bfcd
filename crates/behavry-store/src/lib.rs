//! Storage contracts for Behavry.
//!
//! The traits are split by *who may call them*:
//!
//! - [`AuthStore`]: the few lookups needed before anyone is authenticated
//!   (find an admin by username, "is the platform initialised?").
//! - [`PlatformStore`]: cross-tenant administration. Obtaining it requires a
//!   [`PlatformGrant`], which only super-admin code paths construct.
//! - [`TenantStore`]: everything a tenant may touch, bound to one tenant when
//!   the handle is made. On PostgreSQL the binding is enforced by row-level
//!   security; on SQLite by the handle itself.
//!
//! Backends implement [`Store`]; the server picks one at start-up and works
//! only with `Arc<dyn Store>` from then on.

pub mod audit;
mod error;
pub mod migrations;
pub mod models;

use async_trait::async_trait;
use behavry_core::{AdminUserId, Agent, AgentId, AgentStatus, TenantId, UsageSummary};
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use error::StoreError;
pub use models::*;

pub type StoreResult<T> = Result<T, StoreError>;

/// Proof that the caller acts as a platform operator. Constructed by the
/// server after verifying a super-admin token, and by operator commands run
/// on the host (`behavry admin …`). Its only purpose is to make cross-tenant
/// access impossible to reach by accident.
#[derive(Debug)]
pub struct PlatformGrant(());

impl PlatformGrant {
    /// Call only after the caller has been verified as a super-admin, or from
    /// a command that runs with the operator's own database credentials.
    pub fn operator_verified() -> Self {
        PlatformGrant(())
    }

    /// Self-service signup creates a tenant on behalf of an anonymous
    /// caller; the handler must use the grant for `create_tenant` only.
    pub fn self_service_signup() -> Self {
        PlatformGrant(())
    }

    /// Background jobs of the server itself (e.g. polling policy
    /// revisions); never derived from a request.
    pub fn background_job() -> Self {
        PlatformGrant(())
    }
}

/// A storage backend.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    /// Lookups needed before authentication.
    fn auth(&self) -> &dyn AuthStore;

    /// Cross-tenant administration.
    fn platform(&self, grant: &PlatformGrant) -> &dyn PlatformStore;

    /// A handle that can only see and change the given tenant's rows.
    fn tenant(&self, tenant: TenantId) -> Box<dyn TenantStore>;

    /// Periodic housekeeping (e.g. creating audit partitions ahead of time).
    async fn maintenance(&self) -> StoreResult<MaintenanceOutcome>;

    /// Carries events between the replicas sharing this database, on
    /// backends that can (PostgreSQL LISTEN/NOTIFY); `None` on a single
    /// node.
    fn event_channel(&self) -> Option<std::sync::Arc<dyn EventChannel>> {
        None
    }
}

/// A broadcast channel between replicas: every subscriber, on every
/// replica, receives every published payload (its own included).
#[async_trait]
pub trait EventChannel: Send + Sync {
    /// The largest payload the channel carries, in bytes.
    fn max_payload(&self) -> usize;
    async fn publish(&self, payload: &str) -> StoreResult<()>;
    /// A new subscription. It reconnects by itself after a lost
    /// connection; payloads published meanwhile are lost.
    async fn subscribe(&self) -> StoreResult<Box<dyn EventSubscription>>;
}

#[async_trait]
pub trait EventSubscription: Send {
    /// The next payload; an error when the connection was lost (the next
    /// call reconnects).
    async fn next(&mut self) -> StoreResult<String>;
}

#[async_trait]
pub trait AuthStore: Send + Sync {
    /// The admin account with this username (case-insensitive), if any.
    async fn find_admin_by_username(&self, username: &str) -> StoreResult<Option<AdminUserRecord>>;
    async fn record_admin_login(&self, admin: behavry_core::AdminUserId) -> StoreResult<()>;
    /// True once at least one tenant exists.
    async fn is_initialized(&self) -> StoreResult<bool>;
    /// The agent holding this client id, with its secret hash.
    async fn find_agent_credentials(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<AgentCredentials>>;
    /// Consumes a single-use enrollment token (by its hash) and creates the
    /// agent in the token's tenant, atomically. NotFound when the token is
    /// unknown, used or expired; Conflict when the tenant's agent limit is
    /// reached.
    async fn enroll_agent(&self, token_hash: &str, new: NewAgent) -> StoreResult<Agent>;
}

#[async_trait]
pub trait PlatformStore: Send + Sync {
    /// Creates a tenant, its configuration, its first admin and (optionally)
    /// an enrollment token, atomically. The slug is derived from
    /// `new.slug_base` with a numeric suffix on collision.
    async fn create_tenant(&self, new: NewTenant) -> StoreResult<CreatedTenant>;
    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>>;
    async fn get_tenant(&self, id: TenantId) -> StoreResult<TenantRecord>;
    async fn update_tenant(&self, id: TenantId, patch: TenantPatch) -> StoreResult<TenantRecord>;
    async fn usage(
        &self,
        id: TenantId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<UsageSummary>;
    /// Creates or updates a platform operator (super-admin, no tenant).
    /// Returns true when the account was created.
    async fn upsert_platform_admin(&self, username: &str, password_hash: &str)
    -> StoreResult<bool>;
    /// Sets a new password hash for any admin. NotFound when no such user.
    async fn set_admin_password(&self, username: &str, password_hash: &str) -> StoreResult<()>;
    /// Every tenant whose policies were ever changed, with its policy
    /// revision. Polled by each replica to pick up changes made elsewhere.
    async fn policy_revisions(&self) -> StoreResult<Vec<(TenantId, i64)>>;
    /// Pending escalations of every tenant whose time ran out by `at`.
    async fn expired_escalations(
        &self,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<(TenantId, uuid::Uuid)>>;
}

#[async_trait]
pub trait TenantStore: Send + Sync {
    fn tenant_id(&self) -> TenantId;
    async fn tenant(&self) -> StoreResult<TenantRecord>;
    /// Replaces the tenant's data-protection settings
    /// (`TenantConfig.data_protection_policy`).
    async fn set_data_protection_policy(&self, policy: &serde_json::Value) -> StoreResult<()>;
    /// Replaces the tenant's blast-radius limits
    /// (`TenantConfig.blast_radius_config`).
    async fn set_blast_radius_config(&self, config: &serde_json::Value) -> StoreResult<()>;
    /// The tenant's payload data key as stored (wrapped by the master key),
    /// if one was made.
    async fn payload_data_key(&self) -> StoreResult<Option<String>>;
    /// Stores `wrapped` as the tenant's payload data key unless one is
    /// already there, and returns the one that is: when two replicas race,
    /// both end up with the same key.
    async fn init_payload_data_key(&self, wrapped: &str) -> StoreResult<String>;
    async fn usage(&self, since: DateTime<Utc>, until: DateTime<Utc>) -> StoreResult<UsageSummary>;
    async fn create_admin(&self, new: NewAdminUser) -> StoreResult<AdminUserRecord>;
    async fn list_admins(&self) -> StoreResult<Vec<AdminUserRecord>>;
    /// Appends events to the tenant's hash chain, in order, atomically, and
    /// returns them as stored. The table is append-only: there is no update
    /// or delete counterpart.
    async fn append_audit_events(
        &self,
        events: &[NewAuditEvent],
    ) -> StoreResult<Vec<audit::AuditEvent>>;
    /// Events in chain order matching the query.
    async fn list_audit_events(
        &self,
        query: &audit::AuditQuery,
    ) -> StoreResult<Vec<audit::AuditEvent>>;
    /// One event of the tenant's trail.
    async fn get_audit_event(&self, id: uuid::Uuid) -> StoreResult<audit::AuditEvent>;
    async fn count_audit_events(&self) -> StoreResult<i64>;
    async fn record_escalation(&self, escalation: NewEscalation) -> StoreResult<()>;
    async fn get_escalation(&self, id: uuid::Uuid) -> StoreResult<EscalationRecord>;
    /// Escalations matching the filter, newest first, and how many match.
    async fn list_escalations(
        &self,
        filter: &EscalationFilter,
    ) -> StoreResult<(Vec<EscalationRecord>, i64)>;
    /// The newest escalation of a call whose decision no call has used yet.
    async fn open_escalation_for_call(
        &self,
        call_key: &str,
    ) -> StoreResult<Option<EscalationRecord>>;
    /// Records a decision on a pending escalation; `None` when it is no
    /// longer pending (decided elsewhere, or timed out).
    async fn decide_escalation(
        &self,
        id: uuid::Uuid,
        decision: &EscalationDecision,
    ) -> StoreResult<Option<EscalationRecord>>;
    /// Marks a decided escalation as used by its call; false when a call
    /// already used it (a decision applies once).
    async fn consume_escalation(&self, id: uuid::Uuid, at: DateTime<Utc>) -> StoreResult<bool>;
    async fn add_escalation_exception(&self, exception: &EscalationException) -> StoreResult<()>;
    /// An unexpired exception covering this agent, server, tool and
    /// resource (an exception without a resource covers every resource).
    async fn matching_exception(
        &self,
        agent: AgentId,
        server_id: uuid::Uuid,
        tool_name: &str,
        resource: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<EscalationException>>;
    async fn list_escalation_exceptions(&self) -> StoreResult<Vec<EscalationException>>;
    /// Records a webhook delivery as it stands (inserted, then updated by
    /// id after each attempt).
    async fn record_webhook_delivery(&self, delivery: &WebhookDelivery) -> StoreResult<()>;
    /// The newest deliveries first.
    async fn list_webhook_deliveries(&self, limit: i64) -> StoreResult<Vec<WebhookDelivery>>;
    async fn delete_escalation_exception(&self, id: uuid::Uuid) -> StoreResult<()>;

    /// Raises an alert, folding a repeat into the unresolved one it
    /// repeats (see [`NewAlert`]); returns it and whether it is new.
    async fn raise_alert(&self, new: &NewAlert) -> StoreResult<(AlertRecord, bool)>;
    /// Alerts matching the filter, most recently seen first, and how many
    /// match in all.
    async fn list_alerts(&self, filter: &AlertFilter) -> StoreResult<(Vec<AlertRecord>, i64)>;
    async fn get_alert(&self, id: uuid::Uuid) -> StoreResult<AlertRecord>;
    /// Moves an alert from `from` to `to` (acknowledged or resolved),
    /// recording who and when; `None` when its status is no longer `from`.
    async fn set_alert_status(
        &self,
        id: uuid::Uuid,
        from: behavry_core::AlertStatus,
        to: behavry_core::AlertStatus,
        by: AdminUserId,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<AlertRecord>>;

    /// Conflict when the tenant's `max_agents` is reached.
    async fn create_agent(&self, new: NewAgent) -> StoreResult<Agent>;
    /// A page of agents (newest first) and the total matching the filter.
    async fn list_agents(&self, filter: AgentFilter) -> StoreResult<(Vec<Agent>, i64)>;
    async fn get_agent(&self, id: AgentId) -> StoreResult<Agent>;
    async fn update_agent(&self, id: AgentId, patch: AgentPatch) -> StoreResult<Agent>;
    /// Revocation is final: a revoked agent cannot change status again.
    async fn set_agent_status(&self, id: AgentId, status: AgentStatus) -> StoreResult<Agent>;
    /// Freezes an agent (`Some(reason)`; an agent already frozen keeps its
    /// first reason) or unfreezes it (`None`).
    async fn set_agent_frozen(&self, id: AgentId, reason: Option<&str>) -> StoreResult<Agent>;
    async fn set_agent_secret(&self, id: AgentId, client_secret_hash: &str) -> StoreResult<()>;
    /// Records that the agent was seen (heartbeat or call).
    async fn touch_agent(&self, id: AgentId) -> StoreResult<()>;
    /// Rolls the audit trail's tool calls from `since` (the start of an
    /// hour) on up into `agent_activity`, replacing those hours' rows, and
    /// drops rows of hours before `keep_from`. Running it twice, or on two
    /// replicas at once, gives the same rows.
    async fn roll_up_agent_activity(
        &self,
        since: DateTime<Utc>,
        keep_from: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The newest hour rolled up, if any.
    async fn latest_activity_hour(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Rolled-up activity from `since` on, of one agent or of all.
    async fn agent_activity(
        &self,
        since: DateTime<Utc>,
        agent: Option<AgentId>,
    ) -> StoreResult<Vec<ActivityRow>>;
    /// How each agent's escalations decided since `since` ended.
    async fn escalation_outcomes(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(AgentId, behavry_core::risk::EscalationOutcomes)>>;
    /// Stores the risk job's verdict on an agent.
    async fn set_agent_risk(&self, id: AgentId, update: &RiskUpdate) -> StoreResult<()>;
    /// Stores a new enrollment token (hash only) for this tenant.
    async fn create_enrollment_token(
        &self,
        token: NewEnrollmentToken,
        created_by: Option<AdminUserId>,
    ) -> StoreResult<()>;

    /// Conflict when the name is taken in this tenant.
    async fn create_mcp_server(&self, new: NewMcpServer) -> StoreResult<McpServerRecord>;
    async fn list_mcp_servers(&self) -> StoreResult<Vec<McpServerRecord>>;
    async fn get_mcp_server(&self, id: Uuid) -> StoreResult<McpServerRecord>;
    async fn update_mcp_server(
        &self,
        id: Uuid,
        patch: McpServerPatch,
    ) -> StoreResult<McpServerRecord>;
    async fn delete_mcp_server(&self, id: Uuid) -> StoreResult<()>;
    /// Registers several servers at once, all or nothing. A name that is
    /// taken is a Conflict, unless `replace_existing`: then that server
    /// takes every field of the new one (its id stays). Returns each record
    /// with whether it was created (`false`: replaced), in input order.
    async fn import_mcp_servers(
        &self,
        servers: Vec<NewMcpServer>,
        replace_existing: bool,
    ) -> StoreResult<Vec<(McpServerRecord, bool)>>;

    /// The pinned tool definitions of a server.
    async fn tool_pins(&self, server_id: Uuid) -> StoreResult<Vec<ToolPin>>;
    /// Pins a definition seen for the first time; does nothing when the
    /// tool is pinned already.
    async fn pin_tool(
        &self,
        server_id: Uuid,
        tool_name: &str,
        hash: &str,
        definition: &serde_json::Value,
    ) -> StoreResult<()>;
    /// Records a changed definition for an admin to decide on. Returns
    /// false when that change is already pending or was rejected.
    async fn propose_tool_change(
        &self,
        server_id: Uuid,
        tool_name: &str,
        hash: &str,
        definition: &serde_json::Value,
    ) -> StoreResult<bool>;
    /// Approves the pending change (it becomes the pin) or rejects it
    /// (remembered, so it is not proposed again). NotFound when nothing is
    /// pending.
    async fn decide_tool_change(
        &self,
        server_id: Uuid,
        tool_name: &str,
        approve: bool,
        by: &str,
    ) -> StoreResult<ToolPin>;
    /// Every pending change of the tenant.
    async fn pending_tool_changes(&self) -> StoreResult<Vec<ToolPin>>;

    async fn create_session(&self, new: NewSession) -> StoreResult<SessionRecord>;
    /// NotFound for unknown sessions; ended sessions are returned (with
    /// `ended_at`) so callers can tell "ended" from "never existed".
    async fn get_session(&self, id: &str) -> StoreResult<SessionRecord>;
    /// Records activity: `calls` more calls, last seen now.
    async fn touch_session(&self, id: &str, calls: i64) -> StoreResult<()>;
    /// Records what the session's tool output held: `inbound_findings`
    /// replaces the stored list; each flag set in `flags` is raised, and
    /// flags are never lowered.
    async fn flag_session(
        &self,
        id: &str,
        flags: SessionFlags,
        inbound_findings: &serde_json::Value,
    ) -> StoreResult<()>;
    async fn end_session(&self, id: &str) -> StoreResult<()>;
    /// Ends every live session of an agent; returns how many.
    async fn end_agent_sessions(&self, agent: AgentId) -> StoreResult<u64>;
    /// Newest first; `active_only` leaves out ended sessions.
    async fn list_sessions(
        &self,
        agent: Option<AgentId>,
        active_only: bool,
        limit: i64,
    ) -> StoreResult<Vec<SessionRecord>>;

    // Policies. Every change stores a new immutable version and raises the
    // tenant's policy revision in the same transaction.

    /// Conflict when the name is taken, or when the policy is active and
    /// another active policy declares the same package.
    async fn create_policy(&self, new: NewPolicy) -> StoreResult<PolicyRecord>;
    /// The tenant's policies, by name.
    async fn list_policies(&self) -> StoreResult<Vec<PolicyRecord>>;
    async fn get_policy(&self, id: Uuid) -> StoreResult<PolicyRecord>;
    /// Conflict as for create, and when `expected_version` is stale.
    async fn update_policy(&self, id: Uuid, change: PolicyChange) -> StoreResult<PolicyRecord>;
    /// Removes the policy (its versions stay) and returns it as it was.
    async fn delete_policy(&self, id: Uuid) -> StoreResult<PolicyRecord>;
    /// Every stored version of a policy, oldest first (also after the
    /// policy was deleted).
    async fn list_policy_versions(&self, id: Uuid) -> StoreResult<Vec<PolicyVersionRecord>>;
    async fn policy_settings(&self) -> StoreResult<PolicySettings>;
    async fn set_base_pack(&self, enabled: bool) -> StoreResult<PolicySettings>;
}
