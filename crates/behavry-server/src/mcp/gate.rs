//! Per-call admission: is the agent (and its tenant) still allowed to act,
//! and is it within its rate limit. Answers come from memory; agent and
//! tenant state is re-read from the store at most every few seconds, and
//! immediately after an admin changes it on this replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use behavry_core::{
    Agent, AgentId, AgentStatus, BlastRadiusConfig, DataProtectionPolicy, TenantId,
};
use behavry_store::{Store, StoreError};

/// How long cached agent state is trusted.
const TTL: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct AgentState {
    pub agent: Agent,
    pub tenant_frozen: bool,
    pub max_rpm: u32,
    /// The tenant's data-protection settings.
    pub protection: DataProtectionPolicy,
    /// The tenant's blast-radius limits.
    pub blast: BlastRadiusConfig,
}

struct Cached {
    state: AgentState,
    at: Instant,
}

/// Token bucket per agent.
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
pub struct Gate {
    agents: Mutex<HashMap<AgentId, Cached>>,
    buckets: Mutex<HashMap<AgentId, Bucket>>,
}

pub enum Refusal {
    Suspended(String),
    RateLimited { retry_after: Duration },
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Gate {
    pub async fn agent(
        &self,
        store: &dyn Store,
        tenant: TenantId,
        id: AgentId,
    ) -> Result<AgentState, StoreError> {
        if let Some(c) = lock(&self.agents).get(&id)
            && c.at.elapsed() < TTL
        {
            return Ok(c.state.clone());
        }
        let handle = store.tenant(tenant);
        let agent = handle.get_agent(id).await?;
        let tenant_record = handle.tenant().await?;
        let state = AgentState {
            agent,
            tenant_frozen: tenant_record.tenant.is_frozen,
            max_rpm: tenant_record.config.max_rpm_per_agent.max(1) as u32,
            protection: DataProtectionPolicy::of(&tenant_record.config),
            blast: BlastRadiusConfig::of(&tenant_record.config),
        };
        lock(&self.agents).insert(
            id,
            Cached {
                state: state.clone(),
                at: Instant::now(),
            },
        );
        Ok(state)
    }

    /// Whether the agent may act at all.
    pub fn admit(state: &AgentState) -> Result<(), Refusal> {
        if state.tenant_frozen {
            return Err(Refusal::Suspended("the agent's tenant is suspended".into()));
        }
        if let Some(reason) = &state.agent.frozen_reason {
            return Err(Refusal::Suspended(format!(
                "the agent is frozen ({reason}); an admin must unfreeze it"
            )));
        }
        match state.agent.status {
            AgentStatus::Active => Ok(()),
            other => Err(Refusal::Suspended(format!(
                "the agent is {}",
                other.as_str()
            ))),
        }
    }

    /// Takes one token from the agent's bucket: `rpm` per minute with
    /// `burst` extra on top.
    pub fn take(&self, agent: AgentId, rpm: u32, burst: u32) -> Result<(), Refusal> {
        let capacity = f64::from(burst.max(1));
        let per_sec = f64::from(rpm) / 60.0;
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        let b = buckets.entry(agent).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / per_sec.max(1e-9);
            Err(Refusal::RateLimited {
                retry_after: Duration::from_secs_f64(wait.min(3600.0)),
            })
        }
    }

    /// Forgets cached state so the next call re-reads it (after an admin
    /// suspends an agent or a tenant on this replica).
    pub fn invalidate_agent(&self, id: AgentId) {
        lock(&self.agents).remove(&id);
    }

    pub fn invalidate_tenant(&self, tenant: TenantId) {
        lock(&self.agents).retain(|_, c| c.state.agent.tenant_id != tenant);
    }
}
