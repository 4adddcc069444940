//! Experiment grids: datasets × methods × seeds. [`run`] trains every run
//! that has no result yet (an interrupted run resumes from its last
//! checkpoint; finished ones are skipped), then [`report`] aggregates seeds
//! into the paper's table layout with paired t-tests against the base
//! method. Everything lives under `<out_dir>/<name>/`:
//!
//! ```text
//! experiment.toml                      the experiment as run
//! results.md                           every dataset's table
//! <dataset>/table.{md,csv,json}
//! <dataset>/tuning.md                 tuned rows: each setting's validation score
//! <dataset>/plots/<plot>.{svg,png}     sensitivity plots ([[plots]])
//! <dataset>/<method>/seed-<seed>/      one run folder (config, checkpoints, logs, ranks)
//! ```

pub mod adopt;
pub mod config;
mod curve;
mod inputs;
pub mod interest_quality;
mod plot;
mod report;
pub mod run_folder;
mod runner;
pub mod tune;

pub use adopt::{ADOPTED_FROM, Finished, adopt};
pub use config::{ExperimentConfig, MethodSpec, ResolvedMethod};
pub use inputs::{InputDirs, semantic_inputs};
pub use plot::PlotSpec;
pub use report::{DatasetTable, report};
pub use run_folder::{
    BUILD, INPUTS_DIGEST, RunReport, check_dir, is_finished, read_finished, run_dir,
};
pub use runner::{RunOptions, run, train_one, with_pretrained};

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("invalid experiment: {0}")]
    Config(String),
    #[error("{path}: {message}")]
    Run { path: String, message: String },
    #[error("semantic inputs: {0}")]
    Inputs(String),
    #[error(transparent)]
    Data(#[from] hsuga_data::DataError),
    #[error(transparent)]
    Train(#[from] hsuga_train::TrainError),
    #[error("{0}")]
    Io(String),
}

impl ExperimentError {
    fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Self::Io(format!("{}: {e}", path.display()))
    }
}
