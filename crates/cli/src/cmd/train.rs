//! `hsuga train --config X.toml`: one training run into its own folder
//! (`<out_dir>/<name>/seed-<seed>`): resolved config, safetensors
//! checkpoints, state for resuming, CSV/JSON logs, training curve, per-user
//! ranks and the paper's group columns (`report.json`). The semantic inputs
//! its `[inputs]` table names are produced as `hsuga experiment` does.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use hsuga_experiment::InputDirs;
use hsuga_train::RunConfig;

use super::experiment::InputArgs;
use crate::{Globals, datasets};

#[derive(Args)]
pub struct TrainArgs {
    /// Run config (TOML: name, dataset, seed, [model], [train]).
    #[arg(long)]
    config: PathBuf,
    /// Override the config's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the config's output folder.
    #[arg(long)]
    out_dir: Option<String>,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    inputs: InputArgs,
}

pub fn run(args: TrainArgs, g: &Globals) -> Result<()> {
    let mut cfg = RunConfig::load(&args.config)?;
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if let Some(o) = args.out_dir {
        cfg.out_dir = o;
    }
    if args.quiet {
        cfg.train.progress = false;
    }
    let models_dir = args.inputs.models_dir.resolve();
    let dirs = InputDirs {
        cache_dir: &g.cache_dir,
        models_dir: &models_dir,
        hsu_configs: &args.inputs.hsu_configs,
    };
    let resolve =
        |entry: &str| datasets::config_path(entry, &g.datasets_dir).map_err(|e| format!("{e:#}"));
    let report = hsuga_experiment::train_one(&cfg, &dirs, &resolve, Default::default())?;
    if report.reused {
        eprintln!("{} is already finished", report.dir.display());
    }
    let test: Vec<String> = report.test.iter().map(|m| m.describe()).collect();
    println!(
        "{} seed {}: best epoch {} of {}, valid {} {:.4}; test {} ({:.0}s training) -> {}",
        cfg.name,
        cfg.seed,
        report.best_epoch,
        report.epochs_run,
        report.select,
        report.selection(),
        test.join("  "),
        report.train_seconds,
        report.dir.display(),
    );
    Ok(())
}
