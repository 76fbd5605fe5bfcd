//! A dependency-free readiness probe: one HTTP/1.1 GET over a plain socket.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::GlobalArgs;

#[derive(Args)]
pub struct HealthcheckArgs {
    /// Address of the API (default: BEHAVRY_LISTEN, with 0.0.0.0 read as 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    addr: Option<SocketAddr>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

pub async fn execute(global: &GlobalArgs, args: HealthcheckArgs) -> Result<ExitCode> {
    let addr = match args.addr {
        Some(addr) => addr,
        None => {
            let mut addr = global.settings(&[])?.settings.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip([127, 0, 0, 1].into());
            }
            addr
        }
    };
    let probe = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let request = format!(
            "GET /health/ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: behavry-healthcheck\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(args.timeout), probe)
        .await
        .context("readiness check timed out")??;
    let status_line = response.lines().next().unwrap_or_default();
    let ready = status_line.split_whitespace().nth(1) == Some("200");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    println!("{}", body.trim());
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
