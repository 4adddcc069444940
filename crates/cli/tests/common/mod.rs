//! Running the `hsuga` binary from the repository root, as the README does,
//! and the servers it talks to: a scripted chat server ([`chat_server`]) and
//! llama.cpp's own ([`llama_server`]).

// Each test binary compiles these modules and most use a part of them.
#[allow(dead_code)]
pub mod chat_server;
#[allow(dead_code)]
pub mod llama_server;

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

/// A command's stdout and stderr, for assertions and failure messages.
#[allow(dead_code)]
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
