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
//! `POST /v1/admin/reload` swaps runs without changing any answer midway.
//! What this crate does not do yet (issue 17): serve runs whose model reads
//! semantic inputs at scoring time (dual view, HSU fusion; refused at load),
//! and run new HSU stages in the background.

pub mod batch;
pub mod error;
pub mod http;
pub mod metrics;
pub mod run;
pub mod service;
pub mod store;
pub mod types;

pub use batch::{BatchConfig, MicroBatcher, top_k};
pub use error::ServeError;
pub use http::{ApiDoc, router};
pub use run::{ResolveDataset, Run, RunSource};
pub use service::{Limits, Options, Service, default_state};
pub use store::Store;

use std::future::Future;
use std::sync::Arc;

/// Serves `service` on `listener` until `shutdown` completes, then stops
/// accepting and lets requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(service))
        .with_graceful_shutdown(shutdown)
        .await
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
