//! Tenant-defined patterns, checked before they are accepted.
//!
//! The regex engine used here runs in time linear in the input whatever the
//! pattern, so "a pattern that can blow up" means one whose compiled form is
//! too large (memory, and the time to build it), or one that matches the
//! empty string (it would match everywhere).

use serde::{Deserialize, Serialize};

use crate::finding::Severity;

/// Longest accepted pattern text.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Bound on a compiled pattern's size.
const COMPILED_SIZE_LIMIT: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomPattern {
    /// Reported as the finding's `pattern`: lowercase letters, digits and
    /// underscores.
    pub name: String,
    pub regex: String,
    pub severity: Severity,
    /// Reported as the finding's `category` and used in the redaction
    /// placeholder; defaults to `custom`.
    #[serde(default = "default_category")]
    pub category: String,
}

fn default_category() -> String {
    "custom".into()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomPatternError {
    #[error("name `{0}` must be 1–64 lowercase letters, digits or underscores")]
    Name(String),
    #[error("category `{0}` must be 1–64 lowercase letters, digits or underscores")]
    Category(String),
    #[error("the pattern is longer than {MAX_PATTERN_LEN} characters")]
    TooLong,
    #[error("the pattern does not compile: {0}")]
    Invalid(String),
    #[error(
        "the pattern compiles to more than {COMPILED_SIZE_LIMIT} bytes; simplify it (bounded repetitions like {{1000}} multiply its size)"
    )]
    TooLarge,
    #[error("the pattern matches the empty string, so it would match everywhere")]
    MatchesEmpty,
}

fn identifier(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl CustomPattern {
    /// Checks the pattern and compiles it.
    pub fn compile(&self) -> Result<regex::Regex, CustomPatternError> {
        if !identifier(&self.name) {
            return Err(CustomPatternError::Name(self.name.clone()));
        }
        if !identifier(&self.category) {
            return Err(CustomPatternError::Category(self.category.clone()));
        }
        if self.regex.len() > MAX_PATTERN_LEN {
            return Err(CustomPatternError::TooLong);
        }
        let re = regex::RegexBuilder::new(&self.regex)
            .size_limit(COMPILED_SIZE_LIMIT)
            .dfa_size_limit(COMPILED_SIZE_LIMIT)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => CustomPatternError::TooLarge,
                other => CustomPatternError::Invalid(other.to_string()),
            })?;
        if re.is_match("") {
            return Err(CustomPatternError::MatchesEmpty);
        }
        Ok(re)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(regex: &str) -> CustomPattern {
        CustomPattern {
            name: "employee_id".into(),
            regex: regex.into(),
            severity: Severity::High,
            category: "custom".into(),
        }
    }

    #[test]
    fn accepts_reasonable_patterns() {
        assert!(p(r"EMP-[0-9]{6}").compile().is_ok());
    }

    #[test]
    fn rejects_what_would_misbehave() {
        // Linear-time engine: the classic backtracking bomb is harmless.
        assert!(p(r"(a+)+$").compile().is_ok());
        assert_eq!(
            p(r"\w{1000}\w{1000}\w{1000}").compile().unwrap_err(),
            CustomPatternError::TooLarge
        );
        assert_eq!(
            p(r"x*").compile().unwrap_err(),
            CustomPatternError::MatchesEmpty
        );
        assert!(matches!(
            p(r"(unclosed").compile().unwrap_err(),
            CustomPatternError::Invalid(_)
        ));
        assert_eq!(
            p(&"a".repeat(2000)).compile().unwrap_err(),
            CustomPatternError::TooLong
        );
        let mut bad = p("x");
        bad.name = "Bad Name".into();
        assert!(matches!(bad.compile(), Err(CustomPatternError::Name(_))));
    }
}
