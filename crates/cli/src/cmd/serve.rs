//! `hsuga serve --run DIR`: a finished run behind the HTTP service of
//! `hsuga-serve`. This module only turns flags into the service's options,
//! binds, loads, reloads the run on SIGHUP and waits for SIGTERM / Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use hsuga_serve::{BatchConfig, Limits, Options, Run, RunSource, Service};

use crate::{Globals, datasets};

#[derive(Args)]
pub struct ServeArgs {
    /// A finished run folder (`<out_dir>/<name>/seed-<seed>`).
    #[arg(long)]
    run: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Environment variable holding the bearer token of the write and admin
    /// routes; without it those routes are disabled (403).
    #[arg(long, value_name = "VAR")]
    token_env: Option<String>,
    /// The interaction store (SQLite, WAL) [default: <run>/interactions.sqlite].
    #[arg(long, value_name = "PATH")]
    state: Option<PathBuf>,
    /// Milliseconds the scorer waits after a request for others to batch
    /// with (0: only requests already queued share a forward pass).
    #[arg(long, default_value_t = 0.0)]
    batch_window_ms: f64,
    /// Most users waiting for the HSU worker (runs whose inputs name an HSU
    /// config); past it, the worker sweeps every served user once it drains.
    #[arg(long, default_value_t = hsuga_serve::DEFAULT_HSU_QUEUE)]
    hsu_queue: usize,
    #[command(flatten)]
    inputs: super::experiment::InputArgs,
}

pub fn run(args: ServeArgs, g: &Globals) -> Result<()> {
    // Read here, never logged or printed.
    let token = match &args.token_env {
        None => None,
        Some(var) => match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Some(t),
            _ => bail!(
                "--token-env {var}: the variable is unset or empty; set it, or leave \
                 --token-env out to serve with write and admin routes disabled"
            ),
        },
    };
    if !(args.batch_window_ms >= 0.0 && args.batch_window_ms <= 1000.0) {
        bail!(
            "--batch-window-ms must be between 0 and 1000, got {}",
            args.batch_window_ms
        );
    }
    let datasets_dir = g.datasets_dir.clone();
    let source = RunSource {
        cache_dir: g.cache_dir.clone(),
        models_dir: args.inputs.models_dir.resolve(),
        hsu_configs: args.inputs.hsu_configs.clone(),
        resolve_dataset: Arc::new(move |entry: &str| {
            datasets::config_path(entry, &datasets_dir).map_err(|e| format!("{e:#}"))
        }),
    };
    let opts = Options {
        state: args
            .state
            .clone()
            .unwrap_or_else(|| hsuga_serve::default_state(&args.run)),
        token,
        limits: Limits::default(),
        batch: BatchConfig {
            window: Duration::from_secs_f64(args.batch_window_ms / 1000.0),
            ..BatchConfig::default()
        },
        hsu_queue: args.hsu_queue,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        // Bound first: a taken port fails before a load of seconds.
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("listening on {}", args.addr))?;
        let run = Run::load(&args.run, &source)?;
        let writes = if opts.token.is_some() {
            "write routes need the bearer token"
        } else {
            "write routes disabled (no --token-env)"
        };
        let state = opts.state.clone();
        let service = Service::new(run, source, opts)?;
        #[cfg(unix)]
        let _hup = hsuga_serve::reload_on_sighup(&service).context("listening for SIGHUP")?;
        let info = service.info();
        eprintln!(
            "serving {} ({} on {}: {} items, {} users) on http://{}; interactions in {}; {writes}",
            info.run,
            info.backbone,
            info.dataset,
            info.items,
            info.users,
            listener.local_addr()?,
            state.display(),
        );
        hsuga_serve::serve(listener, service, hsuga_serve::shutdown_signal())
            .await
            .context("serving")
    })
}
