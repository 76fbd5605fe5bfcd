//! Agents: the AI programs that call tools through the gateway, each with
//! credentials of its own.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

use crate::{AgentId, TenantId};

/// Lifecycle of an agent. Suspension is reversible; revocation is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Active,
    Suspended,
    Revoked,
}

impl AgentStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
            AgentStatus::Revoked => "revoked",
        }
    }
}

impl FromStr for AgentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "revoked" => Ok(Self::Revoked),
            other => Err(format!(
                "unknown agent status `{other}` (expected active, suspended or revoked)"
            )),
        }
    }
}

/// Risk tier derived from the 0–100 risk score.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskTier {
    pub fn as_str(&self) -> &'static str {
        match self {
            RiskTier::Low => "low",
            RiskTier::Medium => "medium",
            RiskTier::High => "high",
            RiskTier::Critical => "critical",
        }
    }

    /// 0–25 low, 26–50 medium, 51–75 high, 76–100 critical.
    pub fn from_score(score: i32) -> Self {
        match score {
            i32::MIN..=25 => RiskTier::Low,
            26..=50 => RiskTier::Medium,
            51..=75 => RiskTier::High,
            _ => RiskTier::Critical,
        }
    }
}

impl FromStr for RiskTier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            "critical" => Ok(Self::Critical),
            other => Err(format!("unknown risk tier `{other}`")),
        }
    }
}

/// An agent as the API shows it. Its secret is never part of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: AgentId,
    pub tenant_id: TenantId,
    pub name: String,
    pub agent_type: String,
    pub owner: Option<String>,
    pub status: AgentStatus,
    pub risk_score: i32,
    pub risk_tier: RiskTier,
    pub client_id: String,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub tags: Vec<String>,
    pub baseline_status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Set when a blast-radius window froze the agent: every call is
    /// refused until an admin unfreezes it.
    pub frozen_at: Option<DateTime<Utc>>,
    pub frozen_reason: Option<String>,
    /// A tool the agent's established baseline never saw was used in the
    /// last day.
    pub has_recent_drift: bool,
    /// The dimensions behind `risk_score`, once it has been computed.
    pub risk_factors: Option<crate::RiskFactors>,
    pub risk_assessed_at: Option<DateTime<Utc>>,
    /// Findings already alerted on, and until when to remember each, so
    /// that each is alerted on once. Internal to the risk job.
    #[serde(skip)]
    #[schema(ignore)]
    pub risk_reported: std::collections::BTreeMap<String, DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_score_bands() {
        assert_eq!(RiskTier::from_score(0), RiskTier::Low);
        assert_eq!(RiskTier::from_score(25), RiskTier::Low);
        assert_eq!(RiskTier::from_score(26), RiskTier::Medium);
        assert_eq!(RiskTier::from_score(50), RiskTier::Medium);
        assert_eq!(RiskTier::from_score(51), RiskTier::High);
        assert_eq!(RiskTier::from_score(75), RiskTier::High);
        assert_eq!(RiskTier::from_score(76), RiskTier::Critical);
        assert_eq!(RiskTier::from_score(100), RiskTier::Critical);
        assert_eq!(
            "revoked".parse::<AgentStatus>().unwrap(),
            AgentStatus::Revoked
        );
    }
}
