//! `hsuga train --config X.toml`: one training run into its own folder
//! (`<out_dir>/<name>/seed-<seed>`): resolved config, checkpoints, logs,
//! curve, test ranks and the paper's group columns.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use hsuga_data::Phase;
use hsuga_eval::{Metric, Ranking};
use hsuga_train::{Job, RunConfig};

use crate::{Globals, datasets};

#[derive(Args)]
pub struct TrainArgs {
    /// Run config (TOML: name, dataset, seed, [model], [train]).
    #[arg(long)]
    config: PathBuf,
    /// Override the config's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the config's maximum number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the config's output folder.
    #[arg(long)]
    out_dir: Option<String>,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: TrainArgs, g: &Globals) -> Result<()> {
    let mut cfg = RunConfig::load(&args.config)?;
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if let Some(e) = args.epochs {
        cfg.train.epochs = e;
    }
    if let Some(o) = args.out_dir {
        cfg.out_dir = o;
    }
    if args.quiet {
        cfg.train.progress = false;
    }
    cfg.validate()?;
    let resolved = cfg.to_toml();
    let dir = PathBuf::from(&cfg.out_dir)
        .join(&cfg.name)
        .join(format!("seed-{}", cfg.seed));
    let cfg_file = dir.join("config.toml");
    if cfg_file.is_file() {
        let old = std::fs::read_to_string(&cfg_file)?;
        if strip_progress(&old) != strip_progress(&resolved) {
            bail!(
                "{} holds a run with a different config; choose another name or out_dir \
                 (nothing was overwritten)",
                dir.display()
            );
        }
        if dir.join("result.json").is_file() {
            eprintln!("{} is finished; its result:", dir.display());
            print!("{}", std::fs::read_to_string(dir.join("result.json"))?);
            return Ok(());
        }
    }
    let prepared = datasets::load(&cfg.dataset, g)?;
    let cands = hsuga_data::candidates(&prepared, cfg.negatives, cfg.seed)
        .context("drawing evaluation candidates")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&cfg_file, &resolved)?;
    let job = Job {
        model: &cfg.model,
        train: &cfg.train,
        seed: cfg.seed,
        split: &prepared.split,
        candidates: &cands,
        run_dir: Some(&dir),
        device: hsuga_model::cpu(),
    };
    let _span = tracing::info_span!("train", run = %cfg.name, seed = cfg.seed).entered();
    let out = hsuga_train::fit(&job)?;
    let ranking = Ranking::new(
        Phase::Test,
        &prepared.split,
        out.test_ranks.iter().map(|&r| r as usize).collect(),
    );
    let summary = ranking.summarize(&prepared.groups, &Metric::at(&[5, 10, 20]));
    std::fs::write(
        dir.join("groups.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    println!(
        "{} seed {}: best epoch {} of {}, valid NDCG@{k} {:.4}; test HR@{k} {:.4} NDCG@{k} {:.4} ({:.0}s training) -> {}",
        cfg.name,
        cfg.seed,
        out.best_epoch,
        out.epochs_run,
        out.best_valid.ndcg,
        out.test.hr,
        out.test.ndcg,
        out.train_seconds,
        dir.display(),
        k = out.test.k
    );
    Ok(())
}

/// The progress flag does not change results, so resuming with `--quiet`
/// is the same run.
fn strip_progress(toml: &str) -> String {
    toml.lines()
        .filter(|l| !l.trim_start().starts_with("progress"))
        .collect::<Vec<_>>()
        .join("\n")
}
