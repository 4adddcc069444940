//! Training for hsuga recommenders: [`fit`] runs Adam with early stopping on
//! a validation metric (evaluated by `hsuga_eval`, through [`ModelScorer`]),
//! restores the best checkpoint and tests it. Given a folder it writes
//! safetensors checkpoints ([`checkpoint`]), `state.json` for resuming,
//! CSV/JSON logs and the test ranks; which folder, whether a run there is
//! finished, reused or adopted, and the training curve drawn from the logs
//! are the experiment layer's business (`hsuga_experiment::run_folder`). [`RunConfig`] is the `hsuga train` config file; its
//! `[method]` ([`MethodConfig`]) adds LLMInit, LLM-ESR's dual view, HSU
//! fusion, self-distillation ([`distill`], LLM-ESR's or GAA's) and the
//! item tables of LLM2Rec and LLMEmb to any backbone, reading the matrices
//! of [`SemanticInputs`] (with a trained run's item table,
//! [`pretrained_items`]).

pub mod checkpoint;
pub mod cities;
pub mod config;
pub mod distill;
pub mod epoch_commit;
pub mod error;
pub mod icsrec_objective;
pub mod log;
pub mod melt;
pub mod objective;
pub mod progress;
pub mod rcl_objective;
pub mod rlmrec_objective;
pub mod scoring;
pub mod semantic;
pub mod trainer;

pub use config::{
    DistillConfig, InputsConfig, ItemInit, ItemText, MethodConfig, Pretrained, RunConfig, Teacher,
    TrainSettings, UserSemantic, check_settings,
};
pub use distill::Distiller;
pub use error::TrainError;
pub use objective::{EpochEdit, EpochStart, Objective, Step};
pub use progress::Progress;
pub use scoring::{ModelScorer, attach_users, represent_users};
pub use semantic::{Matrix, SemanticInputs, item_mean, pretrained_items};
pub use trainer::{EpochLog, Job, Outcome, fit, load_best, model_tag};
