//! Test helpers shared by Behavry's test suites: throwaway databases, the
//! real server on port 0, and fixtures.
//!
//! PostgreSQL tests need `BEHAVRY_TEST_DATABASE_URL` (a superuser URL of a
//! disposable cluster). `./scripts/test` starts such a cluster; without it
//! the PostgreSQL tests fail with a message saying so — they never skip.

pub mod app;
pub mod pg;
pub mod tmp;

pub use app::{Backend, TestApp};
pub use pg::TestDb;

use std::sync::OnceLock;

/// One RSA key pair per test process: generating keys is the slowest thing
/// a test could do, and nothing depends on keys differing between tests.
pub fn test_keys() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| behavry_server::auth::keys::generate_pem().expect("generate test keys"))
}

/// A second, unrelated key pair (for "signed by someone else" tests).
pub fn other_keys() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| behavry_server::auth::keys::generate_pem().expect("generate test keys"))
}

/// Password of the platform operator every test app is started with.
pub const OPERATOR_USERNAME: &str = "operator";
pub const OPERATOR_PASSWORD: &str = "operator-password-for-tests";
