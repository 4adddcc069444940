//! Stamps the build with the commit it was compiled from, so every run folder
//! can say which code trained it (`report.json`'s `build`): runs adopted or
//! resumed across builds are then visible in the tables' provenance line.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let build = match git(&["rev-parse", "--short=10", "HEAD"]) {
        Some(commit) => format!("{version}+g{commit}"),
        None => version, // built outside a git checkout
    };
    println!("cargo:rustc-env=HSUGA_BUILD={build}");
    // Rebuild the stamp when HEAD moves: a checkout changes HEAD, a commit
    // changes the branch's ref (or packed-refs). Only files that exist are
    // named: cargo reruns the script on every build for a missing one.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
        let files = ["HEAD", "packed-refs"]
            .into_iter()
            .chain(head_ref.as_deref());
        for file in files {
            let path = std::path::Path::new(&dir).join(file);
            if path.is_file() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
