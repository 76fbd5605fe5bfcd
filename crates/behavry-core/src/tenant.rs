//! Tenants, their configuration (plan limits, feature flags, integration
//! settings) and usage figures.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::TenantId;

string_enum!(
    /// Commercial plan of a tenant.
    PlanTier { Trial => "trial", Growth => "growth", Enterprise => "enterprise" }
);

string_enum!(
    /// Where the tenant's data plane runs.
    DeploymentMode {
        Saas => "saas",
        Hybrid => "hybrid",
        Byoc => "byoc",
        SelfHosted => "self-hosted",
    }
);

/// An organisation. `is_frozen` is set while the tenant is suspended: its
/// agents are blocked and its admins keep read-only access.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub slug: String,
    pub is_frozen: bool,
    pub created_at: DateTime<Utc>,
}

impl Tenant {
    pub fn is_active(&self) -> bool {
        !self.is_frozen
    }
}

/// Per-tenant limits, flags and integration settings. Defaults are those of a
/// trial tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantConfig {
    pub plan_tier: PlanTier,
    /// Maximum registered agents; -1 means unlimited.
    pub max_agents: i32,
    pub max_rpm_per_agent: i32,
    pub audit_retention_days: i32,
    pub deployment_mode: DeploymentMode,
    pub license_key: Option<String>,
    pub license_expires_at: Option<DateTime<Utc>>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub data_protection_policy: Option<serde_json::Value>,
    pub blast_radius_config: Option<serde_json::Value>,
    pub auto_activate_threshold: Option<f64>,
    pub auto_activate_enabled: bool,
    pub data_plane_deployment_id: Option<String>,
    pub data_plane_last_seen_at: Option<DateTime<Utc>>,
    pub data_plane_region: Option<String>,
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            plan_tier: PlanTier::Trial,
            max_agents: -1,
            max_rpm_per_agent: 60,
            audit_retention_days: 90,
            deployment_mode: DeploymentMode::Saas,
            license_key: None,
            license_expires_at: None,
            suspended_at: None,
            data_protection_policy: None,
            blast_radius_config: None,
            auto_activate_threshold: None,
            auto_activate_enabled: false,
            data_plane_deployment_id: None,
            data_plane_last_seen_at: None,
            data_plane_region: None,
        }
    }
}

/// Usage over a rolling window, derived from the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageSummary {
    pub tool_calls_30d: i64,
    pub agents_active_30d: i64,
    pub dlp_hits_30d: i64,
    pub escalations_30d: i64,
    pub data_volume_bytes_30d: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_text_and_json() {
        for m in DeploymentMode::ALL {
            assert_eq!(m.as_str().parse::<DeploymentMode>().unwrap(), *m);
            let json = serde_json::to_string(m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.as_str()));
        }
        assert!("cloud".parse::<PlanTier>().unwrap_err().contains("trial"));
    }

    #[test]
    fn trial_defaults() {
        let c = TenantConfig::default();
        assert_eq!(c.plan_tier, PlanTier::Trial);
        assert_eq!(c.max_agents, -1);
        assert_eq!(c.max_rpm_per_agent, 60);
        assert_eq!(c.audit_retention_days, 90);
        assert_eq!(c.deployment_mode, DeploymentMode::Saas);
        assert!(!c.auto_activate_enabled);
    }
}

string_enum!(
    /// What the audit trail keeps of call arguments and results: `full`
    /// (as they were), `metadata_only` (sizes, the input hash and findings),
    /// `redacted` (kept with every data-protection finding replaced) or
    /// `encrypted` (kept as they were, sealed under the tenant's data key
    /// and readable only through the audited payload API).
    PayloadStorage {
        Full => "full",
        MetadataOnly => "metadata_only",
        Redacted => "redacted",
        Encrypted => "encrypted",
    }
);

string_enum!(
    /// What happens to a call to a tool tagged `external` in a session that
    /// has read untrusted content and private data (the lethal trifecta):
    /// `escalate` (the default) holds it for a person, `deny` refuses it,
    /// `off` lets the policies decide alone.
    TrifectaAction {
        Escalate => "escalate",
        Deny => "deny",
        Off => "off",
    }
);

string_enum!(
    /// What happens to a data-protection finding at or above the block
    /// severity: `block` refuses the call; `redact` replaces the matched
    /// text by `[redacted:{category}]` in the forwarded arguments and in the
    /// returned result.
    DlpAction {
        Block => "block",
        Redact => "redact",
    }
);

/// A tenant's data-protection settings (`TenantConfig.data_protection_policy`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DataProtectionPolicy {
    /// What the audit trail keeps of payloads (default `metadata_only`).
    pub payload_storage: PayloadStorage,
    /// Block (default) or redact findings at or above the block severity.
    pub dlp_action: DlpAction,
    /// The tenant's block severity (`low`, `medium`, `high`, `critical`);
    /// unset, BEHAVRY_DLP_BLOCK_SEVERITY applies.
    pub dlp_block_severity: Option<String>,
    /// The lethal-trifecta rule (default `escalate`).
    pub trifecta_action: TrifectaAction,
    /// The tenant's own data-protection patterns, scanned for alongside the
    /// built-in detectors.
    pub custom_patterns: Vec<DlpPattern>,
}

/// A tenant's own data-protection pattern (an employee number format, a
/// project code name). Validated when saved: it must compile within a size
/// limit and must not match the empty string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DlpPattern {
    /// 1–64 lowercase letters, digits or underscores; reported as the
    /// finding's `pattern`.
    pub name: String,
    /// A regular expression (Rust `regex` syntax, linear-time matching).
    pub regex: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// The finding's category and redaction label (default `custom`).
    #[serde(default = "custom_category")]
    pub category: String,
}

fn custom_category() -> String {
    "custom".into()
}

impl Default for DataProtectionPolicy {
    fn default() -> Self {
        Self {
            payload_storage: PayloadStorage::MetadataOnly,
            dlp_action: DlpAction::Block,
            dlp_block_severity: None,
            trifecta_action: TrifectaAction::Escalate,
            custom_patterns: Vec::new(),
        }
    }
}

impl DataProtectionPolicy {
    /// The settings stored in a tenant's configuration; the defaults when
    /// none are stored. A stored value that no longer parses (written by a
    /// newer version) also gives the defaults, which are the strict ones.
    pub fn of(config: &TenantConfig) -> Self {
        config
            .data_protection_policy
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// Checks a policy an admin submitted (patterns are compiled by the
    /// caller, which owns the regex engine's limits).
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for p in &self.custom_patterns {
            if !names.insert(p.name.as_str()) {
                return Err(format!("custom pattern `{}` is defined twice", p.name));
            }
            if !matches!(p.severity.as_str(), "low" | "medium" | "high" | "critical") {
                return Err(format!(
                    "custom pattern `{}`: severity must be low, medium, high or critical, not `{}`",
                    p.name, p.severity
                ));
            }
        }
        if self.custom_patterns.len() > 200 {
            return Err("at most 200 custom patterns".into());
        }
        if let Some(s) = &self.dlp_block_severity
            && !matches!(s.as_str(), "low" | "medium" | "high" | "critical")
        {
            return Err(format!(
                "dlp_block_severity must be low, medium, high or critical, not `{s}`"
            ));
        }
        Ok(())
    }
}

/// A tenant's blast-radius limits (`TenantConfig.blast_radius_config`):
/// rules on single calls that do too much, and per-agent windows whose
/// crossing freezes the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BlastRadiusConfig {
    /// Off: none of the rules or windows apply.
    pub enabled: bool,
    /// Recursive deletes of paths shallower than this many components are
    /// denied (`/srv/app` has depth 2).
    pub min_recursive_delete_depth: u32,
    /// Messages to more recipients than this are escalated.
    pub max_recipients: u32,
    /// Calls acting on more items than this are escalated.
    pub max_bulk_items: u32,
    /// Writes and deletes under these paths are escalated.
    pub protected_paths: Vec<String>,
    /// Writes and deletes of files with these names (with or without an
    /// extension) are escalated.
    pub protected_names: Vec<String>,
    /// Per-agent windows; crossing one freezes the agent.
    pub windows: AgentWindows,
}

/// Per-agent limits. 0 turns a window off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AgentWindows {
    /// Requests in one MCP session (calls, lists, reads).
    pub calls_per_session: u64,
    /// Delete actions in the last hour.
    pub destructive_per_hour: u64,
    /// Bytes of arguments sent to upstreams in the last hour.
    pub bytes_out_per_hour: u64,
    /// Data-protection findings in arguments in the last hour.
    pub dlp_findings_per_hour: u64,
}

impl Default for AgentWindows {
    fn default() -> Self {
        Self {
            calls_per_session: 1000,
            destructive_per_hour: 50,
            bytes_out_per_hour: 50 * 1024 * 1024,
            dlp_findings_per_hour: 20,
        }
    }
}

impl Default for BlastRadiusConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_recursive_delete_depth: 3,
            max_recipients: 10,
            max_bulk_items: 50,
            protected_paths: ["/etc", "/root", "~/.ssh", "~/.aws", "~/.config"]
                .map(String::from)
                .to_vec(),
            protected_names: [".env", "MEMORY", "SOUL", "IDENTITY"]
                .map(String::from)
                .to_vec(),
            windows: AgentWindows::default(),
        }
    }
}

impl BlastRadiusConfig {
    /// The tenant's limits; the defaults when none (or none readable) are
    /// stored.
    pub fn of(config: &TenantConfig) -> Self {
        config
            .blast_radius_config
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self
            .protected_paths
            .iter()
            .chain(&self.protected_names)
            .any(|p| p.trim().is_empty())
        {
            return Err("protected paths and names must not be empty".into());
        }
        if self.protected_paths.len() + self.protected_names.len() > 500 {
            return Err("at most 500 protected paths and names".into());
        }
        Ok(())
    }
}
