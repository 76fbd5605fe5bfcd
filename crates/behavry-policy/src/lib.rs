//! Behavry's policy decision engine.
//!
//! Policies are Rego v1 modules under `package behavry.policies.<name>` that
//! define `deny`, `escalate` and `allow` (see this crate's README.md). They
//! are evaluated in process with regorus ([`EmbeddedEngine`]) or by an
//! external OPA ([`OpaEngine`]); either way the per-policy results are
//! combined by the same Rust code: deny > escalate > allow, default deny,
//! monitor-mode policies reported but never enforced.

mod decision;
mod engine;
mod error;
mod input;
mod opa;
mod rego_text;
mod set;

pub use decision::{
    DEFAULT_DENY_REASON, Decision, DecisionResult, FiredRule, fail_closed_decision,
};
pub use engine::{EmbeddedEngine, PolicyEngine};
pub use error::{CompileError, PolicyError};
pub use input::{
    Action, AgentInput, ContextInput, DlpFinding, DlpInput, InboundFinding, InboundInput,
    PolicyInput, RESOURCE_PARAMETERS, RequestInput, RequesterInput, SessionInput, extract_resource,
};
pub use opa::OpaEngine;
pub use set::{
    AUTHZ_REGO, BASE_PACK_ID, BASE_PACK_REGO, BASE_PACKAGE_NAME, CompiledPolicy,
    EVALUATION_TIME_LIMIT, MAX_INPUT_DEPTH, POLICIES_PACKAGE, PolicySet, PolicySource, validate,
};
