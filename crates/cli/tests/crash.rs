//! `hsuga train` killed with SIGKILL at random moments (each kill followed
//! by a resume) ends with the same `ranks.csv` byte for byte, the same
//! losses and validation scores every epoch, and the same best weights bit
//! for bit, as a run nobody interrupted: every resume starts from a whole
//! epoch (see hsuga-train's `epoch_commit`). The kill times come from a
//! seed that changes every run and is printed on failure, so CI keeps
//! probing new moments (inside checkpoint writes among them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn write_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"crash\"\ndataset = \"ml-100k\"\nout_dir = \"{}\"\n\
             [model]\nmax_len = 20\nhidden = 32\n[train]\nepochs = 6\npatience = 100\n",
            dir.join("runs").display()
        ),
    )
    .unwrap();
    cfg
}

fn train(cfg: &Path, cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hsuga"));
    c.current_dir(common::repo())
        .arg("--cache-dir")
        .arg(cache)
        .args(["train", "--config", cfg.to_str().unwrap(), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn epochs_done(run: &Path) -> usize {
    std::fs::read_to_string(run.join("state.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["epochs_done"].as_u64())
        .unwrap_or(0) as usize
}

#[test]
fn sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run() {
    let cache = tempfile::tempdir().unwrap();
    let straight = tempfile::tempdir().unwrap();
    let cfg = write_config(straight.path());
    let args = ["train", "--config", cfg.to_str().unwrap(), "--quiet"];
    let t0 = Instant::now();
    let out = common::hsuga(cache.path(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full = t0.elapsed();
    let want = straight.path().join("runs/crash/seed-42");

    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let killed = tempfile::tempdir().unwrap();
    let cfg = write_config(killed.path());
    let run = killed.path().join("runs/crash/seed-42");
    let mut kills = Vec::new();
    // Up to five kills, each at a random moment within about one epoch
    // after the run got going again.
    for _ in 0..5 {
        let mut child = train(&cfg, cache.path()).spawn().unwrap();
        let at =
            Duration::from_millis(rng.random_range(200..(full.as_millis() as u64 / 3).max(400)));
        std::thread::sleep(at);
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills.push((at.as_millis(), epochs_done(&run)));
    }
    let out = train(&cfg, cache.path()).output().unwrap();
    let why = format!("seed {seed}, kills (ms, epochs committed) {kills:?}");
    assert!(
        out.status.success(),
        "{why}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |dir: &Path, f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    assert!(
        read(&want, "ranks.csv") == read(&run, "ranks.csv"),
        "ranks.csv differs after the kills ({why})"
    );
    // Every epoch's loss and validation, leaving out the timing columns.
    let untimed = |text: String| -> Vec<String> {
        text.lines()
            .map(|l| {
                let c: Vec<&str> = l.split(',').collect();
                [&c[..2], &c[4..]].concat().join(",")
            })
            .collect()
    };
    assert_eq!(
        untimed(read(&want, "log.csv")),
        untimed(read(&run, "log.csv")),
        "training log differs after the kills ({why})"
    );
    // The files differ in their headers' parameter ids (drawn per process);
    // the tensors themselves must not.
    let weights = |dir: &Path| hsuga_train::checkpoint::weights_of(&dir.join("best.bpk")).unwrap();
    assert!(
        weights(&want) == weights(&run),
        "best weights differ after the kills ({why})"
    );
    let left: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.starts_with("last.") && !n.starts_with("last.e6."))
        .collect();
    assert!(left.is_empty(), "stale files {left:?} ({why})");
}

/// Two `hsuga train` on one run folder: the second stops at once, naming
/// the first's pid, and nothing of the first run is touched.
#[test]
fn a_second_process_on_a_busy_run_folder_stops_naming_the_holder() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let run = dir.path().join("runs/crash/seed-42");
    // Prepare the dataset first, so the first process is training soon.
    let warm = common::hsuga(
        cache.path(),
        &["data", "prepare", "ml-100k", "--seeds", "42"],
    );
    assert!(warm.status.success());
    let mut first = train(&cfg, cache.path()).spawn().unwrap();
    let t0 = Instant::now();
    while epochs_done(&run) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the first run never committed an epoch"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = train(&cfg, cache.path()).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    let still_running = first.try_wait().unwrap().is_none();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        still_running,
        "the first run finished before the second started"
    );
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "in use by another hsuga process (pid {})",
            first.id()
        )),
        "{err}"
    );
}
