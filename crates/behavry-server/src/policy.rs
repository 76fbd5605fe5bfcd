//! The policy engine as the server uses it: in-process by default, an
//! external OPA when BEHAVRY_OPA_URL is set, and the loading of each
//! tenant's stored policies into it.
//!
//! Every policy change raises the tenant's policy revision in the database.
//! The replica that made the change reloads the tenant at once; every
//! replica also polls the revisions ([`Policies::refresh`], twice a second)
//! and reloads tenants whose revision moved, so a change made anywhere is
//! in force everywhere within a second. Reloading compiles the new set off
//! to the side and swaps it in atomically; decisions never wait for it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use behavry_core::TenantId;
use behavry_core::config::Settings;
use behavry_policy::{
    BASE_PACKAGE_NAME, Decision, EmbeddedEngine, OpaEngine, POLICIES_PACKAGE, PolicyEngine,
    PolicyError, PolicySource,
};
use behavry_store::{PlatformGrant, PolicyMode, PolicyRecord, PolicyStatus, Store, StoreError};
use serde_json::Value;

pub struct Policies {
    engine: Box<dyn PolicyEngine>,
    /// For readiness: where an external OPA answers `GET /health`, and the
    /// client that asks (made once: with TLS, a client loads the trust
    /// store).
    opa: Option<(String, reqwest::Client)>,
    /// Per tenant, the policy revision whose policies are installed.
    loaded: Mutex<HashMap<TenantId, i64>>,
    /// Tenants whose stored policies could not be installed, with why.
    /// Their calls fail closed rather than fall back to fewer policies.
    broken: ArcSwap<HashMap<String, String>>,
    /// Tenants that an external OPA has been given the base pack for (the
    /// embedded engine falls back to the base pack by itself).
    opa_installed: Mutex<HashSet<String>>,
    /// One load at a time, so a slower load of older rows can never
    /// overwrite a newer one.
    load_lock: tokio::sync::Mutex<()>,
    /// Set by the first successful [`Policies::refresh`]. Before that a
    /// tenant's own policies may not be installed yet, so decisions fail
    /// closed rather than run on the base pack alone.
    synced: AtomicBool,
}

/// The full package of a tenant policy that replaces the built-in base pack.
pub fn base_override_package() -> String {
    format!("{POLICIES_PACKAGE}.{BASE_PACKAGE_NAME}")
}

/// What a tenant's active policies compile to: the sources, and whether the
/// built-in base pack joins them (enabled, and not overridden by a policy
/// declaring its package).
pub fn active_sources(
    policies: &[PolicyRecord],
    base_pack_enabled: bool,
) -> (Vec<PolicySource>, bool) {
    let overridden = policies
        .iter()
        .any(|p| p.status == PolicyStatus::Active && p.package == base_override_package());
    let sources = policies
        .iter()
        .filter(|p| p.status == PolicyStatus::Active)
        .map(source_of)
        .collect();
    (sources, base_pack_enabled && !overridden)
}

pub fn source_of(p: &PolicyRecord) -> PolicySource {
    PolicySource {
        id: p.id.to_string(),
        name: p.name.clone(),
        content: p.content.clone(),
        monitor: p.mode == PolicyMode::Monitor,
    }
}

impl Policies {
    pub fn from_settings(settings: &Settings) -> Result<Self, PolicyError> {
        let engine: Box<dyn PolicyEngine> = match &settings.opa_url {
            Some(url) => Box::new(OpaEngine::new(url.clone(), settings.opa_timeout)?),
            None => Box::new(EmbeddedEngine::new()?),
        };
        let opa = match &settings.opa_url {
            Some(url) => {
                let client = behavry_mcp::outbound::client_builder()
                    .timeout(settings.opa_timeout)
                    .build()
                    .map_err(|e| {
                        PolicyError::Unavailable(format!("cannot create the HTTP client: {e}"))
                    })?;
                Some((format!("{}/health", url.trim_end_matches('/')), client))
            }
            None => None,
        };
        Ok(Self {
            engine,
            opa,
            loaded: Mutex::new(HashMap::new()),
            broken: ArcSwap::from_pointee(HashMap::new()),
            opa_installed: Mutex::new(HashSet::new()),
            load_lock: tokio::sync::Mutex::new(()),
            synced: AtomicBool::new(false),
        })
    }

    pub fn kind(&self) -> &'static str {
        self.engine.kind()
    }

    /// Whether decisions can be made now: the stored policies have been
    /// loaded, and for OPA, its health endpoint answers.
    pub async fn health(&self) -> Result<(), String> {
        if !self.synced() {
            return Err("tenant policies have not been loaded yet".into());
        }
        let Some((health, client)) = &self.opa else {
            return Ok(());
        };
        match client.get(health).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("OPA answered HTTP {}", r.status())),
            Err(_) => Err("OPA is unreachable".into()),
        }
    }

    /// Whether the stored policies have been loaded at least once.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub async fn decide(
        &self,
        store: &dyn Store,
        tenant: TenantId,
        input: &Value,
    ) -> Result<Decision, PolicyError> {
        if !self.synced() {
            return Err(PolicyError::Unavailable(
                "tenant policies have not been loaded yet".into(),
            ));
        }
        let key = tenant.to_string();
        if let Some(why) = self.broken.load().get(&key) {
            return Err(PolicyError::Evaluation(format!(
                "the tenant's policies could not be loaded: {why}"
            )));
        }
        if self.engine.kind() != "opa" {
            return self.engine.decide(&key, input).await;
        }
        let installed = self.installed().contains(&key);
        if !installed {
            // First call for this tenant here: OPA must be given its
            // policies (the base pack, for a tenant that never changed any).
            self.install_into_opa(store, tenant).await?;
        }
        match self.engine.decide(&key, input).await {
            Err(PolicyError::Unavailable(_)) if installed => {
                // OPA keeps policies given over its API in memory only: after
                // a restart it has none and answers "undefined". Give them
                // again and ask once more, rather than fail closed until this
                // process restarts; if OPA is down, the next call tries again.
                self.installed().remove(&key);
                self.install_into_opa(store, tenant).await?;
                self.engine.decide(&key, input).await
            }
            other => other,
        }
    }

    async fn install_into_opa(
        &self,
        store: &dyn Store,
        tenant: TenantId,
    ) -> Result<(), PolicyError> {
        self.load_tenant(store, tenant).await.map_err(|e| {
            PolicyError::Unavailable(format!("the tenant's policies could not be read: {e}"))
        })?;
        let key = tenant.to_string();
        if let Some(why) = self.broken.load().get(&key) {
            return Err(PolicyError::Evaluation(format!(
                "the tenant's policies could not be installed: {why}"
            )));
        }
        if !self.installed().contains(&key) {
            return Err(PolicyError::Unavailable(
                "OPA did not take the tenant's policies".into(),
            ));
        }
        Ok(())
    }

    /// Tenants an external OPA holds policies for (see `opa_installed`).
    fn installed(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.opa_installed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_broken(&self, tenant: &str, why: Option<String>) {
        self.broken.rcu(|current| {
            let mut next = HashMap::clone(current);
            match &why {
                Some(w) => next.insert(tenant.to_string(), w.clone()),
                None => next.remove(tenant),
            };
            next
        });
    }

    /// Installs the tenant's active policies as stored now. A set that does
    /// not compile leaves the tenant failing closed (and is logged): saving
    /// validates every policy, so this means the stored rows and this
    /// build's engine disagree, and guessing would be unsafe.
    pub async fn load_tenant(&self, store: &dyn Store, tenant: TenantId) -> Result<(), StoreError> {
        let _guard = self.load_lock.lock().await;
        let handle = store.tenant(tenant);
        // The revision first: if a change lands between the two reads, the
        // newer rows are installed under the older revision, and the next
        // poll loads again. The other order could miss the change.
        let settings = handle.policy_settings().await?;
        let policies = handle.list_policies().await?;
        let (sources, base_pack) = active_sources(&policies, settings.base_pack_enabled);
        let key = tenant.to_string();
        match self.engine.install(&key, sources, base_pack).await {
            Ok(()) => {
                self.installed().insert(key.clone());
                if self.broken.load().contains_key(&key) {
                    tracing::info!(tenant = %tenant, "tenant policies load again");
                }
                self.set_broken(&key, None);
            }
            // An external OPA that cannot be reached: nothing is wrong with
            // the policies. Decisions fail closed meanwhile, and the
            // revision is not marked as loaded, so the next poll retries.
            Err(e @ PolicyError::Unavailable(_)) => {
                tracing::warn!(tenant = %tenant, error = %e, "could not give OPA the tenant's policies; retrying");
                self.installed().remove(&key);
                return Ok(());
            }
            Err(e) => {
                tracing::error!(
                    tenant = %tenant,
                    revision = settings.revision,
                    error = %e,
                    "tenant policies could not be installed; the tenant's calls are refused until this is fixed"
                );
                self.set_broken(&key, Some(e.kind().to_string()));
            }
        }
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant, settings.revision);
        Ok(())
    }

    /// Reloads every tenant whose policy revision differs from what this
    /// replica has installed. Returns how many tenants were reloaded.
    pub async fn refresh(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let revisions = store
            .platform(&PlatformGrant::background_job())
            .policy_revisions()
            .await?;
        let stale: Vec<TenantId> = {
            let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            revisions
                .into_iter()
                .filter(|(t, r)| loaded.get(t) != Some(r))
                .map(|(t, _)| t)
                .collect()
        };
        let mut reloaded = 0;
        for tenant in stale {
            match self.load_tenant(store, tenant).await {
                Ok(()) => reloaded += 1,
                // A tenant deleted meanwhile: nothing to load.
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        self.synced.store(true, Ordering::Release);
        Ok(reloaded)
    }
}
