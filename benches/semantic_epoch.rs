//! One training epoch on the paper's Fashion split for plain SASRec, LLM-ESR
//! (dual view, PCA init, cross-attention, 10-neighbour self-distillation)
//! and HSUGA-style LLM-ESR + GAA, with random item text of each given
//! dimension (Fashion has no item text; random vectors of the right shape
//! cost the same) and both teacher modes. Issue 6 §7: the official LLM-ESR
//! code takes ≈59 min per epoch of this setting on this CPU.
//!
//! ```text
//! cargo bench --profile release -p hsuga-train --bench semantic_epoch -- [--dims 1536 384] [--epochs 1] [--only llm-esr/cache]
//! ```
//! Each run trains in a process of its own (the bench re-runs itself with
//! `--child LABEL DIM`): measured right after another run in the same
//! process, a run came out about a third slower. `--only` keeps the semantic
//! runs with that label (SASRec, the yardstick, always runs), e.g. to profile
//! one. Prints one JSON object per run; `epoch_s` excludes validation.

use std::path::{Path, PathBuf};

use hsuga_data::DatasetConfig;
use hsuga_model::{ModelConfig, cpu};
use hsuga_train::{
    DistillConfig, ItemInit, Job, Matrix, MethodConfig, SemanticInputs, Teacher, TrainSettings,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Freed tensor buffers stay with the process: with glibc's allocator every
/// step page-faulted its large buffers back in (a fifth of a SASRec step);
/// `keep_freed_memory` in `main` stops mimalloc purging them in turn.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `hsuga` binary's allocator setting, so benchmarks measure what it runs.
#[path = "../crates/cli/src/allocator.rs"]
// Its unit test is the binary's; a harness-less bench never runs it.
#[allow(dead_code)]
mod allocator;

/// Random unit rows (text embedders return unit vectors; the values do not
/// change the cost).
fn random_unit(rows: usize, dim: usize, seed: u64) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut data: Vec<f32> = (0..rows * dim)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    for row in data.chunks_mut(dim) {
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= n);
    }
    Matrix { rows, dim, data }
}

/// The semantic runs, in order. The first two take LLM-ESR apart (no
/// distillation; without and with cross-attention) to show where its epoch
/// goes beyond SASRec's.
const SEMANTIC: [&str; 6] = [
    "dual-view",
    "dual-view+cross",
    "llm-esr/cache",
    "hsuga/cache",
    "llm-esr/online",
    "hsuga/online",
];

/// The method a label names (`sasrec`: the plain backbone).
fn method_of(label: &str) -> MethodConfig {
    let dual = |cross_attention| MethodConfig {
        item_init: ItemInit::Pca,
        dual_view: true,
        cross_attention,
        ..MethodConfig::default()
    };
    let distilled = |group_aware, teacher| MethodConfig {
        distill: Some(DistillConfig {
            group_aware,
            teacher,
            ..DistillConfig::default()
        }),
        ..dual(true)
    };
    match label {
        "sasrec" => MethodConfig::default(),
        "dual-view" => dual(false),
        "dual-view+cross" => dual(true),
        "llm-esr/cache" => distilled(false, Teacher::Cache),
        "hsuga/cache" => distilled(true, Teacher::Cache),
        "llm-esr/online" => distilled(false, Teacher::Online),
        "hsuga/online" => distilled(true, Teacher::Online),
        other => panic!(
            "unknown run `{other}` (runs: sasrec, {})",
            SEMANTIC.join(", ")
        ),
    }
}

/// Trains one run and prints its JSON line. `cache` is shared by all the
/// children of one bench, so Fashion is prepared once, not once per run.
fn child(label: &str, dim: usize, epochs: usize, cache: &Path) {
    let cfg = DatasetConfig::load(Path::new("../../configs/datasets/fashion.toml")).unwrap();
    let data = hsuga_data::prepare(&cfg, cache).unwrap();
    let split = &data.split;
    let cands = hsuga_data::candidates(&data, 100, 42).unwrap();
    // LLM-ESR's Fashion setting: max length 200, batch 128.
    let model = ModelConfig {
        max_len: 200,
        ..ModelConfig::default()
    };
    let train = TrainSettings {
        epochs,
        progress: false,
        ..TrainSettings::default()
    };
    let method = method_of(label);
    let semantic = if dim == 0 {
        SemanticInputs::default()
    } else {
        SemanticInputs {
            item_text: Some(random_unit(split.num_items as usize, dim, 1)),
            user_semantic: Some(random_unit(split.num_users(), 384, 2)),
            ..SemanticInputs::default()
        }
    };
    let o = hsuga_train::fit(&Job {
        model: &model,
        train: &train,
        eval: &Default::default(),
        method: &method,
        semantic: &semantic,
        seed: 42,
        split,
        groups: &hsuga_data::Groups::compute(split, hsuga_data::GroupRule::Pareto { ratio: 0.2 }),
        candidates: &cands,
        run_dir: None,
        device: cpu(),
        progress: Default::default(),
    })
    .unwrap();
    let s = o.history.iter().map(|e| e.seconds).sum::<f64>() / o.history.len() as f64;
    println!(
        "{{\"run\": \"{label}\", \"text_dim\": {dim}, \"epoch_s\": {s:.4}, \"valid_ndcg10\": {:.4}}}",
        o.best_valid.get(hsuga_eval::Metric::Ndcg(10))
    );
}

/// Runs `label` in a fresh process; echoes and returns its seconds per epoch.
fn spawn(label: &str, dim: usize, epochs: usize, cache: &Path) -> f64 {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--child",
            label,
            &dim.to_string(),
            "--epochs",
            &epochs.to_string(),
            "--cache",
        ])
        .arg(cache)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "run {label} ({dim}-d) failed");
    let line = String::from_utf8(out.stdout).unwrap();
    print!("{line}");
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    v["epoch_s"].as_f64().unwrap()
}

fn main() {
    allocator::keep_freed_memory();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut dims = vec![1536usize, 384];
    let mut epochs = 1usize;
    let mut only: Option<String> = None;
    let mut child_run: Option<(String, usize)> = None;
    let mut child_cache: Option<PathBuf> = None;
    let mut i = 0;
    while i < argv.len() {
        match argv[i].as_str() {
            "--dims" => {
                dims.clear();
                while let Some(v) = argv.get(i + 1).and_then(|v| v.parse().ok()) {
                    dims.push(v);
                    i += 1;
                }
            }
            "--only" => {
                only = argv.get(i + 1).cloned();
                i += 1;
            }
            "--epochs" => {
                epochs = argv[i + 1].parse().expect("--epochs N");
                i += 1;
            }
            "--cache" => {
                child_cache = argv.get(i + 1).map(PathBuf::from);
                i += 1;
            }
            "--child" => {
                let dim = argv[i + 2].parse().expect("--child LABEL DIM");
                child_run = Some((argv[i + 1].clone(), dim));
                i += 2;
            }
            _ => {}
        }
        i += 1;
    }
    if let Some((label, dim)) = child_run {
        let cache = child_cache.expect("--child needs --cache DIR");
        return child(&label, dim, epochs, &cache);
    }
    if let Some(o) = &only {
        method_of(o); // an unknown label fails before any run
    }
    let cache = tempfile::tempdir().unwrap();
    let plain = spawn("sasrec", 0, epochs, cache.path());
    for &dim in &dims {
        for label in SEMANTIC {
            if only.as_ref().is_some_and(|o| o != label) {
                continue;
            }
            let s = spawn(label, dim, epochs, cache.path());
            println!(
                "{{\"run\": \"{label}\", \"text_dim\": {dim}, \"vs_sasrec\": {:.2}, \"vs_official_59min\": {:.0}}}",
                s / plain,
                59.0 * 60.0 / s
            );
        }
    }
}
