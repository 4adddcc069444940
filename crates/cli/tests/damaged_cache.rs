//! Damaged cache files through the binary under a memory limit (issue 20,
//! item 9): before caches were verified, one flipped byte in `prepared.bin`
//! made `hsuga data stats` grow to 23.9 GB until the OOM killer ended it, and
//! random bytes panicked with `capacity overflow`. Every damage must now be
//! named and rebuilt to the same bytes, with the process held to 1 GB of
//! address space (`ulimit -v`), so an allocation sized by garbage aborts the
//! test instead of the machine.

mod common;

use std::path::Path;
use std::process::Output;

/// `hsuga --cache-dir <cache> data prepare ml-100k --seeds 42` with its
/// address space limited to 1 GB (the intact run needs well under 100 MB).
fn prepare_limited(cache: &Path) -> Output {
    std::process::Command::new("sh")
        .current_dir(common::repo())
        .arg("-c")
        .arg("ulimit -v 1000000 && exec \"$0\" --cache-dir \"$1\" data prepare ml-100k --seeds 42")
        .arg(env!("CARGO_BIN_EXE_hsuga"))
        .arg(cache)
        .env("HSUGA_LOG", "warn")
        .output()
        .unwrap()
}

fn cache_file(cache: &Path, name: &str) -> std::path::PathBuf {
    let datasets = cache.join("datasets");
    let dir = std::fs::read_dir(&datasets)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ml-100k-")
        })
        .expect("a prepared ml-100k folder");
    dir.join(name)
}

#[test]
fn every_damaged_cache_file_is_named_and_rebuilt_within_a_memory_limit() {
    let cache = tempfile::tempdir().unwrap();
    let first = prepare_limited(cache.path());
    assert!(
        first.status.success(),
        "the intact run under the limit: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    for name in ["prepared.bin", "candidates-100-seed42.bin"] {
        let file = cache_file(cache.path(), name);
        let good = std::fs::read(&file).unwrap();
        let mid = good.len() / 2;
        let mut flipped = good.clone();
        flipped[mid] ^= 0x40;
        // A valid magic with a payload length that would need exabytes.
        let mut huge = good.clone();
        huge[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let random: Vec<u8> = (0..good.len() as u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let damages: [(&str, Vec<u8>); 4] = [
            ("truncated", good[..mid].to_vec()),
            ("one byte flipped in the middle", flipped),
            ("a header claiming 2^60 bytes", huge),
            ("random bytes", random),
        ];
        for (what, bytes) in damages {
            std::fs::write(&file, &bytes).unwrap();
            let o = prepare_limited(cache.path());
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "{name}, {what}: {err}");
            assert!(
                err.contains(name) && err.contains("rebuilding"),
                "{name}, {what}: the damage is not named: {err}"
            );
            assert!(
                std::fs::read(&file).unwrap() == good,
                "{name}, {what}: not rebuilt to the same bytes"
            );
        }
    }
}
