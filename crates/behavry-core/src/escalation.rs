//! Escalations: calls held for a person to approve or deny.

use std::time::Duration;

use crate::RiskTier;

string_enum!(
    /// Where an escalation stands.
    EscalationStatus {
        Pending => "pending",
        Approved => "approved",
        Denied => "denied",
        TimedOut => "timed_out",
    }
);

impl EscalationStatus {
    /// Whether a decision has been reached (by a person or by the clock).
    pub fn is_final(self) -> bool {
        self != EscalationStatus::Pending
    }
}

/// How long an escalation waits for a decision, by the agent's risk tier:
/// the riskier the agent, the sooner an unanswered call is refused.
pub fn decision_timeout(tier: RiskTier) -> Duration {
    Duration::from_secs(match tier {
        RiskTier::Low => 24 * 3600,
        RiskTier::Medium => 4 * 3600,
        RiskTier::High => 30 * 60,
        RiskTier::Critical => 5 * 60,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn riskier_agents_wait_less() {
        assert_eq!(decision_timeout(RiskTier::Low), Duration::from_secs(86_400));
        assert_eq!(
            decision_timeout(RiskTier::Medium),
            Duration::from_secs(14_400)
        );
        assert_eq!(decision_timeout(RiskTier::High), Duration::from_secs(1_800));
        assert_eq!(
            decision_timeout(RiskTier::Critical),
            Duration::from_secs(300)
        );
        assert!(!EscalationStatus::Pending.is_final());
        assert!(EscalationStatus::TimedOut.is_final());
        assert_eq!(
            "timed_out".parse::<EscalationStatus>(),
            Ok(EscalationStatus::TimedOut)
        );
    }
}
