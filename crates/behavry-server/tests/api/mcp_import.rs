//! Importing upstream MCP servers from a YAML file
//! (`POST /api/v1/mcp-servers/import`).

use behavry_test_support::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::mcp::{HttpPeer, agent, text_of, ts_client, with_catalog};
use crate::support::{Reply, request, send, tenant_admin, token};

both_backends!(import_a_server_file_then_upsert_it);

fn import(
    app: &TestApp,
    token: &str,
    query: &str,
    content_type: &str,
    body: &str,
) -> impl Future<Output = Reply> + use<> {
    send(
        request(
            app,
            Method::POST,
            &format!("/api/v1/mcp-servers/import{query}"),
            Some(token),
        )
        .header("content-type", content_type)
        .body(body.to_string()),
    )
}

async fn servers(app: &TestApp, admin: &str) -> Vec<Value> {
    send(request(
        app,
        Method::GET,
        "/api/v1/mcp-servers",
        Some(admin),
    ))
    .await
    .expect(200)
    .body["servers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn by_name<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no server `{name}` in {list:?}"))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|l| l.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default()
}

const FILE: &str = r#"
# Servers of the platform team.
servers:
  - name: everything
    transport: stdio
    catalog: everything
    env:
      EVERYTHING_SECRET: imported-secret-value
    tags: [local, reference]
    timeout_ms: 30000
  - name: remote
    transport: streamable_http
    url: http://127.0.0.1:PORT/mcp
    headers:
      X-Upstream-Key: ${UPSTREAM_KEY}
"#;

async fn import_a_server_file_then_upsert_it(backend: Backend) {
    let app = TestApp::spawn_with(backend, with_catalog).await;
    let (_, admin) = tenant_admin(&app, "Import Co", "admin@import.example").await;
    let (_, agent_token) = agent(&app, &admin, "importer-agent").await;
    let peer = HttpPeer::start("streamableHttp").await;
    let file = FILE.replace("PORT", &peer.port.to_string());

    let body = import(&app, &admin, "", "application/yaml", &file)
        .await
        .expect(200)
        .body;
    assert_eq!(body["mode"], "create");
    assert_eq!(names(&body["created"]), ["everything", "remote"], "{body}");
    assert_eq!(body["updated"], json!([]));
    assert!(
        !body.to_string().contains("imported-secret-value"),
        "secrets are never returned"
    );
    let warnings = body["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{body}");
    assert!(
        warnings[0].as_str().unwrap().contains("${UPSTREAM_KEY}"),
        "{body}"
    );
    let listed = servers(&app, &admin).await;
    assert_eq!(listed.len(), 2);
    let everything = by_name(&listed, "everything");
    assert_eq!(everything["env_keys"], json!(["EVERYTHING_SECRET"]));
    assert_eq!(everything["tags"], json!(["local", "reference"]));
    assert_eq!(everything["timeout_ms"], 30000);
    let remote = by_name(&listed, "remote");
    assert_eq!(remote["header_keys"], json!(["X-Upstream-Key"]));
    assert_eq!(remote["transport"], "streamable_http");

    // Both work through the gateway.
    for server in [everything, remote] {
        let url = app.url(server["mcp_endpoint"].as_str().unwrap());
        let out = ts_client(&url, &agent_token, "list-call", json!({})).await;
        assert!(out.get("fatal").is_none(), "{}: {out}", server["name"]);
        assert_eq!(text_of(&out["echo"]), "Echo: hello through behavry");
    }

    // The same file again: the names are taken; nothing changes.
    let message = import(&app, &admin, "", "text/yaml", &file)
        .await
        .expect_error(409, "conflict");
    assert!(
        message.contains("`everything` (entry 0)") && message.contains("`remote` (entry 1)"),
        "{message}"
    );
    assert!(message.contains("mode=upsert"), "{message}");
    let unchanged = |list: &[Value]| -> Vec<(Value, Value)> {
        list.iter()
            .map(|s| (s["id"].clone(), s["updated_at"].clone()))
            .collect()
    };
    assert_eq!(unchanged(&servers(&app, &admin).await), unchanged(&listed));

    // Upsert: existing servers take the file's definition (same id), new
    // ones are created.
    let changed = format!(
        r#"
- name: everything
  transport: stdio
  catalog: everything
  env: {{OTHER_SETTING: "1"}}
  timeout_ms: 5000
  enabled: false
- name: remote
  transport: streamable_http
  url: http://127.0.0.1:{port}/mcp
- name: legacy
  transport: sse
  url: http://127.0.0.1:{port}/sse
"#,
        port = peer.port
    );
    let body = import(&app, &admin, "?mode=upsert", "application/yaml", &changed)
        .await
        .expect(200)
        .body;
    assert_eq!(body["mode"], "upsert");
    assert_eq!(names(&body["created"]), ["legacy"], "{body}");
    assert_eq!(names(&body["updated"]), ["everything", "remote"], "{body}");
    assert_eq!(body["warnings"], json!([]));
    let after = servers(&app, &admin).await;
    assert_eq!(after.len(), 3);
    let everything_after = by_name(&after, "everything");
    assert_eq!(everything_after["id"], everything["id"], "ids are kept");
    assert_eq!(everything_after["timeout_ms"], 5000);
    assert_eq!(everything_after["enabled"], false);
    assert_eq!(everything_after["env_keys"], json!(["OTHER_SETTING"]));
    assert_eq!(
        everything_after["tags"],
        json!([]),
        "the file is the whole truth"
    );
    let remote_after = by_name(&after, "remote");
    assert_eq!(remote_after["id"], remote["id"]);
    assert_eq!(remote_after["header_keys"], json!([]));

    // The disabled server refuses agents at once; the other still serves.
    let resp = app
        .client
        .post(app.url(everything_after["mcp_endpoint"].as_str().unwrap()))
        .bearer_auth(&agent_token)
        .header("accept", "application/json")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let url = app.url(remote_after["mcp_endpoint"].as_str().unwrap());
    let out = ts_client(&url, &agent_token, "list-call", json!({})).await;
    assert_eq!(text_of(&out["sum"]), "The sum of 2 and 3 is 5.", "{out}");
}

#[tokio::test]
async fn a_bad_server_file_imports_nothing() {
    let app = TestApp::spawn_with(Backend::Sqlite, with_catalog).await;
    let (tenant, admin) = tenant_admin(&app, "Careful Co", "admin@careful.example").await;

    // A syntax error: where it is.
    let broken = "servers:\n  - name: a\n    transport: stdio\n   command: [node\n";
    let reply = import(&app, &admin, "", "application/yaml", broken).await;
    assert_eq!(reply.status, 422, "{:?}", reply.body);
    let problems = reply.body["error"]["problems"].as_array().unwrap().clone();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid YAML"),
        "{problems:?}"
    );
    assert!(
        problems[0]["line"].as_u64().is_some_and(|l| l >= 3),
        "{problems:?}"
    );
    assert!(problems[0]["column"].as_u64().is_some(), "{problems:?}");

    // Valid YAML, invalid servers: every problem, with its entry.
    let invalid = r#"
servers:
  - name: fine
    transport: stdio
    catalog: everything
  - name: no-command
    transport: stdio
  - name: strange
    transport: ftp
    url: ftp://example.com
  - name: typo
    transport: stdio
    comand: node
  - name: fine
    transport: streamable_http
    url: http://127.0.0.1:9/mcp
  - transport: streamable_http
    url: not-a-url
    timeout_ms: 5
  - name: own-program
    transport: stdio
    command: sh
    args: ["-c", "id"]
  - name: metadata
    transport: streamable_http
    url: http://169.254.169.254/latest/meta-data/
"#;
    let reply = import(&app, &admin, "", "application/yaml", invalid).await;
    assert_eq!(reply.status, 422, "{:?}", reply.body);
    assert_eq!(reply.body["error"]["code"], "validation_failed");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was imported")
    );
    let problems = reply.body["error"]["problems"].as_array().unwrap().clone();
    let at = |index: u64| -> Vec<String> {
        problems
            .iter()
            .filter(|p| p["index"] == index)
            .map(|p| p["message"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(at(0).is_empty(), "entry 0 is fine: {problems:?}");
    assert!(
        at(1).iter().any(|m| m.contains("needs `catalog`")),
        "{problems:?}"
    );
    assert!(
        at(2).iter().any(|m| m.contains("transport must be")),
        "{problems:?}"
    );
    assert!(
        at(3).iter().any(|m| m.contains("unknown field `comand`")),
        "{problems:?}"
    );
    assert!(
        at(4).iter().any(|m| m.contains("already used by entry 0")),
        "{problems:?}"
    );
    assert!(!at(5).is_empty(), "a nameless entry: {problems:?}");
    assert!(
        at(6)
            .iter()
            .any(|m| m.contains("tenants cannot choose a program")),
        "{problems:?}"
    );
    assert!(
        at(7).iter().any(|m| m.contains("cloud metadata")),
        "{problems:?}"
    );
    let named = problems.iter().find(|p| p["index"] == 2).unwrap();
    assert_eq!(named["name"], "strange");
    assert_eq!(named["line"], 8, "where the entry starts: {named}");
    assert!(
        servers(&app, &admin).await.is_empty(),
        "nothing was created"
    );

    // Not YAML at all, an empty list, an unknown mode.
    import(&app, &admin, "", "text/plain", "servers: []")
        .await
        .expect_error(415, "unsupported_media_type");
    let reply = import(&app, &admin, "", "application/yaml", "servers: []").await;
    assert_eq!(reply.status, 422);
    import(
        &app,
        &admin,
        "?mode=merge",
        "application/yaml",
        "servers: []",
    )
    .await
    .expect_error(400, "bad_request");

    // JSON is YAML too, and gets its own positions.
    let reply = import(&app, &admin, "", "application/json", "{\"servers\": [").await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"]["problems"][0]["line"], 1);
    let body = import(
        &app,
        &admin,
        "",
        "application/json",
        r#"[{"name": "from-json", "transport": "sse", "url": "http://127.0.0.1:9/sse"}]"#,
    )
    .await
    .expect(200)
    .body;
    assert_eq!(names(&body["created"]), ["from-json"]);

    // Admins only: not agents, not viewers.
    let (_, agent_token) = agent(&app, &admin, "curious").await;
    let reply = import(&app, &agent_token, "", "application/yaml", "servers: []").await;
    assert_eq!(reply.status, 401);
    let tenant_id: behavry_core::TenantId = tenant.parse().unwrap();
    let password = "viewer-password-1234";
    app.store
        .tenant(tenant_id)
        .create_admin(behavry_store::NewAdminUser {
            username: "viewer@careful.example".into(),
            email: Some("viewer@careful.example".into()),
            password_hash: behavry_server::auth::password::hash(
                password,
                app.state.settings.bcrypt_cost,
            )
            .unwrap(),
            role: behavry_core::AdminRole::Viewer,
        })
        .await
        .unwrap();
    let viewer = token(&app, "viewer@careful.example", password).await;
    import(
        &app,
        &viewer,
        "",
        "application/json",
        r#"[{"name": "sneaky", "transport": "sse", "url": "http://127.0.0.1:9/sse"}]"#,
    )
    .await
    .expect_error(403, "forbidden");
    assert_eq!(servers(&app, &admin).await.len(), 1);
}
