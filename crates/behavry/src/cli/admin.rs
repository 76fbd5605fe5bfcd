//! Operator commands for admin accounts, run on the host with the
//! database credentials from configuration.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use behavry_core::validate::password_problem;
use behavry_core::{AdminRole, TenantId};
use behavry_store::{NewAdminUser, PlatformGrant};
use clap::{Args, Subcommand};

use super::GlobalArgs;

#[derive(Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin. Without --tenant: a platform operator (super-admin).
    /// The password is read from the first line of standard input.
    Create {
        #[arg(long)]
        username: String,
        /// Create an admin of this tenant (UUID) instead of a platform operator.
        #[arg(long, value_name = "TENANT_ID")]
        tenant: Option<TenantId>,
        /// Role for a tenant admin: viewer, analyst, policy_author or admin.
        #[arg(long, default_value = "admin")]
        role: AdminRole,
        #[arg(long)]
        email: Option<String>,
    },
    /// Set a new password (read from the first line of standard input).
    ResetPassword {
        #[arg(long)]
        username: String,
    },
}

fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("while reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if let Some(problem) = password_problem(&password) {
        bail!("password refused: {problem}");
    }
    Ok(password)
}

pub async fn execute(global: &GlobalArgs, args: AdminArgs) -> Result<ExitCode> {
    let loaded = global.settings(&[])?;
    super::init_logging(loaded.settings.debug);
    let settings = loaded.settings;
    let store = behavry_server::startup::open_store(&settings).await?;
    let grant = PlatformGrant::operator_verified();
    match args.command {
        AdminCommand::Create {
            username,
            tenant,
            role,
            email,
        } => {
            let username = username.trim().to_lowercase();
            let password = read_password()?;
            let hash = behavry_server::auth::password::hash(&password, settings.bcrypt_cost)?;
            match tenant {
                None => {
                    let created = store
                        .platform(&grant)
                        .upsert_platform_admin(&username, &hash)
                        .await?;
                    if !created {
                        bail!("`{username}` already exists; use `behavry admin reset-password`");
                    }
                    println!("created platform operator `{username}`");
                }
                Some(tenant) => {
                    store
                        .platform(&grant)
                        .get_tenant(tenant)
                        .await
                        .context("no such tenant")?;
                    let admin = store
                        .tenant(tenant)
                        .create_admin(NewAdminUser {
                            username: username.clone(),
                            email,
                            password_hash: hash,
                            role,
                        })
                        .await?;
                    println!(
                        "created {} `{}` in tenant {tenant}",
                        role.as_str(),
                        admin.username
                    );
                }
            }
        }
        AdminCommand::ResetPassword { username } => {
            let username = username.trim().to_lowercase();
            let password = read_password()?;
            let hash = behavry_server::auth::password::hash(&password, settings.bcrypt_cost)?;
            store
                .platform(&grant)
                .set_admin_password(&username, &hash)
                .await
                .with_context(|| format!("while resetting the password of `{username}`"))?;
            println!("password of `{username}` changed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
