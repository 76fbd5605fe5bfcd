//! Blast-radius limits: rules on single calls that would do too much
//! (recursive deletes near the root, mail to many, bulk changes, writes to
//! configuration and credential paths and to protected files), and
//! per-agent windows whose crossing freezes the agent.
//!
//! Windows are counted in memory on each replica, in fixed one-hour
//! periods; an agent spread over several replicas is measured per replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use behavry_core::{AgentId, AgentWindows, BlastRadiusConfig};
use behavry_policy::Action;
use serde_json::Value;

/// What a rule decided about one call.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Deny(String),
    Escalate(String),
}

/// Argument names that hold a path.
const PATH_KEYS: &[&str] = &[
    "path",
    "paths",
    "file",
    "filename",
    "file_path",
    "filepath",
    "target",
    "dir",
    "directory",
    "folder",
    "destination",
    "dest",
    "source",
    "name",
    "uri",
];
/// Argument names that hold recipients.
const RECIPIENT_KEYS: &[&str] = &["to", "cc", "bcc", "recipients", "emails", "addresses"];
/// Argument names that hold a shell command.
const COMMAND_KEYS: &[&str] = &["command", "cmd", "script", "shell", "args"];
/// Numeric argument names that say how many items a call acts on.
const COUNT_KEYS: &[&str] = &["count", "limit", "quantity", "batch_size", "max_items"];

/// The rules on one call; `None` when none applies.
pub fn assess(cfg: &BlastRadiusConfig, action: Action, args: &Value) -> Option<Verdict> {
    if !cfg.enabled {
        return None;
    }
    let Value::Object(map) = args else {
        return None;
    };
    // Recursive deletes: a `recursive` flag on a delete, or `rm -r` in a
    // command, of a path too close to the root.
    let recursive_flag = map.iter().any(|(k, v)| {
        matches!(k.as_str(), "recursive" | "recurse" | "force_recursive") && v == &Value::Bool(true)
    });
    let mut deleted: Vec<String> = Vec::new();
    if action == Action::Delete && recursive_flag {
        deleted.extend(strings_under(map, PATH_KEYS));
    }
    for command in strings_under(map, COMMAND_KEYS) {
        deleted.extend(rm_recursive_targets(&command));
    }
    for path in &deleted {
        let depth = depth(path);
        if depth < cfg.min_recursive_delete_depth as usize {
            return Some(Verdict::Deny(format!(
                "recursive delete of `{path}` (depth {depth}; deletes shallower than {} are refused)",
                cfg.min_recursive_delete_depth
            )));
        }
    }

    // Messages to many recipients.
    let recipients: usize = map
        .iter()
        .filter(|(k, _)| RECIPIENT_KEYS.contains(&k.to_ascii_lowercase().as_str()))
        .map(|(_, v)| match v {
            Value::Array(items) => items.len(),
            Value::String(s) => s.split([',', ';']).filter(|p| !p.trim().is_empty()).count(),
            _ => 0,
        })
        .sum();
    if recipients > cfg.max_recipients as usize {
        return Some(Verdict::Escalate(format!(
            "a message to {recipients} recipients (more than {})",
            cfg.max_recipients
        )));
    }

    if !matches!(
        action,
        Action::Write | Action::Delete | Action::Send | Action::Execute
    ) {
        return None;
    }
    // Bulk changes.
    let bulk = map
        .iter()
        .map(|(k, v)| match v {
            Value::Array(items) => items.len() as u64,
            Value::Number(n) if COUNT_KEYS.contains(&k.to_ascii_lowercase().as_str()) => {
                n.as_u64().unwrap_or(0)
            }
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    if bulk > u64::from(cfg.max_bulk_items) {
        return Some(Verdict::Escalate(format!(
            "a bulk action on {bulk} items (more than {})",
            cfg.max_bulk_items
        )));
    }
    if action == Action::Execute {
        return None;
    }
    // Writes to protected paths and files.
    for path in strings_under(map, PATH_KEYS) {
        if let Some(p) = cfg.protected_paths.iter().find(|p| under(&path, p)) {
            return Some(Verdict::Escalate(format!(
                "a {} under the protected path `{p}` (`{path}`)",
                action.as_str()
            )));
        }
        let base = path.rsplit(['/', '\\']).next().unwrap_or(&path);
        let stem = base.split_once('.').map_or(base, |(s, _)| s);
        if let Some(n) = cfg
            .protected_names
            .iter()
            .find(|n| base == n.as_str() || (!stem.is_empty() && stem == n.as_str()))
        {
            return Some(Verdict::Escalate(format!(
                "a {} of the protected file `{n}` (`{path}`)",
                action.as_str()
            )));
        }
    }
    None
}

/// String values under the given keys (one level of nesting, arrays of
/// strings included).
fn strings_under(map: &serde_json::Map<String, Value>, keys: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut take = |v: &Value| match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => {
            out.extend(items.iter().filter_map(|i| i.as_str().map(str::to_string)))
        }
        _ => {}
    };
    for (k, v) in map {
        if keys.contains(&k.to_ascii_lowercase().as_str()) {
            take(v);
        } else if let Value::Object(inner) = v {
            for (k, v) in inner {
                if keys.contains(&k.to_ascii_lowercase().as_str()) {
                    take(v);
                }
            }
        }
    }
    out
}

/// The targets of `rm` with a recursive flag in a shell command.
fn rm_recursive_targets(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in command.split([';', '&', '|', '\n']) {
        let words: Vec<&str> = part.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "rm" || w.ends_with("/rm")) else {
            continue;
        };
        let args = &words[at + 1..];
        let recursive = args.iter().any(|a| {
            (a.starts_with('-') && !a.starts_with("--") && a.contains(['r', 'R']))
                || *a == "--recursive"
        });
        if recursive {
            out.extend(
                args.iter()
                    .filter(|a| !a.starts_with('-'))
                    .map(|a| a.to_string()),
            );
        }
    }
    out
}

/// Path components below the root; a home directory (`~`) counts as the
/// two components it stands for (`/home/user`).
fn depth(path: &str) -> usize {
    let trimmed = path.trim().trim_matches(['"', '\'']);
    let (base, rest) = match trimmed.strip_prefix('~') {
        Some(rest) => (2, rest),
        None => (0, trimmed),
    };
    base + rest
        .split(['/', '\\'])
        .filter(|c| !c.is_empty() && *c != "." && *c != "*")
        .count()
}

/// Whether `path` is `protected` or inside it. `~/x` also matches `x`
/// under any home directory (`/home/u/x`, `/root/x`).
fn under(path: &str, protected: &str) -> bool {
    let path = path.trim();
    let inside = |p: &str, prefix: &str| {
        p == prefix || p.strip_prefix(prefix).is_some_and(|r| r.starts_with('/'))
    };
    if inside(path, protected.trim_end_matches('/')) {
        return true;
    }
    if let Some(rel) = protected.strip_prefix("~/") {
        let rel = rel.trim_end_matches('/');
        let homes = path
            .strip_prefix("/home/")
            .and_then(|r| r.split_once('/').map(|(_, r)| r))
            .or_else(|| path.strip_prefix("/root/"))
            .or_else(|| {
                path.strip_prefix("/Users/")
                    .and_then(|r| r.split_once('/').map(|(_, r)| r))
            });
        return homes.is_some_and(|r| inside(r, rel));
    }
    false
}

/// Per-agent counters for the current hour.
struct Hour {
    start: Instant,
    destructive: u64,
    bytes_out: u64,
    dlp_findings: u64,
}

#[derive(Default)]
pub struct Windows {
    agents: Mutex<HashMap<AgentId, Hour>>,
}

/// What one call adds to its agent's windows.
pub struct Usage {
    pub session_calls: u64,
    pub destructive: bool,
    pub bytes_out: u64,
    pub dlp_findings: u64,
}

impl Windows {
    /// Counts a call; returns which window it crosses, if any.
    pub fn count(&self, agent: AgentId, limits: &AgentWindows, usage: Usage) -> Option<String> {
        if limits.calls_per_session > 0 && usage.session_calls > limits.calls_per_session {
            return Some(format!(
                "more than {} requests in one session",
                limits.calls_per_session
            ));
        }
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let hour = agents.entry(agent).or_insert(Hour {
            start: now,
            destructive: 0,
            bytes_out: 0,
            dlp_findings: 0,
        });
        if now.duration_since(hour.start) >= Duration::from_secs(3600) {
            *hour = Hour {
                start: now,
                destructive: 0,
                bytes_out: 0,
                dlp_findings: 0,
            };
        }
        hour.destructive += u64::from(usage.destructive);
        hour.bytes_out += usage.bytes_out;
        hour.dlp_findings += usage.dlp_findings;
        let crossed = |limit: u64, value: u64| limit > 0 && value > limit;
        if crossed(limits.destructive_per_hour, hour.destructive) {
            Some(format!(
                "more than {} destructive actions in an hour",
                limits.destructive_per_hour
            ))
        } else if crossed(limits.bytes_out_per_hour, hour.bytes_out) {
            Some(format!(
                "more than {} bytes sent out in an hour",
                limits.bytes_out_per_hour
            ))
        } else if crossed(limits.dlp_findings_per_hour, hour.dlp_findings) {
            Some(format!(
                "more than {} data-protection findings in an hour",
                limits.dlp_findings_per_hour
            ))
        } else {
            None
        }
    }

    /// Starts the agent's windows afresh (after an admin unfreezes it).
    pub fn reset(&self, agent: AgentId) {
        self.agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&agent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> BlastRadiusConfig {
        BlastRadiusConfig::default()
    }

    #[test]
    fn shallow_recursive_deletes_are_denied() {
        let deny = |action, args| matches!(assess(&cfg(), action, &args), Some(Verdict::Deny(_)));
        assert!(deny(
            Action::Delete,
            json!({"path": "/srv", "recursive": true})
        ));
        assert!(deny(
            Action::Delete,
            json!({"path": "~", "recursive": true})
        ));
        assert!(deny(
            Action::Execute,
            json!({"command": "cd /tmp && rm -rf /var/lib"})
        ));
        assert!(deny(Action::Execute, json!({"command": "rm -fr ~/"})));
        assert!(!deny(
            Action::Delete,
            json!({"path": "/srv/app/cache", "recursive": true})
        ));
        assert!(!deny(
            Action::Delete,
            json!({"path": "/srv", "recursive": false})
        ));
        assert!(!deny(Action::Execute, json!({"command": "rm /srv/file"})));
        assert!(!deny(
            Action::Execute,
            json!({"command": "rm -rf /srv/app/build"})
        ));
    }

    #[test]
    fn wide_and_sensitive_actions_are_escalated() {
        let esc =
            |action, args| matches!(assess(&cfg(), action, &args), Some(Verdict::Escalate(_)));
        let many: Vec<String> = (0..11).map(|i| format!("u{i}@example.com")).collect();
        assert!(esc(Action::Send, json!({"to": many, "subject": "hi"})));
        assert!(esc(
            Action::Send,
            json!({"to": "a@x.io", "cc": "b@x.io, c@x.io, d@x.io, e@x.io, f@x.io, g@x.io, h@x.io, i@x.io, j@x.io, k@x.io"})
        ));
        assert!(!esc(Action::Send, json!({"to": ["a@x.io", "b@x.io"]})));
        let ids: Vec<u32> = (0..51).collect();
        assert!(esc(Action::Delete, json!({"ids": ids})));
        assert!(!esc(
            Action::Read,
            json!({"ids": (0..51).collect::<Vec<u32>>()})
        ));
        assert!(esc(
            Action::Write,
            json!({"path": "/etc/hosts", "content": "x"})
        ));
        assert!(esc(
            Action::Write,
            json!({"path": "/home/ana/.ssh/authorized_keys"})
        ));
        assert!(esc(Action::Write, json!({"path": "~/.aws/credentials"})));
        assert!(esc(Action::Write, json!({"path": "/srv/app/.env"})));
        assert!(esc(Action::Delete, json!({"path": "/agents/MEMORY.md"})));
        assert!(!esc(Action::Write, json!({"path": "/etc2/file"})));
        assert!(!esc(Action::Write, json!({"path": "/srv/app/notes.md"})));
        assert!(!esc(Action::Read, json!({"path": "/etc/hosts"})));
        let off = BlastRadiusConfig {
            enabled: false,
            ..cfg()
        };
        assert_eq!(
            assess(&off, Action::Write, &json!({"path": "/etc/hosts"})),
            None
        );
    }

    #[test]
    fn windows_freeze_on_crossing() {
        let w = Windows::default();
        let agent = AgentId::new();
        let limits = AgentWindows {
            destructive_per_hour: 2,
            ..AgentWindows::default()
        };
        let usage = |destructive| Usage {
            session_calls: 1,
            destructive,
            bytes_out: 10,
            dlp_findings: 0,
        };
        assert_eq!(w.count(agent, &limits, usage(true)), None);
        assert_eq!(w.count(agent, &limits, usage(false)), None);
        assert_eq!(w.count(agent, &limits, usage(true)), None);
        assert!(w.count(agent, &limits, usage(true)).is_some());
        w.reset(agent);
        assert_eq!(w.count(agent, &limits, usage(true)), None);
        let per_session = AgentWindows {
            calls_per_session: 3,
            ..AgentWindows::default()
        };
        let calls = |n| Usage {
            session_calls: n,
            destructive: false,
            bytes_out: 0,
            dlp_findings: 0,
        };
        assert_eq!(w.count(agent, &per_session, calls(3)), None);
        assert!(w.count(agent, &per_session, calls(4)).is_some());
    }
}
