//! Running the `hsuga` binary from the repository root, as the README does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `hsuga --cache-dir <cache> <args…>` in the repository root.
// Each test binary compiles this module and some use only `repo`.
#[allow(dead_code)]
pub fn hsuga(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hsuga"))
        .current_dir(repo())
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .unwrap()
}
