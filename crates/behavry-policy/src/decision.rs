//! Turning the per-policy documents into one decision.
//!
//! Both engines end up here: the embedded one with the document regorus
//! computed, the OPA one with the document OPA returned. Keeping one combiner
//! means the precedence rules cannot drift between the two.

use crate::error::PolicyError;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The reason given when no policy allows a request.
pub const DEFAULT_DENY_REASON: &str = "no policy allows this request (default deny)";

/// The three outcomes, in increasing precedence: allow < escalate < deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionResult {
    Allow,
    Escalate,
    Deny,
}

impl DecisionResult {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionResult::Allow => "allow",
            DecisionResult::Escalate => "escalate",
            DecisionResult::Deny => "deny",
        }
    }

    /// The Rego rule that produces this result.
    fn rule_name(self) -> &'static str {
        self.as_str()
    }

    fn default_reason(self) -> &'static str {
        match self {
            DecisionResult::Allow => "request allowed",
            DecisionResult::Escalate => "request needs a human's approval",
            DecisionResult::Deny => "request denied",
        }
    }
}

impl std::fmt::Display for DecisionResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule that fired: the decision trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiredRule {
    /// The [`crate::PolicySource::id`] of the policy the rule belongs to.
    pub policy_id: String,
    /// `deny`, `escalate` or `allow`, or the `rule` field of the object the
    /// policy produced.
    pub rule: String,
    /// Which result the rule votes for.
    pub effect: DecisionResult,
    pub reason: String,
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub result: DecisionResult,
    /// Why, naming the policy that decided.
    pub reason: String,
    /// The policy that decided; `None` for default deny and fail-closed.
    pub policy_id: Option<String>,
    /// Every rule of an enforcing policy that fired, not only the winner.
    pub rules: Vec<FiredRule>,
    /// Rules of monitor-mode policies that fired. They never affect `result`.
    pub monitored: Vec<FiredRule>,
    /// What `result` would have been had the monitor-mode policies been
    /// enforced too; `None` when the policy set has no monitor-mode policy.
    pub monitor_result: Option<DecisionResult>,
}

/// What the combiner needs to know about a policy beyond its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyMeta {
    /// The last package component (`x` in `behavry.policies.x`).
    pub package_name: String,
    pub id: String,
    pub name: String,
    pub monitor: bool,
    /// The built-in base pack. Its reasons rank after tenant policies'.
    pub builtin: bool,
}

impl PolicyMeta {
    /// For a package in the document that nobody told us about (an OPA
    /// holding modules this process did not install): enforce it, since
    /// ignoring policy is the unsafe direction.
    pub fn unknown(package_name: &str) -> Self {
        Self {
            package_name: package_name.to_owned(),
            id: package_name.to_owned(),
            name: package_name.to_owned(),
            monitor: false,
            builtin: package_name == crate::BASE_PACKAGE_NAME,
        }
    }
}

/// The `deny`, `escalate` and `allow` values of one policy, as JSON.
#[derive(Debug, Default)]
pub(crate) struct PolicyOutcome {
    pub deny: Option<Json>,
    pub escalate: Option<Json>,
    pub allow: Option<Json>,
}

impl PolicyOutcome {
    pub fn from_document(doc: &Json) -> Self {
        Self {
            deny: doc.get("deny").cloned(),
            escalate: doc.get("escalate").cloned(),
            allow: doc.get("allow").cloned(),
        }
    }

    pub fn set(&mut self, effect: DecisionResult, value: Json) {
        let slot = match effect {
            DecisionResult::Deny => &mut self.deny,
            DecisionResult::Escalate => &mut self.escalate,
            DecisionResult::Allow => &mut self.allow,
        };
        *slot = Some(value);
    }

    fn get(&self, effect: DecisionResult) -> Option<&Json> {
        match effect {
            DecisionResult::Deny => self.deny.as_ref(),
            DecisionResult::Escalate => self.escalate.as_ref(),
            DecisionResult::Allow => self.allow.as_ref(),
        }
    }
}

/// A fired rule plus what ranking the winner needs.
struct Vote<'a> {
    meta: &'a PolicyMeta,
    rule: FiredRule,
}

/// Combines the outcomes of every policy, in policy order, into a decision.
pub(crate) fn combine(outcomes: &[(&PolicyMeta, PolicyOutcome)]) -> Result<Decision, PolicyError> {
    let mut enforced = Vec::new();
    let mut monitored = Vec::new();
    for (meta, outcome) in outcomes {
        for effect in [
            DecisionResult::Deny,
            DecisionResult::Escalate,
            DecisionResult::Allow,
        ] {
            let Some(value) = outcome.get(effect) else {
                continue;
            };
            for rule in fired_rules(meta, effect, value)? {
                let vote = Vote { meta, rule };
                if meta.monitor {
                    monitored.push(vote);
                } else {
                    enforced.push(vote);
                }
            }
        }
    }

    let (result, winner) = pick(enforced.iter());
    let monitor_result = outcomes
        .iter()
        .any(|(meta, _)| meta.monitor)
        .then(|| pick(enforced.iter().chain(&monitored)).0);

    let (reason, policy_id) = match winner {
        Some(vote) => (
            format!("{} (policy: {})", vote.rule.reason, vote.meta.name),
            Some(vote.meta.id.clone()),
        ),
        None => (DEFAULT_DENY_REASON.to_owned(), None),
    };
    Ok(Decision {
        result,
        reason,
        policy_id,
        rules: enforced.into_iter().map(|v| v.rule).collect(),
        monitored: monitored.into_iter().map(|v| v.rule).collect(),
        monitor_result,
    })
}

/// The strongest effect among the votes and the vote that explains it: the
/// first by (tenant before built-in, package name, reason), the same order the
/// Rego `behavry.authz` module uses, so both name the same policy.
fn pick<'a, 'b>(votes: impl Iterator<Item = &'b Vote<'a>>) -> (DecisionResult, Option<&'b Vote<'a>>)
where
    'a: 'b,
{
    let best = votes.min_by(|a, b| {
        b.rule
            .effect
            .cmp(&a.rule.effect)
            .then_with(|| a.meta.builtin.cmp(&b.meta.builtin))
            .then_with(|| a.meta.package_name.cmp(&b.meta.package_name))
            .then_with(|| a.rule.reason.cmp(&b.rule.reason))
    });
    match best {
        Some(vote) => (vote.rule.effect, Some(vote)),
        None => (DecisionResult::Deny, None),
    }
}

/// Reads one rule's value under the convention: a boolean, or a set (JSON
/// array) of reason strings or of objects with a string `reason` and an
/// optional string `rule`. Anything else is the policy author's mistake and
/// an error, because guessing what it meant could allow too much.
fn fired_rules(
    meta: &PolicyMeta,
    effect: DecisionResult,
    value: &Json,
) -> Result<Vec<FiredRule>, PolicyError> {
    let fire = |rule: &str, reason: &str| FiredRule {
        policy_id: meta.id.clone(),
        rule: rule.to_owned(),
        effect,
        reason: reason.to_owned(),
    };
    let bad = |what: &str| {
        PolicyError::Evaluation(format!(
            "policy `{}`: `{}` {what}; expected a boolean or a set of reason strings or \
             {{reason, rule}} objects",
            meta.package_name,
            effect.rule_name()
        ))
    };
    match value {
        Json::Bool(true) => Ok(vec![fire(effect.rule_name(), effect.default_reason())]),
        Json::Bool(false) => Ok(Vec::new()),
        Json::Array(items) => {
            let mut fired = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Json::String(reason) => fired.push(fire(effect.rule_name(), reason)),
                    Json::Object(object) => {
                        let Some(reason) = object.get("reason").and_then(Json::as_str) else {
                            return Err(bad("holds an object without a string `reason`"));
                        };
                        let rule = match object.get("rule") {
                            None | Some(Json::Null) => effect.rule_name(),
                            Some(Json::String(rule)) => rule,
                            Some(_) => {
                                return Err(bad("holds an object whose `rule` is not a string"));
                            }
                        };
                        fired.push(fire(rule, reason));
                    }
                    other => return Err(bad(&format!("holds a {}", json_type(other)))),
                }
            }
            // Sets arrive sorted from both regorus and OPA; arrays written by
            // hand may repeat a reason, which says nothing new.
            fired.dedup_by(|a, b| a.reason == b.reason && a.rule == b.rule);
            Ok(fired)
        }
        other => Err(bad(&format!("is a {}", json_type(other)))),
    }
}

fn json_type(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// The decision to act on when no policy answer could be had: deny, saying
/// the engine was unavailable. Whether to fail closed is the caller's choice;
/// this is what failing closed looks like.
pub fn fail_closed_decision(err: &PolicyError) -> Decision {
    Decision {
        result: DecisionResult::Deny,
        // Only the kind, not the message: the message may carry internal
        // addresses, and reasons travel back to agents. Log the error itself.
        reason: format!(
            "policy engine unavailable: request denied (fail closed; {})",
            err.kind()
        ),
        policy_id: None,
        rules: Vec::new(),
        monitored: Vec::new(),
        monitor_result: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(name: &str, monitor: bool) -> PolicyMeta {
        PolicyMeta {
            package_name: name.into(),
            id: format!("id-{name}"),
            name: format!("Policy {name}"),
            monitor,
            builtin: false,
        }
    }

    fn outcome(doc: Json) -> PolicyOutcome {
        PolicyOutcome::from_document(&doc)
    }

    #[test]
    fn nothing_fired_is_default_deny() {
        let a = meta("a", false);
        let d = combine(&[(&a, outcome(json!({"allow": false, "deny": []})))]).unwrap();
        assert_eq!(d.result, DecisionResult::Deny);
        assert_eq!(d.reason, DEFAULT_DENY_REASON);
        assert_eq!(d.policy_id, None);
        assert!(d.rules.is_empty());
        assert_eq!(d.monitor_result, None);

        let d = combine(&[]).unwrap();
        assert_eq!(d.result, DecisionResult::Deny);
        assert_eq!(d.reason, DEFAULT_DENY_REASON);
    }

    #[test]
    fn deny_beats_escalate_beats_allow() {
        let a = meta("a", false);
        let b = meta("b", false);
        let c = meta("c", false);
        let allow = || outcome(json!({"allow": true}));
        let escalate = || outcome(json!({"escalate": ["risky"]}));
        let deny = || outcome(json!({"deny": [{"reason": "forbidden", "rule": "no_prod"}]}));

        let d = combine(&[(&a, allow())]).unwrap();
        assert_eq!(d.result, DecisionResult::Allow);
        assert_eq!(d.reason, "request allowed (policy: Policy a)");
        assert_eq!(d.policy_id.as_deref(), Some("id-a"));

        let d = combine(&[(&a, allow()), (&b, escalate())]).unwrap();
        assert_eq!(d.result, DecisionResult::Escalate);
        assert_eq!(d.reason, "risky (policy: Policy b)");
        assert_eq!(d.policy_id.as_deref(), Some("id-b"));

        let d = combine(&[(&a, allow()), (&b, escalate()), (&c, deny())]).unwrap();
        assert_eq!(d.result, DecisionResult::Deny);
        assert_eq!(d.reason, "forbidden (policy: Policy c)");
        assert_eq!(d.policy_id.as_deref(), Some("id-c"));
        // The trace keeps every rule that fired, with custom rule names.
        let rules: Vec<(&str, &str)> = d
            .rules
            .iter()
            .map(|r| (r.policy_id.as_str(), r.rule.as_str()))
            .collect();
        assert_eq!(
            rules,
            [("id-a", "allow"), ("id-b", "escalate"), ("id-c", "no_prod")]
        );
        assert_eq!(d.rules[2].effect, DecisionResult::Deny);
    }

    #[test]
    fn winner_is_stable_tenant_first_then_name_then_reason() {
        let mut base = meta("base", false);
        base.builtin = true;
        let z = meta("z", false);
        let y = meta("y", false);
        let d = combine(&[
            (&base, outcome(json!({"deny": ["a base reason"]}))),
            (&z, outcome(json!({"deny": ["b", "a"]}))),
            (&y, outcome(json!({"deny": ["c"]}))),
        ])
        .unwrap();
        assert_eq!(d.reason, "c (policy: Policy y)");
        let d = combine(&[
            (&base, outcome(json!({"deny": ["a base reason"]}))),
            (&z, outcome(json!({"deny": ["b", "a"]}))),
        ])
        .unwrap();
        assert_eq!(d.reason, "a (policy: Policy z)");
    }

    #[test]
    fn monitor_mode_is_reported_but_never_decides() {
        let enforcing = meta("a", false);
        let watching = meta("m", true);
        let d = combine(&[
            (&enforcing, outcome(json!({"allow": true}))),
            (&watching, outcome(json!({"deny": ["would block"]}))),
        ])
        .unwrap();
        assert_eq!(d.result, DecisionResult::Allow);
        assert_eq!(d.policy_id.as_deref(), Some("id-a"));
        assert_eq!(d.rules.len(), 1);
        assert_eq!(d.monitored.len(), 1);
        assert_eq!(d.monitored[0].reason, "would block");
        assert_eq!(d.monitored[0].policy_id, "id-m");
        assert_eq!(d.monitor_result, Some(DecisionResult::Deny));

        // A monitor-mode allow cannot rescue a request from default deny.
        let d = combine(&[(&watching, outcome(json!({"allow": true})))]).unwrap();
        assert_eq!(d.result, DecisionResult::Deny);
        assert_eq!(d.reason, DEFAULT_DENY_REASON);
        assert_eq!(d.monitor_result, Some(DecisionResult::Allow));
    }

    #[test]
    fn malformed_rule_values_are_errors() {
        let a = meta("a", false);
        for doc in [
            json!({"deny": "a string"}),
            json!({"deny": 1}),
            json!({"allow": {"reason": "x"}}),
            json!({"escalate": [1]}),
            json!({"deny": [{"rule": "x"}]}),
            json!({"deny": [{"reason": "x", "rule": 3}]}),
            json!({"deny": null}),
        ] {
            let err = combine(&[(&a, outcome(doc.clone()))]).unwrap_err();
            assert!(matches!(err, PolicyError::Evaluation(_)), "{doc}: {err}");
        }
    }

    #[test]
    fn fail_closed_is_a_deny_that_names_the_engine() {
        let d = fail_closed_decision(&PolicyError::Unavailable(
            "http://10.0.0.1:8181 refused".into(),
        ));
        assert_eq!(d.result, DecisionResult::Deny);
        assert!(d.reason.contains("policy engine unavailable"));
        assert!(!d.reason.contains("10.0.0.1"));
        assert_eq!(d.policy_id, None);
        assert_eq!(serde_json::to_value(&d).unwrap()["result"], json!("deny"));
    }
}
