//! Domain vocabulary of Behavry.
//!
//! Everything here is plain data and pure functions: no I/O, no HTTP, no SQL.
//! Storage, policy and server crates all speak in these types.

pub mod admin;
pub mod agent;
pub mod config;
pub mod ids;
pub mod secret;
pub mod tenant;
pub mod validate;

pub use admin::{AdminRole, AdminStatus};
pub use agent::{Agent, AgentStatus, RiskTier};
pub use ids::{AdminUserId, AgentId, TenantId};
pub use secret::Secret;
pub use tenant::{
    AgentWindows, BlastRadiusConfig, DataProtectionPolicy, DeploymentMode, DlpAction, DlpPattern,
    PayloadStorage, PlanTier, Tenant, TenantConfig, TrifectaAction, UsageSummary,
};
