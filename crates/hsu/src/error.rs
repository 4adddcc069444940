//! Typed errors of the HSU crate.

use std::path::{Path, PathBuf};

pub type Result<T, E = HsuError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum HsuError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Config(String),
    #[error("prompt template {file}: {message}")]
    Template { file: String, message: String },
    #[error("store {path}: {source}")]
    Store {
        path: PathBuf,
        source: rusqlite::Error,
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
            source,
        }
    }
}
