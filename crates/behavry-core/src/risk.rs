//! Behavioural baselines and risk scores.
//!
//! An agent's activity is summed per clock hour ([`HourUsage`], from the
//! audit trail). [`assess`] compares the last day against the days before
//! it and returns the agent's baseline status, the findings worth an alert
//! and a risk score. It is a pure function of the hours it is given and the
//! time, so the same traffic always gives the same answer; the server runs
//! it periodically and stores the result on the agent.
//!
//! Windows, relative to `now`:
//! - the *reference*: the [`LOOKBACK`] before the last [`RECENT`] hours. The
//!   baseline is learnt from it, and is established once it holds at least
//!   [`MIN_ACTIVE_HOURS`] active hours on [`MIN_ACTIVE_DAYS`] different days.
//! - the *recent* window: the last [`RECENT`] hours. New tools are looked for
//!   here, and the score is computed from it.
//! - the hours *under watch*: the current hour and the one before. Metric
//!   anomalies and deny spikes are reported for these only, so each is
//!   reported while it is happening (and the hour that just ended is judged
//!   whole once more).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, DurationRound, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::RiskTier;

/// How far back a baseline looks.
pub const LOOKBACK: Duration = Duration::days(14);
/// The window judged against the baseline.
pub const RECENT: Duration = Duration::hours(24);
/// Active hours the reference needs before the baseline is trusted.
pub const MIN_ACTIVE_HOURS: usize = 24;
/// ... spread over at least this many days, so that hours of the day mean
/// something.
pub const MIN_ACTIVE_DAYS: usize = 3;
/// A metric is anomalous above mean + `SIGMAS` × σ.
pub const SIGMAS: f64 = 3.0;
/// A deny spike: more denials in an hour than this many times the hourly
/// average ...
pub const SPIKE_FACTOR: f64 = 3.0;
/// ... and at least this many.
pub const SPIKE_MIN_DENIES: u64 = 10;
/// Hours with fewer calls say nothing about a deny rate.
const MIN_CALLS_FOR_RATE: u64 = 10;

string_enum!(
    /// Whether an agent's behaviour is known well enough to judge.
    BaselineStatus {
        Learning => "learning",
        Established => "established",
    }
);

/// One agent's activity in one clock hour.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HourUsage {
    /// The start of the hour.
    pub hour: DateTime<Utc>,
    pub calls: u64,
    pub denies: u64,
    pub escalations: u64,
    /// Bytes the agent received (tool results).
    pub bytes_in: u64,
    /// Bytes the agent sent (tool arguments).
    pub bytes_out: u64,
    /// Calls whose arguments or results held DLP or injection findings.
    pub flagged: u64,
    /// Calls per tool.
    pub tools: BTreeMap<String, u64>,
}

impl HourUsage {
    fn metric(&self, metric: Metric) -> f64 {
        match metric {
            Metric::CallsPerHour => self.calls as f64,
            Metric::BytesIn => self.bytes_in as f64,
            Metric::BytesOut => self.bytes_out as f64,
            Metric::DenyRate => {
                if self.calls == 0 {
                    0.0
                } else {
                    self.denies as f64 / self.calls as f64
                }
            }
        }
    }
}

/// How the agent's escalations were decided lately.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EscalationOutcomes {
    pub approved: u64,
    pub denied: u64,
    pub timed_out: u64,
}

string_enum!(
    /// A per-hour quantity the baseline learns.
    Metric {
        CallsPerHour => "calls_per_hour",
        BytesIn => "bytes_in",
        BytesOut => "bytes_out",
        DenyRate => "deny_rate",
    }
);

impl Metric {
    /// The smallest σ used: below it, ordinary jitter on a very regular
    /// agent would count as an anomaly.
    fn sigma_floor(self, mean: f64) -> f64 {
        let relative = 0.1 * mean;
        match self {
            Metric::CallsPerHour => relative.max(1.0),
            Metric::BytesIn | Metric::BytesOut => relative.max(1024.0),
            Metric::DenyRate => 0.05,
        }
    }
}

/// Mean and standard deviation of a metric over the reference's active
/// hours.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stat {
    pub mean: f64,
    pub sigma: f64,
}

/// What the reference window says is normal for the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Baseline {
    pub active_hours: usize,
    pub active_days: usize,
    pub metrics: BTreeMap<String, Stat>,
    pub tools: BTreeSet<String>,
    /// Hours of the day (UTC, 0–23) in which the agent has been active.
    pub hours_of_day: BTreeSet<u32>,
}

impl Baseline {
    fn learn(reference: &[&HourUsage]) -> Self {
        let active: Vec<&HourUsage> = reference.iter().copied().filter(|h| h.calls > 0).collect();
        let days: BTreeSet<_> = active.iter().map(|h| h.hour.date_naive()).collect();
        let metrics = Metric::ALL
            .iter()
            .map(|&m| {
                let values: Vec<f64> = active
                    .iter()
                    .filter(|h| m != Metric::DenyRate || h.calls >= MIN_CALLS_FOR_RATE)
                    .map(|h| h.metric(m))
                    .collect();
                (m.as_str().to_string(), stat(&values))
            })
            .collect();
        Baseline {
            active_hours: active.len(),
            active_days: days.len(),
            metrics,
            tools: active
                .iter()
                .flat_map(|h| h.tools.keys().cloned())
                .collect(),
            hours_of_day: active.iter().map(|h| h.hour.hour()).collect(),
        }
    }

    fn established(&self) -> bool {
        self.active_hours >= MIN_ACTIVE_HOURS && self.active_days >= MIN_ACTIVE_DAYS
    }

    fn stat(&self, metric: Metric) -> Stat {
        self.metrics.get(metric.as_str()).copied().unwrap_or(Stat {
            mean: 0.0,
            sigma: 0.0,
        })
    }

    /// How many (floored) standard deviations above the mean `value` is.
    fn z(&self, metric: Metric, value: f64) -> f64 {
        let s = self.stat(metric);
        (value - s.mean) / s.sigma.max(metric.sigma_floor(s.mean))
    }
}

fn stat(values: &[f64]) -> Stat {
    if values.is_empty() {
        return Stat {
            mean: 0.0,
            sigma: 0.0,
        };
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    Stat {
        mean,
        sigma: variance.sqrt(),
    }
}

/// Something worth an alert.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// A metric above mean + 3σ in an hour under watch.
    Anomaly {
        metric: Metric,
        hour: DateTime<Utc>,
        value: f64,
        mean: f64,
        sigma: f64,
        z: f64,
    },
    /// Activity in an hour of the day the agent has never been active in.
    OffHours { hour: DateTime<Utc> },
    /// A tool used in the recent window that the baseline never saw.
    NewTool {
        tool: String,
        first_used: DateTime<Utc>,
    },
    /// Far more denials in an hour than usual.
    DenySpike {
        hour: DateTime<Utc>,
        denies: u64,
        hourly_average: f64,
    },
}

impl Finding {
    /// Identifies the finding across runs, so that each is reported once.
    pub fn key(&self) -> String {
        let h = |t: &DateTime<Utc>| t.format("%Y-%m-%dT%H").to_string();
        match self {
            Finding::Anomaly { metric, hour, .. } => format!("{}@{}", metric.as_str(), h(hour)),
            Finding::OffHours { hour } => format!("off_hours@{}", h(hour)),
            Finding::NewTool { tool, .. } => format!("tool:{tool}"),
            Finding::DenySpike { hour, .. } => format!("deny_spike@{}", h(hour)),
        }
    }

    /// How long the key must be remembered: as long as the finding could
    /// be found again.
    pub fn remember_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Finding::NewTool { first_used, .. } => *first_used + RECENT + Duration::hours(1),
            _ => hour_of(now) + Duration::hours(2),
        }
    }
}

/// The six weighted dimensions of the risk score, each 0–1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RiskFactors {
    /// Share of recent calls denied (50 % or more counts fully).
    pub denial_rate: f64,
    /// How far the worst recent hour strays from the baseline (2σ → 0,
    /// 4σ or more → 1).
    pub anomaly: f64,
    /// Data sent out lately against the usual amount (five times the usual
    /// or more → 1); before a baseline, against 100 MiB a day.
    pub data_volume: f64,
    /// Share of recently used tools the baseline never saw.
    pub new_resource_access: f64,
    /// Share of recent calls carrying DLP or injection findings (20 % or
    /// more counts fully).
    pub session_behaviour: f64,
    /// Share of decided escalations that were denied or timed out.
    pub escalation_outcomes: f64,
}

impl RiskFactors {
    /// The weights, as percentages: denial 25, anomaly 20, data volume 15,
    /// new-resource access 15, session behaviour 15, escalations 10.
    pub fn score(&self) -> i32 {
        let weighted = 25.0 * self.denial_rate
            + 20.0 * self.anomaly
            + 15.0 * self.data_volume
            + 15.0 * self.new_resource_access
            + 15.0 * self.session_behaviour
            + 10.0 * self.escalation_outcomes;
        (weighted.round() as i32).clamp(0, 100)
    }
}

/// The result of judging an agent.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    pub status: BaselineStatus,
    pub baseline: Baseline,
    pub factors: RiskFactors,
    pub score: i32,
    pub tier: RiskTier,
    /// A tool the baseline never saw was used in the recent window.
    pub has_recent_drift: bool,
    pub findings: Vec<Finding>,
}

/// The start of the clock hour holding `t`.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap_or(t)
}

fn clamp01(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// Judges an agent from its hourly usage (any order; hours outside the
/// lookback are ignored) and its recent escalation outcomes.
pub fn assess(hours: &[HourUsage], outcomes: EscalationOutcomes, now: DateTime<Utc>) -> Assessment {
    let current = hour_of(now);
    let recent_start = current + Duration::hours(1) - RECENT;
    let lookback_start = recent_start - LOOKBACK;
    let mut reference: Vec<&HourUsage> = Vec::new();
    let mut recent: Vec<&HourUsage> = Vec::new();
    for h in hours {
        if h.hour >= recent_start && h.hour <= current {
            recent.push(h);
        } else if h.hour >= lookback_start && h.hour < recent_start {
            reference.push(h);
        }
    }
    recent.sort_by_key(|h| h.hour);

    let baseline = Baseline::learn(&reference);
    let established = baseline.established();
    let mut findings = Vec::new();
    let watched = |h: &&&HourUsage| h.hour >= current - Duration::hours(1) && h.calls > 0;

    // Deny spikes need no established baseline: any history gives an
    // average, and the minimum keeps a new agent's first denials quiet.
    let history_hours = reference.iter().chain(recent.iter());
    for h in recent.iter().filter(watched) {
        let others: Vec<u64> = history_hours
            .clone()
            .filter(|o| o.hour != h.hour && o.calls > 0)
            .map(|o| o.denies)
            .collect();
        let average = if others.is_empty() {
            0.0
        } else {
            others.iter().sum::<u64>() as f64 / others.len() as f64
        };
        if h.denies >= SPIKE_MIN_DENIES && h.denies as f64 > SPIKE_FACTOR * average {
            findings.push(Finding::DenySpike {
                hour: h.hour,
                denies: h.denies,
                hourly_average: average,
            });
        }
    }

    let mut worst_z: f64 = 0.0;
    let mut new_tools: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    if established {
        for h in recent.iter().filter(|h| h.calls > 0) {
            let is_watched = h.hour >= current - Duration::hours(1);
            for &m in Metric::ALL {
                if m == Metric::DenyRate && h.calls < MIN_CALLS_FOR_RATE {
                    continue;
                }
                let z = baseline.z(m, h.metric(m));
                worst_z = worst_z.max(z);
                if is_watched && z > SIGMAS {
                    let s = baseline.stat(m);
                    findings.push(Finding::Anomaly {
                        metric: m,
                        hour: h.hour,
                        value: h.metric(m),
                        mean: s.mean,
                        sigma: s.sigma,
                        z,
                    });
                }
            }
            if is_watched && !baseline.hours_of_day.contains(&h.hour.hour()) {
                findings.push(Finding::OffHours { hour: h.hour });
            }
            for tool in h.tools.keys() {
                if !baseline.tools.contains(tool) {
                    new_tools.entry(tool).or_insert(h.hour);
                }
            }
        }
        for (tool, first_used) in &new_tools {
            findings.push(Finding::NewTool {
                tool: tool.to_string(),
                first_used: *first_used,
            });
        }
    }

    let sum = |f: fn(&HourUsage) -> u64| recent.iter().map(|h| f(h)).sum::<u64>();
    let calls = sum(|h| h.calls);
    let ratio = |part: u64| {
        if calls == 0 {
            0.0
        } else {
            part as f64 / calls as f64
        }
    };
    let recent_tools: BTreeSet<&str> = recent
        .iter()
        .flat_map(|h| h.tools.keys().map(String::as_str))
        .collect();
    let bytes_out = sum(|h| h.bytes_out);
    let data_volume = if established {
        let active = recent.iter().filter(|h| h.calls > 0).count().max(1) as f64;
        let usual = baseline.stat(Metric::BytesOut).mean.max(1024.0);
        clamp01((bytes_out as f64 / active / usual - 1.0) / 4.0)
    } else {
        clamp01(bytes_out as f64 / (100.0 * 1024.0 * 1024.0))
    };
    let decided = outcomes.approved + outcomes.denied + outcomes.timed_out;
    let factors = RiskFactors {
        denial_rate: clamp01(ratio(sum(|h| h.denies)) * 2.0),
        anomaly: clamp01((worst_z - 2.0) / 2.0),
        data_volume,
        new_resource_access: if recent_tools.is_empty() {
            0.0
        } else {
            new_tools.len() as f64 / recent_tools.len() as f64
        },
        session_behaviour: clamp01(ratio(sum(|h| h.flagged)) * 5.0),
        escalation_outcomes: if decided == 0 {
            0.0
        } else {
            (outcomes.denied + outcomes.timed_out) as f64 / decided as f64
        },
    };
    let score = factors.score();
    Assessment {
        status: if established {
            BaselineStatus::Established
        } else {
            BaselineStatus::Learning
        },
        baseline,
        has_recent_drift: !new_tools.is_empty(),
        factors,
        score,
        tier: RiskTier::from_score(score),
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn usage(hour: DateTime<Utc>, calls: u64, tools: &[&str]) -> HourUsage {
        HourUsage {
            hour,
            calls,
            bytes_in: calls * 2000,
            bytes_out: calls * 500,
            tools: tools.iter().map(|t| (t.to_string(), calls)).collect(),
            ..Default::default()
        }
    }

    /// Calls of one tool, no bytes either way.
    fn calls_only(hour: DateTime<Utc>, calls: u64) -> HourUsage {
        HourUsage {
            bytes_in: 0,
            bytes_out: 0,
            ..usage(hour, calls, &["a"])
        }
    }

    /// Office hours (09–16 UTC) on Nov 10–19, 10 calls an hour, two tools.
    fn office_history() -> Vec<HourUsage> {
        let mut hours = Vec::new();
        for day in 10..=19 {
            for hour in 9..17 {
                hours.push(usage(at(day, hour), 10, &["read_file", "search"]));
            }
        }
        hours
    }

    #[test]
    fn a_new_agent_is_learning_and_scores_from_what_it_did() {
        let now = at(22, 10) + Duration::minutes(30);
        let mut h = usage(at(22, 10), 20, &["read_file"]);
        h.denies = 5;
        let a = assess(&[h], EscalationOutcomes::default(), now);
        assert_eq!(a.status, BaselineStatus::Learning);
        assert!(!a.has_recent_drift);
        // 5 of 20 denied: 25 % → half the denial dimension → 12.5 points.
        assert_eq!(a.factors.denial_rate, 0.5);
        assert_eq!(a.factors.anomaly, 0.0);
        assert_eq!(a.score, 13);
        assert_eq!(a.tier, RiskTier::Low);
        assert!(a.findings.is_empty(), "{:?}", a.findings);
    }

    #[test]
    fn steady_office_hours_establish_a_quiet_baseline() {
        let now = at(22, 10) + Duration::minutes(30);
        let mut hours = office_history();
        hours.push(usage(at(22, 9), 10, &["search"]));
        hours.push(usage(at(22, 10), 11, &["read_file"]));
        let a = assess(&hours, EscalationOutcomes::default(), now);
        assert_eq!(a.status, BaselineStatus::Established);
        assert_eq!(a.baseline.active_hours, 80);
        assert_eq!(a.baseline.active_days, 10);
        assert_eq!(a.baseline.stat(Metric::CallsPerHour).mean, 10.0);
        assert_eq!(a.baseline.hours_of_day, (9..17).collect());
        assert!(a.findings.is_empty(), "{:?}", a.findings);
        assert_eq!(a.score, 0);
        assert_eq!(a.tier, RiskTier::Low);
    }

    #[test]
    fn too_little_history_stays_learning() {
        let now = at(22, 10);
        // 30 active hours but all on two days.
        let hours: Vec<_> = (0..15)
            .flat_map(|h| [usage(at(19, h), 10, &["a"]), usage(at(20, h), 10, &["a"])])
            .collect();
        let a = assess(&hours, EscalationOutcomes::default(), now);
        assert_eq!(a.baseline.active_hours, 30);
        assert_eq!(a.status, BaselineStatus::Learning);
    }

    #[test]
    fn a_burst_a_new_tool_and_night_work_are_found() {
        let now = at(22, 3) + Duration::minutes(20);
        let mut hours = office_history();
        // 03:00, 60 calls (mean 10, σ 0 → floored to 1: z = 50), a tool
        // never seen, sending 40× the usual bytes.
        let mut burst = usage(at(22, 3), 60, &["read_file", "send_email"]);
        burst.bytes_out = 200_000;
        hours.push(burst);
        let a = assess(&hours, EscalationOutcomes::default(), now);
        assert_eq!(a.status, BaselineStatus::Established);
        assert!(a.has_recent_drift);
        let keys: Vec<String> = a.findings.iter().map(Finding::key).collect();
        assert_eq!(
            keys,
            [
                "calls_per_hour@2026-11-22T03",
                "bytes_in@2026-11-22T03",
                "bytes_out@2026-11-22T03",
                "off_hours@2026-11-22T03",
                "tool:send_email",
            ]
        );
        match &a.findings[0] {
            Finding::Anomaly { value, mean, z, .. } => {
                assert_eq!((*value, *mean), (60.0, 10.0));
                assert_eq!(*z, 50.0);
            }
            other => panic!("{other:?}"),
        }
        // anomaly 1.0 (20) + data volume 1.0 (15) + one of two tools new
        // (7.5) = 42.5 → 43, medium.
        assert_eq!(a.factors.anomaly, 1.0);
        assert_eq!(a.factors.data_volume, 1.0);
        assert_eq!(a.factors.new_resource_access, 0.5);
        assert_eq!(a.score, 43);
        assert_eq!(a.tier, RiskTier::Medium);
    }

    #[test]
    fn within_three_sigma_is_normal() {
        // Alternating 8 and 12 calls: mean 10, σ 2; 15 is 2.5σ.
        let now = at(22, 10) + Duration::minutes(59);
        let mut hours = Vec::new();
        for day in 10..=19 {
            for hour in 9..17 {
                let calls = if hour % 2 == 0 { 8 } else { 12 };
                hours.push(calls_only(at(day, hour), calls));
            }
        }
        hours.push(calls_only(at(22, 10), 15));
        let a = assess(&hours, EscalationOutcomes::default(), now);
        assert_eq!(a.baseline.stat(Metric::CallsPerHour).sigma, 2.0);
        assert!(a.findings.is_empty(), "{:?}", a.findings);
        // 17 is 3.5σ.
        hours.pop();
        hours.push(calls_only(at(22, 10), 17));
        let a = assess(&hours, EscalationOutcomes::default(), now);
        assert_eq!(
            a.findings.iter().map(Finding::key).collect::<Vec<_>>(),
            ["calls_per_hour@2026-11-22T10"]
        );
        // 3.5σ → anomaly dimension 0.75 → 15 points.
        assert_eq!(a.factors.anomaly, 0.75);
        assert_eq!(a.score, 15);
    }

    #[test]
    fn old_hours_are_judged_in_the_score_but_not_reported_again() {
        let now = at(22, 15);
        let mut hours = office_history();
        hours.push(usage(at(22, 10), 60, &["read_file"]));
        let a = assess(&hours, EscalationOutcomes::default(), now);
        assert!(a.findings.is_empty(), "{:?}", a.findings);
        assert_eq!(a.factors.anomaly, 1.0);
    }

    #[test]
    fn a_deny_spike_is_reported_even_while_learning() {
        let now = at(22, 12) + Duration::minutes(5);
        let mut quiet = usage(at(22, 10), 20, &["a"]);
        quiet.denies = 1;
        let mut spike = usage(at(22, 12), 30, &["a"]);
        spike.denies = 12;
        let a = assess(&[quiet, spike], EscalationOutcomes::default(), now);
        assert_eq!(a.status, BaselineStatus::Learning);
        assert_eq!(
            a.findings,
            [Finding::DenySpike {
                hour: at(22, 12),
                denies: 12,
                hourly_average: 1.0,
            }]
        );
        // Nine denials are below the minimum.
        let mut few = usage(at(22, 12), 30, &["a"]);
        few.denies = 9;
        assert!(
            assess(&[few], EscalationOutcomes::default(), now)
                .findings
                .is_empty()
        );
    }

    #[test]
    fn every_dimension_at_full_weight_is_critical() {
        let factors = RiskFactors {
            denial_rate: 1.0,
            anomaly: 1.0,
            data_volume: 1.0,
            new_resource_access: 1.0,
            session_behaviour: 1.0,
            escalation_outcomes: 1.0,
        };
        assert_eq!(factors.score(), 100);
        let half = RiskFactors {
            denial_rate: 1.0,
            escalation_outcomes: 1.0,
            session_behaviour: 1.0,
            ..Default::default()
        };
        assert_eq!(half.score(), 50);
        assert_eq!(RiskTier::from_score(half.score()), RiskTier::Medium);
    }

    #[test]
    fn escalations_denied_or_unanswered_raise_the_score() {
        let now = at(22, 10);
        let a = assess(
            &[usage(at(22, 10), 4, &["a"])],
            EscalationOutcomes {
                approved: 1,
                denied: 2,
                timed_out: 1,
            },
            now,
        );
        assert_eq!(a.factors.escalation_outcomes, 0.75);
        // 7.5 points.
        assert_eq!(a.score, 8);
    }

    #[test]
    fn flagged_calls_and_volume_count_before_a_baseline() {
        let now = at(22, 10);
        let mut h = usage(at(22, 10), 10, &["a"]);
        h.flagged = 1;
        h.bytes_out = 50 * 1024 * 1024;
        let a = assess(&[h], EscalationOutcomes::default(), now);
        // 10 % flagged → 0.5 (7.5 points); 50 MiB of 100 → 0.5 (7.5).
        assert_eq!(a.factors.session_behaviour, 0.5);
        assert_eq!(a.factors.data_volume, 0.5);
        assert_eq!(a.score, 15);
    }

    #[test]
    fn finding_keys_are_remembered_as_long_as_they_can_recur() {
        let now = at(22, 10) + Duration::minutes(10);
        let tool = Finding::NewTool {
            tool: "x".into(),
            first_used: at(22, 9),
        };
        assert_eq!(tool.remember_until(now), at(23, 10));
        let off = Finding::OffHours { hour: at(22, 10) };
        assert_eq!(off.remember_until(now), at(22, 12));
    }
}
