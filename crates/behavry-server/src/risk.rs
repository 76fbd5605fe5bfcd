//! The risk job: rolls each tenant's tool calls up into hourly activity,
//! judges every agent against its baseline ([`behavry_core::risk::assess`]),
//! stores the verdict on the agent and raises alerts for what it found.
//!
//! Every replica runs it. The roll-up replaces whole hours, so two replicas
//! running at once write the same rows; an alert both raise folds into one.
//! Each finding is alerted on once: its key is remembered on the agent
//! until it could no longer be found again.

use std::future::Future;

use behavry_core::risk::{self, Assessment, Finding};
use behavry_core::{Agent, AgentStatus, AlertSeverity, AlertType, TenantId};
use behavry_store::{
    AgentFilter, NewAuditEvent, PlatformGrant, RiskUpdate, StoreResult, TenantStore, fold_activity,
};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::alerts::{self, Alert};
use crate::state::AppState;

/// Escalation outcomes count for this long.
const OUTCOMES_WINDOW: Duration = Duration::days(7);
/// Roll-up rows are kept a little longer than any assessment looks back.
const KEEP: Duration = Duration::days(16);

/// What one pass did, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub agents_assessed: usize,
    pub agents_changed: usize,
    pub alerts_raised: usize,
}

/// Assesses every tenant's agents as of `now`.
pub async fn assess_all(state: &AppState, now: DateTime<Utc>) -> StoreResult<Pass> {
    let tenants = state
        .store
        .platform(&PlatformGrant::background_job())
        .list_tenants()
        .await?;
    let mut pass = Pass::default();
    for t in tenants {
        // One tenant's failure (say, a statement time-out on a huge trail)
        // does not leave the others unjudged.
        match assess_tenant(state, t.tenant.id, now).await {
            Ok(done) => {
                pass.agents_assessed += done.agents_assessed;
                pass.agents_changed += done.agents_changed;
                pass.alerts_raised += done.alerts_raised;
            }
            Err(e) => {
                tracing::warn!(tenant = %t.tenant.id, error = %e, "assessing this tenant's agents failed; retrying next pass");
            }
        }
    }
    Ok(pass)
}

/// Rolls up and assesses one tenant's agents as of `now`.
pub async fn assess_tenant(
    state: &AppState,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> StoreResult<Pass> {
    let store = state.store.tenant(tenant);
    let current = risk::hour_of(now);
    let window_start = current - risk::LOOKBACK - risk::RECENT;
    // The hour before the newest one rolled up is done again: events the
    // audit writer committed just after the last pass belong to it.
    let since = match store.latest_activity_hour().await? {
        Some(latest) => latest.min(current) - Duration::hours(1),
        None => window_start,
    }
    .max(window_start);
    store.roll_up_agent_activity(since, now - KEEP).await?;

    let mut hours = fold_activity(store.agent_activity(window_start, None).await?);
    let outcomes: std::collections::HashMap<_, _> = store
        .escalation_outcomes(now - OUTCOMES_WINDOW)
        .await?
        .into_iter()
        .collect();

    let mut pass = Pass::default();
    for agent in all_agents(store.as_ref()).await? {
        if agent.status == AgentStatus::Revoked {
            continue;
        }
        let usage = hours.remove(&agent.id).unwrap_or_default();
        let assessment = risk::assess(
            &usage,
            outcomes.get(&agent.id).copied().unwrap_or_default(),
            now,
        );
        pass.agents_assessed += 1;
        let (changed, raised) = apply(state, store.as_ref(), &agent, assessment, now).await?;
        pass.agents_changed += usize::from(changed);
        pass.alerts_raised += raised;
    }
    Ok(pass)
}

/// Judges one agent now, from the activity rolled up so far (as of the
/// last pass), without storing anything: what the agent's risk view shows.
pub async fn assess_agent(
    store: &dyn TenantStore,
    agent: behavry_core::AgentId,
    now: DateTime<Utc>,
) -> StoreResult<Assessment> {
    let since = risk::hour_of(now) - risk::LOOKBACK - risk::RECENT;
    let hours = fold_activity(store.agent_activity(since, Some(agent)).await?)
        .remove(&agent)
        .unwrap_or_default();
    let outcomes = store
        .escalation_outcomes(now - OUTCOMES_WINDOW)
        .await?
        .into_iter()
        .find(|(a, _)| *a == agent)
        .map(|(_, o)| o)
        .unwrap_or_default();
    Ok(risk::assess(&hours, outcomes, now))
}

async fn all_agents(store: &dyn TenantStore) -> StoreResult<Vec<Agent>> {
    const PAGE: i64 = 500;
    let mut out = Vec::new();
    loop {
        let (page, _) = store
            .list_agents(AgentFilter {
                status: None,
                limit: PAGE,
                offset: out.len() as i64,
            })
            .await?;
        let last = (page.len() as i64) < PAGE;
        out.extend(page);
        if last {
            return Ok(out);
        }
    }
}

/// Raises alerts for new findings and stores the verdict when anything in
/// it changed. Returns whether the agent changed and how many alerts were
/// raised.
async fn apply(
    state: &AppState,
    store: &dyn TenantStore,
    agent: &Agent,
    a: Assessment,
    now: DateTime<Utc>,
) -> StoreResult<(bool, usize)> {
    let tenant = store.tenant_id();
    let mut reported = agent.risk_reported.clone();
    reported.retain(|_, until| *until > now);
    let mut raised = 0;
    for finding in &a.findings {
        let key = finding.key();
        if reported.contains_key(&key) {
            continue;
        }
        reported.insert(key, finding.remember_until(now));
        alerts::raise(state, tenant, alert_for(agent, finding));
        raised += 1;
    }

    let update = RiskUpdate {
        score: a.score,
        tier: a.tier,
        baseline_status: a.status,
        has_recent_drift: a.has_recent_drift,
        factors: a.factors,
        reported,
        at: now,
    };
    let unchanged = agent.risk_assessed_at.is_some()
        && agent.risk_score == update.score
        && agent.risk_tier == update.tier
        && agent.baseline_status == update.baseline_status.as_str()
        && agent.has_recent_drift == update.has_recent_drift
        && agent.risk_reported == update.reported
        && agent.risk_factors == Some(update.factors);
    if unchanged {
        return Ok((false, raised));
    }
    store.set_agent_risk(agent.id, &update).await?;

    if agent.risk_tier != update.tier || agent.baseline_status != update.baseline_status.as_str() {
        // The tier is part of every policy decision and sets escalation
        // time-outs: caches everywhere must see the new one, and the trail
        // records why it moved.
        state.changed_agent(tenant, agent.id);
        state.audit.record_later(
            tenant,
            NewAuditEvent {
                id: Uuid::now_v7(),
                timestamp: now,
                agent_id: Some(agent.id),
                action: "AGENT_RISK_CHANGED".into(),
                target: Some(agent.id.to_string()),
                policy_reason: Some(format!(
                    "risk {} ({}) → {} ({}); baseline {}",
                    agent.risk_score,
                    agent.risk_tier.as_str(),
                    update.score,
                    update.tier.as_str(),
                    update.baseline_status.as_str()
                )),
                dlp_findings: json!([]),
                extra: json!({
                    "from": {"score": agent.risk_score, "tier": agent.risk_tier.as_str(), "baseline_status": agent.baseline_status},
                    "to": {"score": update.score, "tier": update.tier.as_str(), "baseline_status": update.baseline_status.as_str()},
                    "factors": update.factors,
                }),
                ..NewAuditEvent::default()
            },
        );
    }
    Ok((true, raised))
}

fn alert_for(agent: &Agent, finding: &Finding) -> Alert {
    let (kind, severity, title) = match finding {
        Finding::Anomaly {
            metric,
            value,
            mean,
            sigma,
            z,
            ..
        } => (
            AlertType::Anomaly,
            if *z >= 10.0 {
                AlertSeverity::Critical
            } else {
                AlertSeverity::Warning
            },
            format!(
                "agent `{}`: {} at {value:.2} this hour, usually {mean:.2} ± {sigma:.2} ({z:.1}σ)",
                agent.name,
                metric.as_str()
            ),
        ),
        Finding::OffHours { hour } => (
            AlertType::Anomaly,
            AlertSeverity::Warning,
            format!(
                "agent `{}` active at {} UTC, an hour it has never worked",
                agent.name,
                hour.format("%H:00")
            ),
        ),
        Finding::NewTool { tool, .. } => (
            AlertType::BaselineDrift,
            AlertSeverity::Warning,
            format!(
                "agent `{}` used `{tool}`, a tool outside its baseline",
                agent.name
            ),
        ),
        Finding::DenySpike {
            denies,
            hourly_average,
            ..
        } => (
            AlertType::PolicyDenySpike,
            AlertSeverity::Warning,
            format!(
                "agent `{}`: {denies} calls denied this hour, usually {hourly_average:.1}",
                agent.name
            ),
        ),
    };
    let mut details = serde_json::to_value(finding).unwrap_or_default();
    details["key"] = json!(finding.key());
    Alert::new(kind, severity, title)
        .agent(agent.id)
        .details(details)
}

pub async fn risk_loop(state: AppState, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let every = state.settings.risk_interval;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
        match assess_all(&state, Utc::now()).await {
            Ok(pass) => tracing::debug!(?pass, "assessed agents' behaviour"),
            Err(e) => {
                tracing::warn!(error = %e, "assessing agents' behaviour failed; retrying later")
            }
        }
    }
}
