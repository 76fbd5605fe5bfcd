//! The real server, started in-process on an ephemeral port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use behavry_core::config::Settings;
use behavry_server::AppState;
use behavry_store::Store;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::pg::TestDb;
use crate::tmp::TempDir;
use crate::{OPERATOR_PASSWORD, OPERATOR_USERNAME, test_keys};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    pub store: Arc<dyn Store>,
    pub db: Option<TestDb>,
    pub data_dir: TempDir,
    /// The settings variables it was started with.
    pub vars: BTreeMap<String, String>,
    shutdown: Option<oneshot::Sender<()>>,
}

/// Settings variables for a test app on the given backend.
pub fn test_vars(
    backend: Backend,
    data_dir: &std::path::Path,
    db: Option<&TestDb>,
) -> BTreeMap<String, String> {
    let (private, public) = test_keys();
    let mut vars = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        vars.insert(k.to_string(), v.to_string());
    };
    set("BEHAVRY_DATA_DIR", &data_dir.display().to_string());
    set("BEHAVRY_BCRYPT_COST", "4");
    set("BEHAVRY_DB_POOL_SIZE", "4");
    set("SECRET_KEY", "test-secret-key-0123456789abcdef-0123456789");
    set("BEHAVRY_JWT_PRIVATE_KEY", private);
    set("BEHAVRY_JWT_PUBLIC_KEY", public);
    set("BEHAVRY_ADMIN_USERNAME", OPERATOR_USERNAME);
    set("BEHAVRY_ADMIN_PASSWORD", OPERATOR_PASSWORD);
    set("BEHAVRY_MIGRATE_ON_START", "true");
    // Escalated calls are held briefly unless a test wants them longer, so
    // a test that only checks that a call was escalated does not wait.
    set("BEHAVRY_ESCALATION_HOLD_SECONDS", "1");
    // Most tests create several tenants; the signup modes have tests of
    // their own.
    set("BEHAVRY_SIGNUP", "open");
    match (backend, db) {
        (Backend::Postgres, Some(db)) => {
            set("BEHAVRY_DB_URL", &db.url);
            set("BEHAVRY_DB_ROLE_PREFIX", &db.role_prefix);
        }
        _ => set(
            "BEHAVRY_DB_URL",
            &format!("sqlite://{}", data_dir.join("behavry.db").display()),
        ),
    }
    vars
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Starts the server after letting the caller adjust the variables.
    pub async fn spawn_with(
        backend: Backend,
        customize: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Self {
        Self::spawn_inner(backend, customize, None).await
    }

    /// Like [`TestApp::spawn_with`], with host names resolved by `lookup`
    /// for every connection made on a tenant's behalf: tests prove the
    /// outbound address checks without sending traffic anywhere.
    pub async fn spawn_resolving(
        backend: Backend,
        customize: impl FnOnce(&mut BTreeMap<String, String>),
        lookup: Arc<dyn behavry_mcp::outbound::Lookup>,
    ) -> Self {
        Self::spawn_inner(backend, customize, Some(lookup)).await
    }

    async fn spawn_inner(
        backend: Backend,
        customize: impl FnOnce(&mut BTreeMap<String, String>),
        lookup: Option<Arc<dyn behavry_mcp::outbound::Lookup>>,
    ) -> Self {
        let data_dir = TempDir::new("behavry-test");
        let db = match backend {
            Backend::Postgres => Some(TestDb::create().await),
            Backend::Sqlite => None,
        };
        let mut vars = test_vars(backend, data_dir.path(), db.as_ref());
        customize(&mut vars);
        Self::start(vars, data_dir, db, lookup).await
    }

    /// A second gateway process on the same database (and the same keys),
    /// as a replica behind a load balancer would be. PostgreSQL only.
    pub async fn replica(&self) -> Self {
        assert!(self.db.is_some(), "replicas share a PostgreSQL database");
        let data_dir = TempDir::new("behavry-replica");
        let mut vars = self.vars.clone();
        vars.insert(
            "BEHAVRY_DATA_DIR".into(),
            data_dir.path().display().to_string(),
        );
        Self::start(vars, data_dir, None, None).await
    }

    async fn start(
        vars: BTreeMap<String, String>,
        data_dir: TempDir,
        db: Option<TestDb>,
        lookup: Option<Arc<dyn behavry_mcp::outbound::Lookup>>,
    ) -> Self {
        let settings = Settings::from_vars(&vars)
            .unwrap_or_else(|e| panic!("test settings rejected: {e:?}"))
            .settings;
        let mut state = behavry_server::startup::build_state(settings)
            .await
            .unwrap_or_else(|e| panic!("server did not start: {e:#}"));
        if let Some(lookup) = lookup {
            let guard =
                behavry_mcp::outbound::AddressGuard::new(state.settings.outbound.clone(), lookup);
            state.upstreams = Arc::new(behavry_server::mcp::registry::UpstreamRegistry::new(
                state.upstreams.launcher().clone(),
                guard,
            ));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let store = state.store.clone();
        tokio::spawn(behavry_server::serve(
            state.clone(),
            listener,
            None,
            async {
                let _ = rx.await;
            },
        ));
        Self {
            addr,
            client: behavry_server::outbound::client_builder()
                .build()
                .expect("an HTTP client"),
            state,
            store,
            db,
            data_dir,
            vars,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/admin/login"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .expect("login request")
    }

    /// Logs in and returns the access token; panics unless it succeeds.
    pub async fn token(&self, username: &str, password: &str) -> String {
        let response = self.login(username, password).await;
        assert_eq!(response.status(), 200, "login as {username} failed");
        let body: Value = response.json().await.expect("login body");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    pub async fn operator_token(&self) -> String {
        self.token(OPERATOR_USERNAME, OPERATOR_PASSWORD).await
    }

    /// Self-service signup; returns the status and body.
    pub async fn signup(&self, organization: &str, email: &str, password: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/api/v1/signup"))
            .json(&json!({
                "organization_name": organization,
                "admin_email": email,
                "admin_password": password,
            }))
            .send()
            .await
            .expect("signup request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET request")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
