//! Alerts: what the gateway raises for people to look at.

string_enum!(
    /// What an alert is about.
    AlertType {
        Anomaly => "anomaly",
        SystemPromptDrift => "system_prompt_drift",
        BaselineDrift => "baseline_drift",
        RateLimit => "rate_limit",
        DlpViolation => "dlp_violation",
        PolicyDenySpike => "policy_deny_spike",
        BlastRadius => "blast_radius",
        ToolDefinitionChanged => "tool_definition_changed",
        ToolPoisoning => "tool_poisoning",
        InjectionDetected => "injection_detected",
        AgentFrozen => "agent_frozen",
    }
);

string_enum!(
    /// How urgent an alert is; ordered, so `>=` compares urgency.
    AlertSeverity {
        Info => "info",
        Warning => "warning",
        Critical => "critical",
    }
);

string_enum!(
    /// Where an alert is in its life: open → acknowledged → resolved.
    AlertStatus {
        Open => "open",
        Acknowledged => "acknowledged",
        Resolved => "resolved",
    }
);

impl AlertStatus {
    /// Whether an admin may move an alert from `self` to `next`: forward
    /// only (an open alert may be resolved directly).
    pub fn may_become(self, next: AlertStatus) -> bool {
        matches!(
            (self, next),
            (AlertStatus::Open, AlertStatus::Acknowledged)
                | (AlertStatus::Open, AlertStatus::Resolved)
                | (AlertStatus::Acknowledged, AlertStatus::Resolved)
        )
    }
}

impl PartialOrd for AlertSeverity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AlertSeverity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_and_statuses_move_forward_only() {
        assert!(AlertSeverity::Critical > AlertSeverity::Warning);
        assert!(AlertSeverity::Warning > AlertSeverity::Info);
        assert!(AlertStatus::Open.may_become(AlertStatus::Acknowledged));
        assert!(AlertStatus::Open.may_become(AlertStatus::Resolved));
        assert!(AlertStatus::Acknowledged.may_become(AlertStatus::Resolved));
        assert!(!AlertStatus::Resolved.may_become(AlertStatus::Open));
        assert!(!AlertStatus::Acknowledged.may_become(AlertStatus::Open));
        assert!(!AlertStatus::Open.may_become(AlertStatus::Open));
        assert_eq!(
            "dlp_violation".parse::<AlertType>(),
            Ok(AlertType::DlpViolation)
        );
        assert!(
            "loud"
                .parse::<AlertSeverity>()
                .unwrap_err()
                .contains("critical")
        );
    }
}
