//! Training for hsuga recommenders: [`fit`] runs Adam with early stopping on
//! a validation metric (evaluated by `hsuga_eval`, through [`ModelScorer`]), restores the best checkpoint and tests it; a run
//! folder holds the resolved config, safetensors checkpoints
//! ([`checkpoint`]), `state.json` for resuming, CSV/JSON logs and a
//! training curve. [`RunConfig`] is the `hsuga train` config file; its
//! `[method]` ([`MethodConfig`]) adds LLMInit, LLM-ESR's dual view, HSU
//! fusion and self-distillation ([`distill`], LLM-ESR's or GAA's) to any
//! backbone, reading the matrices of [`SemanticInputs`].

pub mod adopt;
pub mod checkpoint;
pub mod config;
pub mod distill;
pub mod error;
pub mod log;
pub mod progress;
pub mod run;
pub mod scoring;
pub mod semantic;
pub mod trainer;

pub use adopt::{ADOPTED_FROM, Finished, adopt};
pub use config::{
    DistillConfig, InputsConfig, ItemInit, ItemText, MethodConfig, RunConfig, Teacher,
    TrainSettings, UserSemantic,
};
pub use distill::Distiller;
pub use error::TrainError;
pub use progress::Progress;
pub use run::{BUILD, RunReport, check_dir, is_finished, run, run_dir};
pub use scoring::{ModelScorer, attach_users, represent_users};
pub use semantic::{Matrix, SemanticInputs, item_mean};
pub use trainer::{EpochLog, Job, Outcome, fit, load_best, model_tag};
