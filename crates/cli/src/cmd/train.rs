//! `hsuga train --config X.toml`: one training run into its own folder
//! (`<out_dir>/<name>/seed-<seed>`): resolved config, safetensors
//! checkpoints, state for resuming, CSV/JSON logs, training curve, per-user
//! ranks and the paper's group columns (`report.json`). The semantic inputs
//! its `[inputs]` table names are produced as `hsuga experiment` does.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hsuga_experiment::{InputDirs, semantic_inputs};
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
    cfg.validate()?;
    // Refuse a folder holding another config before any data work.
    let report = match hsuga_train::check_dir(&cfg)? {
        Some(done) => {
            eprintln!("{} is already finished", done.dir.display());
            done
        }
        None => {
            let (dcfg, data) = datasets::load_with_config(&cfg.dataset, g)?;
            let models_dir = args.inputs.models_dir.resolve();
            let dirs = InputDirs {
                cache_dir: &g.cache_dir,
                models_dir: &models_dir,
                hsu_configs: &args.inputs.hsu_configs,
            };
            let semantic = semantic_inputs(&cfg.inputs, &dcfg, &data, &dirs)?;
            let cands = hsuga_data::candidates(&data, cfg.negatives, cfg.seed)
                .context("drawing evaluation candidates")?;
            let _span = tracing::info_span!("train", run = %cfg.name, seed = cfg.seed).entered();
            hsuga_train::run(&cfg, &data, &cands, &semantic, Default::default())?
        }
    };
    println!(
        "{} seed {}: best epoch {} of {}, valid NDCG@{k} {:.4}; test HR@{k} {:.4} NDCG@{k} {:.4} \
         ({:.0}s training) -> {}",
        cfg.name,
        cfg.seed,
        report.best_epoch,
        report.epochs_run,
        report.valid.ndcg,
        report.test.hr,
        report.test.ndcg,
        report.train_seconds,
        report.dir.display(),
        k = report.test.k
    );
    Ok(())
}
