//! Training for hsuga recommenders: [`fit`] runs Adam with early stopping on
//! validation NDCG@K, restores the best checkpoint and tests it; a run
//! folder holds the resolved config, safetensors checkpoints
//! ([`checkpoint`]), `state.json` for resuming, CSV/JSON logs and a
//! training curve. [`RunConfig`] is the `hsuga train` config file.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod log;
pub mod metrics;
pub mod run;
pub mod trainer;

pub use config::{RunConfig, TrainSettings};
pub use error::TrainError;
pub use metrics::{Metrics, evaluate_ranks, rank_of_target};
pub use run::{RunReport, check_dir, run, run_dir};
pub use trainer::{EpochLog, Job, Outcome, fit, load_best, model_tag};
