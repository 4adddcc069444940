//! End-to-end training on the real Fashion split in `../shared/data`: the
//! model learns (beats a popularity ranker), checkpoints round-trip, and an
//! interrupted run resumes where it stopped.

mod common;

use std::path::Path;

use common::popularity_ndcg;
use hsuga_data::{Candidates, DatasetConfig, Phase, Prepared};
use hsuga_model::{Backbone, ModelConfig, cpu};
use hsuga_train::{Job, TrainSettings, checkpoint, fit, load_best, model_tag};

/// burn's device RNG (weight initialisation) is process-global, so two
/// trainings at once in one process would draw from each other's stream:
/// these tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn fashion() -> (Prepared, Candidates, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let cfg = DatasetConfig::load(Path::new("../../configs/datasets/fashion.toml")).unwrap();
    let p = hsuga_data::prepare(&cfg, cache.path()).unwrap();
    let c = hsuga_data::candidates(&p, 100, 42).unwrap();
    (p, c, cache)
}

fn quick(epochs: usize) -> TrainSettings {
    TrainSettings {
        epochs,
        patience: 20,
        progress: false,
        ..TrainSettings::default()
    }
}

#[test]
fn sasrec_learns_fashion_and_checkpoints_round_trip() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (p, c, _cache) = fashion();
    let pop = popularity_ndcg(&p, &c);
    let model = ModelConfig {
        backbone: Backbone::Sasrec.into(),
        max_len: 50,
        ..ModelConfig::default()
    };
    let train = TrainSettings {
        patience: 5,
        ..quick(20)
    };
    let run = tempfile::tempdir().unwrap();
    let job = Job {
        model: &model,
        train: &train,
        eval: &Default::default(),
        method: &Default::default(),
        semantic: &Default::default(),
        seed: 42,
        split: &p.split,
        groups: &p.groups,
        candidates: &c,
        run_dir: Some(run.path()),
        device: cpu(),
        progress: Default::default(),
    };
    let out = fit(&job).unwrap();
    let h = &out.history;
    assert!(
        h.last().unwrap().loss < h[0].loss,
        "loss did not fall: {h:?}"
    );
    assert!(
        out.test[0].get(hsuga_eval::Metric::Ndcg(10)) > pop + 0.04,
        "SASRec test NDCG@10 {:.4} not clearly above popularity {pop:.4}",
        out.test[0].get(hsuga_eval::Metric::Ndcg(10))
    );
    // config.toml and the curve are the experiment layer's.
    let epochs = out.epochs_run;
    let last = format!("last.e{epochs}.bpk");
    let last_optim = format!("last.e{epochs}.optim.bpk");
    for f in [
        "best.bpk",
        &last,
        &last_optim,
        "state.json",
        "log.csv",
        "log.json",
        "result.json",
        "ranks.csv",
    ] {
        assert!(run.path().join(f).is_file(), "missing {f}");
    }
    // Only the committed epoch's pair is kept.
    let pairs = std::fs::read_dir(run.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("last.")
        })
        .count();
    assert_eq!(pairs, 2, "one weights + one optimiser file");
    // Save -> load gives identical scores.
    let loaded = load_best(
        &model,
        &Default::default(),
        &Default::default(),
        p.split.num_items,
        run.path(),
        &cpu(),
    )
    .unwrap();
    let b = hsuga_model::Batcher::new(&model, p.split.num_items, &cpu());
    let scorer = hsuga_train::ModelScorer::new(&loaded, &b, None);
    let again = hsuga_eval::evaluate(
        &scorer,
        &p.split,
        &p.groups,
        &c,
        Phase::Test,
        hsuga_eval::Protocol::Sampled,
        512,
        |_, _| {},
    );
    assert_eq!(
        Some(&again.sampled.unwrap()),
        out.test_rankings.sampled.as_ref()
    );
    // A checkpoint of another model is refused with a clear error.
    let other = ModelConfig {
        backbone: Backbone::Gru4rec.into(),
        ..model.clone()
    };
    let fresh = hsuga_model::Recommender::new(&other, p.split.num_items, &cpu()).unwrap();
    let e = checkpoint::load(
        fresh,
        &model_tag(&other, p.split.num_items),
        &run.path().join("best.bpk"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("SASRec") && e.contains("GRU4Rec"), "{e}");
}

#[test]
fn interrupted_run_resumes_without_losing_epochs() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (p, c, _cache) = fashion();
    let model = ModelConfig {
        max_len: 20,
        ..ModelConfig::default()
    };
    let run = tempfile::tempdir().unwrap();
    let job = |train: &TrainSettings, dir: Option<&Path>| -> hsuga_train::Outcome {
        fit(&Job {
            model: &model,
            train,
            eval: &Default::default(),
            method: &Default::default(),
            semantic: &Default::default(),
            seed: 7,
            split: &p.split,
            groups: &p.groups,
            candidates: &c,
            run_dir: dir,
            device: cpu(),
            progress: Default::default(),
        })
        .unwrap()
    };
    // Each run on a fresh thread, as in a fresh process: nothing per-thread
    // (dropout streams) carries over from the interrupted run.
    let fresh = |train: TrainSettings, dir: Option<&Path>| {
        std::thread::scope(|s| s.spawn(|| job(&train, dir)).join().unwrap())
    };
    // "Interrupted" after 2 epochs, then continued to 3.
    let first = fresh(quick(2), Some(run.path()));
    assert_eq!(first.epochs_run, 2);
    let resumed = fresh(quick(3), Some(run.path()));
    assert_eq!(resumed.epochs_run, 3);
    assert_eq!(resumed.history.len(), 3);
    for (a, b) in first.history.iter().zip(&resumed.history) {
        assert_eq!(a.epoch, b.epoch);
        assert!((a.loss - b.loss).abs() < 1e-9 && a.valid == b.valid);
    }
    // Same as an uninterrupted run.
    let straight = fresh(quick(3), None);
    // Resumed epochs replay the same batches, masks and negatives; the
    // optimiser-state round trip leaves only float-level differences.
    for (a, b) in straight.history.iter().zip(&resumed.history) {
        assert!(
            (a.loss - b.loss).abs() < 1e-5,
            "epoch {}: {} vs {}",
            a.epoch,
            a.loss,
            b.loss
        );
    }
}
