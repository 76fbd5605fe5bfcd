//! Programs the gateway may run as stdio MCP servers, and how it runs them.
//!
//! Running a process on the gateway host is the platform operator's
//! decision, never a tenant's: a tenant admin can only enable an entry of
//! the operator's catalogue (`BEHAVRY_STDIO_CATALOG`), passing values for
//! the environment variables that entry declares. Platform operators can
//! also register a server with any command for a tenant. Whatever runs is
//! confined by a [`Launcher`]: a cleared environment, a working directory
//! of its own outside the data directory, resource limits, and, when the
//! gateway runs as root, an unprivileged user that cannot read the
//! gateway's data directory or keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use behavry_core::TenantId;
use behavry_core::config::Settings;
use behavry_mcp::upstream::Sandbox;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Open files a server process may hold.
const MAX_OPEN_FILES: u64 = 1024;
/// Processes and threads all servers together may run when they have a
/// user of their own.
const MAX_PROCESSES: u64 = 4096;

/// One program the operator offers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The program and its arguments, fixed by the operator.
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment set by the operator (not shown to tenants).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables a tenant may set when enabling the entry (its own API
    /// keys, say). Nothing else of the environment is a tenant's to set.
    #[serde(default)]
    pub tenant_env: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    servers: Vec<CatalogEntry>,
}

/// Variables that make a program load other code, or change which program
/// runs: a tenant's value for one of these would be a way to run code of
/// its choosing, so no entry may offer them to tenants.
fn loads_code(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "LD_",
        "DYLD_",
        "PYTHON",
        "PERL5",
        "PERL_",
        "RUBY",
        "NODE_",
        "BASH_",
        "JAVA_",
        "GIT_",
        "NPM_CONFIG_",
    ]
    .iter()
    .any(|p| upper.starts_with(p))
        || matches!(
            upper.as_str(),
            "PATH"
                | "HOME"
                | "ENV"
                | "SHELLOPTS"
                | "IFS"
                | "CLASSPATH"
                | "JDK_JAVA_OPTIONS"
                | "_JAVA_OPTIONS"
                | "GCONV_PATH"
                | "NODE_OPTIONS"
                | "UV_INDEX_URL"
                | "PIP_INDEX_URL"
        )
}

/// The operator's catalogue.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    entries: BTreeMap<String, CatalogEntry>,
}

impl Catalog {
    /// Reads a catalogue file (YAML or JSON), reporting every problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the stdio catalogue {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("stdio catalogue {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: CatalogFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let mut entries = BTreeMap::new();
        let mut problems = Vec::new();
        for entry in file.servers {
            if entry.name.is_empty()
                || entry.name.len() > 64
                || !entry
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                problems.push(format!(
                    "entry `{}`: names are 1 to 64 letters, digits, dashes, dots or underscores",
                    entry.name
                ));
            }
            if entry.command.trim().is_empty() {
                problems.push(format!("entry `{}` has no command", entry.name));
            }
            for var in &entry.tenant_env {
                if loads_code(var) {
                    problems.push(format!(
                        "entry `{}`: tenants cannot be given `{var}`, which controls what code runs",
                        entry.name
                    ));
                } else if var.is_empty() || var.contains(['=', '\0']) {
                    problems.push(format!(
                        "entry `{}`: `{var}` is not a variable name",
                        entry.name
                    ));
                }
            }
            if let Some(old) = entries.insert(entry.name.clone(), entry) {
                problems.push(format!("entry `{}` appears twice", old.name));
            }
        }
        if problems.is_empty() {
            Ok(Catalog { entries })
        } else {
            Err(problems.join("; "))
        }
    }

    pub fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.get(name)
    }

    pub fn entries(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.entries.values()
    }
}

/// How this replica starts stdio servers.
#[derive(Clone, Debug)]
pub struct Launcher {
    pub catalog: Catalog,
    /// `BEHAVRY_ALLOW_STDIO_SERVERS`.
    pub enabled: bool,
    workdirs: PathBuf,
    run_as: Option<(u32, u32)>,
}

/// The effective user id of this process: the owner of its `/proc` entry.
fn effective_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// A user's ids from the password database.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// Creates the folder that holds the servers' working directories, or
/// checks the one there: a real directory (not a link someone planted in a
/// shared temporary directory) owned by the gateway's user, that others
/// may pass through but not list or write to.
fn prepare_workdirs(dir: &Path, euid: Option<u32>) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fail = |e: std::io::Error| format!("stdio working directories ({}): {e}", dir.display());
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            std::fs::create_dir_all(dir).map_err(|_| fail(e))?;
        }
    }
    let meta = std::fs::symlink_metadata(dir).map_err(fail)?;
    if !meta.is_dir() || euid.is_some_and(|uid| meta.uid() != uid) {
        return Err(format!(
            "{} must be a directory owned by the gateway's user (set BEHAVRY_STDIO_WORKDIR elsewhere)",
            dir.display()
        ));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).map_err(fail)
}

impl Launcher {
    pub fn from_settings(settings: &Settings) -> Result<Self, String> {
        let catalog = match &settings.stdio_catalog {
            Some(path) => Catalog::load(path)?,
            None => Catalog::default(),
        };
        let workdirs = settings
            .stdio_workdir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("behavry-stdio"));
        let euid = effective_uid();
        prepare_workdirs(&workdirs, euid)?;
        let run_as = if euid == Some(0) {
            let ids = lookup_user(&settings.stdio_user).ok_or_else(|| {
                format!(
                    "BEHAVRY_STDIO_USER: no user `{}` on this host; stdio servers must not run as root",
                    settings.stdio_user
                )
            })?;
            if ids.0 == 0 {
                return Err("BEHAVRY_STDIO_USER must not be root".into());
            }
            Some(ids)
        } else {
            tracing::warn!(
                "the gateway does not run as root, so stdio servers run as its own user and could read its data directory; run it as root with BEHAVRY_STDIO_USER, or offer only programs you trust"
            );
            None
        };
        Ok(Launcher {
            catalog,
            enabled: settings.allow_stdio_servers,
            workdirs,
            run_as,
        })
    }

    /// Whether server processes run as a user other than the gateway's.
    pub fn isolated(&self) -> bool {
        self.run_as.is_some()
    }

    /// The confinement of one tenant's server.
    pub fn sandbox(&self, tenant: TenantId, server: Uuid) -> Sandbox {
        Sandbox {
            workdir: Some(self.workdirs.join(format!("{}-{server}", tenant.0))),
            run_as: self.run_as,
            max_open_files: Some(MAX_OPEN_FILES),
            max_processes: self.run_as.map(|_| MAX_PROCESSES),
        }
    }
}

/// What a tenant admin sees of the catalogue.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CatalogView {
    pub servers: Vec<CatalogEntryView>,
    /// Whether this gateway runs stdio servers at all.
    pub enabled: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CatalogEntryView {
    pub name: String,
    pub description: Option<String>,
    /// Variables a tenant may set when enabling the entry.
    pub tenant_env: Vec<String>,
}

impl CatalogView {
    pub fn of(launcher: &Launcher) -> Self {
        CatalogView {
            enabled: launcher.enabled,
            servers: launcher
                .catalog
                .entries()
                .map(|e| CatalogEntryView {
                    name: e.name.clone(),
                    description: e.description.clone(),
                    tenant_env: e.tenant_env.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_that_hand_tenants_code_loading_variables_are_refused() {
        let err = Catalog::parse(
            "servers:\n  - name: gh\n    command: node\n    tenant_env: [GITHUB_TOKEN, NODE_OPTIONS, LD_PRELOAD]\n",
        )
        .unwrap_err();
        assert!(
            err.contains("NODE_OPTIONS") && err.contains("LD_PRELOAD"),
            "{err}"
        );
        assert!(!err.contains("GITHUB_TOKEN"), "{err}");
    }

    #[test]
    fn a_valid_catalogue_loads() {
        let c = Catalog::parse(
            "servers:\n  - name: everything\n    command: node\n    args: [index.js, stdio]\n    env: {A: b}\n    tenant_env: [API_KEY]\n",
        )
        .unwrap();
        let e = c.get("everything").unwrap();
        assert_eq!(e.args, ["index.js", "stdio"]);
        assert!(Catalog::parse("servers:\n  - name: x\n    command: ''\n").is_err());
        assert!(
            Catalog::parse("servers:\n  - name: x\n    command: a\n    shell: true\n").is_err()
        );
    }
}
