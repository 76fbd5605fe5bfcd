//! Domain vocabulary of Behavry.
//!
//! Everything here is plain data and pure functions: no I/O, no HTTP, no SQL.
//! Storage, policy and server crates all speak in these types.

/// A closed set of names stored and sent as text: serde, `FromStr` with an
/// error naming the accepted values, and `as_str`.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} `{}` (expected one of: {})",
                        stringify!($name),
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

pub mod admin;
pub mod agent;
pub mod alert;
pub mod config;
pub mod escalation;
pub mod ids;
pub mod net;
pub mod risk;
pub mod secret;
pub mod tenant;
pub mod validate;

pub use admin::{AdminRole, AdminStatus};
pub use agent::{Agent, AgentStatus, RiskTier};
pub use alert::{AlertSeverity, AlertStatus, AlertType};
pub use escalation::{EscalationStatus, decision_timeout};
pub use ids::{AdminUserId, AgentId, TenantId};
pub use risk::{BaselineStatus, RiskFactors};
pub use secret::Secret;
pub use tenant::{
    AgentWindows, BlastRadiusConfig, DataProtectionPolicy, DeploymentMode, DlpAction, DlpPattern,
    PayloadStorage, PlanTier, Tenant, TenantConfig, TrifectaAction, UsageSummary,
};
