//! `hsuga experiment --config E.toml` runs a grid; `hsuga report <dir>`
//! re-renders its tables from the finished runs.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hsuga_experiment::{DatasetTable, ExperimentConfig, RunOptions};

use crate::{Globals, datasets};

#[derive(Args)]
pub struct ExperimentArgs {
    /// Experiment file (configs/experiments/*.toml).
    #[arg(long)]
    config: PathBuf,
    /// Hide the per-epoch progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    inputs: InputArgs,
    /// Runs trained side by side, each on cores / jobs threads [default: one per core].
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    jobs: usize,
    /// Train only this table row (repeatable); the tables still show every
    /// row with finished runs.
    #[arg(long = "only", value_name = "ROW")]
    only: Vec<String>,
    /// Copy, instead of training, any run finished under this folder
    /// (e.g. `runs`) with the same settings and semantic inputs under
    /// another name (repeatable; each copy names its source in
    /// adopted-from.txt).
    #[arg(long = "reuse-from", value_name = "DIR")]
    reuse_from: Vec<PathBuf>,
}

/// Where the producers of semantic inputs find their configs and weights
/// (`hsuga train` takes the same).
#[derive(Args)]
pub struct InputArgs {
    /// Folder of HSU configs, for `inputs.user_semantic = "hsu:<name>"`.
    #[arg(long, default_value = "configs/hsu")]
    pub hsu_configs: PathBuf,
    #[command(flatten)]
    pub models_dir: super::models::ModelsDirArg,
}

#[derive(Args)]
pub struct ReportArgs {
    /// An experiment folder (`<out_dir>/<name>`).
    dir: PathBuf,
}

pub fn experiment(args: ExperimentArgs, g: &Globals) -> Result<()> {
    let cfg = ExperimentConfig::load(&args.config)?;
    let models_dir = args.inputs.models_dir.resolve();
    let resolve =
        |name: &str| datasets::config_path(name, &g.datasets_dir).map_err(|e| e.to_string());
    let tables = hsuga_experiment::run(
        &cfg,
        &RunOptions {
            cache_dir: &g.cache_dir,
            models_dir: &models_dir,
            hsu_configs: &args.inputs.hsu_configs,
            resolve_dataset: &resolve,
            progress: !args.quiet,
            jobs: args.jobs,
            only: &args.only,
            reuse_from: &args.reuse_from,
        },
    )
    .with_context(|| format!("experiment {}", args.config.display()))?;
    print_tables(&tables);
    Ok(())
}

pub fn report(args: ReportArgs) -> Result<()> {
    let tables = hsuga_experiment::report(&args.dir)
        .with_context(|| format!("report for {}", args.dir.display()))?;
    print_tables(&tables);
    Ok(())
}

fn print_tables(tables: &[DatasetTable]) {
    for t in tables {
        // Which setting each tuned row's table line is (chosen on validation).
        if let Some(tuning) = &t.tuning {
            println!("{tuning}");
        }
        println!("{}", t.table.to_markdown());
        if let Some(full) = &t.full {
            println!("{}", full.to_markdown());
        }
        let stems = if t.full.is_some() {
            "table{,-full}"
        } else {
            "table"
        };
        println!("(written to {}/{stems}.{{md,csv,json}})", t.dir.display());
        for p in &t.plots {
            println!("plot: {} (and .png)", p.display());
        }
        println!();
    }
}
