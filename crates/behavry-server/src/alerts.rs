//! Raising alerts. The request path hands an alert over and moves on: it is
//! stored (folded into an unresolved alert of the same type for the same
//! agent when it repeats within [`FOLD_WINDOW`]) by the alert writer task,
//! so a slow or failing store never delays a call.

use std::sync::Arc;

use behavry_core::{AgentId, AlertSeverity, AlertType, TenantId};
use behavry_store::{NewAlert, Store};
use chrono::Utc;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::bus::{Bus, Event, Kind};
use crate::state::AppState;

/// Repeats within this time of the last occurrence are counted on one
/// alert instead of opening another.
pub const FOLD_WINDOW: chrono::Duration = chrono::Duration::minutes(15);

/// An alert about to be raised.
pub struct Alert {
    pub kind: AlertType,
    pub severity: AlertSeverity,
    pub agent: Option<AgentId>,
    pub title: String,
    /// What a person needs to act: the server, tool, findings, reason.
    /// Never a matched secret (findings carry fingerprints, not values).
    pub details: Value,
}

impl Alert {
    pub fn new(kind: AlertType, severity: AlertSeverity, title: impl Into<String>) -> Self {
        Self {
            kind,
            severity,
            agent: None,
            title: title.into(),
            details: Value::Object(Default::default()),
        }
    }

    pub fn agent(mut self, agent: AgentId) -> Self {
        self.agent = Some(agent);
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Raises an alert for a tenant without waiting for it to be stored.
pub fn raise(state: &AppState, tenant: TenantId, alert: Alert) {
    state.alerts.raise(tenant, alert);
}

/// The alert writer: one task stores alerts in the order they were raised,
/// so repeats raised close together on this replica fold into one alert
/// (across replicas the store serializes them).
#[derive(Clone)]
pub struct Alerts {
    tx: mpsc::Sender<(TenantId, Alert)>,
}

impl Alerts {
    /// Must be called inside a Tokio runtime.
    /// Stored alerts are published on `bus`.
    pub fn start(store: Arc<dyn Store>, bus: Arc<Bus>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(TenantId, Alert)>(4096);
        tokio::spawn(async move {
            while let Some((tenant, alert)) = rx.recv().await {
                store_alert(store.as_ref(), &bus, tenant, alert).await;
            }
        });
        Self { tx }
    }

    pub fn raise(&self, tenant: TenantId, alert: Alert) {
        if let Err(e) = self.tx.try_send((tenant, alert)) {
            // A full queue: wait for room on a task rather than drop it.
            let tx = self.tx.clone();
            let job = match e {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => {
                    job
                }
            };
            tokio::spawn(async move {
                let _ = tx.send(job).await;
            });
        }
    }
}

async fn store_alert(store: &dyn Store, bus: &Bus, tenant: TenantId, alert: Alert) {
    let at = Utc::now();
    let new = NewAlert {
        agent_id: alert.agent,
        alert_type: alert.kind,
        severity: alert.severity,
        title: alert.title,
        details: alert.details,
        at,
        fold_since: at - FOLD_WINDOW,
    };
    match store.tenant(tenant).raise_alert(&new).await {
        Ok((stored, opened)) => {
            tracing::warn!(
                alert = new.alert_type.as_str(),
                severity = stored.severity.as_str(),
                tenant = %tenant,
                agent = ?new.agent_id,
                id = %stored.id,
                occurrences = stored.occurrences,
                opened,
                "{}",
                new.title
            );
            bus.publish(Event::new(
                tenant,
                Kind::Alert,
                new.alert_type.as_str(),
                serde_json::to_value(&stored).unwrap_or_default(),
            ));
        }
        Err(e) => tracing::error!(
            alert = new.alert_type.as_str(),
            tenant = %tenant,
            error = %e,
            "an alert could not be stored: {}",
            new.title
        ),
    }
}
