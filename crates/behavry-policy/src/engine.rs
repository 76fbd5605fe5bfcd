//! The engine trait the gateway talks to, and the in-process implementation.

use crate::decision::Decision;
use crate::error::PolicyError;
use crate::set::{PolicySet, PolicySource};
use arc_swap::ArcSwap;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

/// Per-tenant policy decisions, whoever computes them.
#[async_trait::async_trait]
pub trait PolicyEngine: Send + Sync {
    /// Replaces the tenant's policies with `sources` (plus the base pack when
    /// `base_pack` is set). On error the previous policies stay in force.
    async fn install(
        &self,
        tenant: &str,
        sources: Vec<PolicySource>,
        base_pack: bool,
    ) -> Result<(), PolicyError>;

    /// Decides one request for the tenant. `input` is the Rego input document.
    async fn decide(&self, tenant: &str, input: &Json) -> Result<Decision, PolicyError>;

    /// `"embedded"` or `"opa"`, for health reports and metrics.
    fn kind(&self) -> &'static str;
}

/// Policies evaluated in process with regorus.
///
/// Each tenant's compiled set sits behind an `ArcSwap`: `decide` loads the
/// current set without taking any lock, and `install` compiles the new set
/// on the blocking pool before publishing it with one atomic swap. A decision
/// therefore uses either the old set or the new one, never a mixture, and is
/// never held up by a compile.
pub struct EmbeddedEngine {
    tenants: ArcSwap<HashMap<String, Arc<PolicySet>>>,
    /// What a tenant without policies of its own gets; compiled once.
    base_only: Arc<PolicySet>,
    /// Serialises installs so that two racing installs for a tenant publish
    /// in the order they were called, never an older set over a newer one.
    install_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for EmbeddedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedEngine")
            .field("tenants", &self.tenants.load().len())
            .finish_non_exhaustive()
    }
}

impl EmbeddedEngine {
    pub fn new() -> Result<Self, PolicyError> {
        Ok(Self {
            tenants: ArcSwap::from_pointee(HashMap::new()),
            base_only: Arc::new(PolicySet::base_only()?),
            install_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The set currently deciding for `tenant`.
    pub fn policy_set(&self, tenant: &str) -> Arc<PolicySet> {
        self.tenants
            .load()
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.base_only.clone())
    }

    /// Forgets the tenant's policies; it falls back to the base pack alone.
    pub async fn remove(&self, tenant: &str) {
        let _guard = self.install_lock.lock().await;
        self.tenants.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(tenant);
            next
        });
    }
}

#[async_trait::async_trait]
impl PolicyEngine for EmbeddedEngine {
    async fn install(
        &self,
        tenant: &str,
        sources: Vec<PolicySource>,
        base_pack: bool,
    ) -> Result<(), PolicyError> {
        let _guard = self.install_lock.lock().await;
        // Compiling takes milliseconds of CPU: keep it off the async workers.
        let set = tokio::task::spawn_blocking(move || PolicySet::compile(sources, base_pack))
            .await
            .map_err(|e| {
                PolicyError::Evaluation(format!("policy compilation was aborted: {e}"))
            })??;
        let set = Arc::new(set);
        // Copy-on-write of the tenant map: installs are rare, decisions are
        // not, and this keeps the read side free of locks.
        self.tenants.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(tenant.to_owned(), set.clone());
            next
        });
        Ok(())
    }

    async fn decide(&self, tenant: &str, input: &Json) -> Result<Decision, PolicyError> {
        // A few tens of microseconds of CPU; not worth a thread hop.
        self.policy_set(tenant).decide(input)
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}
