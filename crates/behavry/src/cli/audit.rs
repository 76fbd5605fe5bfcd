//! `behavry audit verify`: checks every tenant's audit hash chain.

use std::process::ExitCode;

use anyhow::Result;
use behavry_core::TenantId;
use behavry_store::PlatformGrant;
use clap::{Args, Subcommand};

use super::GlobalArgs;

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain and report the first broken link.
    /// Exits 1 when any chain is broken.
    Verify {
        /// Only this tenant (default: all tenants).
        #[arg(long, value_name = "TENANT_ID")]
        tenant: Option<TenantId>,
    },
}

pub async fn execute(global: &GlobalArgs, args: AuditArgs) -> Result<ExitCode> {
    let loaded = global.settings(&[])?;
    super::init_logging(loaded.settings.debug);
    let store = behavry_server::startup::open_store(&loaded.settings).await?;
    let AuditCommand::Verify { tenant } = args.command;
    let tenants: Vec<(TenantId, String)> = match tenant {
        Some(id) => {
            let t = store
                .platform(&PlatformGrant::operator_verified())
                .get_tenant(id)
                .await?;
            vec![(t.tenant.id, t.tenant.slug)]
        }
        None => store
            .platform(&PlatformGrant::operator_verified())
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| (t.tenant.id, t.tenant.slug))
            .collect(),
    };
    let mut broken = 0;
    for (id, slug) in tenants {
        let report =
            behavry_server::routes::audit::verify_tenant_chain(store.tenant(id).as_ref()).await?;
        match report.first_broken {
            None => println!("{slug} ({id}): ok, {} events", report.events_checked),
            Some(link) => {
                broken += 1;
                println!(
                    "{slug} ({id}): BROKEN at seq {} (event {}): {}",
                    link.seq, link.event_id, link.reason
                );
            }
        }
    }
    Ok(if broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
