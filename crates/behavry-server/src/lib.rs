//! The Behavry server: HTTP routers, authentication, background jobs.
//!
//! [`serve`] runs the API (and the dashboard listener) on listeners the
//! caller binds, until `shutdown` resolves, so tests can start the real
//! server on port 0.

pub mod alerts;
pub mod audit_writer;
pub mod auth;
pub mod bus;
pub mod dashboard;
pub mod error;
pub mod escalations;
pub mod jobs;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod payloads;
pub mod policy;
pub mod ratelimit;
pub mod risk;
pub mod routes;
pub mod scanners;
pub mod secrets;
pub mod startup;
pub mod state;
pub mod webhooks;

/// Outbound HTTP clients (TLS set up), for every crate built on the server.
pub use behavry_mcp::outbound;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use state::AppState;

/// Serves until `shutdown` completes, then drains in-flight requests.
pub async fn serve(
    state: AppState,
    api: TcpListener,
    dashboard: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let closing = state.closing.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        // Event streams never end by themselves: end them, or the graceful
        // shutdown would wait for their clients to leave.
        closing.send_replace(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    // Policies are in force before the first call is accepted; until they
    // have loaded, decisions fail closed.
    jobs::policy_refresh_once(&state).await;
    if !state.bus.wait_listening(Duration::from_secs(5)).await {
        tracing::warn!(
            "not yet receiving other replicas' events; serving anyway (polling covers changes meanwhile)"
        );
    }
    let policy_refresh = tokio::spawn(jobs::policy_refresh_loop(
        state.clone(),
        stopped(stop_rx.clone()),
    ));
    let maintenance = tokio::spawn(jobs::maintenance_loop(
        state.store.clone(),
        stopped(stop_rx.clone()),
    ));
    let activity = tokio::spawn(jobs::session_activity_loop(
        state.clone(),
        stopped(stop_rx.clone()),
    ));
    let expiry = tokio::spawn(escalations::expiry_loop(
        state.clone(),
        stopped(stop_rx.clone()),
    ));
    let reactions = tokio::spawn(jobs::bus_reaction_loop(
        state.clone(),
        stopped(stop_rx.clone()),
    ));
    let risk = tokio::spawn(risk::risk_loop(state.clone(), stopped(stop_rx.clone())));

    let api_app =
        routes::api_router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let api_server = axum::serve(api, api_app).with_graceful_shutdown(stopped(stop_rx.clone()));

    let result = match dashboard {
        Some(listener) => {
            let dash_app = dashboard::router(state.clone())
                .into_make_service_with_connect_info::<SocketAddr>();
            let dash_server =
                axum::serve(listener, dash_app).with_graceful_shutdown(stopped(stop_rx.clone()));
            let (a, b) = tokio::join!(api_server, dash_server);
            a.and(b)
        }
        None => api_server.await,
    };
    maintenance.abort();
    activity.abort();
    expiry.abort();
    reactions.abort();
    risk.abort();
    policy_refresh.abort();
    state.sessions.flush(state.store.as_ref()).await;
    state.upstreams.shutdown_all().await;
    result
}
