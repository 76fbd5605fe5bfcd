//! Upstream over stdio: the gateway runs the server as a child process and
//! speaks newline-delimited JSON-RPC on its stdin and stdout.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Mutex;

use super::{Inbound, Link, LinkChannels};

/// Largest line accepted from a server (a tool result can be big, but not
/// unbounded).
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Variables of the gateway's environment a stdio server inherits:
/// where programs are, the locale and time zone, temporary files, and how
/// to reach the network (proxies, CA bundles).
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "TEMP",
    "TMP",
    "SYSTEMROOT",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

pub(crate) struct StdioLink {
    stdin: Mutex<Option<ChildStdin>>,
    child: Mutex<Option<Child>>,
}

impl StdioLink {
    pub(crate) fn spawn(
        name: &str,
        command: &str,
        args: &[String],
        env: &[(String, String)],
        channels: LinkChannels,
    ) -> Result<Self, String> {
        let mut cmd = Command::new(command);
        // The child gets the server's configured variables and only the
        // few of the gateway's own it needs to start and reach the
        // network, never the rest (SECRET_KEY, database URLs, other
        // servers' credentials).
        cmd.env_clear();
        for name in INHERITED_ENV {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{command}`: {e}"))?;
        let stdin = child.stdin.take().ok_or("child has no stdin")?;
        let stdout = child.stdout.take().ok_or("child has no stdout")?;
        let stderr = child.stderr.take().ok_or("child has no stderr")?;

        let LinkChannels { inbound, closed } = channels;
        tokio::spawn(async move {
            let mut lines = BufReader::with_capacity(64 * 1024, stdout);
            let mut line = String::new();
            let why = loop {
                line.clear();
                match lines.read_line(&mut line).await {
                    Ok(0) => break "the server process closed its output".to_string(),
                    Ok(_) if line.len() > MAX_LINE => {
                        break format!("the server sent a line over {MAX_LINE} bytes");
                    }
                    Ok(_) => {
                        let text = line.trim();
                        if text.is_empty() {
                            continue;
                        }
                        match serde_json::from_str::<Value>(text) {
                            Ok(message) => {
                                if inbound
                                    .send(Inbound {
                                        origin: None,
                                        message,
                                    })
                                    .await
                                    .is_err()
                                {
                                    break "gateway stopped reading".into();
                                }
                            }
                            // Servers sometimes log to stdout; skip, do not die.
                            Err(_) => {
                                tracing::debug!(target: "behavry_mcp::stdio", "non-JSON line from server: {}", text.chars().take(200).collect::<String>())
                            }
                        }
                    }
                    Err(e) => break format!("reading the server's output failed: {e}"),
                }
            };
            let _ = closed.send(why).await;
        });
        let name = name.to_string();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(upstream = %name, "stderr: {line}");
            }
        });
        Ok(Self {
            stdin: Mutex::new(Some(stdin)),
            child: Mutex::new(Some(child)),
        })
    }
}

#[async_trait::async_trait]
impl Link for StdioLink {
    async fn send(&self, message: Value, _origin: Option<u64>) -> Result<(), String> {
        let mut bytes = serde_json::to_vec(&message).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        let mut guard = self.stdin.lock().await;
        let stdin = guard.as_mut().ok_or("the server process has exited")?;
        stdin
            .write_all(&bytes)
            .await
            .map_err(|e| format!("writing to the server failed: {e}"))?;
        stdin
            .flush()
            .await
            .map_err(|e| format!("writing to the server failed: {e}"))
    }

    async fn close(&self) {
        self.stdin.lock().await.take();
        if let Some(mut child) = self.child.lock().await.take() {
            // Closing stdin asks it to exit; give it a moment, then kill.
            if tokio::time::timeout(std::time::Duration::from_secs(2), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}
