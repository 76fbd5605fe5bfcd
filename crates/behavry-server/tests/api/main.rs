//! HTTP integration tests: the real server on an ephemeral port, driven
//! through reqwest, on a fresh database per test.
//!
//! The important flows (signup, login, the super-admin lifecycle, usage)
//! run on both backends through [`both_backends!`]; everything else runs on
//! SQLite only to keep the suite fast. PostgreSQL tests need
//! `BEHAVRY_TEST_DATABASE_URL` (`./scripts/test` provides it).

#![allow(clippy::unwrap_used)]

/// Generates, for each `async fn name(backend: Backend)` in the calling
/// module, one `#[tokio::test]` per backend: `sqlite::name` and
/// `postgres::name`.
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(behavry_test_support::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(behavry_test_support::Backend::Postgres).await;
                }
            )+
        }
    };
}

mod agents;
mod alerts;
mod auth;
mod blast;
mod dlp;
mod errors;
mod escalations;
mod events;
mod hardening;
mod health;
mod inbound;
mod jwt;
mod mcp;
mod mcp_import;
mod opa;
mod openapi;
mod policies;
mod risk;
mod rmcp;
mod signup;
mod superadmin;
mod support;
mod usage;
mod webhooks;
