//! One error type for everything that reads or checks data, so every failure
//! names the file (and line, where there is one) that caused it.

use std::path::{Path, PathBuf};

/// Errors from loading, preprocessing and caching datasets.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        /// Printed in the message, not chained as a source: the chain would
        /// print it a second time.
        cause: std::io::Error,
    },
    /// A line (1-based) that does not have the shape its format requires.
    #[error("{path}:{line}: {message}")]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: invalid dataset config: {message}")]
    Config { path: PathBuf, message: String },
    /// Valid input that leaves nothing to work with (empty file, all users filtered out…).
    #[error("{path}: {message}")]
    Empty { path: PathBuf, message: String },
    #[error("{path}: cache is unreadable ({message}); delete it to rebuild")]
    Cache { path: PathBuf, message: String },
    /// Getting a dataset's files failed; the message says how to place them by hand.
    #[error("{0}")]
    Fetch(String),
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            cause: source,
        }
    }

    /// A message quoting a long line is cut (a malformed 10 MB line is not
    /// worth printing whole).
    pub(crate) fn malformed(path: &Path, line: usize, message: impl Into<String>) -> Self {
        const MAX: usize = 300;
        let mut message = message.into();
        if message.len() > MAX {
            let total = message.len();
            let cut = (0..=MAX)
                .rev()
                .find(|&i| message.is_char_boundary(i))
                .unwrap_or(0);
            message.truncate(cut);
            message.push_str(&format!("… ({total} bytes in all)"));
        }
        Self::Malformed {
            path: path.to_path_buf(),
            line,
            message,
        }
    }

    pub(crate) fn config(path: &Path, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn empty(path: &Path, message: impl Into<String>) -> Self {
        Self::Empty {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_quoted_line_is_cut_with_its_length() {
        let line = format!("bad line: {}", "é".repeat(5000));
        let e = DataError::malformed(Path::new("f.txt"), 7, line.clone()).to_string();
        assert!(e.starts_with("f.txt:7: bad line: éé"), "{}", &e[..40]);
        assert!(e.len() < 400, "{} bytes", e.len());
        assert!(
            e.ends_with(&format!("… ({} bytes in all)", line.len())),
            "{e}"
        );
    }
}
