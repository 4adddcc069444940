//! Reruns are reproducible on one machine: the same config and seed give a
//! byte-identical `ranks.csv` on a rerun, at one or two threads, and when
//! runs train side by side in one process (`hsuga experiment --jobs 2`:
//! each run on its own one-thread pool). Real ML-100K, short runs.
//!
//! Across thread counts this holds without a deterministic mode: burn's
//! matrix products (gemm) split the work over rows and columns, never over
//! the summed dimension, and the dropout masks are drawn in fixed-size
//! chunks. Across CPUs it does not (AVX-512 vs AVX2 reductions, gemm blocks
//! sized by the L1 cache), so nothing here compares against stored numbers.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use hsuga_data::{Candidates, DatasetConfig, Prepared};
use hsuga_model::{Backbone, ModelConfig, cpu};
use hsuga_train::{Job, Outcome, TrainSettings, fit, load_best};

fn ml100k() -> (Prepared, Candidates, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let cfg = DatasetConfig::load(Path::new("../../configs/datasets/ml-100k.toml")).unwrap();
    let p = hsuga_data::prepare(&cfg, cache.path()).unwrap();
    let c = hsuga_data::candidates(&p, 100, 42).unwrap();
    (p, c, cache)
}

/// SASRec with dropout (masks drawn every step), short histories: a few
/// seconds an epoch in the dev profile.
fn model() -> ModelConfig {
    ModelConfig {
        backbone: Backbone::Sasrec.into(),
        max_len: 30,
        dropout: 0.2,
        ..ModelConfig::default()
    }
}

fn settings(epochs: usize) -> TrainSettings {
    TrainSettings {
        epochs,
        patience: 20,
        progress: false,
        ..TrainSettings::default()
    }
}

/// Trains on a fresh rayon pool of `threads` threads into `dir`.
fn train(p: &Prepared, c: &Candidates, epochs: usize, threads: usize, dir: &Path) -> Outcome {
    let (model, train) = (model(), settings(epochs));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        fit(&Job {
            model: &model,
            train: &train,
            eval: &Default::default(),
            method: &Default::default(),
            semantic: &Default::default(),
            seed: 42,
            split: &p.split,
            candidates: c,
            groups: &p.groups,
            run_dir: Some(dir),
            device: cpu(),
            progress: Default::default(),
        })
        .unwrap()
    })
}

fn ranks_csv(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("ranks.csv")).unwrap()
}

/// The first line that differs, for the failure message.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    a.lines()
        .zip(b.lines())
        .enumerate()
        .find(|(_, (x, y))| x != y)
        .map_or("lengths differ".into(), |(i, (x, y))| {
            format!("line {}: {x:?} vs {y:?}", i + 1)
        })
}

fn assert_same(what: &str, a: &Path, b: &Path) {
    let (x, y) = (ranks_csv(a), ranks_csv(b));
    assert!(!x.is_empty());
    assert!(
        x == y,
        "{what}: ranks.csv differs, {}",
        first_difference(&x, &y)
    );
}

#[test]
fn a_rerun_gives_identical_ranks_at_one_and_two_threads() {
    let (p, c, _cache) = ml100k();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = train(&p, &c, 2, 2, dirs[0].path());
    train(&p, &c, 2, 2, dirs[1].path());
    train(&p, &c, 2, 1, dirs[2].path());
    // Not a degenerate model that ranks everyone alike.
    let ranks = first.test_ranks();
    assert!(ranks.iter().any(|&r| r != ranks[0]));
    assert_same("2 threads, rerun", dirs[0].path(), dirs[1].path());
    assert_same("2 threads vs 1 thread", dirs[0].path(), dirs[2].path());
}

#[test]
fn runs_side_by_side_match_a_run_alone() {
    let (p, c, _cache) = ml100k();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    train(&p, &c, 1, 1, dirs[0].path());
    std::thread::scope(|s| {
        for d in &dirs[1..] {
            let (p, c) = (&p, &c);
            s.spawn(move || train(p, c, 1, 1, d.path()));
        }
    });
    assert_same("alone vs side by side", dirs[0].path(), dirs[1].path());
    assert_same("side by side", dirs[1].path(), dirs[2].path());
}

/// Regression: reading a checkpoint back (`load_best`, a resumed run's
/// best-checkpoint restore) first draws the fresh model's random weights
/// from burn's one process-wide RNG. Unlocked, those draws could fall inside
/// another run's seeded initialisation and change its initial weights, so a
/// run's result depended on what else the process was doing.
#[test]
fn loading_a_checkpoint_beside_a_starting_run_leaves_its_weights_alone() {
    let (p, c, _cache) = ml100k();
    let saved = tempfile::tempdir().unwrap();
    train(&p, &c, 1, 1, saved.path());
    let alone = tempfile::tempdir().unwrap();
    train(&p, &c, 1, 1, alone.path());
    let done = AtomicBool::new(false);
    let beside: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                load_best(
                    &model(),
                    &Default::default(),
                    &Default::default(),
                    p.split.num_items,
                    saved.path(),
                    &cpu(),
                )
                .unwrap();
            }
        });
        for d in &beside {
            train(&p, &c, 1, 1, d.path());
        }
        done.store(true, Ordering::SeqCst);
    });
    for d in &beside {
        assert_same("alone vs beside checkpoint loads", alone.path(), d.path());
    }
}
