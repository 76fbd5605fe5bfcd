//! Throwaway PostgreSQL databases, one per test.

use sqlx::{Connection, Executor, PgConnection};

pub const URL_VAR: &str = "BEHAVRY_TEST_DATABASE_URL";

/// The superuser URL of the test cluster. Panics with instructions when it
/// is not set: PostgreSQL tests must run, not skip.
pub fn cluster_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{URL_VAR} is not set. Run the suite with ./scripts/test, which starts a throwaway \
             PostgreSQL, or point {URL_VAR} at a disposable cluster's superuser."
        )
    })
}

/// Replaces the database name in a `postgresql://…/name?query` URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{database}?{q}"),
        None => format!("{host_part}/{database}"),
    }
}

/// A fresh, empty database in the test cluster, with a role prefix of its
/// own so that concurrently running tests never share roles.
pub struct TestDb {
    /// Superuser URL of this database.
    pub url: String,
    pub name: String,
    pub role_prefix: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let cluster = cluster_url();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("behavry_test_{}", &id[..16]);
        let role_prefix = format!("t{}", &id[16..28]);
        let mut conn = PgConnection::connect(&cluster)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}"));
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create test database");
        conn.close().await.ok();
        Self {
            url: with_database(&cluster, &name),
            name,
            role_prefix,
        }
    }

    /// A superuser connection to this database.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to test database")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgresql://u:p@127.0.0.1:5432/postgres", "x"),
            "postgresql://u:p@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/postgres?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h:1", "x"), "postgresql://h:1/x");
    }
}
