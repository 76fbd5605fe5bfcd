//! Command-line interface.

mod admin;
mod audit;
mod healthcheck;
mod keygen;
mod migrate;
mod scan;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "behavry", version, about = "Security gateway for AI agents")]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand understands; each overrides the environment
/// variable named in its help.
#[derive(Args, Clone)]
pub struct GlobalArgs {
    /// Read variables from this file (default: ./.env when present).
    #[arg(long, global = true, value_name = "PATH")]
    env_file: Option<PathBuf>,
    /// Database URL (BEHAVRY_DB_URL): postgresql://… or sqlite://PATH.
    #[arg(long, global = true, value_name = "URL")]
    db_url: Option<String>,
    /// Directory for the SQLite file and development keys (BEHAVRY_DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// development or production (BEHAVRY_ENV).
    #[arg(long = "env", global = true, value_name = "ENV")]
    environment: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(serve::ServeArgs),
    /// Apply database migrations (and provision PostgreSQL roles).
    Migrate(migrate::MigrateArgs),
    /// Write a new RS256 key pair for signing tokens.
    Keygen(keygen::KeygenArgs),
    /// Manage admin accounts.
    Admin(admin::AdminArgs),
    /// Audit trail tools.
    Audit(audit::AuditArgs),
    /// Exit 0 when the gateway reports ready (for container health checks).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Scan text or JSON for secrets and personal data (exit 1 when a
    /// finding reaches --fail-on, 2 when the input is unusable).
    Scan(scan::ScanArgs),
}

impl GlobalArgs {
    /// Loads settings with these flags (and any extra ones) on top.
    pub fn settings(
        &self,
        extra: &[(&'static str, Option<String>)],
    ) -> Result<behavry_core::config::Loaded> {
        let mut overrides: Vec<(&str, Option<String>)> = vec![
            ("BEHAVRY_DB_URL", self.db_url.clone()),
            (
                "BEHAVRY_DATA_DIR",
                self.data_dir.as_ref().map(|p| p.display().to_string()),
            ),
            ("BEHAVRY_ENV", self.environment.clone()),
        ];
        overrides.extend(extra.iter().cloned());
        crate::config::load(self.env_file.as_deref(), &overrides)
    }
}

pub fn init_logging(debug: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},sqlx=warn,hyper=warn,tower=warn")));
    let json = std::env::var("BEHAVRY_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::execute(&cli.global, args).await,
        Command::Migrate(args) => migrate::execute(&cli.global, args).await,
        Command::Keygen(args) => keygen::execute(args),
        Command::Admin(args) => admin::execute(&cli.global, args).await,
        Command::Audit(args) => audit::execute(&cli.global, args).await,
        Command::Healthcheck(args) => healthcheck::execute(&cli.global, args).await,
        Command::Scan(args) => scan::execute(&cli.global, args),
    }
}
