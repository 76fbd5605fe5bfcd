//! Data-protection scanning for Behavry: finds credentials and personal
//! data in the text and JSON that agents send and receive, and redacts it;
//! and finds instructions injected into tool results and tool definitions
//! ([`InjectionScanner`]).
//!
//! A [`Scanner`] is built once (built-in detectors, a tenant's custom
//! patterns, the fingerprint key) and shared; scanning takes `&self` and
//! allocates only for what it finds. Nothing here does I/O.
//!
//! ```
//! let scanner = behavry_dlp::Scanner::builder(b"fingerprint key").build();
//! let args = serde_json::json!({"cmd": "export GITHUB_TOKEN=ghp_R8yXq2Lw9ZtK4mVbN7cJ3sHfD6gP1aE0uQ5o"});
//! let findings = scanner.scan_json(&args);
//! assert_eq!(findings[0].pattern, "github_token");
//! assert_eq!(findings[0].field, "/cmd");
//! ```

mod custom;
mod detectors;
mod finding;
mod inbound;
mod scan;
pub mod validate;

pub use custom::{CustomPattern, CustomPatternError};
pub use finding::{Encoding, Finding, Severity};
pub use inbound::{InjectionClass, InjectionFinding, InjectionScanner, worst};
pub use scan::{Scanner, ScannerBuilder, detector_ids};

/// The fingerprint key for a deployment, derived from its SECRET_KEY for
/// this purpose alone (the same secret also keys other things, which must
/// not share bytes with this).
pub fn fingerprint_key(secret: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"behavry-dlp-fingerprint-v1\0");
    h.update(secret);
    h.finalize().into()
}

/// The text that replaces a redacted span.
pub fn redaction_placeholder(category: &str) -> String {
    format!("[redacted:{category}]")
}
