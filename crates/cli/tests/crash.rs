//! `hsuga train` killed with SIGKILL at random moments (each kill followed
//! by a resume) ends with the same `ranks.csv` byte for byte, the same
//! losses and validation scores every epoch, and the same best weights bit
//! for bit, as a run nobody interrupted: every resume starts from a whole
//! epoch (see hsuga-train's `epoch_commit`). The same holds for
//! `hsuga experiment` over a two-row grid trained side by side, and its
//! tables. The kill times come from a seed that changes every run and is
//! printed on failure, so CI keeps probing new moments (inside checkpoint
//! writes, between runs of the grid and while its table is written among
//! them).

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

/// `hsuga --cache-dir <cache> <command> --config <cfg> --quiet <extra…>`
/// in the repository root, stdout dropped, stderr kept for failures.
fn quiet(command: &str, cfg: &Path, cache: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hsuga"));
    c.current_dir(common::repo())
        .arg("--cache-dir")
        .arg(cache)
        .args([command, "--config", cfg.to_str().unwrap(), "--quiet"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn train(cfg: &Path, cache: &Path) -> Command {
    quiet("train", cfg, cache, &[])
}

/// Starts `command` up to five times, each killed with SIGKILL at a random
/// moment within about a third of `full` (an uninterrupted run's time)
/// unless it finished first, then once more to the end. Returns that last
/// run's output and, for failure messages, the seed and each kill's moment
/// with what `progress` saw after it.
fn kill_then_finish(
    command: impl Fn() -> Command,
    full: Duration,
    progress: impl Fn() -> usize,
) -> (std::process::Output, String) {
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut kills = Vec::new();
    for _ in 0..5 {
        let mut child = command().spawn().unwrap();
        let at =
            Duration::from_millis(rng.random_range(200..(full.as_millis() as u64 / 3).max(400)));
        std::thread::sleep(at);
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills.push((at.as_millis(), progress()));
    }
    let out = command().output().unwrap();
    (
        out,
        format!("seed {seed}, kills (ms, progress after it) {kills:?}"),
    )
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

    let killed = tempfile::tempdir().unwrap();
    let cfg = write_config(killed.path());
    let run = killed.path().join("runs/crash/seed-42");
    let (out, why) = kill_then_finish(|| train(&cfg, cache.path()), full, || epochs_done(&run));
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
    // Every epoch's loss and validation, exactly, leaving out the timings:
    // `log.json`, not the rounded `log.csv`, so that a last-bit difference
    // (e.g. epochs read back from `state.json` by a float parser that does
    // not round-trip) is caught.
    let untimed = |dir: &Path| -> Vec<serde_json::Value> {
        let mut log: Vec<serde_json::Value> = serde_json::from_str(&read(dir, "log.json")).unwrap();
        for epoch in &mut log {
            let fields = epoch.as_object_mut().unwrap();
            fields.remove("seconds");
            fields.remove("train_seqs_per_s");
        }
        log
    };
    assert_eq!(
        untimed(&want),
        untimed(&run),
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

fn write_grid(dir: &Path) -> PathBuf {
    let cfg = dir.join("grid.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"grid\"\nout_dir = \"{}\"\ndatasets = [\"ml-100k\"]\nseeds = [42]\n\
             base = \"SASRec\"\n[train]\nepochs = 12\npatience = 100\n\
             [[methods]]\nname = \"SASRec\"\n\
             model = {{ backbone = \"sasrec\", max_len = 20, hidden = 32 }}\n\
             [[methods]]\nname = \"GRU4Rec\"\n\
             model = {{ backbone = \"gru4rec\", max_len = 20, hidden = 32 }}\n",
            dir.join("runs").display()
        ),
    )
    .unwrap();
    cfg
}

fn grid(cfg: &Path, cache: &Path) -> Command {
    quiet("experiment", cfg, cache, &["--jobs", "2"])
}

/// Every file a grid wrote that is a result (ranks, reports' metrics, the
/// tables), by path relative to its runs folder, without timings.
fn grid_results(runs: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![runs.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if name == "ranks.csv" || name.starts_with("table") && name.ends_with(".csv") {
                let rel = p.strip_prefix(runs).unwrap().display().to_string();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Runs of the grid that have written their result.
fn grid_runs_done(runs: &Path) -> usize {
    grid_results(runs)
        .iter()
        .filter(|(p, _)| p.ends_with("ranks.csv"))
        .count()
}

#[test]
fn sigkill_during_a_two_row_grid_then_resume_equals_an_uninterrupted_grid() {
    let cache = tempfile::tempdir().unwrap();
    let straight = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let out = grid(&write_grid(straight.path()), cache.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full = t0.elapsed();
    let want = grid_results(&straight.path().join("runs"));
    // Both rows' ranks and the table.
    assert!(
        want.len() >= 3,
        "{:?}",
        want.iter().map(|w| &w.0).collect::<Vec<_>>()
    );

    let killed = tempfile::tempdir().unwrap();
    let cfg = write_grid(killed.path());
    let runs = killed.path().join("runs");
    let (out, why) = kill_then_finish(|| grid(&cfg, cache.path()), full, || grid_runs_done(&runs));
    assert!(
        out.status.success(),
        "{why}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = grid_results(&runs);
    assert_eq!(
        got.iter().map(|g| &g.0).collect::<Vec<_>>(),
        want.iter().map(|w| &w.0).collect::<Vec<_>>(),
        "{why}"
    );
    for ((path, a), (_, b)) in want.iter().zip(&got) {
        assert!(a == b, "{path} differs after the kills ({why})");
    }
}
