//! Typed errors of the HSU crate.

use std::path::{Path, PathBuf};

pub type Result<T, E = HsuError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum HsuError {
    // The causes are printed in the messages, not chained as sources:
    // an error chain would print them again.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Config(String),
    #[error("prompt template {file}: {message}")]
    Template { file: String, message: String },
    #[error("store {path}: {cause}")]
    Store {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("store {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(transparent)]
    Llm(#[from] hsuga_llm::LlmError),
    #[error("{0}")]
    Invalid(String),
}

impl HsuError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        HsuError::Io {
            path: path.to_path_buf(),
            cause: source,
        }
    }
}
