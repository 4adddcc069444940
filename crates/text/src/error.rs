//! The text crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the text crate. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("bad item template {template:?}: {msg}")]
    Template { template: String, msg: String },

    #[error(
        "dataset '{dataset}' has no item text (its config names no [items] source), so \
         semantic methods (text embeddings, LLM-ESR, HSU, GAA) cannot run on it; \
         use a dataset with item text (e.g. beauty, ml-100k), a collaborative-only method, \
         or supply embeddings (`inputs.item_text = \"file:items.safetensors\"`)"
    )]
    NoItemText { dataset: String },

    #[error("dataset '{dataset}' has no [text] template in its config")]
    NoTemplate { dataset: String },

    #[error("text {index} is empty or whitespace only; embedders need some text")]
    EmptyText { index: usize },

    #[error(
        "model '{model}' is not in {dir}: {reason}. Fetch it with `hsuga models fetch {model}` \
         (or point HSUGA_MODELS_DIR / --models-dir at a directory that has it)"
    )]
    ModelMissing {
        model: String,
        dir: PathBuf,
        reason: String,
    },

    #[error("fetching model '{model}': {msg}")]
    Fetch { model: String, msg: String },

    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        /// Printed in the message, not chained as a source: the chain would
        /// print it a second time.
        cause: std::io::Error,
    },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),

    #[error("{request}: {msg}")]
    Remote { request: String, msg: String },

    #[error("embedding dimension mismatch: {context} has {found}, expected {expected}")]
    DimensionMismatch {
        context: String,
        expected: usize,
        found: usize,
    },

    #[error("embedding store {path}: {msg}")]
    Store { path: PathBuf, msg: String },

    #[error("PCA: {0}")]
    Pca(String),

    #[error("bad embedder config: {0}")]
    Config(String),

    #[error(transparent)]
    Data(#[from] hsuga_data::DataError),
}

impl TextError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TextError::Io {
            path: path.into(),
            cause: source,
        }
    }
}

pub type Result<T, E = TextError> = std::result::Result<T, E>;
