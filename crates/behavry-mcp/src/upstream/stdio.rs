//! Upstream over stdio: the gateway runs the server as a child process and
//! speaks newline-delimited JSON-RPC on its stdin and stdout.

use std::path::PathBuf;
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
/// to reach the network (proxies, CA bundles). `HOME` is the server's own
/// working directory, not the gateway's.
const INHERITED_ENV: &[&str] = &[
    "PATH",
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

/// How a server process is confined. The defaults confine nothing; the
/// gateway fills them in from the operator's settings.
#[derive(Clone, Debug, Default)]
pub struct Sandbox {
    /// The process's working directory and `HOME`, created when missing.
    pub workdir: Option<PathBuf>,
    /// The user and group ids to run as (switching needs root).
    pub run_as: Option<(u32, u32)>,
    /// Limits set before the program starts (`RLIMIT_NOFILE`).
    pub max_open_files: Option<u64>,
    /// `RLIMIT_NPROC`: counts every process of the user, so it is only
    /// meaningful for a user of the servers' own.
    pub max_processes: Option<u64>,
}

impl Sandbox {
    /// The command line that applies the limits, then becomes the
    /// program. The limits are set by a shell in the child before `exec`,
    /// so nothing the program does runs without them (and the gateway
    /// needs no unsafe `pre_exec` hook).
    fn wrap(&self, command: &str, args: &[String]) -> (String, Vec<String>) {
        if self.max_open_files.is_none() && self.max_processes.is_none() {
            return (command.to_string(), args.to_vec());
        }
        let mut script = String::from("ulimit -c 0");
        if let Some(n) = self.max_open_files {
            script.push_str(&format!(" && ulimit -n {n}"));
        }
        if let Some(n) = self.max_processes {
            // bash spells the process limit -u; dash and busybox sh, -p.
            script.push_str(&format!(
                " && {{ ulimit -u {n} 2>/dev/null || ulimit -p {n}; }}"
            ));
        }
        script.push_str(" && exec \"$0\" \"$@\"");
        let mut wrapped = vec!["-c".to_string(), script, command.to_string()];
        wrapped.extend(args.iter().cloned());
        ("/bin/sh".to_string(), wrapped)
    }
}

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
        sandbox: &Sandbox,
        channels: LinkChannels,
    ) -> Result<Self, String> {
        let (program, argv) = sandbox.wrap(command, args);
        let mut cmd = Command::new(&program);
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
        if let Some(dir) = &sandbox.workdir {
            prepare_workdir(dir, sandbox.run_as)?;
            cmd.current_dir(dir).env("HOME", dir);
        }
        if let Some((uid, gid)) = sandbox.run_as {
            // std drops supplementary groups too when root switches user.
            cmd.uid(uid).gid(gid);
        }
        cmd.args(&argv)
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

/// Creates the working directory, private to the user the server runs as.
fn prepare_workdir(dir: &std::path::Path, run_as: Option<(u32, u32)>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| format!("cannot prepare the working directory: {e}");
    std::fs::create_dir_all(dir).map_err(fail)?;
    // Never follow a link here: ownership would go to whatever it names.
    if !std::fs::symlink_metadata(dir).map_err(fail)?.is_dir() {
        return Err("the working directory is not a directory".into());
    }
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(fail)?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)
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
