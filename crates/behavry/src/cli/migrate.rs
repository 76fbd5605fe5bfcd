use std::process::ExitCode;

use anyhow::Result;
use behavry_store::migrations::MigrationState;
use clap::Args;

use super::GlobalArgs;

#[derive(Args)]
pub struct MigrateArgs {
    /// Show which migrations are applied and pending; change nothing.
    #[arg(long)]
    status: bool,
}

pub async fn execute(global: &GlobalArgs, args: MigrateArgs) -> Result<ExitCode> {
    let loaded = global.settings(&[])?;
    super::init_logging(loaded.settings.debug);
    let settings = loaded.settings;
    if args.status {
        let status = behavry_server::startup::migration_status(&settings).await?;
        let mut pending = 0;
        for s in &status {
            let state = match s.state {
                MigrationState::Applied => "applied",
                MigrationState::Pending => {
                    pending += 1;
                    "pending"
                }
                MigrationState::Modified => "MODIFIED after it was applied",
            };
            println!("{:04} {:<24} {state}", s.version, s.name);
        }
        println!("{pending} pending");
        return Ok(ExitCode::SUCCESS);
    }
    let applied = behavry_server::startup::migrate(&settings).await?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        for v in &applied {
            println!("applied migration {v:04}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
