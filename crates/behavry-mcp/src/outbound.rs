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
