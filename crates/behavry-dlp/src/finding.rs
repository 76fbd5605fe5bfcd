//! What a scan reports. A finding locates and classifies a match; it never
//! carries the matched text, only a keyed fingerprint and a masked preview.

use serde::{Deserialize, Serialize};

/// How bad it is that a match leaves (or enters) the organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "unknown severity `{other}` (expected low, medium, high or critical)"
            )),
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the matched text was written where it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Base64,
    Url,
}

/// One match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The detector (or custom pattern) that matched, e.g. `github_token`.
    pub pattern: String,
    /// What kind of data it is, e.g. `source_control`; also the redaction
    /// placeholder's label.
    pub category: String,
    pub severity: Severity,
    /// Where: a JSON Pointer (`/arguments/content`) for JSON input, empty
    /// for plain text.
    pub field: String,
    /// Byte offset and length of the match in that field's text. For a
    /// match inside encoded text, the span of the encoded text, since that
    /// is what would have to be removed.
    pub offset: usize,
    pub length: usize,
    /// Keyed hash (HMAC-SHA-256, first 16 bytes in hex) of the matched
    /// text: equal secrets give equal fingerprints under one key, and the
    /// secret cannot be recovered from it.
    pub fingerprint: String,
    /// A few leading and trailing characters, the rest masked; empty for
    /// short matches.
    pub preview: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
}
