use serde::{Deserialize, Serialize};
use std::fmt;

/// One problem found while compiling a policy, located where regorus (or OPA)
/// could locate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompileError {
    /// The [`crate::PolicySource::id`] of the policy at fault, when known.
    pub policy_id: Option<String>,
    /// 1-based line in the policy text.
    pub line: Option<u32>,
    /// 1-based column in the policy text.
    pub col: Option<u32>,
    pub message: String,
}

impl CompileError {
    pub(crate) fn new(policy_id: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            policy_id: policy_id.map(str::to_owned),
            line: None,
            col: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, line: u32, col: u32) -> Self {
        self.line = Some(line);
        self.col = Some(col);
        self
    }

    /// Reads regorus's rendering of an error, which for anything with a
    /// location looks like
    ///
    /// ```text
    /// --> <file>:<line>:<col>
    ///   |
    /// 4 |   x == 1
    ///   |   ^
    /// error: use of undefined variable `x` is unsafe
    /// ```
    ///
    /// and keeps the location and the message, dropping the source excerpt
    /// (the author has the source).
    pub(crate) fn from_regorus(err: &dyn fmt::Display, fallback_policy: Option<&str>) -> Self {
        let text = err.to_string();
        let mut policy_id = fallback_policy.map(str::to_owned);
        let mut line = None;
        let mut col = None;
        let mut message = None;
        for l in text.lines() {
            let trimmed = l.trim();
            if let Some(location) = trimmed.strip_prefix("--> ") {
                let mut parts = location.rsplitn(3, ':');
                let c = parts.next().and_then(|s| s.parse().ok());
                let r = parts.next().and_then(|s| s.parse().ok());
                if let (Some(r), Some(c), Some(file)) = (r, c, parts.next()) {
                    line = Some(r);
                    col = Some(c);
                    if !file.is_empty() {
                        policy_id = Some(file.to_owned());
                    }
                }
            } else if let Some(m) = trimmed.strip_prefix("error: ") {
                message = Some(m.to_owned());
            }
        }
        Self {
            policy_id,
            line,
            col,
            message: message.unwrap_or_else(|| text.trim().to_owned()),
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(id) = &self.policy_id {
            write!(f, "{id}:")?;
        }
        match (self.line, self.col) {
            (Some(line), Some(col)) => write!(f, "{line}:{col}: ")?,
            (Some(line), None) => write!(f, "{line}: ")?,
            _ if self.policy_id.is_some() => f.write_str(" ")?,
            _ => {}
        }
        f.write_str(&self.message)
    }
}

/// Everything that can go wrong in the policy layer.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A policy does not parse, does not follow the package convention, or
    /// fails the compile-time checks (unsafe variables, unknown functions…).
    #[error("policy does not compile: {}", join(.0))]
    Compile(Vec<CompileError>),

    /// Two policies claim the same package, which would merge their rules.
    #[error("policies `{first}` and `{second}` both declare package `{package}`")]
    DuplicatePackage {
        package: String,
        first: String,
        second: String,
    },

    /// The input document was rejected before evaluation (not an object, too
    /// deeply nested, not representable).
    #[error("invalid policy input: {0}")]
    InvalidInput(String),

    /// A tenant id that cannot be mapped to an isolated OPA namespace.
    #[error("invalid tenant id `{0}`: use letters, digits and '-'")]
    InvalidTenant(String),

    /// The policies compiled but evaluating them failed (runtime error,
    /// conflicting values, time limit, unexpected rule shape).
    #[error("policy evaluation failed: {0}")]
    Evaluation(String),

    /// The external policy engine could not give an answer: unreachable,
    /// too slow, a non-200 reply, or an undefined result.
    #[error("policy engine unavailable: {0}")]
    Unavailable(String),
}

impl PolicyError {
    /// A short, stable name for the kind of failure, fit for metrics labels
    /// and for reasons shown outside the gateway (the full text may contain
    /// internal addresses).
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyError::Compile(_) => "compile_error",
            PolicyError::DuplicatePackage { .. } => "duplicate_package",
            PolicyError::InvalidInput(_) => "invalid_input",
            PolicyError::InvalidTenant(_) => "invalid_tenant",
            PolicyError::Evaluation(_) => "evaluation_error",
            PolicyError::Unavailable(_) => "unavailable",
        }
    }
}

fn join(errors: &[CompileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
