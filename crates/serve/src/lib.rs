//! `hsuga serve`: a finished run folder behind a JSON-over-HTTP service
//! that recommends and learns from interactions.
//!
//! The principal types: [`Run`] (a run folder loaded for scoring: config,
//! best checkpoint, dataset id maps and titles), [`Store`] (interactions in
//! SQLite, WAL, committed before any answer), [`MicroBatcher`] (one scoring
//! thread that batches concurrent requests into one forward pass),
//! [`Service`] (the state behind the routes, one method per route) and
//! [`router`] (thin axum handlers, the bearer-token gate, metrics and the
//! OpenAPI document derived from the body types, [`ApiDoc`]).
//!
//! A request holds the run it started on until it is answered, so
//! `POST /v1/admin/reload` (and SIGHUP, [`reload_on_sighup`]) swaps runs
//! without changing any answer midway. For runs whose inputs name an HSU
//! config, a background worker ([`hsu`]) runs each HSU stage a served
//! user's interactions complete and swaps their semantic embedding in.

pub mod batch;
pub mod error;
pub mod hsu;
pub mod http;
pub mod metrics;
pub mod run;
pub mod service;
pub mod store;
pub mod types;

pub use batch::{BatchConfig, MicroBatcher, top_k};
pub use error::ServeError;
pub use http::{ApiDoc, router};
pub use run::{EmbeddingSource, ResolveDataset, Run, RunSource};
pub use service::{DEFAULT_HSU_QUEUE, Limits, Options, Service, default_state};
pub use store::Store;

use std::future::Future;
use std::sync::Arc;

/// Serves `service` on `listener` until `shutdown` completes, then stops
/// accepting, lets requests in flight finish and drains the HSU stage in
/// flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let served = axum::serve(listener, router(service.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    service.drain_hsu().await;
    served
}

/// Reloads the served run's folder on every SIGHUP, as `POST
/// /v1/admin/reload` does (a folder that cannot be served is refused, said
/// in the log, and the old run stays). Runs until the service is dropped.
#[cfg(unix)]
pub fn reload_on_sighup(service: &Arc<Service>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let weak = Arc::downgrade(service);
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let Some(svc) = weak.upgrade() else { break };
            match svc.reload_current().await {
                Ok(info) => tracing::info!(run = %info.run, "SIGHUP: reloaded"),
                Err(e) => tracing::error!("SIGHUP: reload refused, the old run stays: {e}"),
            }
        }
    }))
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
