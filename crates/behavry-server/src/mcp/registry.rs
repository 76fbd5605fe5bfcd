//! The upstream connections of this replica: one supervised [`Upstream`]
//! per registered server, started on first use and replaced when the
//! server's configuration changes.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use behavry_core::TenantId;
use behavry_dlp::{InjectionFinding, InjectionScanner, Severity};
use behavry_mcp::upstream::{Transport, Upstream, UpstreamConfig};
use behavry_store::McpServerRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::mcp::catalog::Launcher;
use crate::secrets::SecretCipher;
use behavry_mcp::outbound::AddressGuard;

/// Credentials of a server, encrypted at rest as one JSON document.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct ServerSecrets {
    #[serde(default)]
    pub env: HashMap<String, String>,
    #[serde(default)]
    pub headers: HashMap<String, String>,
}

struct Entry {
    upstream: Upstream,
    /// The record's `updated_at`: a newer one means the config changed.
    version: chrono::DateTime<chrono::Utc>,
    /// Tool definitions from the last `tools/list`, by name, for action
    /// classification (annotations).
    tools: HashMap<String, Value>,
    /// Poisoned definitions kept from agents, with what was found in them.
    withheld: HashMap<String, (Value, Vec<InjectionFinding>)>,
    /// Tools whose definition changed since it was pinned, held until an
    /// admin approves the change.
    changed: HashSet<String>,
}

pub struct UpstreamRegistry {
    /// Starts and confines stdio servers.
    launcher: Launcher,
    /// Checks every address HTTP upstreams connect to.
    outbound: AddressGuard,
    entries: Mutex<HashMap<(TenantId, Uuid), Entry>>,
    /// Server records by id, so a call does not read the database to find
    /// its upstream. Short-lived: changes on another replica show within
    /// the TTL; changes on this one are applied at once.
    records: Mutex<HashMap<(TenantId, Uuid), (McpServerRecord, std::time::Instant)>>,
}

const RECORD_TTL: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How to reach a server. A stdio server runs only what the operator
/// decided: a catalogue entry (with the tenant's values for the variables
/// the entry declares), or a command a platform operator registered.
pub fn transport_for(
    record: &McpServerRecord,
    cipher: &SecretCipher,
    launcher: &Launcher,
) -> Result<Transport, String> {
    let secrets: ServerSecrets = match &record.secrets {
        None => ServerSecrets::default(),
        Some(stored) => {
            let bytes = cipher.decrypt(stored).map_err(|e| e.to_string())?;
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("stored secrets are malformed: {e}"))?
        }
    };
    let headers: Vec<(String, String)> = secrets.headers.into_iter().collect();
    match record.transport.as_str() {
        "stdio" => {
            if !launcher.enabled {
                return Err(
                    "stdio servers are disabled on this gateway (BEHAVRY_ALLOW_STDIO_SERVERS)"
                        .into(),
                );
            }
            let (command, args, env) = match &record.catalog_entry {
                Some(name) => {
                    let entry = launcher.catalog.get(name).ok_or_else(|| {
                        format!("the operator no longer offers the stdio catalogue entry `{name}`")
                    })?;
                    let mut env: Vec<(String, String)> = entry
                        .env
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    env.extend(
                        secrets
                            .env
                            .into_iter()
                            .filter(|(k, _)| entry.tenant_env.contains(k)),
                    );
                    (entry.command.clone(), entry.args.clone(), env)
                }
                None if record.operator_defined => (
                    record
                        .command
                        .clone()
                        .ok_or("stdio server has no command")?,
                    record.args.clone(),
                    secrets.env.into_iter().collect(),
                ),
                None => {
                    return Err(
                        "this server's command was set by a tenant admin, which this gateway does not run; a platform operator must register it or offer it in the stdio catalogue"
                            .into(),
                    );
                }
            };
            Ok(Transport::Stdio {
                command,
                args,
                env,
                sandbox: launcher.sandbox(record.tenant_id, record.id),
            })
        }
        "streamable_http" => Ok(Transport::StreamableHttp {
            url: record.url.clone().ok_or("server has no url")?,
            headers,
        }),
        "sse" => Ok(Transport::Sse {
            url: record.url.clone().ok_or("server has no url")?,
            headers,
        }),
        other => Err(format!("unknown transport `{other}`")),
    }
}

impl UpstreamRegistry {
    pub fn new(launcher: Launcher, outbound: AddressGuard) -> Self {
        UpstreamRegistry {
            launcher,
            outbound,
            entries: Mutex::default(),
            records: Mutex::default(),
        }
    }

    pub fn launcher(&self) -> &Launcher {
        &self.launcher
    }

    pub fn outbound(&self) -> &AddressGuard {
        &self.outbound
    }

    /// The running connection for this server, started (or restarted after
    /// a configuration change) as needed.
    pub fn get(&self, record: &McpServerRecord, cipher: &SecretCipher) -> Result<Upstream, String> {
        let key = (record.tenant_id, record.id);
        let mut entries = lock(&self.entries);
        if let Some(e) = entries.get(&key)
            && e.version == record.updated_at
        {
            return Ok(e.upstream.clone());
        }
        let transport = transport_for(record, cipher, &self.launcher)?;
        let upstream = Upstream::start(UpstreamConfig {
            name: record.name.clone(),
            transport,
            request_timeout: Duration::from_millis(record.timeout_ms.max(100) as u64),
            connect_timeout: Duration::from_secs(30),
            outbound: self.outbound.clone(),
        });
        if let Some(old) = entries.insert(
            key,
            Entry {
                upstream: upstream.clone(),
                version: record.updated_at,
                tools: HashMap::new(),
                withheld: HashMap::new(),
                changed: HashSet::new(),
            },
        ) {
            let old = old.upstream;
            tokio::spawn(async move { old.shutdown().await });
        }
        Ok(upstream)
    }

    /// The state of a server's connection on this replica, if started.
    pub fn state(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Option<behavry_mcp::upstream::UpstreamState> {
        lock(&self.entries)
            .get(&(tenant, id))
            .map(|e| e.upstream.state())
    }

    /// Remembers a server's tool definitions, scanning each new or changed
    /// one for poisoning. Poisoned tools are kept apart (withheld) with
    /// what was found; the return value lists the tools withheld by this
    /// call that were not withheld before, for the audit trail.
    pub fn remember_tools(
        &self,
        tenant: TenantId,
        id: Uuid,
        tools: &[Value],
        scanner: &InjectionScanner,
        block: Severity,
    ) -> Vec<(String, Vec<InjectionFinding>)> {
        let mut entries = lock(&self.entries);
        let Some(e) = entries.get_mut(&(tenant, id)) else {
            return Vec::new();
        };
        let mut kept = HashMap::new();
        let mut withheld = HashMap::new();
        let mut newly = Vec::new();
        for t in tools {
            let Some(name) = t.get("name").and_then(Value::as_str) else {
                continue;
            };
            // An unchanged definition keeps its verdict without a rescan.
            if e.tools.get(name) == Some(t) {
                kept.insert(name.to_string(), t.clone());
                continue;
            }
            if let Some((def, findings)) = e.withheld.remove(name)
                && &def == t
            {
                withheld.insert(name.to_string(), (def, findings));
                continue;
            }
            let findings = scanner.scan_tool(t);
            if behavry_dlp::worst(&findings).is_some_and(|w| w >= block) {
                newly.push((name.to_string(), findings.clone()));
                withheld.insert(name.to_string(), (t.clone(), findings));
            } else {
                kept.insert(name.to_string(), t.clone());
            }
        }
        e.tools = kept;
        e.withheld = withheld;
        newly
    }

    pub fn tool(&self, tenant: TenantId, id: Uuid, name: &str) -> Option<Value> {
        lock(&self.entries)
            .get(&(tenant, id))
            .and_then(|e| e.tools.get(name).cloned())
    }

    /// Why a tool is withheld from agents, if it is.
    pub fn withheld(
        &self,
        tenant: TenantId,
        id: Uuid,
        name: &str,
    ) -> Option<Vec<InjectionFinding>> {
        lock(&self.entries)
            .get(&(tenant, id))
            .and_then(|e| e.withheld.get(name).map(|(_, f)| f.clone()))
    }

    /// Replaces the set of tools held for changed definitions.
    pub fn set_changed(&self, tenant: TenantId, id: Uuid, names: HashSet<String>) {
        if let Some(e) = lock(&self.entries).get_mut(&(tenant, id)) {
            e.changed = names;
        }
    }

    pub fn is_changed(&self, tenant: TenantId, id: Uuid, name: &str) -> bool {
        lock(&self.entries)
            .get(&(tenant, id))
            .is_some_and(|e| e.changed.contains(name))
    }

    /// Releases a tool whose change was approved.
    pub fn clear_changed(&self, tenant: TenantId, id: Uuid, name: &str) {
        if let Some(e) = lock(&self.entries).get_mut(&(tenant, id)) {
            e.changed.remove(name);
        }
    }

    pub fn has_tools(&self, tenant: TenantId, id: Uuid) -> bool {
        lock(&self.entries)
            .get(&(tenant, id))
            .is_some_and(|e| !e.tools.is_empty() || !e.withheld.is_empty())
    }

    pub fn cached_record(&self, tenant: TenantId, id: Uuid) -> Option<McpServerRecord> {
        lock(&self.records)
            .get(&(tenant, id))
            .filter(|(_, at)| at.elapsed() < RECORD_TTL)
            .map(|(r, _)| r.clone())
    }

    pub fn cache_record(&self, record: &McpServerRecord) {
        let mut records = lock(&self.records);
        if records.len() > 10_000 {
            records.clear();
        }
        records.insert(
            (record.tenant_id, record.id),
            (record.clone(), std::time::Instant::now()),
        );
    }

    pub fn forget_record(&self, tenant: TenantId, id: Uuid) {
        lock(&self.records).remove(&(tenant, id));
    }

    /// Stops a server's connection (deleted or disabled).
    pub fn stop(&self, tenant: TenantId, id: Uuid) {
        self.forget_record(tenant, id);
        if let Some(e) = lock(&self.entries).remove(&(tenant, id)) {
            tokio::spawn(async move { e.upstream.shutdown().await });
        }
    }

    pub async fn shutdown_all(&self) {
        let all: Vec<Upstream> = lock(&self.entries)
            .drain()
            .map(|(_, e)| e.upstream)
            .collect();
        for u in all {
            u.shutdown().await;
        }
    }
}
