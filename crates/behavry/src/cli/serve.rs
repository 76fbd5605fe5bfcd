use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tokio::net::TcpListener;

use super::GlobalArgs;

#[derive(Args)]
pub struct ServeArgs {
    /// API address (BEHAVRY_LISTEN; default 127.0.0.1:8000, 0.0.0.0:8000 in production).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Dashboard address (BEHAVRY_DASHBOARD_LISTEN; default port 3000).
    #[arg(long, value_name = "ADDR")]
    dashboard_listen: Option<String>,
    /// Apply pending migrations before serving (default in development).
    #[arg(long, conflicts_with = "no_migrate")]
    migrate: bool,
    /// Refuse to start when migrations are pending (default in production).
    #[arg(long)]
    no_migrate: bool,
}

pub async fn execute(global: &GlobalArgs, args: ServeArgs) -> Result<ExitCode> {
    let migrate = if args.migrate {
        Some("true".to_string())
    } else if args.no_migrate {
        Some("false".to_string())
    } else {
        None
    };
    let loaded = global.settings(&[
        ("BEHAVRY_LISTEN", args.listen),
        ("BEHAVRY_DASHBOARD_LISTEN", args.dashboard_listen),
        ("BEHAVRY_MIGRATE_ON_START", migrate),
    ])?;
    super::init_logging(loaded.settings.debug);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let settings = loaded.settings;
    let api_addr = settings.listen;
    let dash_addr = settings.dashboard_listen;
    let env = settings.env;
    let has_admin_password = settings.admin_password.is_some();
    let admin_username = settings.admin_username.clone();

    let state = behavry_server::startup::build_state(settings).await?;
    let api = TcpListener::bind(api_addr)
        .await
        .with_context(|| format!("while binding the API to {api_addr}"))?;
    let dashboard = TcpListener::bind(dash_addr)
        .await
        .with_context(|| format!("while binding the dashboard to {dash_addr}"))?;
    let initialized = state.store.auth().is_initialized().await?;

    println!(
        "Behavry {} ({}, {} storage)",
        env!("CARGO_PKG_VERSION"),
        env.as_str(),
        state.store.backend()
    );
    println!("  API:        http://{}", api.local_addr()?);
    println!("  Dashboard:  http://{}", dashboard.local_addr()?);
    println!("  Readiness:  http://{}/health/ready", api.local_addr()?);
    if has_admin_password {
        println!(
            "  Sign in:    POST /api/v1/auth/admin/login as `{admin_username}` (BEHAVRY_ADMIN_PASSWORD)"
        );
    }
    if !initialized {
        println!("  First run:  create your organization with POST /api/v1/signup");
        println!("              {{\"organization_name\", \"admin_email\", \"admin_password\"}}");
    }

    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        tracing::info!("shutting down");
    };
    behavry_server::serve(state, api, Some(dashboard), shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
