//! The run config (`hsuga train --config X.toml`): as written, with every
//! default filled in by serde, then validated. The resolved config is written
//! into the run folder before training starts.
//!
//! ```toml
//! name = "fashion-sasrec"
//! dataset = "configs/datasets/fashion.toml"
//! seed = 42
//!
//! [model]
//! backbone = "sasrec"
//! max_len = 50
//!
//! [train]
//! patience = 20
//! ```

use std::path::Path;

use hsuga_model::ModelConfig;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

fn d_lr() -> f64 {
    1e-3 // LLM-ESR code
}
fn d_batch() -> usize {
    128 // LLM-ESR code
}
fn d_epochs() -> usize {
    200 // LLM-ESR code
}
fn d_patience() -> usize {
    20 // LLM-ESR code
}
fn d_one() -> usize {
    1
}
fn d_eval_batch() -> usize {
    512 // ours: evaluation holds no autodiff graph
}
fn d_k() -> usize {
    10 // the paper's HR@10 / NDCG@10
}
fn d_true() -> bool {
    true
}

/// Optimisation and model-selection settings (`[train]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// Adam learning rate.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Adam L2 weight decay (0 = none).
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Upper bound on training epochs.
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    /// Stop after this many evaluations without a better validation NDCG@K.
    #[serde(default = "d_patience")]
    pub patience: usize,
    /// Evaluate on the validation targets every this many epochs.
    #[serde(default = "d_one")]
    pub eval_every: usize,
    #[serde(default = "d_eval_batch")]
    pub eval_batch_size: usize,
    /// The K of the selection metric NDCG@K.
    #[serde(default = "d_k")]
    pub metric_k: usize,
    /// Group training sequences of similar length into batches (shuffled
    /// batch order), so that batches pad little.
    #[serde(default = "d_true")]
    pub length_buckets: bool,
    /// Show a progress bar.
    #[serde(default = "d_true")]
    pub progress: bool,
}

impl Default for TrainSettings {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl TrainSettings {
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("train.lr must be a positive number");
        }
        if self.weight_decay < 0.0 {
            return bad("train.weight_decay must not be negative");
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("train.batch_size and train.eval_batch_size must be at least 1");
        }
        if self.epochs == 0 {
            return bad("train.epochs must be at least 1");
        }
        if self.eval_every == 0 {
            return bad("train.eval_every must be at least 1");
        }
        if self.metric_k == 0 {
            return bad("train.metric_k must be at least 1");
        }
        Ok(())
    }
}

fn d_seed() -> u64 {
    42
}
fn d_negatives() -> usize {
    100 // the paper: 100 sampled negatives per user
}
fn d_out() -> String {
    "runs".into()
}

/// One training run: which data, which model, how to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name: the run folder is `<out_dir>/<name>/seed-<seed>`.
    pub name: String,
    /// Path of a dataset config (`configs/datasets/*.toml`), relative to the
    /// working directory.
    pub dataset: String,
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Negatives per user for sampled ranking.
    #[serde(default = "d_negatives")]
    pub negatives: usize,
    #[serde(default = "d_out")]
    pub out_dir: String,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainSettings,
}

impl RunConfig {
    pub fn from_toml(text: &str) -> Result<Self, TrainError> {
        let cfg: Self = toml::from_str(text).map_err(|e| TrainError::Toml(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return Err(TrainError::Config(format!(
                "name `{}` must be a plain folder name",
                self.name
            )));
        }
        if self.negatives == 0 {
            return Err(TrainError::Config("negatives must be at least 1".into()));
        }
        self.model.validate()?;
        self.train.validate()
    }

    /// The resolved config, every default written out.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in() {
        let c = RunConfig::from_toml("name = \"x\"\ndataset = \"d.toml\"\n").unwrap();
        assert_eq!(c.seed, 42);
        assert_eq!(c.model.hidden, 64);
        assert_eq!(c.train.patience, 20);
        assert_eq!(RunConfig::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let e =
            RunConfig::from_toml("name=\"x\"\ndataset=\"d\"\n[model]\nbackbone=\"transformer\"")
                .unwrap_err()
                .to_string();
        assert!(e.contains("unknown variant") && e.contains("sasrec"), "{e}");
        let e = RunConfig::from_toml("name=\"x\"\ndataset=\"d\"\n[model]\nloss=\"mse\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant"), "{e}");
        let e = RunConfig::from_toml("name=\"x\"\ndataset=\"d\"\n[model]\nmax_len=0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_len"), "{e}");
        let e = RunConfig::from_toml("name=\"x\"\ndataset=\"d\"\n[train]\nlr=0.001\nbogus=1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }
}
