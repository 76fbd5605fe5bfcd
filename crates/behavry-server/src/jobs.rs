//! Background jobs: each is a `run_once` step plus a loop around it, so
//! tests can drive single steps and a failed step never ends the loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use behavry_store::{MaintenanceOutcome, Store, StoreResult};

const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

/// One storage maintenance pass (e.g. audit partitions for coming months).
pub async fn maintenance_once(store: &dyn Store) -> StoreResult<MaintenanceOutcome> {
    store.maintenance().await
}

pub async fn maintenance_loop(store: Arc<dyn Store>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        match maintenance_once(store.as_ref()).await {
            Ok(outcome) if outcome.partitions_created > 0 => {
                tracing::info!(
                    created = outcome.partitions_created,
                    "created audit partitions"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "storage maintenance failed; retrying later"),
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(MAINTENANCE_EVERY) => {}
        }
    }
}

/// Writes sessions' accumulated activity every few seconds.
pub async fn session_activity_loop(state: crate::AppState, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        state.sessions.flush(state.store.as_ref()).await;
    }
}

/// How often each replica checks for policy changes made elsewhere: well
/// inside the one second in which a change must reach all traffic.
pub const POLICY_REFRESH_EVERY: Duration = Duration::from_millis(400);

/// One check for policy changes; returns whether it succeeded.
pub async fn policy_refresh_once(state: &crate::AppState) -> bool {
    match state.policy.refresh(state.store.as_ref()).await {
        Ok(n) => {
            if n > 0 {
                tracing::debug!(tenants = n, "reloaded tenant policies");
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "checking for policy changes failed; retrying");
            false
        }
    }
}

pub async fn policy_refresh_loop(state: crate::AppState, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(POLICY_REFRESH_EVERY) => {}
        }
        // Log a failure once per outage, not twice a second.
        let ok = if failing {
            state.policy.refresh(state.store.as_ref()).await.is_ok()
        } else {
            policy_refresh_once(&state).await
        };
        if ok && failing {
            tracing::info!("policy change checks work again");
        }
        failing = !ok;
    }
}

/// Acts on other replicas' events: drops cached agents and tenants they
/// changed, reloads policies they changed, and wakes calls held here on
/// escalations they decided. This replica's own changes were acted on
/// where they were made.
pub async fn bus_reaction_loop(state: crate::AppState, stop: impl Future<Output = ()>) {
    use tokio::sync::broadcast::error::RecvError;
    tokio::pin!(stop);
    let mut rx = state.bus.subscribe();
    loop {
        let event = tokio::select! {
            _ = &mut stop => return,
            event = rx.recv() => event,
        };
        match event {
            Ok(event) if event.remote => react(&state, &event).await,
            Ok(_) => {}
            // The polling underneath catches up with what was missed.
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "fell behind the event bus; polling covers the gap"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn react(state: &crate::AppState, event: &crate::bus::Event) {
    use crate::bus::Kind;
    let uuid = |key: &str| {
        event.data[key]
            .as_str()
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
    };
    match (event.kind, event.name.as_str()) {
        (Kind::Config, "agent") => {
            if let Some(id) = uuid("agent_id") {
                state.gate.invalidate_agent(behavry_core::AgentId(id));
            }
        }
        (Kind::Config, "policies") => {
            if let Err(e) = state
                .policy
                .load_tenant(state.store.as_ref(), event.tenant)
                .await
            {
                tracing::warn!(tenant = %event.tenant, error = %e, "reloading policies changed elsewhere failed; the poller retries");
            }
        }
        (Kind::Config, _) => state.gate.invalidate_tenant(event.tenant),
        (Kind::Escalation, status) => {
            if let (Some(id), Ok(status)) = (uuid("id"), status.parse()) {
                state.waiters.notify(id, status);
            }
        }
        _ => {}
    }
}
