//! Errors of the train crate.

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training config: {0}")]
    Config(String),
    #[error("semantic inputs: {0}")]
    Inputs(String),
    #[error(transparent)]
    Model(#[from] hsuga_model::ModelError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("run folder {dir}: {msg}")]
    RunDir { dir: String, msg: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("toml: {0}")]
    Toml(String),
}
