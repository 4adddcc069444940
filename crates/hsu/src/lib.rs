//! Hierarchical Semantic Understanding (HSUGA paper §3.3, appendix A):
//! stage-wise mining of each user's interests with four edit operations
//! (add / delete / update / retain), stored so that a run resumes after a
//! crash and updates incrementally when users gain interactions.
//!
//! The principal types: [`HsuConfig`] (a `configs/hsu/*.toml` file) and its
//! validated [`Resolved`] form, [`PromptSet`] (a `configs/prompts/*.toml`
//! file), [`Engine`] (the stage loop over a bounded worker pool), [`Store`]
//! (SQLite, one row per user and stage) and [`Stats`]. [`run_dataset`] is the
//! one entry point that runs HSU over a prepared dataset (the `hsuga hsu`
//! command and experiment grids both call it).
//!
//! Where we differ from the paper and why:
//! - instructions precede the history in every prompt, and an edit prompt is
//!   the next turn of its selection conversation, so servers' prefix caches
//!   are reused (the paper's A.2 asks for shared prefixes; its Figure 4 puts
//!   the history first);
//! - a "retain" selection does not call the model again by default (the
//!   paper's retain prompt only repeats the previous interests);
//! - a retry after an unusable greedy answer samples (temperature 0.7), since
//!   repeating a greedy call repeats its answer.

pub mod config;
pub mod engine;
pub mod error;
pub mod export;
pub mod online;
pub mod parse;
pub mod pipeline;
pub mod prompts;
pub mod stats;
pub mod store;

use std::sync::Arc;

pub use config::{BackendConfig, HsuConfig, Mode, Resolved};
pub use engine::{Engine, HistItem, RunReport, Shard, UserHistory, final_interests, histories};
pub use error::{HsuError, Result};
pub use pipeline::{
    DatasetReport, DatasetRun, HiddenStates, Plan, UserSelection, hidden_user_embeddings,
    run_dataset,
};
pub use prompts::{ItemTemplate, PromptSet};
pub use stats::{Stats, TrailStage, stats, trail};
pub use store::{StageRecord, Status, Store};

use hsuga_llm::ChatBackend;

/// Builds the back-end a config names.
pub fn build_backend(cfg: &BackendConfig) -> Result<Arc<dyn ChatBackend>> {
    Ok(match cfg {
        BackendConfig::Rules(r) => Arc::new(hsuga_llm::rules::RulesEditor::new(r.clone())),
        BackendConfig::Openai(o) => Arc::new(hsuga_llm::openai::OpenAiClient::new(o.clone())?),
        BackendConfig::Local(l) => Arc::new(hsuga_llm::local::LocalLlm::load(l)?),
    })
}
