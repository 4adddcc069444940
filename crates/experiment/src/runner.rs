//! Running the grid, skipping finished runs.

use std::path::{Path, PathBuf};

use hsuga_data::{DatasetConfig, candidates, prepare};
use hsuga_train::{InputsConfig, RunConfig, SemanticInputs};

use crate::ExperimentError;
use crate::config::ExperimentConfig;
use crate::inputs::{InputDirs, semantic_inputs};
use crate::report::{DatasetTable, report};

/// Where things are and how to find datasets.
pub struct RunOptions<'a> {
    pub cache_dir: &'a Path,
    /// Local model weights (the item text embedder is fetched here if missing).
    pub models_dir: &'a Path,
    /// Folder of HSU configs (`inputs.user_semantic = "hsu:<name>"`).
    pub hsu_configs: &'a Path,
    /// Turns a dataset entry (name or path) into a config path.
    pub resolve_dataset: &'a dyn Fn(&str) -> Result<PathBuf, String>,
    /// Per-epoch progress bars inside each run.
    pub progress: bool,
}

/// Runs what is missing, then writes and returns the tables.
pub fn run(
    cfg: &ExperimentConfig,
    opts: &RunOptions<'_>,
) -> Result<Vec<DatasetTable>, ExperimentError> {
    let methods = cfg.resolve()?;
    let exp_dir = Path::new(&cfg.out_dir).join(&cfg.name);
    std::fs::create_dir_all(&exp_dir).map_err(|e| ExperimentError::io(&exp_dir, e))?;
    let written = toml::to_string(cfg).map_err(|e| ExperimentError::Config(e.to_string()))?;
    let file = exp_dir.join("experiment.toml");
    std::fs::write(&file, written).map_err(|e| ExperimentError::io(&file, e))?;

    // Check every dataset before the first run starts.
    let mut datasets = Vec::new();
    for entry in &cfg.datasets {
        let path = (opts.resolve_dataset)(entry).map_err(ExperimentError::Config)?;
        let dcfg = DatasetConfig::load(&path)?;
        datasets.push((path, dcfg));
    }
    let dirs = InputDirs {
        cache_dir: opts.cache_dir,
        models_dir: opts.models_dir,
        hsu_configs: opts.hsu_configs,
    };
    let total = datasets.len() * methods.len() * cfg.seeds.len();
    let mut done = 0;
    for (path, dcfg) in &datasets {
        let prepared = prepare(dcfg, opts.cache_dir)?;
        // Methods sharing an `[inputs]` table share its matrices.
        let mut inputs: Vec<(InputsConfig, SemanticInputs)> = Vec::new();
        for &seed in &cfg.seeds {
            // Drawn (or read from the cache) only when a run of this seed is left.
            let mut cands = None;
            for m in &methods {
                done += 1;
                let run_cfg = RunConfig {
                    name: m.name.clone(),
                    dataset: path.display().to_string(),
                    seed,
                    negatives: cfg.negatives,
                    out_dir: exp_dir.join(&dcfg.name).display().to_string(),
                    model: m.model.clone(),
                    method: m.method.clone(),
                    inputs: m.inputs.clone(),
                    train: hsuga_train::TrainSettings {
                        progress: opts.progress,
                        ..m.train.clone()
                    },
                };
                // Also refuses a folder holding another config before any work.
                if hsuga_train::check_dir(&run_cfg)?.is_some() {
                    tracing::info!(dataset = %dcfg.name, method = %m.name, seed, "finished before, skipped");
                    continue;
                }
                let at = match inputs.iter().position(|(c, _)| c == &m.inputs) {
                    Some(at) => at,
                    None => {
                        let got =
                            semantic_inputs(&m.inputs, dcfg, &prepared, &dirs).map_err(|e| {
                                ExperimentError::Config(format!("method `{}`: {e}", m.name))
                            })?;
                        inputs.push((m.inputs.clone(), got));
                        inputs.len() - 1
                    }
                };
                let cands = match &mut cands {
                    Some(c) => c,
                    None => cands.insert(candidates(&prepared, cfg.negatives, seed)?),
                };
                eprintln!("[{done}/{total}] {} · {} · seed {seed}", dcfg.name, m.name);
                let r = hsuga_train::run(&run_cfg, &prepared, cands, &inputs[at].1)?;
                eprintln!(
                    "    test HR@{k} {:.4}  NDCG@{k} {:.4}  (best epoch {}, {:.0} s)",
                    r.test.hr,
                    r.test.ndcg,
                    r.best_epoch,
                    r.train_seconds,
                    k = r.test.k
                );
            }
        }
    }
    report(&exp_dir, opts.cache_dir)
}
