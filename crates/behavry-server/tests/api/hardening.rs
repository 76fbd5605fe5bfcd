//! A tenant admin is trusted with their tenant only: not with the gateway
//! host, its files and keys, or its network position. These tests replay
//! the attack that once let anyone reaching the API run commands on the
//! host (signup → register a stdio server with `sh -c …` → open a session),
//! and check that each step is refused where it must be; that the
//! processes the operator does allow run confined; and that upstream
//! addresses are checked where the gateway actually connects.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use behavry_mcp::outbound::Lookup;
use behavry_test_support::{Backend, TestApp};
use futures_util::future::BoxFuture;
use reqwest::Method;
use serde_json::{Value, json};

use crate::mcp::{HttpPeer, agent, peers, text_of, ts_client, with_catalog};
use crate::support::{get, patch, post, request, send, signup, token};

both_backends!(the_host_takeover_is_refused_at_every_step);

const PASSWORD: &str = "correct-horse-battery-staple";

/// The uid a stdio server should run as when the suite runs as root.
fn nobody_uid() -> u64 {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == "nobody").then(|| f[2].parse().unwrap())
        })
        .expect("a `nobody` user")
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

async fn the_host_takeover_is_refused_at_every_step(backend: Backend) {
    // Default signup mode, generated development keys (written to the data
    // directory, as on a laptop), and an operator catalogue.
    let app = TestApp::spawn_with(backend, |v| {
        v.remove("BEHAVRY_SIGNUP");
        v.remove("BEHAVRY_JWT_PRIVATE_KEY");
        v.remove("BEHAVRY_JWT_PUBLIC_KEY");
        with_catalog(v);
    })
    .await;
    let key_file = app.data_dir.path().join("jwt-private.pem");
    assert!(key_file.exists(), "development keys are on disk");

    // 1. The first signup is the first-run onboarding; after it, signup is
    //    closed to strangers.
    let first = signup(&app, "First Org", "owner@first.example", PASSWORD)
        .await
        .expect(201)
        .body;
    let tenant_id = first["tenant_id"].as_str().unwrap().to_string();
    let message = signup(&app, "Stranger Org", "attacker@evil.example", PASSWORD)
        .await
        .expect_error(403, "forbidden");
    assert!(message.contains("first_run"), "{message}");
    let admin = token(&app, "owner@first.example", PASSWORD).await;

    // 2. Even a legitimate tenant admin cannot name a program to run.
    let attack = json!({
        "name": "shell", "transport": "stdio", "command": "sh",
        "args": ["-c", format!("id; cat {}", key_file.display())],
    });
    let message = post(&app, "/api/v1/mcp-servers", Some(&admin), &attack)
        .await
        .expect_error(403, "forbidden");
    assert!(
        message.contains("tenants cannot choose a program") && message.contains("catalog"),
        "the refusal says how an operator offers one: {message}"
    );
    let sneaky =
        json!({"name": "sneaky", "transport": "stdio", "catalog": "probe", "args": ["-e", "1"]});
    post(&app, "/api/v1/mcp-servers", Some(&admin), &sneaky)
        .await
        .expect_error(403, "forbidden");

    // The catalogue shows names and tenant variables, never the programs.
    let catalog = get(&app, "/api/v1/mcp-catalog", Some(&admin))
        .await
        .expect(200)
        .body;
    let names: Vec<&str> = catalog["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dictionary", "everything", "probe"]);
    assert!(
        !catalog.to_string().contains("probe_server.mjs"),
        "{catalog}"
    );

    // Enabling an entry: only the variables it declares.
    let loader = json!({"name": "probe", "transport": "stdio", "catalog": "probe",
        "env": {"PROBE_TOKEN": "tenant-value", "NODE_OPTIONS": "--require /tmp/x.js"}});
    let message = post(&app, "/api/v1/mcp-servers", Some(&admin), &loader)
        .await
        .expect_error(422, "validation_failed");
    assert!(message.contains("NODE_OPTIONS"), "{message}");
    let probe = post(
        &app,
        "/api/v1/mcp-servers",
        Some(&admin),
        &json!({"name": "probe", "transport": "stdio", "catalog": "probe",
            "env": {"PROBE_TOKEN": "tenant-value"}}),
    )
    .await
    .expect(201)
    .body;
    assert_eq!(probe["catalog"], "probe");
    assert_eq!(probe["command"], Value::Null);
    let id = probe["id"].as_str().unwrap();

    // Nor can the entry be turned into another program afterwards.
    let path = format!("/api/v1/mcp-servers/{id}");
    for change in [
        json!({"command": "sh"}),
        json!({"args": ["-e", "process.exit(1)"]}),
        json!({"env": {"LD_PRELOAD": "/tmp/evil.so"}}),
    ] {
        patch(&app, &path, Some(&admin), &change)
            .await
            .expect_error(403, "forbidden");
    }

    // 3. What runs is confined: no gateway secrets in its environment, a
    //    working directory of its own, limits, and no access to the keys.
    let (_, agent_token) = agent(&app, &admin, "inspector").await;
    let url = app.url(&format!("/mcp/v1/{id}"));
    let out = ts_client(
        &url,
        &agent_token,
        "call",
        json!({"name": "inspect", "arguments": {"path": key_file.display().to_string()}}),
    )
    .await;
    let report: Value = serde_json::from_str(&text_of(&out["result"]))
        .unwrap_or_else(|_| panic!("the probe answered: {out}"));
    assert_eq!(report["probe_token"], "tenant-value", "{report}");
    let env: Vec<&str> = report["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"PROBE_FIXED"), "{env:?}");
    assert!(
        !env.iter()
            .any(|n| n.starts_with("BEHAVRY") || *n == "SECRET_KEY"),
        "the gateway's settings reached the server: {env:?}"
    );
    let cwd = report["cwd"].as_str().unwrap();
    assert!(
        !cwd.starts_with(&app.data_dir.path().display().to_string()),
        "{cwd}"
    );
    assert_eq!(report["home"], report["cwd"]);
    let limits = report["limits"].to_string();
    assert!(
        limits.contains("Max open files            1024"),
        "{limits}"
    );
    if running_as_root() {
        assert_eq!(report["uid"].as_u64(), Some(nobody_uid()), "{report}");
        assert_eq!(
            report["read"], "EACCES",
            "the server must not read the private key: {report}"
        );
    } else {
        // Without root the gateway cannot switch users: servers share its
        // uid (and it warns at start). The operator chose the program.
        assert_ne!(report["uid"].as_u64(), Some(0), "{report}");
    }

    // 4. The platform operator, trusted with the host, may still register a
    //    program for a tenant (the single-tenant quick start).
    let operator = crate::support::operator_token(&app).await;
    post(
        &app,
        &format!("/api/v1/superadmin/tenants/{tenant_id}/mcp-servers"),
        Some(&operator),
        &json!({"name": "reference", "transport": "stdio", "catalog": "everything"}),
    )
    .await
    .expect(201);
    // … but a tenant token is not an operator token.
    post(
        &app,
        &format!("/api/v1/superadmin/tenants/{tenant_id}/mcp-servers"),
        Some(&admin),
        &attack,
    )
    .await
    .expect_error(403, "forbidden");
}

#[tokio::test]
async fn signup_modes_decide_who_creates_tenants() {
    let closed = TestApp::spawn_with(Backend::Sqlite, |v| {
        v.insert("BEHAVRY_SIGNUP".into(), "closed".into());
    })
    .await;
    let message = signup(&closed, "Any Org", "a@any.example", PASSWORD)
        .await
        .expect_error(403, "forbidden");
    assert!(message.contains("closed"), "{message}");

    let open = TestApp::spawn_with(Backend::Sqlite, |v| {
        v.insert("BEHAVRY_SIGNUP".into(), "open".into());
    })
    .await;
    for (org, email) in [("One Org", "a@one.example"), ("Two Org", "b@two.example")] {
        signup(&open, org, email, PASSWORD).await.expect(201);
    }
}

/// A resolver the test controls; names it does not know do not resolve.
#[derive(Default)]
struct FakeDns(Mutex<HashMap<String, Vec<IpAddr>>>);

impl FakeDns {
    fn set(&self, host: &str, ip: &str) {
        self.0
            .lock()
            .unwrap()
            .insert(host.into(), vec![ip.parse().unwrap()]);
    }
}

impl Lookup for FakeDns {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let found = self.0.lock().unwrap().get(host).cloned();
        Box::pin(async move {
            found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "unknown host"))
        })
    }
}

async fn tenant(app: &TestApp) -> String {
    crate::support::tenant_admin(app, "Network Co", "admin@network.example")
        .await
        .1
}

#[tokio::test]
async fn upstream_addresses_are_refused_unless_the_operator_allows_them() {
    let dns = Arc::new(FakeDns::default());
    dns.set("internal.example", "127.0.0.1");
    dns.set("public.example", "93.184.215.14");
    // Production's default: no reserved network is reachable.
    let app = TestApp::spawn_resolving(
        Backend::Sqlite,
        |v| {
            v.insert("BEHAVRY_OUTBOUND_ALLOW".into(), "none".into());
        },
        dns.clone(),
    )
    .await;
    let admin = tenant(&app).await;
    let register = |name: &str, url: &str| {
        post(
            &app,
            "/api/v1/mcp-servers",
            Some(&admin),
            &json!({"name": name, "transport": "streamable_http", "url": url}),
        )
    };
    for (i, url) in [
        "http://127.0.0.1:8080/mcp",
        "http://10.0.0.1/mcp",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/mcp",
        "http://[fd00::1]/mcp",
        "http://[::ffff:127.0.0.1]/mcp",
        "http://2130706433/mcp",
        "http://0177.0.0.1/mcp",
        "http://0x7f.1/mcp",
        "http://internal.example:8080/mcp",
        "http://nowhere.example/mcp",
    ]
    .iter()
    .enumerate()
    {
        let message = register(&format!("s{i}"), url)
            .await
            .expect_error(422, "validation_failed");
        assert!(message.starts_with("url refused"), "{url}: {message}");
    }
    // Each refusal is in the audit trail.
    let audit = send(request(
        &app,
        Method::GET,
        "/api/v1/audit/events?limit=100",
        Some(&admin),
    ))
    .await
    .expect(200)
    .body;
    let refusals = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "OUTBOUND_REFUSED")
        .count();
    assert_eq!(refusals, 11, "{audit}");

    // Checked at connect time too: a name that resolved to a public address
    // when it was registered and to loopback later (DNS rebinding) is
    // refused, and nothing connects to the loopback listener.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    dns.set("rebind.example", "93.184.215.14");
    let server = register("rebinding", &format!("http://rebind.example:{port}/mcp"))
        .await
        .expect(201)
        .body;
    dns.set("rebind.example", "127.0.0.1");
    let (_, agent_token) = agent(&app, &admin, "victim").await;
    let url = app.url(server["mcp_endpoint"].as_str().unwrap());
    let out = ts_client(&url, &agent_token, "session", json!({})).await;
    let failure = out["fatal"].to_string();
    assert!(
        failure.contains("loopback") && failure.contains("BEHAVRY_OUTBOUND_ALLOW"),
        "the agent is told why: {out}"
    );
    assert!(
        listener.accept().is_err(),
        "no connection reached the loopback address"
    );
}

#[tokio::test]
async fn networks_the_operator_allows_are_reached_by_name() {
    // The name resolves (through the guard) to loopback, which the
    // operator allows: the real reference server answers through it.
    let peer = HttpPeer::start("streamableHttp").await;
    let dns = Arc::new(FakeDns::default());
    dns.set("tools.internal", "127.0.0.1");
    let app = TestApp::spawn_resolving(
        Backend::Sqlite,
        |v| {
            v.insert("BEHAVRY_OUTBOUND_ALLOW".into(), "127.0.0.0/8".into());
        },
        dns,
    )
    .await;
    let admin = tenant(&app).await;
    let server = post(
        &app,
        "/api/v1/mcp-servers",
        Some(&admin),
        &json!({"name": "tools", "transport": "streamable_http",
            "url": format!("http://tools.internal:{}/mcp", peer.port)}),
    )
    .await
    .expect(201)
    .body;
    let (_, agent_token) = agent(&app, &admin, "worker").await;
    let url = app.url(server["mcp_endpoint"].as_str().unwrap());
    let out = ts_client(&url, &agent_token, "list-call", json!({})).await;
    assert_eq!(text_of(&out["sum"]), "The sum of 2 and 3 is 5.", "{out}");
    // Metadata addresses stay out of reach inside an allowed range.
    post(
        &app,
        "/api/v1/mcp-servers",
        Some(&admin),
        &json!({"name": "imds", "transport": "streamable_http",
            "url": "http://169.254.169.254/latest/"}),
    )
    .await
    .expect_error(422, "validation_failed");
}

#[tokio::test]
async fn heartbeats_from_suspended_agents_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = tenant(&app).await;
    let (agent_id, agent_token) = agent(&app, &admin, "beating").await;
    let beat = || {
        post(
            &app,
            "/api/v1/agents/heartbeat",
            Some(&agent_token),
            &json!({}),
        )
    };
    beat().await.expect(200);
    post(
        &app,
        &format!("/api/v1/agents/{agent_id}/suspend"),
        Some(&admin),
        &json!({}),
    )
    .await
    .expect(200);
    let message = beat().await.expect_error(403, "forbidden");
    assert!(message.contains("suspended"), "{message}");
}

#[test]
fn the_test_peers_are_readable_by_the_servers_user() {
    // Stdio servers run as an unprivileged user when the suite runs as
    // root; they must be able to reach the peers they run.
    if running_as_root() {
        let mut dir = peers().canonicalize().unwrap();
        loop {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert!(
                mode & 0o001 != 0,
                "{} is not searchable by other users; stdio test servers run as `nobody`",
                dir.display()
            );
            if !dir.pop() {
                break;
            }
        }
    }
}

#[tokio::test]
async fn intake_is_strict_and_one_agent_cannot_disturb_another() {
    // Two agents of one tenant share one Streamable HTTP upstream (the
    // reference server).
    let peer = HttpPeer::start("streamableHttp").await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (fx, _) = crate::mcp::Fixture::serving(
        app,
        json!({"name": "shared", "transport": "streamable_http",
            "url": format!("http://127.0.0.1:{}/mcp", peer.port)}),
    )
    .await;
    let url = fx.url();
    let (_, noisy) = agent(&fx.app, &fx.admin, "noisy").await;

    // A duplicate member anywhere is refused before anything else.
    let dup = fx
        .app
        .client
        .post(&url)
        .bearer_auth(&noisy)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"initialize","params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 400);
    let body: Value = dup.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate member `id`"),
        "{body}"
    );

    // Mistyped initialize fields are the sender's error.
    for params in [
        json!({"protocolVersion": 2025}),
        json!({"protocolVersion": "2025-06-18", "capabilities": "all"}),
        json!({"protocolVersion": "2025-06-18", "clientInfo": ["x"]}),
    ] {
        let (_, _, answer) = crate::mcp::raw(
            &fx.app,
            &url,
            &noisy,
            None,
            &[],
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}),
        )
        .await;
        assert_eq!(answer["error"]["code"], -32602, "{params}: {answer}");
    }

    // The noisy agent opens a session and sends malformed calls in a loop;
    // each is refused to it alone, and the other agent's calls all work.
    let (status, headers, _) = crate::mcp::raw(
        &fx.app,
        &url,
        &noisy,
        None,
        &[],
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "noisy", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, 200);
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    let noise = async {
        for i in 0..30 {
            let (_, _, answer) = crate::mcp::raw(
                &fx.app,
                &url,
                &noisy,
                Some(&session),
                &[("mcp-protocol-version", "2025-06-18")],
                json!({"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"message": "x"}, "_meta": "not an object"}}),
            )
            .await;
            assert_eq!(answer["error"]["code"], -32602, "{answer}");
        }
    };
    let calls: Vec<Value> = (0..10)
        .map(|i| json!({"name": "echo", "arguments": {"message": format!("call {i}")}}))
        .collect();
    let work = ts_client(&url, &fx.agent_token, "script", json!({"calls": calls}));
    let ((), out) = tokio::join!(noise, work);
    let results = out["calls"].as_array().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(results.len(), 10);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(text_of(&r["result"]), format!("Echo: call {i}"), "{out}");
    }
}
