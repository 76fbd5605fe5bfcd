//! `behavry-bench`: measures what the gateway adds to an MCP tool call.
//!
//! It runs a minimal, fast MCP upstream (JSON responses over Streamable
//! HTTP, in this process), starts the gateway as a separate process (so its
//! CPU and memory can be read from /proc), registers the upstream and an
//! agent through the public API, then drives `tools/call` both directly at
//! the upstream and through the gateway with the full pipeline on (agent
//! JWT, rate limit, Rego policy on the arguments, durable hash-chained
//! audit). Results print as Markdown.
//!
//!     cargo run --release -p behavry-bench -- [--seconds 10] [--concurrency 32]
//!         [--sse-clients 100] [--stalled-clients 20] [--approvals 50]
//!
//! Then, with `--sse-clients` admin event streams open, the same fixed-rate
//! load again (what fan-out costs the calls, and how many events reach the
//! streams), with `--stalled-clients` streams that never read (what they
//! cost the calls, and whether the gateway cuts them off), and `--approvals`
//! held calls approved one after another (the time from the approval
//! request to the agent's answer). With `BEHAVRY_BENCH_DATABASE_URL` (a
//! PostgreSQL superuser URL of a disposable cluster; `./scripts/bench`
//! starts one) the approvals run again across two gateway processes on it.

/// The gateway allocates many short-lived objects per call on several
/// threads at once; mimalloc handles that pattern far better than the
/// system allocator (measured in docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Json;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "bench-operator-passphrase";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("gateway") {
        return run_gateway(&args[2], &args[3], args.get(4).map(String::as_str));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(
            arg("--seconds", 10),
            arg("--concurrency", 32) as usize,
            arg("--sse-clients", 100) as usize,
            arg("--approvals", 50) as usize,
            arg("--stalled-clients", 20) as usize,
        ))
}

/// The gateway, in its own process.
fn run_gateway(data_dir: &str, listen: &str, db_url: Option<&str>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut vars = BTreeMap::new();
        for (k, v) in [
            ("BEHAVRY_DATA_DIR", data_dir),
            ("BEHAVRY_LISTEN", listen),
            ("BEHAVRY_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("BEHAVRY_BCRYPT_COST", "4"),
            ("BEHAVRY_RATE_LIMIT_BURST", "100000"),
        ] {
            vars.insert(k.to_string(), v.to_string());
        }
        if let Some(url) = db_url {
            vars.insert("BEHAVRY_DB_URL".into(), url.into());
        }
        let settings = behavry_core::config::Settings::from_vars(&vars)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .settings;
        let state = behavry_server::startup::build_state(settings).await?;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        behavry_server::serve(state, listener, None, std::future::pending()).await?;
        anyhow::Ok(())
    })
}

/// A minimal MCP server: initialize, tools/list, tools/call (echo).
async fn upstream(headers: HeaderMap, Json(msg): Json<Value>) -> axum::response::Response {
    let id = msg.get("id").cloned();
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(id) = id else {
        return axum::http::StatusCode::ACCEPTED.into_response();
    };
    let result = match method {
        "initialize" => json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bench-upstream", "version": "1"}
        }),
        "tools/list" => json!({"tools": [{
            "name": "echo",
            "description": "Echoes its message",
            "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}},
            "annotations": {"readOnlyHint": true}
        }, {
            // Not classified as a read: the base pack escalates it.
            "name": "deploy",
            "description": "Deploys the current build",
            "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}}
        }]}),
        "tools/call" => {
            let text = msg
                .pointer("/params/arguments/message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            json!({"content": [{"type": "text", "text": text}]})
        }
        _ => json!({}),
    };
    let mut r = Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response();
    if method == "initialize" {
        r.headers_mut().insert(
            "mcp-session-id",
            "bench-session".parse().unwrap_or_else(|_| unreachable!()),
        );
    }
    let _ = headers;
    r
}

struct Proc {
    child: std::process::Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (user+system CPU seconds, peak RSS in MiB) of a process.
fn proc_usage(pid: u32) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based) of the whole line.
    let utime: f64 = fields.get(11).context("utime")?.parse()?;
    let stime: f64 = fields.get(12).context("stime")?.parse()?;
    let ticks = 100.0; // USER_HZ on Linux
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Ok(((utime + stime) / ticks, hwm_kb / 1024.0))
}

/// An MCP client session against one URL.
#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    session: String,
}

impl Target {
    async fn connect(client: &reqwest::Client, url: &str, token: Option<&str>) -> Result<Self> {
        let mut req = client
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .context("no session id")?
            .to_string();
        resp.bytes().await?;
        Ok(Self {
            client: client.clone(),
            url: url.to_string(),
            token: token.map(str::to_string),
            session,
        })
    }

    async fn call(&self, n: u64) -> Result<()> {
        self.call_tool(n, "echo", "benchmark payload").await
    }

    async fn call_tool(&self, n: u64, tool: &str, message: &str) -> Result<()> {
        let mut req = self
            .client
            .post(&self.url)
            // JSON only: what a simple agent asks for, and the cheapest path.
            .header("accept", "application/json")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(
                &json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {
                "name": tool, "arguments": {"message": message, "path": "/tmp/report.txt"}}}),
            );
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let body: Value = req.send().await?.json().await?;
        if body.get("result").is_none() {
            bail!("call failed: {body}");
        }
        Ok(())
    }
}

struct Run {
    calls: u64,
    errors: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
}

impl Run {
    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
    fn rate(&self) -> f64 {
        self.calls as f64 / self.seconds
    }
}

/// Closed loop: `concurrency` workers call as fast as answers come back.
async fn closed_loop(target: &Target, concurrency: usize, seconds: u64) -> Run {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let counter = Arc::new(AtomicU64::new(1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let t = target.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let s = Instant::now();
                match t.call(n).await {
                    Ok(()) => lat.push(s.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, e)) = t.await {
            all.extend(lat);
            errors += e;
        }
    }
    all.sort_unstable();
    Run {
        calls: all.len() as u64,
        errors,
        seconds: started.elapsed().as_secs_f64(),
        latencies_us: all,
    }
}

/// Open loop at a fixed rate: latency without queueing behind ourselves.
async fn fixed_rate(target: &Target, rate: u64, seconds: u64) -> Run {
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let total = rate * seconds;
    let started = Instant::now();
    let mut handles = Vec::with_capacity(total as usize);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..total {
        ticker.tick().await;
        let t = target.clone();
        handles.push(tokio::spawn(async move {
            let s = Instant::now();
            t.call(n).await.map(|_| s.elapsed().as_micros() as u64)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        match h.await {
            Ok(Ok(us)) => lat.push(us),
            _ => errors += 1,
        }
    }
    lat.sort_unstable();
    Run {
        calls: lat.len() as u64,
        errors,
        seconds: started.elapsed().as_secs_f64(),
        latencies_us: lat,
    }
}

async fn api(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Result<Value> {
    let mut req = client.request(method, url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("API call failed: {status} {v}");
    }
    Ok(v)
}

fn free_addr() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

async fn bench(
    seconds: u64,
    concurrency: usize,
    sse_clients: usize,
    approvals: usize,
    stalled_clients: usize,
) -> Result<()> {
    // The upstream.
    let up_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let up_addr = up_listener.local_addr()?;
    tokio::spawn(async move {
        let app = axum::Router::new().route("/mcp", axum::routing::post(upstream));
        let _ = axum::serve(up_listener, app).await;
    });

    let client = behavry_server::outbound::client_builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let data = std::env::temp_dir().join(format!("behavry-bench-{}", std::process::id()));
    let (gateway, base) = start_gateway(&client, &data, None).await?;
    let Setup {
        admin,
        token,
        server_id,
    } = setup(&client, &base, up_addr).await?;

    let direct = Target::connect(&client, &format!("http://{up_addr}/mcp"), None).await?;
    let gw = Target::connect(&client, &format!("{base}/mcp/v1/{server_id}"), Some(&token)).await?;
    // Warm up both paths.
    closed_loop(&direct, 4, 1).await;
    closed_loop(&gw, 4, 1).await;

    let pid = gateway.child.id();
    let direct_run = closed_loop(&direct, concurrency, seconds).await;
    let (cpu0, _) = proc_usage(pid)?;
    let gw_run = closed_loop(&gw, concurrency, seconds).await;
    let (cpu1, _) = proc_usage(pid)?;
    let cpu_per_call_ms = (cpu1 - cpu0) / gw_run.calls.max(1) as f64 * 1000.0;

    let mut fixed = Vec::new();
    for rate in [200, 1000] {
        let d = fixed_rate(&direct, rate, seconds.min(10)).await;
        let g = fixed_rate(&gw, rate, seconds.min(10)).await;
        fixed.push((rate, d, g));
    }
    let (_, peak_mib) = proc_usage(pid)?;

    println!("## MCP proxy: tools/call through the gateway vs. direct\n");
    println!(
        "Upstream: minimal in-process MCP server (JSON responses). Gateway: separate process, SQLite, embedded Rego base pack, durable hash-chained audit, agent JWT, rate limit. Closed loop: {concurrency} connections for {seconds} s.\n"
    );
    println!("| path | calls/s | p50 ms | p90 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|");
    for (name, r) in [("direct", &direct_run), ("through gateway", &gw_run)] {
        println!(
            "| {name} | {:.0} | {:.3} | {:.3} | {:.3} | {} |",
            r.rate(),
            r.pct(0.5),
            r.pct(0.9),
            r.pct(0.99),
            r.errors
        );
    }
    println!(
        "\nThroughput through the gateway: {:.1}% of direct.",
        gw_run.rate() / direct_run.rate() * 100.0
    );
    println!(
        "Gateway CPU per call: {cpu_per_call_ms:.3} ms. Gateway peak RSS: {peak_mib:.1} MiB.\n"
    );
    println!(
        "| fixed rate | direct p50 / p99 ms | gateway p50 / p99 ms | added p50 / p99 ms | errors (d/g) |"
    );
    println!("|---|---|---|---|---|");
    for (rate, d, g) in &fixed {
        println!(
            "| {rate}/s | {:.3} / {:.3} | {:.3} / {:.3} | {:.3} / {:.3} | {}/{} |",
            d.pct(0.5),
            d.pct(0.99),
            g.pct(0.5),
            g.pct(0.99),
            g.pct(0.5) - d.pct(0.5),
            g.pct(0.99) - d.pct(0.99),
            d.errors,
            g.errors
        );
    }

    // Event fan-out: the same fixed-rate load with admin streams open.
    let received = Arc::new(AtomicU64::new(0));
    let lagged = Arc::new(AtomicU64::new(0));
    let mut streams = Vec::new();
    for _ in 0..sse_clients {
        let resp = client
            .get(format!("{base}/api/v1/events/stream"))
            .bearer_auth(&admin)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("event stream refused: {}", resp.status());
        }
        let (received, lagged) = (received.clone(), lagged.clone());
        streams.push(tokio::spawn(count_events(resp, received, lagged)));
    }
    let fan_rate = 1000;
    received.store(0, Ordering::Relaxed);
    let fan_started = Instant::now();
    let with_streams = fixed_rate(&gw, fan_rate, seconds.min(10)).await;
    // Events still in flight to the streams.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = received.load(Ordering::Relaxed);
    let fan_seconds = fan_started.elapsed().as_secs_f64();
    for s in &streams {
        s.abort();
    }
    let without = &fixed
        .iter()
        .find(|(r, _, _)| *r == fan_rate)
        .context("baseline run")?
        .2;

    // Streams that stop reading, during the same load.
    let stalled = stalled_streams(&base, &admin, stalled_clients).await?;
    let with_stalled = fixed_rate(&gw, fan_rate, seconds.min(10)).await;
    let cut_off = cut_off_within(stalled, Duration::from_secs(30)).await;

    // Approval to release: a held call, approved through the API.
    let release_ms = approve_held_calls(&client, &gw, &base, &admin, approvals).await?;
    let pct = |v: &[f64], p: f64| {
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };

    println!("\n## Events and approvals\n");
    println!(
        "| fixed rate {fan_rate}/s | gateway p50 / p99 ms | errors |\n|---|---|---|\n| no event streams | {:.3} / {:.3} | {} |\n| {sse_clients} admin event streams | {:.3} / {:.3} | {} |",
        without.pct(0.5),
        without.pct(0.99),
        without.errors,
        with_streams.pct(0.5),
        with_streams.pct(0.99),
        with_streams.errors
    );
    println!(
        "| {stalled_clients} streams that never read | {:.3} / {:.3} | {} |",
        with_stalled.pct(0.5),
        with_stalled.pct(0.99),
        with_stalled.errors
    );
    println!(
        "\nEvents delivered to the {sse_clients} streams: {delivered} in {fan_seconds:.1} s ({:.0}/s); streams told they lagged: {}.",
        delivered as f64 / fan_seconds,
        lagged.load(Ordering::Relaxed)
    );
    println!(
        "\nApproval to release, {} held calls on one node (from sending the approval to the agent's answer): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms.",
        release_ms.len(),
        pct(&release_ms, 0.5),
        pct(&release_ms, 0.99),
        release_ms.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "\nStreams that never read, cut off by the gateway within 30 s of the load: {cut_off} of {stalled_clients}."
    );
    drop(gateway);
    let _ = std::fs::remove_dir_all(&data);

    match std::env::var("BEHAVRY_BENCH_DATABASE_URL") {
        Ok(url) => {
            let release_ms = across_replicas(&client, up_addr, &url, approvals).await?;
            println!(
                "\nApproval to release across replicas, {} held calls (two gateway processes on one PostgreSQL; the call held on the first, approved through the second): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms.",
                release_ms.len(),
                pct(&release_ms, 0.5),
                pct(&release_ms, 0.99),
                release_ms.last().copied().unwrap_or(f64::NAN)
            );
        }
        Err(_) => println!(
            "\nApproval to release across replicas: not measured (needs BEHAVRY_BENCH_DATABASE_URL; `./scripts/bench` provides one)."
        ),
    }
    Ok(())
}

/// Starts the gateway as a child process of this binary, keeping its keys
/// in `data`, on SQLite there or on the PostgreSQL at `db_url`. Gateways
/// started one after another on the same `data` share their keys.
async fn start_gateway(
    client: &reqwest::Client,
    data: &std::path::Path,
    db_url: Option<&str>,
) -> Result<(Proc, String)> {
    let addr = free_addr()?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["gateway", &data.display().to_string(), &addr.to_string()]);
    if let Some(url) = db_url {
        cmd.arg(url);
    }
    let gateway = Proc {
        child: cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    };
    let base = format!("http://{addr}");
    for _ in 0..300 {
        if client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok((gateway, base));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the gateway at {base} did not become ready")
}

/// Admin event streams that read their response headers and then nothing.
async fn stalled_streams(base: &str, admin: &str, n: usize) -> Result<Vec<tokio::net::TcpStream>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr: SocketAddr = base.trim_start_matches("http://").parse()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let mut s = socket.connect(addr).await?;
        s.write_all(
            format!(
                "GET /api/v1/events/stream HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {admin}\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
        let mut head = [0u8; 256];
        let n = s.read(&mut head).await?;
        if !head[..n].starts_with(b"HTTP/1.1 200") {
            bail!(
                "event stream refused: {}",
                String::from_utf8_lossy(&head[..n])
            );
        }
        out.push(s);
    }
    Ok(out)
}

/// How many of the stalled streams the gateway has closed, reading what
/// they were sent for at most `limit`.
async fn cut_off_within(streams: Vec<tokio::net::TcpStream>, limit: Duration) -> usize {
    use tokio::io::AsyncReadExt;
    let reads: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut sink = Vec::new();
                matches!(
                    tokio::time::timeout(limit, s.read_to_end(&mut sink)).await,
                    Ok(Ok(_))
                )
            })
        })
        .collect();
    let mut closed = 0;
    for read in reads {
        closed += usize::from(read.await.unwrap_or(false));
    }
    closed
}

/// Held calls made through `gw`, each approved through the API at
/// `approve_base` once it shows as pending; the time from sending the
/// approval to the agent's answer, in ms, sorted.
async fn approve_held_calls(
    client: &reqwest::Client,
    gw: &Target,
    approve_base: &str,
    admin: &str,
    n: usize,
) -> Result<Vec<f64>> {
    use reqwest::Method;
    let mut release_ms = Vec::with_capacity(n);
    for i in 0..n {
        let agent_call = {
            let gw = gw.clone();
            tokio::spawn(async move {
                gw.call_tool(1_000_000 + i as u64, "deploy", &format!("build {i}"))
                    .await
            })
        };
        let id = loop {
            let page = api(
                client,
                Method::GET,
                format!("{approve_base}/api/v1/escalations?status=pending"),
                Some(admin),
                Value::Null,
            )
            .await?;
            if let Some(id) = page["escalations"][0]["id"].as_str() {
                break id.to_string();
            }
            if agent_call.is_finished() {
                bail!("the call was not held: {:?}", agent_call.await?);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let t0 = Instant::now();
        api(
            client,
            Method::POST,
            format!("{approve_base}/api/v1/escalations/{id}/approve"),
            Some(admin),
            json!({}),
        )
        .await?;
        agent_call.await??;
        release_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    release_ms.sort_by(f64::total_cmp);
    Ok(release_ms)
}

/// Two gateway processes on one PostgreSQL: calls held on the first are
/// approved through the second.
async fn across_replicas(
    client: &reqwest::Client,
    up_addr: SocketAddr,
    db_url: &str,
    approvals: usize,
) -> Result<Vec<f64>> {
    let data = std::env::temp_dir().join(format!("behavry-bench-replicas-{}", std::process::id()));
    let (first, base_a) = start_gateway(client, &data, Some(db_url)).await?;
    let (second, base_b) = start_gateway(client, &data, Some(db_url)).await?;
    let s = setup(client, &base_a, up_addr).await?;
    let gw = Target::connect(
        client,
        &format!("{base_a}/mcp/v1/{}", s.server_id),
        Some(&s.token),
    )
    .await?;
    let release_ms = approve_held_calls(client, &gw, &base_b, &s.admin, approvals).await;
    drop((first, second));
    let _ = std::fs::remove_dir_all(&data);
    release_ms
}

/// What a benchmark run needs from a fresh gateway.
struct Setup {
    admin: String,
    token: String,
    server_id: String,
}

/// A tenant with load-test limits, the upstream and an agent, through the
/// public API of a fresh gateway.
async fn setup(client: &reqwest::Client, base: &str, up_addr: SocketAddr) -> Result<Setup> {
    use reqwest::Method;
    // Tenant, limits, upstream, agent — through the public API.
    api(client, Method::POST, format!("{base}/api/v1/signup"), None, json!({
        "organization_name": "Bench", "admin_email": "bench@example.com", "admin_password": ADMIN_PASSWORD})).await?;
    let op = api(
        client,
        Method::POST,
        format!("{base}/api/v1/auth/admin/login"),
        None,
        json!({"username": "admin", "password": ADMIN_PASSWORD}),
    )
    .await?;
    let op = op["access_token"]
        .as_str()
        .context("operator token")?
        .to_string();
    let tenants = api(
        client,
        Method::GET,
        format!("{base}/api/v1/superadmin/tenants"),
        Some(&op),
        Value::Null,
    )
    .await?;
    let tenant = tenants["tenants"][0]["id"]
        .as_str()
        .context("tenant")?
        .to_string();
    api(
        client,
        Method::PATCH,
        format!("{base}/api/v1/superadmin/tenants/{tenant}"),
        Some(&op),
        json!({"max_rpm_per_agent": 1_000_000}),
    )
    .await?;
    let admin = api(
        client,
        Method::POST,
        format!("{base}/api/v1/auth/admin/login"),
        None,
        json!({"username": "bench@example.com", "password": ADMIN_PASSWORD}),
    )
    .await?;
    let admin = admin["access_token"]
        .as_str()
        .context("admin token")?
        .to_string();
    // A load test is what the per-agent windows exist to stop: turn off
    // the ones it would cross (the blast-radius rules stay on).
    api(
        client,
        Method::PUT,
        format!("{base}/api/v1/settings/blast-radius"),
        Some(&admin),
        json!({"windows": {"calls_per_session": 0, "bytes_out_per_hour": 0}}),
    )
    .await?;
    let server = api(
        client,
        Method::POST,
        format!("{base}/api/v1/mcp-servers"),
        Some(&admin),
        json!({
        "name": "bench", "transport": "streamable_http", "url": format!("http://{up_addr}/mcp")}),
    )
    .await?;
    let server_id = server["id"].as_str().context("server id")?.to_string();
    let agent = api(
        client,
        Method::POST,
        format!("{base}/api/v1/agents"),
        Some(&admin),
        json!({"name": "bench-agent"}),
    )
    .await?;
    let token = api(client, Method::POST, format!("{base}/api/v1/auth/token"), None, json!({
        "client_id": agent["client_id"], "client_secret": agent["client_secret"], "grant_type": "client_credentials"})).await?;
    let token = token["access_token"]
        .as_str()
        .context("agent token")?
        .to_string();
    Ok(Setup {
        admin,
        token,
        server_id,
    })
}

/// Reads an event stream, counting events and `lagged` notices.
async fn count_events(
    mut resp: reqwest::Response,
    received: Arc<AtomicU64>,
    lagged: Arc<AtomicU64>,
) {
    let mut carry = String::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        carry.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = carry.find("\n\n") {
            let frame: String = carry.drain(..end + 2).collect();
            if frame.starts_with("event: lagged") {
                lagged.fetch_add(1, Ordering::Relaxed);
            } else if frame.starts_with("event: ") {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
