//! The policy engine as the server uses it: in-process by default, an
//! external OPA when BEHAVRY_OPA_URL is set.

use std::collections::HashSet;
use std::sync::Mutex;

use behavry_core::config::Settings;
use behavry_policy::{Decision, EmbeddedEngine, OpaEngine, PolicyEngine, PolicyError};
use serde_json::Value;

pub struct Policies {
    engine: Box<dyn PolicyEngine>,
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
            installed: Mutex::new(HashSet::new()),
        })
    }

    pub fn kind(&self) -> &'static str {
        self.engine.kind()
    }

    pub async fn decide(&self, tenant: &str, input: &Value) -> Result<Decision, PolicyError> {
        if self.engine.kind() == "opa" {
            let known = self
                .installed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(tenant);
            if !known {
                // Tenant policy management arrives later; today every
                // tenant runs the base pack.
                self.engine.install(tenant, Vec::new(), true).await?;
                self.installed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(tenant.to_string());
            }
        }
        self.engine.decide(tenant, input).await
    }
}
