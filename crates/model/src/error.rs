//! Errors of the model crate.

/// What can go wrong building or feeding a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("invalid input: {0}")]
    Input(String),
}
