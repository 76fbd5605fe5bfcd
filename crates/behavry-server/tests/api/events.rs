//! The event bus as admins and replicas see it: the live stream
//! (`GET /api/v1/events/stream`) carries the tenant's audit events, alerts
//! and configuration changes, resumes with `Last-Event-ID`, and never shows
//! another tenant's; on PostgreSQL a stream on one replica sees events made
//! on another, and an agent suspended through one replica is refused by the
//! other at once.

use std::time::Duration;

use behavry_test_support::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::mcp::{Fixture, initialize, raw, ts_client};
use crate::support::{post, request, send, tenant_admin};

both_backends!(admins_watch_their_tenant_live_and_resume);

const TOKEN: &str = "ghp_R8yXq2Lw9ZtK4mVbN7cJ3sHfD6gP1aE0uQ5o";

/// One Server-Sent Event.
#[derive(Debug)]
struct Sse {
    event: Option<String>,
    id: Option<String>,
    data: Value,
}

/// A client of the event stream, reading as events arrive.
struct Stream {
    resp: reqwest::Response,
    buf: String,
}

impl Stream {
    async fn open(app: &TestApp, token: &str, query: &str, last_id: Option<&str>) -> Self {
        let mut req = request(
            app,
            Method::GET,
            &format!("/api/v1/events/stream{query}"),
            Some(token),
        );
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.expect("stream request");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (comments skipped), waiting at most 15 s.
    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (None, None, String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if event.is_none() && data.is_empty() {
                    continue; // a comment
                }
                return Sse {
                    event,
                    id,
                    data: serde_json::from_str(&data).unwrap_or(Value::Null),
                };
            }
            let chunk = tokio::time::timeout(Duration::from_secs(15), self.resp.chunk())
                .await
                .expect("an event within 15 s")
                .expect("stream readable")
                .expect("stream still open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads until an event matches.
    async fn until(&mut self, what: &str, pred: impl Fn(&Sse) -> bool) -> Sse {
        for _ in 0..200 {
            let e = self.next().await;
            if pred(&e) {
                return e;
            }
        }
        panic!("the stream never showed {what}");
    }
}

async fn admins_watch_their_tenant_live_and_resume(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let (_, other_admin) = tenant_admin(&fx.app, "Other Co", "other@other.example").await;
    let mut stream = Stream::open(&fx.app, &fx.admin, "?types=alert,audit.TOOL_CALL", None).await;
    let mut everything = Stream::open(&fx.app, &fx.admin, "", None).await;
    let mut theirs = Stream::open(&fx.app, &other_admin, "", None).await;

    let out = ts_client(
        &fx.url(),
        &fx.agent_token,
        "call",
        json!({"name": "echo", "arguments": {"message": format!("GITHUB_TOKEN={TOKEN}")}}),
    )
    .await;
    assert_eq!(out["error"]["code"], -32045, "{out}");

    let call = stream
        .until("the blocked call", |e| e.event.as_deref() == Some("audit"))
        .await;
    assert_eq!(call.data["kind"], "audit");
    assert_eq!(call.data["name"], "TOOL_CALL");
    assert_eq!(call.data["data"]["policy_id"], "dlp");
    assert_eq!(call.data["data"]["agent_id"], fx.agent_id.as_str());
    let first_id = call.id.clone().expect("events carry ids");
    let alert = stream
        .until("the alert", |e| e.event.as_deref() == Some("alert"))
        .await;
    assert_eq!(alert.data["name"], "dlp_violation");
    assert_eq!(alert.data["data"]["severity"], "critical");
    let raw_text = format!("{:?}{:?}", call.data, alert.data);
    assert!(!raw_text.contains(TOKEN), "events never carry the secret");
    // The unfiltered stream saw both too.
    everything
        .until("the alert, unfiltered", |e| {
            e.data["name"] == "dlp_violation"
        })
        .await;

    // Resuming after the first event replays what came after it.
    let mut resumed = Stream::open(
        &fx.app,
        &fx.admin,
        "?types=alert,audit.TOOL_CALL",
        Some(&first_id),
    )
    .await;
    let replayed = resumed.next().await;
    assert_eq!(replayed.event.as_deref(), Some("alert"), "{replayed:?}");
    assert_eq!(replayed.id, alert.id);
    // An id this replica does not know: told to reload.
    let mut stale = Stream::open(&fx.app, &fx.admin, "", Some("another-replica:12")).await;
    assert_eq!(stale.next().await.event.as_deref(), Some("reset"));

    // The other tenant saw none of it: its first event is its own change.
    send(
        request(
            &fx.app,
            Method::PUT,
            "/api/v1/settings/data-protection",
            Some(&other_admin),
        )
        .json(&json!({"payload_storage": "redacted"})),
    )
    .await
    .expect(200);
    let own = theirs.next().await;
    assert_eq!(own.event.as_deref(), Some("config"), "{own:?}");
    assert_eq!(own.data["name"], "data_protection");

    // Bad filters are refused before the stream opens.
    send(request(
        &fx.app,
        Method::GET,
        "/api/v1/events/stream?types=weather",
        Some(&other_admin),
    ))
    .await
    .expect_error(400, "bad_request");
}

#[tokio::test]
async fn a_second_replica_sees_events_and_suspensions_at_once() {
    let fx = Fixture::new(Backend::Postgres).await;
    let other = fx.app.replica().await;
    let mut stream = Stream::open(&other, &fx.admin, "?types=audit.TOOL_CALL,config", None).await;

    // A call through the first replica shows on the second's stream.
    let out = ts_client(
        &fx.url(),
        &fx.agent_token,
        "call",
        json!({"name": "echo", "arguments": {"message": "hello"}}),
    )
    .await;
    assert!(out["error"].is_null(), "{out}");
    let seen = stream
        .until("the call made on the other replica", |e| {
            e.data["name"] == "TOOL_CALL"
        })
        .await;
    assert_eq!(seen.data["data"]["tool_name"], "echo");

    // The second replica admits the agent (and caches it) ...
    let url = other.url(&format!("/mcp/v1/{}", fx.server_id));
    let session = initialize(&other, &url, &fx.agent_token).await;
    let echo = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"message": "hi"}}});
    let (_, _, body) = raw(
        &other,
        &url,
        &fx.agent_token,
        Some(&session),
        &[],
        echo.clone(),
    )
    .await;
    assert!(body["result"].is_object(), "{body}");
    // ... until the agent is suspended through the first replica: the
    // change reaches the second before the caches would expire.
    post(
        &fx.app,
        &format!("/api/v1/agents/{}/suspend", fx.agent_id),
        Some(&fx.admin),
        &json!({}),
    )
    .await
    .expect(200);
    stream
        .until("the suspension", |e| {
            e.data["kind"] == "config" && e.data["name"] == "agent"
        })
        .await;
    // Well inside the two seconds the agent cache would otherwise keep it.
    let suspended = std::time::Instant::now();
    loop {
        let (status, _, body) = raw(
            &other,
            &url,
            &fx.agent_token,
            Some(&session),
            &[],
            echo.clone(),
        )
        .await;
        if status == 403 || status == 404 || body["error"]["code"] == -32043 {
            break;
        }
        assert!(
            suspended.elapsed() < Duration::from_secs(1),
            "the second replica still serves the suspended agent: HTTP {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that stops reading is cut off, with what the gateway holds for
/// it bounded, while publishing, calls and other streams carry on.
#[tokio::test]
async fn a_stalled_stream_is_cut_off_without_holding_anything_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const EVENTS: usize = 12_000;
    const PAD: usize = 3_000;

    let fx = Fixture::new(Backend::Sqlite).await;
    let tenant = behavry_core::TenantId(fx.tenant.parse().unwrap());

    // The stalled client: a small receive window, and it reads nothing
    // after the response headers.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(fx.app.addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "GET /api/v1/events/stream HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\naccept: text/event-stream\r\nconnection: close\r\n\r\n",
                fx.app.addr, fx.admin
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 512];
    let n = stalled.read(&mut head).await.unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );

    // A client that keeps up, counting what it gets.
    let mut healthy = Stream::open(&fx.app, &fx.admin, "?types=audit", None).await;
    let reader = tokio::spawn(async move {
        let mut padded = 0usize;
        loop {
            let e = healthy.next().await;
            assert_ne!(
                e.event.as_deref(),
                Some("lagged"),
                "a reader that keeps up is never cut off"
            );
            if e.data["name"] == "PADDING" {
                padded += 1;
            }
            if e.data["name"] == "TOOL_CALL" {
                return padded;
            }
        }
    });

    // Far more than the stalled client's socket, its queue and the bus's
    // ring can hold, published at a pace the healthy client keeps up with.
    let bus = fx.app.state.bus.clone();
    for batch in 0..EVENTS / 200 {
        for i in 0..200 {
            bus.publish(behavry_server::bus::Event::new(
                tenant,
                behavry_server::bus::Kind::Audit,
                "PADDING",
                json!({"n": batch * 200 + i, "pad": "x".repeat(PAD)}),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Calls go through meanwhile, and their events reach the healthy
    // stream after every padding event.
    let out = ts_client(
        &fx.url(),
        &fx.agent_token,
        "call",
        json!({"name": "echo", "arguments": {"message": "still serving"}}),
    )
    .await;
    assert!(out["error"].is_null(), "{out}");
    let padded = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the healthy stream keeps up")
        .unwrap();
    assert_eq!(padded, EVENTS);

    // The stalled client, reading at last, finds its stream ended by the
    // gateway after a bounded amount, not the whole backlog.
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stalled.read_to_end(&mut received))
        .await
        .expect("the gateway closes the stalled stream")
        .unwrap();
    let text = String::from_utf8_lossy(&received);
    let delivered = text.matches("\"PADDING\"").count();
    assert!(
        delivered < EVENTS / 2,
        "a stalled client got {delivered} of {EVENTS} events: its backlog was not bounded"
    );
    assert!(
        !text.contains("still serving") && !text.contains("\"TOOL_CALL\""),
        "the stalled stream was cut before the later call"
    );
}
