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
