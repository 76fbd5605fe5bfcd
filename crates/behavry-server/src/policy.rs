//! The policy engine as the server uses it: in-process by default, an
//! external OPA when BEHAVRY_OPA_URL is set.

use std::collections::HashSet;
use std::sync::Mutex;

use behavry_core::config::Settings;
use behavry_policy::{Decision, EmbeddedEngine, OpaEngine, PolicyEngine, PolicyError};
use serde_json::Value;

pub struct Policies {
    engine: Box<dyn PolicyEngine>,
    /// For readiness: where an external OPA answers `GET /health`.
    opa: Option<(String, std::time::Duration)>,
    /// Tenants whose policies an external OPA has been given by this
    /// process (the embedded engine falls back to the base pack itself).
    installed: Mutex<HashSet<String>>,
}

impl Policies {
    pub fn from_settings(settings: &Settings) -> Result<Self, PolicyError> {
        let engine: Box<dyn PolicyEngine> = match &settings.opa_url {
            Some(url) => Box::new(OpaEngine::new(url.clone(), settings.opa_timeout)?),
            None => Box::new(EmbeddedEngine::new()?),
        };
        Ok(Self {
            engine,
            opa: settings.opa_url.clone().map(|u| (u, settings.opa_timeout)),
            installed: Mutex::new(HashSet::new()),
        })
    }

    pub fn kind(&self) -> &'static str {
        self.engine.kind()
    }

    /// Whether decisions can be made now: always for the embedded engine;
    /// for OPA, whether its health endpoint answers.
    pub async fn health(&self) -> Result<(), String> {
        let Some((url, timeout)) = &self.opa else {
            return Ok(());
        };
        let health = format!("{}/health", url.trim_end_matches('/'));
        let client = reqwest::Client::builder()
            .timeout(*timeout)
            .build()
            .map_err(|e| e.to_string())?;
        match client.get(&health).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("OPA answered HTTP {}", r.status())),
            Err(_) => Err("OPA is unreachable".into()),
        }
    }

    pub async fn decide(&self, tenant: &str, input: &Value) -> Result<Decision, PolicyError> {
        if self.engine.kind() != "opa" {
            return self.engine.decide(tenant, input).await;
        }
        let installed = self.installed().contains(tenant);
        if !installed {
            self.install(tenant).await?;
        }
        match self.engine.decide(tenant, input).await {
            Err(PolicyError::Unavailable(_)) if installed => {
                // OPA keeps policies given over its API in memory only: after
                // a restart it has none and answers "undefined". Give them
                // again and ask once more, rather than fail closed until this
                // process restarts; if OPA is down, the next call tries again.
                self.installed().remove(tenant);
                self.install(tenant).await?;
                self.engine.decide(tenant, input).await
            }
            other => other,
        }
    }

    /// Gives an external OPA the tenant's policies. Tenant policy
    /// management arrives later; today every tenant runs the base pack.
    async fn install(&self, tenant: &str) -> Result<(), PolicyError> {
        self.engine.install(tenant, Vec::new(), true).await?;
        self.installed().insert(tenant.to_string());
        Ok(())
    }

    fn installed(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.installed.lock().unwrap_or_else(|p| p.into_inner())
    }
}
