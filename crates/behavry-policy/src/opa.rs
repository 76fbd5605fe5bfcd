//! The external engine: an OPA server reached over its REST API.
//!
//! One OPA may serve many tenants, so each tenant's modules are moved into a
//! namespace of their own: `package behavry.policies.x` is installed as
//! `package behavry.t_<tenant>.policies.x` (and references to
//! `data.behavry.policies` follow), under module ids
//! `behavry/<tenant>/<policy id>`. Decisions fetch the tenant's
//! `data.behavry.t_<tenant>.policies` document and combine it with the same
//! Rust code as the embedded engine.

use crate::decision::{Decision, PolicyMeta, PolicyOutcome, combine};
use crate::engine::PolicyEngine;
use crate::error::{CompileError, PolicyError};
use crate::rego_text::{self, PackageDecl};
use crate::set::{
    AUTHZ_ID, BASE_PACK_ID, BASE_PACK_REGO, POLICIES_PACKAGE, PolicySource, authz_module,
    is_policy_name, to_regorus_input,
};
use arc_swap::ArcSwap;
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Policy decisions from an OPA server (`BEHAVRY_OPA_URL`).
pub struct OpaEngine {
    base_url: String,
    timeout: Duration,
    client: reqwest::Client,
    /// What this process installed per tenant: ids, names and monitor flags,
    /// which OPA's document does not carry.
    tenants: ArcSwap<HashMap<String, Arc<Vec<PolicyMeta>>>>,
    install_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for OpaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpaEngine")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl OpaEngine {
    /// `base_url` like `http://opa:8181`; `timeout` bounds every request,
    /// connecting included.
    pub fn new(base_url: impl Into<String>, timeout: Duration) -> Result<Self, PolicyError> {
        // reqwest is built without a crypto provider: use ring, as the
        // rest of the gateway does (see `behavry_mcp::outbound`).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| PolicyError::Unavailable(format!("cannot create the HTTP client: {e}")))?;
        Ok(Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            timeout,
            client,
            tenants: ArcSwap::from_pointee(HashMap::new()),
            install_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn policy_url(&self, tenant: &str, id: &str) -> String {
        format!(
            "{}/v1/policies/behavry/{tenant}/{}",
            self.base_url,
            percent_encode(id)
        )
    }

    async fn put_module(&self, tenant: &str, id: &str, rego: String) -> Result<(), PolicyError> {
        let response = self
            .client
            .put(self.policy_url(tenant, id))
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(rego)
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.bytes().await.map_err(unavailable)?;
        if status == reqwest::StatusCode::BAD_REQUEST {
            return Err(PolicyError::Compile(opa_compile_errors(&body, id)));
        }
        Err(PolicyError::Unavailable(format!(
            "OPA answered {status} to installing policy {id}: {}",
            excerpt(&body)
        )))
    }

    /// Deletes the tenant's modules that are not in `keep`: policies removed
    /// since the last install, possibly by another replica.
    async fn delete_stale(&self, tenant: &str, keep: &HashSet<String>) -> Result<(), PolicyError> {
        #[derive(Deserialize)]
        struct Listing {
            #[serde(default)]
            result: Vec<Module>,
        }
        #[derive(Deserialize)]
        struct Module {
            id: String,
        }
        let response = self
            .client
            .get(format!("{}/v1/policies", self.base_url))
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(PolicyError::Unavailable(format!(
                "OPA answered {status} to listing policies"
            )));
        }
        let listing: Listing = response.json().await.map_err(unavailable)?;
        let prefix = format!("behavry/{tenant}/");
        for module in listing.result {
            let Some(id) = module.id.strip_prefix(&prefix) else {
                continue;
            };
            if keep.contains(id) {
                continue;
            }
            let response = self
                .client
                .delete(self.policy_url(tenant, id))
                .send()
                .await
                .map_err(unavailable)?;
            let status = response.status();
            if !status.is_success() && status != reqwest::StatusCode::NOT_FOUND {
                return Err(PolicyError::Unavailable(format!(
                    "OPA answered {status} to deleting policy {id}"
                )));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl PolicyEngine for OpaEngine {
    /// Installs module by module: OPA has no multi-module transaction short
    /// of bundles. New modules are written before stale ones are deleted so
    /// that a removed deny stays in force until its replacement is in; a
    /// compile error part way leaves the earlier modules updated, so
    /// [`crate::validate`] policies before activating them.
    async fn install(
        &self,
        tenant: &str,
        sources: Vec<PolicySource>,
        base_pack: bool,
    ) -> Result<(), PolicyError> {
        let segment = tenant_segment(tenant)?;
        let mut sources = sources;
        if base_pack {
            sources.push(PolicySource {
                id: BASE_PACK_ID.to_owned(),
                name: "Behavry base pack".to_owned(),
                content: BASE_PACK_REGO.to_owned(),
                monitor: false,
            });
        }
        let namespace = format!("behavry.{segment}");
        let mut metas: Vec<PolicyMeta> = Vec::with_capacity(sources.len());
        let mut modules = Vec::with_capacity(sources.len() + 1);
        for source in &sources {
            let (decl, name) = policy_package(source)?;
            if let Some(first) = metas.iter().find(|m| m.package_name == name) {
                return Err(PolicyError::DuplicatePackage {
                    package: format!("{POLICIES_PACKAGE}.{name}"),
                    first: format!("{} ({})", first.name, first.id),
                    second: format!("{} ({})", source.name, source.id),
                });
            }
            let rego = rego_text::replace_package(
                &source.content,
                &decl,
                &format!("{namespace}.policies.{name}"),
            );
            modules.push((source.id.clone(), isolate(&rego, &namespace)));
            metas.push(PolicyMeta {
                builtin: base_pack && source.id == BASE_PACK_ID,
                package_name: name,
                id: source.id.clone(),
                name: source.name.clone(),
                monitor: source.monitor,
            });
        }
        let authz = authz_module(&metas);
        let authz = match rego_text::find_package(&authz) {
            Some(decl) => rego_text::replace_package(&authz, &decl, &format!("{namespace}.authz")),
            None => authz,
        };
        modules.push((AUTHZ_ID.to_owned(), isolate(&authz, &namespace)));

        let _guard = self.install_lock.lock().await;
        for (id, rego) in modules.iter() {
            self.put_module(tenant, id, rego.clone()).await?;
        }
        let keep: HashSet<String> = modules.into_iter().map(|(id, _)| id).collect();
        self.delete_stale(tenant, &keep).await?;
        let metas = Arc::new(metas);
        self.tenants.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(tenant.to_owned(), metas.clone());
            next
        });
        Ok(())
    }

    async fn decide(&self, tenant: &str, input: &Json) -> Result<Decision, PolicyError> {
        let segment = tenant_segment(tenant)?;
        // The same input checks as the embedded engine, so both engines
        // refuse the same inputs.
        to_regorus_input(input)?;
        let url = format!("{}/v1/data/behavry/{segment}/policies", self.base_url);
        let response = self
            .client
            .post(url)
            .json(&serde_json::json!({ "input": input }))
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let body = response.bytes().await.unwrap_or_default();
            return Err(PolicyError::Unavailable(format!(
                "OPA answered {status}: {}",
                excerpt(&body)
            )));
        }
        let body: Json = response.json().await.map_err(unavailable)?;
        let document = match body.get("result") {
            Some(Json::Object(document)) => document,
            Some(other) => {
                return Err(PolicyError::Evaluation(format!(
                    "OPA's policies document is not an object: {}",
                    excerpt(other.to_string().as_bytes())
                )));
            }
            None => {
                return Err(PolicyError::Unavailable(format!(
                    "OPA has no policies for tenant {tenant} (undefined result)"
                )));
            }
        };

        let known = self.tenants.load().get(tenant).cloned().unwrap_or_default();
        let unknown: Vec<PolicyMeta> = document
            .keys()
            .filter(|name| !known.iter().any(|m| &m.package_name == *name))
            .map(|name| PolicyMeta::unknown(name))
            .collect();
        // Known policies absent from the document produced nothing; they
        // stay in the list so monitor mode is still known to be in play.
        let outcomes: Vec<(&PolicyMeta, PolicyOutcome)> = known
            .iter()
            .chain(&unknown)
            .map(|meta| {
                let outcome = document
                    .get(&meta.package_name)
                    .map(PolicyOutcome::from_document)
                    .unwrap_or_default();
                (meta, outcome)
            })
            .collect();
        combine(&outcomes)
    }

    fn kind(&self) -> &'static str {
        "opa"
    }
}

/// The Rego namespace segment for a tenant. Restricted to letters, digits
/// and '-' (tenant ids are UUIDs) so that the mapping ('-' → '_') cannot
/// send two tenants to one namespace.
pub(crate) fn tenant_segment(tenant: &str) -> Result<String, PolicyError> {
    let valid = !tenant.is_empty()
        && tenant.len() <= 128
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid {
        return Err(PolicyError::InvalidTenant(tenant.to_owned()));
    }
    Ok(format!("t_{}", tenant.replace('-', "_")))
}

/// Checks the package convention on the text alone: OPA does the compiling,
/// and regorus does not know every builtin OPA has.
fn policy_package(source: &PolicySource) -> Result<(PackageDecl, String), PolicyError> {
    let decl = rego_text::find_package(&source.content);
    let name = decl
        .as_ref()
        .and_then(|d| d.path.strip_prefix("behavry.policies."))
        .filter(|name| is_policy_name(name))
        .map(str::to_owned);
    match (decl, name) {
        (Some(decl), Some(name)) => Ok((decl, name)),
        (decl, _) => {
            let error = CompileError::new(
                Some(&source.id),
                format!(
                    "the package must be `{POLICIES_PACKAGE}.<name>` with a name of lowercase \
                     letters, digits and underscores; found `{}`",
                    decl.as_ref().map_or("", |d| d.path.as_str())
                ),
            );
            Err(PolicyError::Compile(vec![match decl {
                Some(d) => error.at(d.line, d.col),
                None => error,
            }]))
        }
    }
}

/// Points a module's references to the policy documents at the tenant's own.
fn isolate(rego: &str, namespace: &str) -> String {
    rego_text::rewrite_refs(
        rego,
        "data.behavry.policies",
        &format!("data.{namespace}.policies"),
    )
}

fn opa_compile_errors(body: &[u8], id: &str) -> Vec<CompileError> {
    #[derive(Deserialize)]
    struct Reply {
        #[serde(default)]
        message: String,
        #[serde(default)]
        errors: Vec<OpaError>,
    }
    #[derive(Deserialize)]
    struct OpaError {
        #[serde(default)]
        message: String,
        location: Option<Location>,
    }
    #[derive(Deserialize)]
    struct Location {
        row: Option<u32>,
        col: Option<u32>,
    }
    match serde_json::from_slice::<Reply>(body) {
        Ok(reply) if !reply.errors.is_empty() => reply
            .errors
            .into_iter()
            .map(|e| CompileError {
                policy_id: Some(id.to_owned()),
                line: e.location.as_ref().and_then(|l| l.row),
                col: e.location.as_ref().and_then(|l| l.col),
                message: e.message,
            })
            .collect(),
        Ok(reply) if !reply.message.is_empty() => vec![CompileError::new(Some(id), reply.message)],
        _ => vec![CompileError::new(Some(id), excerpt(body))],
    }
}

fn unavailable(err: reqwest::Error) -> PolicyError {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_decode() {
        "unreadable reply"
    } else {
        "request failed"
    };
    PolicyError::Unavailable(format!("OPA {what}: {err}"))
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// Encodes a policy id as one URL path segment.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_segments_are_isolated_and_injective() {
        assert_eq!(
            tenant_segment("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap(),
            "t_0190a1b2_c3d4_7e5f_8a9b_0c1d2e3f4a5b"
        );
        for bad in ["", "a_b", "a.b", "a/b", "../x", "a b", "ä"] {
            assert!(
                matches!(tenant_segment(bad), Err(PolicyError::InvalidTenant(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(percent_encode("behavry-base"), "behavry-base");
        assert_eq!(percent_encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn opa_errors_keep_their_locations() {
        let body = br#"{"code":"invalid_parameter","message":"error(s) occurred while compiling module(s)",
            "errors":[{"code":"rego_parse_error","message":"unexpected } token","location":{"file":"behavry/t/p1","row":4,"col":2}}]}"#;
        let errors = opa_compile_errors(body, "p1");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, Some(4));
        assert_eq!(errors[0].col, Some(2));
        assert_eq!(errors[0].policy_id.as_deref(), Some("p1"));
        assert_eq!(opa_compile_errors(b"nonsense", "p1")[0].message, "nonsense");
    }
}
