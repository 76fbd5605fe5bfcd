//! Typed configuration.
//!
//! Settings are layered: built-in defaults, then an optional `.env` file, then
//! the process environment, then command-line flags. This module only turns a
//! map of variables into checked [`Settings`]; reading files and the process
//! environment is the binary's job.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;
use crate::validate::password_problem;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl Environment {
    pub fn as_str(&self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Production => "production",
        }
    }
}

/// Where data lives. Chosen once at start-up.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite { path: PathBuf },
    Postgres { url: Secret },
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite { path } => write!(f, "Sqlite({})", path.display()),
            DatabaseUrl::Postgres { .. } => f.write_str("Postgres([redacted])"),
        }
    }
}

impl DatabaseUrl {
    /// Accepts `sqlite://path`, `sqlite:path`, `postgres://…`, `postgresql://…`
    /// and the `postgresql+asyncpg://…` spelling used by older deployments.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if let Some(rest) = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err("BEHAVRY_DB_URL: sqlite URL has no file path".into());
            }
            return Ok(DatabaseUrl::Sqlite {
                path: PathBuf::from(path),
            });
        }
        for prefix in ["postgresql+asyncpg://", "postgresql://", "postgres://"] {
            if let Some(rest) = raw.strip_prefix(prefix) {
                if rest.is_empty() {
                    return Err("BEHAVRY_DB_URL: PostgreSQL URL has no host".into());
                }
                return Ok(DatabaseUrl::Postgres {
                    url: Secret::new(format!("postgresql://{rest}")),
                });
            }
        }
        Err(format!(
            "BEHAVRY_DB_URL: unsupported scheme in `{}` (expected postgresql://… or sqlite://…)",
            raw.split("://").next().unwrap_or(raw)
        ))
    }
}

/// Every setting the gateway reads. Secrets are wrapped in [`Secret`] so the
/// derived `Debug` never prints them.
#[derive(Clone, Debug)]
pub struct Settings {
    pub env: Environment,
    pub database: DatabaseUrl,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub dashboard_listen: SocketAddr,
    pub opa_url: Option<String>,
    pub admin_username: String,
    pub admin_password: Option<Secret>,
    pub secret_key: Option<Secret>,
    /// The key that wraps each tenant's payload data key (`encrypted`
    /// payload storage). Without it, one is derived from SECRET_KEY.
    pub payload_master_key: Option<Secret>,
    pub jwt_private_key: Option<Secret>,
    pub jwt_public_key: Option<String>,
    pub jwt_issuer: String,
    pub admin_token_ttl: Duration,
    pub sentry_dsn: Option<Secret>,
    pub metrics_token: Option<Secret>,
    pub build_sha: Option<String>,
    pub ollama_url: String,
    pub bcrypt_cost: u32,
    pub db_pool_size: u32,
    /// Prefix of the PostgreSQL roles Behavry provisions (`<prefix>_app`,
    /// `<prefix>_superadmin`, `<prefix>_owner`).
    pub db_role_prefix: String,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// Take the client address from the last `X-Forwarded-For` hop (only
    /// behind a trusted reverse proxy).
    pub trust_forwarded_for: bool,
    pub debug: bool,
    /// Whether tenants may register stdio servers (processes run on the
    /// gateway host). Turn off for shared multi-tenant deployments.
    pub allow_stdio_servers: bool,
    pub opa_timeout: Duration,
    /// How long an escalated call is held open waiting for a decision
    /// before the agent is told to retry (keep it under the clients'
    /// request time-outs).
    pub escalation_hold: Duration,
    /// The longest an escalation waits for a decision, whatever the
    /// agent's risk tier allows.
    pub escalation_max_timeout: Duration,
    /// How often each agent's baseline and risk score are recomputed.
    pub risk_interval: Duration,
    /// Refuse calls when the external policy engine cannot answer.
    pub opa_fail_closed: bool,
    /// Burst allowance on top of the per-agent rate (calls).
    pub rate_limit_burst: u32,
    /// Findings in tool-call arguments at or above this severity (`low`,
    /// `medium`, `high`, `critical`) block the call before policy.
    pub dlp_block_severity: String,
    /// Tool output whose injection findings reach this severity is withheld
    /// from the agent (default `critical`).
    pub inbound_block_severity: String,
    /// Where alerts are sent (`BEHAVRY_WEBHOOK_URL`, comma-separated).
    pub webhook_urls: Vec<String>,
    /// Signs webhook bodies (`X-Behavry-Signature`); required with URLs.
    pub webhook_secret: Option<Secret>,
    /// Alerts below this severity are not sent.
    pub webhook_min_severity: crate::AlertSeverity,
    /// Reserved networks that connections made for tenants may reach
    /// (`BEHAVRY_OUTBOUND_ALLOW`).
    pub outbound: crate::net::OutboundPolicy,
    /// The operator's catalogue of stdio servers tenants may enable
    /// (`BEHAVRY_STDIO_CATALOG`, a YAML or JSON file).
    pub stdio_catalog: Option<PathBuf>,
    /// The account stdio servers run as when the gateway runs as root
    /// (`BEHAVRY_STDIO_USER`, default `nobody`).
    pub stdio_user: String,
    /// Where stdio servers get their working directories
    /// (`BEHAVRY_STDIO_WORKDIR`, default a `behavry-stdio` folder in the
    /// system's temporary directory); never inside the data directory.
    pub stdio_workdir: Option<PathBuf>,
    /// Who may create a tenant through `POST /api/v1/signup`.
    pub signup: SignupMode,
    /// Serve `/metrics` without a token in production.
    pub metrics_public: bool,
}

/// Who may create a tenant through self-service signup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignupMode {
    /// Anyone who reaches the API (a multi-tenant service).
    Open,
    /// Only while no tenant exists: the first-run onboarding.
    FirstRun,
    /// Never; platform operators provision tenants.
    Closed,
}

impl SignupMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            SignupMode::Open => "open",
            SignupMode::FirstRun => "first_run",
            SignupMode::Closed => "closed",
        }
    }
}

/// Variables this product family uses. Unknown `BEHAVRY_*` names are warned
/// about (they are usually typos); names here are not, even where this build
/// does not act on them yet.
pub const KNOWN_VARS: &[&str] = &[
    "BEHAVRY_ENV",
    "BEHAVRY_DB_URL",
    "BEHAVRY_DATA_DIR",
    "BEHAVRY_LISTEN",
    "BEHAVRY_DASHBOARD_LISTEN",
    "BEHAVRY_OPA_URL",
    "BEHAVRY_OPA_TIMEOUT_SECONDS",
    "BEHAVRY_OPA_FAIL_CLOSED",
    "BEHAVRY_ADMIN_USERNAME",
    "BEHAVRY_ADMIN_PASSWORD",
    "BEHAVRY_JWT_PRIVATE_KEY",
    "BEHAVRY_JWT_PUBLIC_KEY",
    "BEHAVRY_JWT_ISSUER",
    "BEHAVRY_JWT_ALGORITHM",
    "BEHAVRY_ADMIN_TOKEN_TTL_SECONDS",
    "BEHAVRY_METRICS_TOKEN",
    "BEHAVRY_OLLAMA_URL",
    "BEHAVRY_BCRYPT_COST",
    "BEHAVRY_DB_POOL_SIZE",
    "BEHAVRY_DB_ROLE_PREFIX",
    "BEHAVRY_MIGRATE_ON_START",
    "BEHAVRY_TRUST_FORWARDED_FOR",
    "BEHAVRY_DEBUG",
    "BEHAVRY_LOG_FORMAT",
    "BEHAVRY_RATE_LIMIT_RPM",
    "BEHAVRY_RATE_LIMIT_BURST",
    "BEHAVRY_DLP_BLOCK_SEVERITY",
    "BEHAVRY_INBOUND_BLOCK_SEVERITY",
    "BEHAVRY_DEPLOYMENT_MODE",
    "BEHAVRY_WEBHOOK_URL",
    "BEHAVRY_WEBHOOK_SECRET",
    "BEHAVRY_WEBHOOK_MIN_SEVERITY",
    "BEHAVRY_SERVER_URL",
    "BEHAVRY_CLIENT_ID",
    "BEHAVRY_CLIENT_SECRET",
    "BEHAVRY_ENROLLMENT_TOKEN",
    "BEHAVRY_TEST_DATABASE_URL",
    "BEHAVRY_ALLOW_STDIO_SERVERS",
    "BEHAVRY_PAYLOAD_MASTER_KEY",
    "BEHAVRY_ESCALATION_HOLD_SECONDS",
    "BEHAVRY_ESCALATION_MAX_TIMEOUT_SECONDS",
    "BEHAVRY_RISK_INTERVAL_SECONDS",
    "BEHAVRY_OUTBOUND_ALLOW",
    "BEHAVRY_STDIO_CATALOG",
    "BEHAVRY_STDIO_USER",
    "BEHAVRY_STDIO_WORKDIR",
    "BEHAVRY_SIGNUP",
    "BEHAVRY_METRICS_PUBLIC",
];

/// Names this product family uses that this version does not act on: each
/// one set is reported at start, so nobody relies on it silently.
const UNSUPPORTED_VARS: &[(&str, &str)] = &[
    (
        "BEHAVRY_RATE_LIMIT_RPM",
        "rates are set per tenant (max_rpm_per_agent in the tenant's configuration)",
    ),
    (
        "BEHAVRY_DEPLOYMENT_MODE",
        "this version runs every replica as a standalone gateway",
    ),
    ("BEHAVRY_OLLAMA_URL", "this version has no Ollama proxy"),
    (
        "BEHAVRY_SERVER_URL",
        "it is read by agent SDKs, not by the gateway",
    ),
    (
        "BEHAVRY_CLIENT_ID",
        "it is read by agent SDKs, not by the gateway",
    ),
    (
        "BEHAVRY_CLIENT_SECRET",
        "it is read by agent SDKs, not by the gateway",
    ),
    (
        "BEHAVRY_ENROLLMENT_TOKEN",
        "it is read by agent SDKs, not by the gateway",
    ),
];

/// Non-`BEHAVRY_` variables the deployment guide defines.
pub const OTHER_VARS: &[&str] = &["SECRET_KEY", "SENTRY_DSN", "BUILD_SHA"];

/// Result of reading configuration: the settings plus warnings worth logging.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

impl Settings {
    /// Builds settings from variables (already merged from `.env`, the
    /// environment and flags). Reports every problem at once.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Loaded, Vec<String>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let get = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        for name in vars.keys() {
            if name.starts_with("BEHAVRY_") && !KNOWN_VARS.contains(&name.as_str()) {
                warnings.push(format!("unknown configuration variable {name} is ignored"));
            }
        }
        for (name, why) in UNSUPPORTED_VARS {
            if get(name).is_some() {
                warnings.push(format!(
                    "{name} is set but not supported by this version, so it has no effect: {why}"
                ));
            }
        }

        let env = match get("BEHAVRY_ENV").as_deref() {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                errors.push(format!(
                    "BEHAVRY_ENV must be `development` or `production`, not `{other}`"
                ));
                Environment::Development
            }
        };
        let production = env == Environment::Production;

        let data_dir = PathBuf::from(get("BEHAVRY_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database = match get("BEHAVRY_DB_URL") {
            None => DatabaseUrl::Sqlite {
                path: data_dir.join("behavry.db"),
            },
            Some(raw) => DatabaseUrl::parse(&raw).unwrap_or_else(|e| {
                errors.push(e);
                DatabaseUrl::Sqlite {
                    path: data_dir.join("behavry.db"),
                }
            }),
        };

        // Loopback by default in development; a production deployment sits
        // behind a reverse proxy or in a container and must be reachable.
        let default_host = if production { "0.0.0.0" } else { "127.0.0.1" };
        let mut addr = |name: &str, port: u16| -> SocketAddr {
            let raw = get(name).unwrap_or_else(|| format!("{default_host}:{port}"));
            raw.parse().unwrap_or_else(|_| {
                errors.push(format!(
                    "{name} must be an address like 127.0.0.1:{port}, not `{raw}`"
                ));
                SocketAddr::from(([127, 0, 0, 1], port))
            })
        };
        let listen = addr("BEHAVRY_LISTEN", 8000);
        let dashboard_listen = addr("BEHAVRY_DASHBOARD_LISTEN", 3000);

        let parse_num = |name: &str, default: u64, min: u64, max: u64, errors: &mut Vec<String>| {
            match get(name) {
                None => default,
                Some(raw) => match raw.parse::<u64>() {
                    Ok(v) if (min..=max).contains(&v) => v,
                    _ => {
                        errors.push(format!(
                            "{name} must be a whole number from {min} to {max}, not `{raw}`"
                        ));
                        default
                    }
                },
            }
        };
        let parse_bool =
            |name: &str, default: bool, errors: &mut Vec<String>| match get(name).as_deref() {
                None => default,
                Some("1" | "true" | "yes" | "on") => true,
                Some("0" | "false" | "no" | "off") => false,
                Some(other) => {
                    errors.push(format!("{name} must be true or false, not `{other}`"));
                    default
                }
            };

        let bcrypt_cost = parse_num("BEHAVRY_BCRYPT_COST", 12, 4, 31, &mut errors) as u32;
        let db_pool_size = parse_num("BEHAVRY_DB_POOL_SIZE", 10, 1, 1000, &mut errors) as u32;
        let admin_token_ttl = Duration::from_secs(parse_num(
            "BEHAVRY_ADMIN_TOKEN_TTL_SECONDS",
            3600,
            60,
            7 * 24 * 3600,
            &mut errors,
        ));
        let migrate_on_start = parse_bool("BEHAVRY_MIGRATE_ON_START", !production, &mut errors);
        let trust_forwarded_for = parse_bool("BEHAVRY_TRUST_FORWARDED_FOR", false, &mut errors);
        let debug = parse_bool("BEHAVRY_DEBUG", false, &mut errors);
        let allow_stdio_servers = parse_bool("BEHAVRY_ALLOW_STDIO_SERVERS", true, &mut errors);
        let opa_fail_closed = parse_bool("BEHAVRY_OPA_FAIL_CLOSED", true, &mut errors);
        let rate_limit_burst =
            parse_num("BEHAVRY_RATE_LIMIT_BURST", 20, 1, 100_000, &mut errors) as u32;
        let mut seconds = |name: &str, default: f64, max: f64| match get(name) {
            None => Duration::from_secs_f64(default),
            Some(raw) => match raw.parse::<f64>() {
                Ok(v) if v > 0.0 && v <= max => Duration::from_secs_f64(v),
                _ => {
                    errors.push(format!(
                        "{name} must be a number of seconds above 0 and at most {max}, not `{raw}`"
                    ));
                    Duration::from_secs_f64(default)
                }
            },
        };
        let opa_timeout = seconds("BEHAVRY_OPA_TIMEOUT_SECONDS", 2.0, 60.0);
        let escalation_hold = seconds("BEHAVRY_ESCALATION_HOLD_SECONDS", 50.0, 3600.0);
        let escalation_max_timeout = seconds(
            "BEHAVRY_ESCALATION_MAX_TIMEOUT_SECONDS",
            86_400.0,
            30.0 * 86_400.0,
        );
        let risk_interval = seconds("BEHAVRY_RISK_INTERVAL_SECONDS", 300.0, 86_400.0);

        let mut severity = |name: &str, default: &str| {
            let value = get(name)
                .map(|v| v.to_ascii_lowercase())
                .unwrap_or_else(|| default.into());
            if !matches!(value.as_str(), "low" | "medium" | "high" | "critical") {
                errors.push(format!(
                    "{name} must be low, medium, high or critical, not `{value}`"
                ));
            }
            value
        };
        let dlp_block_severity = severity("BEHAVRY_DLP_BLOCK_SEVERITY", "high");
        let inbound_block_severity = severity("BEHAVRY_INBOUND_BLOCK_SEVERITY", "critical");

        let webhook_urls: Vec<String> = get("BEHAVRY_WEBHOOK_URL")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        for url in &webhook_urls {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                errors.push(format!(
                    "BEHAVRY_WEBHOOK_URL: `{url}` is not an http:// or https:// URL"
                ));
            } else if production && url.starts_with("http://") {
                warnings.push(format!(
                    "BEHAVRY_WEBHOOK_URL: `{url}` is plain HTTP; alerts cross the network unencrypted"
                ));
            }
        }
        let webhook_secret = get("BEHAVRY_WEBHOOK_SECRET").map(Secret::new);
        if !webhook_urls.is_empty() && webhook_secret.is_none() {
            errors.push(
                "BEHAVRY_WEBHOOK_SECRET is required with BEHAVRY_WEBHOOK_URL (receivers verify X-Behavry-Signature with it)"
                    .into(),
            );
        }
        let webhook_min_severity = match get("BEHAVRY_WEBHOOK_MIN_SEVERITY") {
            None => crate::AlertSeverity::Warning,
            Some(v) => v.to_ascii_lowercase().parse().unwrap_or_else(|_| {
                errors.push(format!(
                    "BEHAVRY_WEBHOOK_MIN_SEVERITY must be info, warning or critical, not `{v}`"
                ));
                crate::AlertSeverity::Warning
            }),
        };

        let outbound = match get("BEHAVRY_OUTBOUND_ALLOW") {
            None if production => crate::net::OutboundPolicy::default(),
            None => crate::net::OutboundPolicy::development(),
            Some(list) => crate::net::OutboundPolicy::parse(&list).unwrap_or_else(|e| {
                errors.push(format!("BEHAVRY_OUTBOUND_ALLOW: {e}"));
                crate::net::OutboundPolicy::default()
            }),
        };
        let signup = match get("BEHAVRY_SIGNUP").as_deref() {
            None | Some("first_run") => SignupMode::FirstRun,
            Some("open") => SignupMode::Open,
            Some("closed") => SignupMode::Closed,
            Some(other) => {
                errors.push(format!(
                    "BEHAVRY_SIGNUP must be open, first_run or closed, not `{other}`"
                ));
                SignupMode::Closed
            }
        };
        let metrics_public = parse_bool("BEHAVRY_METRICS_PUBLIC", false, &mut errors);
        let stdio_workdir = get("BEHAVRY_STDIO_WORKDIR").map(PathBuf::from);
        if let Some(dir) = &stdio_workdir
            && (!dir.is_absolute() || dir.starts_with(&data_dir))
        {
            errors.push(format!(
                "BEHAVRY_STDIO_WORKDIR must be an absolute path outside the data directory, not `{}`",
                dir.display()
            ));
        }

        let db_role_prefix = get("BEHAVRY_DB_ROLE_PREFIX").unwrap_or_else(|| "behavry".into());
        if db_role_prefix.is_empty()
            || db_role_prefix.len() > 40
            || !db_role_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            || db_role_prefix.as_bytes()[0].is_ascii_digit()
        {
            errors.push(format!(
                "BEHAVRY_DB_ROLE_PREFIX must be lowercase letters, digits and underscores, not `{db_role_prefix}`"
            ));
        }

        if let Some(alg) = get("BEHAVRY_JWT_ALGORITHM")
            && alg != "RS256"
        {
            errors.push(format!(
                "BEHAVRY_JWT_ALGORITHM: only RS256 is supported, not `{alg}`"
            ));
        }

        let settings = Settings {
            env,
            database,
            data_dir,
            listen,
            dashboard_listen,
            opa_url: get("BEHAVRY_OPA_URL"),
            admin_username: get("BEHAVRY_ADMIN_USERNAME").unwrap_or_else(|| "admin".into()),
            admin_password: get("BEHAVRY_ADMIN_PASSWORD").map(Secret::new),
            secret_key: get("SECRET_KEY").map(Secret::new),
            payload_master_key: get("BEHAVRY_PAYLOAD_MASTER_KEY").map(Secret::new),
            jwt_private_key: get("BEHAVRY_JWT_PRIVATE_KEY").map(Secret::new),
            jwt_public_key: get("BEHAVRY_JWT_PUBLIC_KEY"),
            jwt_issuer: get("BEHAVRY_JWT_ISSUER").unwrap_or_else(|| "behavry".into()),
            admin_token_ttl,
            sentry_dsn: get("SENTRY_DSN").map(Secret::new),
            metrics_token: get("BEHAVRY_METRICS_TOKEN").map(Secret::new),
            build_sha: get("BUILD_SHA"),
            ollama_url: get("BEHAVRY_OLLAMA_URL")
                .unwrap_or_else(|| "http://localhost:11434".into()),
            bcrypt_cost,
            db_pool_size,
            db_role_prefix,
            migrate_on_start,
            trust_forwarded_for,
            debug,
            allow_stdio_servers,
            opa_timeout,
            escalation_hold,
            escalation_max_timeout,
            risk_interval,
            opa_fail_closed,
            rate_limit_burst,
            dlp_block_severity,
            inbound_block_severity,
            webhook_urls,
            webhook_secret,
            webhook_min_severity,
            outbound,
            stdio_catalog: get("BEHAVRY_STDIO_CATALOG").map(PathBuf::from),
            stdio_user: get("BEHAVRY_STDIO_USER").unwrap_or_else(|| "nobody".into()),
            stdio_workdir,
            signup,
            metrics_public,
        };

        if let Some(k) = &settings.payload_master_key
            && k.expose().len() < 32
        {
            errors.push(format!(
                "BEHAVRY_PAYLOAD_MASTER_KEY must be at least 32 bytes (got {})",
                k.expose().len()
            ));
        }
        if settings.jwt_private_key.is_some() != settings.jwt_public_key.is_some() {
            errors.push(
                "BEHAVRY_JWT_PRIVATE_KEY and BEHAVRY_JWT_PUBLIC_KEY must be given together".into(),
            );
        }
        if let Some(pw) = &settings.admin_password
            && let Some(problem) = password_problem(pw.expose())
        {
            if production {
                errors.push(format!("BEHAVRY_ADMIN_PASSWORD: {problem}"));
            } else {
                warnings.push(format!(
                    "BEHAVRY_ADMIN_PASSWORD is weak ({problem}); production would refuse it"
                ));
            }
        }
        if production {
            errors.extend(settings.production_problems());
        }
        if !settings.opa_fail_closed {
            warnings.push(
                "BEHAVRY_OPA_FAIL_CLOSED=false: calls are ALLOWED whenever the external policy engine cannot answer"
                    .into(),
            );
        }
        if settings.sentry_dsn.is_some() {
            warnings.push(
                "SENTRY_DSN is set, but this build does not send errors to Sentry; errors are logged"
                    .into(),
            );
        }

        if errors.is_empty() {
            Ok(Loaded { settings, warnings })
        } else {
            Err(errors)
        }
    }

    /// What a production deployment must supply explicitly.
    fn production_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match &self.secret_key {
            None => problems
                .push("SECRET_KEY is required in production (32 random bytes or more)".into()),
            Some(k) if k.expose().len() < 32 => problems.push(format!(
                "SECRET_KEY must be at least 32 bytes in production (got {})",
                k.expose().len()
            )),
            Some(_) => {}
        }
        if self.admin_password.is_none() {
            problems.push("BEHAVRY_ADMIN_PASSWORD is required in production".into());
        }
        if self.jwt_private_key.is_none() || self.jwt_public_key.is_none() {
            problems.push(
                "BEHAVRY_JWT_PRIVATE_KEY and BEHAVRY_JWT_PUBLIC_KEY are required in production (generate them with `behavry keygen`)"
                    .into(),
            );
        }
        if self.metrics_token.is_none() && !self.metrics_public {
            problems.push(
                "BEHAVRY_METRICS_TOKEN is required in production (or set BEHAVRY_METRICS_PUBLIC=true to serve /metrics to anyone who reaches it)"
                    .into(),
            );
        }
        problems
    }

    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn settings_without_effect_are_reported() {
        let loaded = Settings::from_vars(&vars(&[
            ("BEHAVRY_RATE_LIMIT_RPM", "120"),
            ("BEHAVRY_DEPLOYMENT_MODE", "data-plane"),
            ("BEHAVRY_OLLAMA_URL", "http://ollama:11434"),
        ]))
        .unwrap();
        let all = loaded.warnings.join("\n");
        for name in [
            "BEHAVRY_RATE_LIMIT_RPM",
            "BEHAVRY_DEPLOYMENT_MODE",
            "BEHAVRY_OLLAMA_URL",
        ] {
            assert!(
                all.contains(&format!("{name} is set but not supported")),
                "{all}"
            );
        }
    }

    #[test]
    fn tenants_reach_no_reserved_network_in_production_by_default() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let dev = Settings::from_vars(&vars(&[])).unwrap().settings;
        assert!(dev.outbound.check(ip("127.0.0.1")).is_ok());
        assert_eq!(dev.signup, SignupMode::FirstRun);
        let errs = Settings::from_vars(&vars(&[("BEHAVRY_ENV", "production")])).unwrap_err();
        assert!(
            errs.join("\n").contains("BEHAVRY_METRICS_TOKEN"),
            "{errs:?}"
        );
        let strong = "correct horse battery staple 42!";
        let prod = Settings::from_vars(&vars(&[
            ("BEHAVRY_ENV", "production"),
            ("SECRET_KEY", "0123456789abcdef0123456789abcdef-more"),
            ("BEHAVRY_ADMIN_PASSWORD", strong),
            ("BEHAVRY_JWT_PRIVATE_KEY", "x"),
            ("BEHAVRY_JWT_PUBLIC_KEY", "y"),
            ("BEHAVRY_METRICS_PUBLIC", "true"),
        ]))
        .unwrap()
        .settings;
        assert!(prod.outbound.check(ip("127.0.0.1")).is_err());
        assert!(prod.outbound.check(ip("10.1.1.1")).is_err());
        let bad = Settings::from_vars(&vars(&[
            ("BEHAVRY_OUTBOUND_ALLOW", "10.0.0.0/40"),
            ("BEHAVRY_SIGNUP", "sometimes"),
            ("BEHAVRY_STDIO_WORKDIR", "relative/dir"),
        ]))
        .unwrap_err()
        .join("\n");
        for name in [
            "BEHAVRY_OUTBOUND_ALLOW",
            "BEHAVRY_SIGNUP",
            "BEHAVRY_STDIO_WORKDIR",
        ] {
            assert!(bad.contains(name), "{bad}");
        }
    }

    #[test]
    fn development_defaults() {
        let loaded = Settings::from_vars(&vars(&[])).unwrap();
        let s = loaded.settings;
        assert_eq!(s.env, Environment::Development);
        assert_eq!(
            s.database,
            DatabaseUrl::Sqlite {
                path: PathBuf::from("./data/behavry.db")
            }
        );
        assert_eq!(s.listen.port(), 8000);
        assert_eq!(s.dashboard_listen.port(), 3000);
        assert_eq!(s.admin_username, "admin");
        assert_eq!(s.jwt_issuer, "behavry");
        assert_eq!(s.ollama_url, "http://localhost:11434");
        assert!(s.migrate_on_start);
        assert_eq!(s.bcrypt_cost, 12);
    }

    #[test]
    fn production_names_every_problem_at_once() {
        let errs = Settings::from_vars(&vars(&[
            ("BEHAVRY_ENV", "production"),
            ("SECRET_KEY", "too-short"),
            ("BEHAVRY_ADMIN_PASSWORD", "admin"),
        ]))
        .unwrap_err();
        let all = errs.join("\n");
        assert!(
            all.contains("SECRET_KEY must be at least 32 bytes"),
            "{all}"
        );
        assert!(all.contains("BEHAVRY_ADMIN_PASSWORD"), "{all}");
        assert!(all.contains("BEHAVRY_JWT_PRIVATE_KEY"), "{all}");
        assert!(all.contains("BEHAVRY_METRICS_TOKEN"), "{all}");
        assert_eq!(errs.len(), 4, "{all}");
    }

    #[test]
    fn a_short_payload_master_key_is_refused_everywhere() {
        let errs =
            Settings::from_vars(&vars(&[("BEHAVRY_PAYLOAD_MASTER_KEY", "short")])).unwrap_err();
        assert_eq!(
            errs,
            ["BEHAVRY_PAYLOAD_MASTER_KEY must be at least 32 bytes (got 5)"]
        );
        let ok = Settings::from_vars(&vars(&[(
            "BEHAVRY_PAYLOAD_MASTER_KEY",
            "0123456789abcdef0123456789abcdef",
        )]))
        .unwrap();
        assert!(ok.settings.payload_master_key.is_some());
    }

    #[test]
    fn webhooks_need_urls_that_parse_and_a_secret() {
        let errs = Settings::from_vars(&vars(&[
            ("BEHAVRY_WEBHOOK_URL", "https://siem.example/hook, ftp://x"),
            ("BEHAVRY_WEBHOOK_MIN_SEVERITY", "loud"),
        ]))
        .unwrap_err()
        .join("\n");
        assert!(errs.contains("`ftp://x` is not an http"), "{errs}");
        assert!(
            errs.contains("BEHAVRY_WEBHOOK_SECRET is required"),
            "{errs}"
        );
        assert!(errs.contains("info, warning or critical"), "{errs}");
        let ok = Settings::from_vars(&vars(&[
            (
                "BEHAVRY_WEBHOOK_URL",
                "https://a.example/h,http://b.example:8080/h",
            ),
            ("BEHAVRY_WEBHOOK_SECRET", "shared-secret"),
            ("BEHAVRY_WEBHOOK_MIN_SEVERITY", "CRITICAL"),
        ]))
        .unwrap()
        .settings;
        assert_eq!(ok.webhook_urls.len(), 2);
        assert_eq!(ok.webhook_min_severity, crate::AlertSeverity::Critical);
        let none = Settings::from_vars(&vars(&[])).unwrap().settings;
        assert!(none.webhook_urls.is_empty());
        assert_eq!(none.webhook_min_severity, crate::AlertSeverity::Warning);
    }

    #[test]
    fn production_accepts_a_complete_configuration() {
        let loaded = Settings::from_vars(&vars(&[
            ("BEHAVRY_ENV", "production"),
            ("SECRET_KEY", "0123456789abcdef0123456789abcdef"),
            ("BEHAVRY_ADMIN_PASSWORD", "correct horse battery staple"),
            ("BEHAVRY_JWT_PRIVATE_KEY", "pem"),
            ("BEHAVRY_JWT_PUBLIC_KEY", "pem"),
            ("BEHAVRY_METRICS_TOKEN", "a-scraper-token"),
        ]))
        .unwrap();
        assert!(loaded.settings.is_production());
        assert!(!loaded.settings.migrate_on_start);
        assert_eq!(loaded.settings.listen.ip().to_string(), "0.0.0.0");
    }

    #[test]
    fn database_urls() {
        for raw in [
            "postgresql+asyncpg://behavry:behavry@db:5432/behavry",
            "postgresql://behavry:behavry@db:5432/behavry",
            "postgres://behavry:behavry@db:5432/behavry",
        ] {
            match DatabaseUrl::parse(raw).unwrap() {
                DatabaseUrl::Postgres { url } => {
                    assert_eq!(url.expose(), "postgresql://behavry:behavry@db:5432/behavry")
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            DatabaseUrl::parse("sqlite:///tmp/x.db").unwrap(),
            DatabaseUrl::Sqlite { .. }
        ));
        assert!(DatabaseUrl::parse("mysql://x").is_err());
    }

    #[test]
    fn unknown_names_are_warned_and_secrets_hidden() {
        let loaded = Settings::from_vars(&vars(&[
            ("BEHAVRY_ADMN_PASSWORD", "typo"),
            ("SECRET_KEY", "super-secret-value-that-is-long-enough"),
            ("BEHAVRY_DB_URL", "postgresql://u:pw-in-url@h/db"),
        ]))
        .unwrap();
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("BEHAVRY_ADMN_PASSWORD"))
        );
        let debug = format!("{:?}", loaded.settings);
        assert!(!debug.contains("super-secret"), "{debug}");
        assert!(!debug.contains("pw-in-url"), "{debug}");
    }

    #[test]
    fn bad_values_are_reported() {
        let errs = Settings::from_vars(&vars(&[
            ("BEHAVRY_ENV", "staging"),
            ("BEHAVRY_LISTEN", "not-an-address"),
            ("BEHAVRY_BCRYPT_COST", "99"),
        ]))
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
    }
}
