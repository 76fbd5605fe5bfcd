//! Agent sessions at the gateway.
//!
//! Session state lives in the database, so a session opened on one replica
//! works on any other; each replica keeps a short-lived cache so the hot
//! path rarely reads it. Call counts are accumulated in memory and written
//! by a background flush rather than once per call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use behavry_core::{AgentId, TenantId};
use behavry_policy::InboundFinding;
use behavry_store::{NewSession, SessionFlags, Store, StoreError};
use rand::RngCore;

const TTL: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub id: String,
    pub tenant: TenantId,
    pub agent: AgentId,
    pub server_id: Option<String>,
    pub protocol_version: String,
    pub ended: bool,
    pub call_count: u64,
    /// The session received tool output the injection scanner flagged high.
    pub tainted: bool,
    /// What the injection scanner saw in the session's tool output, one
    /// entry per class and severity (`input.inbound`).
    pub inbound: Vec<InboundFinding>,
    /// The trifecta's first two legs (see `trifecta.rs`).
    pub read_untrusted: bool,
    pub read_private: bool,
}

fn inbound_of(v: &serde_json::Value) -> Vec<InboundFinding> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

#[derive(Default)]
pub struct Sessions {
    cache: Mutex<HashMap<String, (SessionInfo, Instant)>>,
    activity: Mutex<HashMap<String, (TenantId, AgentId, i64)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// 128 random bits, hex: visible ASCII as the transport requires.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("bhv_{}", hex::encode(bytes))
}

impl Sessions {
    pub async fn create(
        &self,
        store: &dyn Store,
        tenant: TenantId,
        new: NewSession,
    ) -> Result<SessionInfo, StoreError> {
        let record = store.tenant(tenant).create_session(new).await?;
        let info = SessionInfo {
            id: record.id.clone(),
            tenant,
            agent: record.agent_id,
            server_id: record.server_id,
            protocol_version: record.protocol_version.unwrap_or_default(),
            ended: false,
            call_count: 0,
            tainted: false,
            inbound: Vec::new(),
            read_untrusted: false,
            read_private: false,
        };
        lock(&self.cache).insert(info.id.clone(), (info.clone(), Instant::now()));
        Ok(info)
    }

    /// The session, if it exists in this tenant (`None` otherwise).
    pub async fn get(
        &self,
        store: &dyn Store,
        tenant: TenantId,
        id: &str,
    ) -> Result<Option<SessionInfo>, StoreError> {
        if id.len() > 128 {
            return Ok(None);
        }
        if let Some((info, at)) = lock(&self.cache).get(id)
            && at.elapsed() < TTL
            && info.tenant == tenant
        {
            return Ok(Some(info.clone()));
        }
        match store.tenant(tenant).get_session(id).await {
            Ok(r) => {
                let info = SessionInfo {
                    id: r.id.clone(),
                    tenant,
                    agent: r.agent_id,
                    server_id: r.server_id,
                    protocol_version: r.protocol_version.unwrap_or_default(),
                    ended: r.ended_at.is_some(),
                    call_count: r.call_count.max(0) as u64,
                    tainted: r.tainted,
                    inbound: inbound_of(&r.inbound_findings),
                    read_untrusted: r.read_untrusted,
                    read_private: r.read_private,
                };
                lock(&self.cache).insert(info.id.clone(), (info.clone(), Instant::now()));
                Ok(Some(info))
            }
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn end(
        &self,
        store: &dyn Store,
        tenant: TenantId,
        id: &str,
    ) -> Result<(), StoreError> {
        store.tenant(tenant).end_session(id).await?;
        if let Some((info, _)) = lock(&self.cache).get_mut(id) {
            info.ended = true;
        }
        Ok(())
    }

    /// Ends every session of an agent (suspension, revocation).
    pub async fn end_agent(
        &self,
        store: &dyn Store,
        tenant: TenantId,
        agent: AgentId,
    ) -> Result<u64, StoreError> {
        let n = store.tenant(tenant).end_agent_sessions(agent).await?;
        for (info, _) in lock(&self.cache).values_mut() {
            if info.agent == agent {
                info.ended = true;
            }
        }
        Ok(n)
    }

    /// Adds what the injection scanner found in a result to the session
    /// and raises `flags`, in the store first so that every replica sees
    /// it on the session's next call. Does nothing when nothing changes.
    pub async fn flag(
        &self,
        store: &dyn Store,
        tenant: TenantId,
        id: &str,
        found: &[InboundFinding],
        flags: SessionFlags,
    ) -> Result<(), StoreError> {
        let current = match self.get(store, tenant, id).await? {
            Some(info) => info,
            None => return Err(StoreError::NotFound),
        };
        let unchanged = found.iter().all(|f| current.inbound.contains(f))
            && (!flags.tainted || current.tainted)
            && (!flags.read_untrusted || current.read_untrusted)
            && (!flags.read_private || current.read_private);
        if unchanged {
            return Ok(());
        }
        let mut merged = current.inbound.clone();
        for f in found {
            if !merged.contains(f) {
                merged.push(f.clone());
            }
        }
        // Bounded: classes times severities.
        merged.truncate(64);
        let value = serde_json::to_value(&merged).map_err(StoreError::internal)?;
        store.tenant(tenant).flag_session(id, flags, &value).await?;
        if let Some((info, _)) = lock(&self.cache).get_mut(id) {
            info.inbound = merged;
            info.tainted |= flags.tainted;
            info.read_untrusted |= flags.read_untrusted;
            info.read_private |= flags.read_private;
        }
        Ok(())
    }

    pub fn count_call(&self, tenant: TenantId, agent: AgentId, id: &str) {
        let mut activity = lock(&self.activity);
        activity
            .entry(id.to_string())
            .or_insert((tenant, agent, 0))
            .2 += 1;
        if let Some((info, _)) = lock(&self.cache).get_mut(id) {
            info.call_count += 1;
        }
    }

    /// Writes accumulated activity (session call counts, and the agents'
    /// last-seen time); one step of the background job.
    pub async fn flush(&self, store: &dyn Store) {
        let pending: Vec<(String, (TenantId, AgentId, i64))> =
            lock(&self.activity).drain().collect();
        let mut agents = std::collections::HashSet::new();
        for (id, (tenant, agent, calls)) in pending {
            if let Err(e) = store.tenant(tenant).touch_session(&id, calls).await {
                tracing::warn!(session = %id, error = %e, "could not record session activity");
            }
            agents.insert((tenant, agent));
        }
        for (tenant, agent) in agents {
            if let Err(e) = store.tenant(tenant).touch_agent(agent).await {
                tracing::debug!(agent = %agent, error = %e, "could not record agent activity");
            }
        }
    }
}
