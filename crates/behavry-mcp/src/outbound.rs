//! Outbound HTTP clients: every request the gateway makes to another
//! service (upstream MCP servers, alert webhooks, an external OPA) uses a
//! client built from [`client_builder`].
//!
//! TLS is rustls with the *ring* provider, the same crypto as the database
//! connections, verifying servers against the operating system's trust
//! store, so a company CA installed there (e.g. with
//! `update-ca-certificates`, or named by `SSL_CERT_FILE`) is trusted.

/// A client builder with TLS ready.
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// reqwest is built without a crypto provider of its own: install ring as
/// the process's provider. Cheap after the first call; a provider already
/// installed stays.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use behavry_core::net::{OutboundPolicy, OutboundRefusal};
use futures_util::future::BoxFuture;

/// Turns a host name into addresses. The system resolver in production;
/// tests put their own in place to prove the connect-time check without
/// sending traffic anywhere.
pub trait Lookup: Send + Sync {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let host = host.to_string();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Why an outbound connection made for a tenant was not made.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("{0}")]
    Refused(OutboundRefusal),
    #[error(
        "`{host}` resolves only to addresses this gateway does not connect to for tenants: {refusal}"
    )]
    AllRefused {
        host: String,
        refusal: OutboundRefusal,
    },
    #[error("`{0}` does not resolve to any address")]
    Unresolvable(String),
    #[error("`{0}` is not a usable http:// or https:// URL")]
    BadUrl(String),
}

/// Checks every connection made on a tenant's behalf against the
/// operator's [`OutboundPolicy`], at the address actually connected to.
///
/// Clients built by [`AddressGuard::client_builder`] resolve host names
/// through the guard, which drops refused addresses before the connector
/// sees them: the address checked is the address connected to, with no
/// second lookup that DNS rebinding could change. Host names that are IP
/// literals never reach a resolver, so [`AddressGuard::check_url`] checks
/// them; redirects are not followed and proxies are not used, since either
/// would connect somewhere the guard never saw.
#[derive(Clone)]
pub struct AddressGuard {
    policy: Arc<OutboundPolicy>,
    lookup: Arc<dyn Lookup>,
}

impl AddressGuard {
    pub fn new(policy: OutboundPolicy, lookup: Arc<dyn Lookup>) -> Self {
        AddressGuard {
            policy: Arc::new(policy),
            lookup,
        }
    }

    pub fn system(policy: OutboundPolicy) -> Self {
        Self::new(policy, Arc::new(SystemLookup))
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// The host's addresses the policy allows; an error when none is.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, GuardError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.policy.check(ip).map_err(GuardError::Refused)?;
            return Ok(vec![ip]);
        }
        let found = self
            .lookup
            .lookup(host)
            .await
            .map_err(|_| GuardError::Unresolvable(host.to_string()))?;
        let mut refused = None;
        let allowed: Vec<IpAddr> = found
            .into_iter()
            .filter(|ip| match self.policy.check(*ip) {
                Ok(()) => true,
                Err(r) => {
                    refused.get_or_insert(r);
                    false
                }
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some(refusal)) => Err(GuardError::AllRefused {
                host: host.to_string(),
                refusal,
            }),
            (true, None) => Err(GuardError::Unresolvable(host.to_string())),
        }
    }

    /// What can be checked without resolving: the scheme, and a host that
    /// is an IP address in any spelling the URL parser accepts (decimal,
    /// octal and hexadecimal IPv4 forms are normalised by it).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), GuardError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(GuardError::BadUrl(url.to_string()));
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err(GuardError::BadUrl(url.to_string())),
        };
        self.policy.check(ip).map_err(GuardError::Refused)
    }

    /// The full check a registration makes: the URL, then its host's
    /// addresses as they resolve now. A connection made later is checked
    /// again, at connect time.
    pub async fn check_url_now(&self, url: &reqwest::Url) -> Result<(), GuardError> {
        self.check_url(url)?;
        match url.host() {
            Some(url::Host::Domain(host)) => self.resolve(host).await.map(|_| ()),
            _ => Ok(()),
        }
    }

    /// A client whose every connection passes the guard.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        client_builder()
            .dns_resolver(Arc::new(self.clone()))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
    }
}

impl std::fmt::Debug for AddressGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressGuard")
            .field("allow", &self.policy.allowed())
            .finish_non_exhaustive()
    }
}

impl reqwest::dns::Resolve for AddressGuard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let ips = AddressGuard::resolve(&guard, &host).await.map_err(|e| {
                tracing::warn!(target: "behavry_mcp::outbound", host = %host, "outbound connection refused: {e}");
                Box::new(e) as Box<dyn std::error::Error + Send + Sync>
            })?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// What went wrong with an outbound request, in words fit for tenants and
/// agents: the kind of failure (refused by the address guard, connection
/// refused, timed out, TLS, …), never the URL (it may carry credentials)
/// nor anything the other side sent.
pub fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(guard) = err.downcast_ref::<GuardError>() {
            return format!("connection refused by the gateway: {guard}");
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            let what = match io.kind() {
                ConnectionRefused => Some("the connection was refused"),
                ConnectionReset | ConnectionAborted => Some("the connection was reset"),
                TimedOut => Some("the connection timed out"),
                HostUnreachable | NetworkUnreachable => Some("the host is unreachable"),
                _ => None,
            };
            if let Some(what) = what {
                return what.into();
            }
        }
        if err.downcast_ref::<rustls::Error>().is_some() {
            return "the TLS handshake failed (is the server's certificate trusted?)".into();
        }
        source = err.source();
    }
    if e.is_timeout() {
        "the request timed out".into()
    } else if e.is_connect() {
        "the connection failed".into()
    } else if let Some(status) = e.status() {
        format!("the server answered HTTP {}", status.as_u16())
    } else if e.is_body() || e.is_decode() {
        "the answer could not be read".into()
    } else {
        "the request failed".into()
    }
}
