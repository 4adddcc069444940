//! LLM2Rec (w/o CSFT/IEM) and LLMEmb (w/o SCFT) learn on the real ML-100K
//! split (random item "text", no model downloads), alone and with
//! GAA's group-aware self-distillation through the model contract; LLMEmb
//! reads `E_srs` from a SASRec run trained here, and refuses a pretrained
//! run it cannot align to before training anything.

mod common;

use std::path::{Path, PathBuf};

use common::{gaussian, ml100k, popularity_ndcg, run, settings};
use hsuga_data::{Candidates, Prepared};
use hsuga_eval::Metric;
use hsuga_model::{Backbone, Llm2recConfig, LlmembConfig, Loss, ModelConfig, cpu};
use hsuga_train::{
    DistillConfig, Job, Matrix, MethodConfig, ModelScorer, Outcome, Pretrained, RunConfig,
    SemanticInputs, fit, item_mean, load_best, pretrained_items,
};

/// burn's device RNG is process-global: trainings take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Short histories and few epochs: a CPU-test budget, not the paper's.
fn model(backbone: Backbone, loss: Loss) -> ModelConfig {
    ModelConfig {
        loss,
        max_len: 20,
        dropout: 0.2,
        ..ModelConfig::from(backbone)
    }
}

/// Epochs per training in these tests.
const EPOCHS: usize = 6;

/// The loss fell and test NDCG@10 beats popularity.
fn learned(label: &str, out: &Outcome, pop: f64) {
    let h = &out.history;
    let ndcg = out.test[0].get(Metric::Ndcg(10));
    eprintln!(
        "{label} ML-100K ({} epochs, random {TEXT_DIM}-d text): loss {:.4} -> {:.4}, test HR@10 \
         {:.4} NDCG@10 {ndcg:.4} (popularity NDCG@10 {pop:.4}), {:.2} s/epoch",
        h.len(),
        h[0].loss,
        h.last().unwrap().loss,
        out.test[0].get(Metric::Hr(10)),
        out.train_seconds / h.len() as f64
    );
    assert!(
        h.last().unwrap().loss < h[0].loss,
        "{label}: loss did not fall: {h:?}"
    );
    assert!(
        ndcg > pop,
        "{label}: test NDCG@10 {ndcg:.4} not above popularity {pop:.4}"
    );
}

/// Random unit item "text" of a dimension above the catalogue size, so that
/// the adapter can express any item table: these tests check that training
/// reaches the items through the adapter, not what random text is worth.
fn text(p: &Prepared) -> Matrix {
    gaussian(p.split.num_items as usize, TEXT_DIM, 7)
}

/// Above ML-100K's 1,682 items.
const TEXT_DIM: usize = 2048;

/// GAA with its defaults, neighbours from the mean of training items' text.
fn with_gaa(method: &MethodConfig) -> MethodConfig {
    MethodConfig {
        distill: Some(DistillConfig::default()),
        ..method.clone()
    }
}

/// The same losses epoch by epoch means the distillation term was never
/// added.
fn differs(a: &Outcome, b: &Outcome) -> bool {
    a.history
        .iter()
        .zip(&b.history)
        .any(|(x, y)| (x.loss - y.loss).abs() > 1e-6)
}

/// LLM2Rec (or LLM2Rec+GAA) on ML-100K for `epochs`.
fn llm2rec(gaa: bool, epochs: usize) -> (Outcome, f64) {
    let (p, c, _cache) = ml100k();
    let pop = popularity_ndcg(&p, &c);
    let text = text(&p);
    let semantic = SemanticInputs {
        user_semantic: Some(item_mean(&p.split, &text)),
        item_text: Some(text),
        ..Default::default()
    };
    let mut method = MethodConfig {
        llm2rec: Some(Llm2recConfig::default()),
        ..MethodConfig::default()
    };
    if gaa {
        method = with_gaa(&method);
    }
    let m = model(Backbone::Sasrec, Loss::Ce);
    (run(&p, &c, &m, &method, &semantic, epochs, None), pop)
}

#[test]
fn llm2rec_learns_ml100k() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (out, pop) = llm2rec(false, EPOCHS);
    learned("LLM2Rec", &out, pop);
}

#[test]
fn llm2rec_with_gaa_learns_ml100k() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (out, pop) = llm2rec(true, EPOCHS);
    learned("LLM2Rec+GAA", &out, pop);
    let (plain, _) = llm2rec(false, 1);
    assert!(differs(&plain, &out), "GAA added nothing to LLM2Rec");
}

/// LLMEmb's tests read shorter histories: its alignment loss is `O(M²)` in
/// the step's targets `M` (batch × length), as in the official code.
const LLMEMB_LEN: usize = 10;

/// The SASRec run LLMEmb aligns to, trained once for this test binary
/// (into a folder, read back through [`pretrained_items`] as `hsuga train`
/// would), with its resolved config.
struct Source {
    dir: PathBuf,
    stored: RunConfig,
    items: Matrix,
}

fn source(p: &Prepared, c: &Candidates) -> &'static Source {
    static SOURCE: std::sync::OnceLock<Source> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        // Cargo's scratch folder for this test target, emptied first (a
        // folder holding a run would resume it).
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("llmemb-source-sasrec");
        let _ = std::fs::remove_dir_all(&dir);
        let sasrec = ModelConfig {
            max_len: LLMEMB_LEN,
            ..model(Backbone::Sasrec, Loss::Bce)
        };
        let out = run(
            p,
            c,
            &sasrec,
            &MethodConfig::default(),
            &SemanticInputs::default(),
            EPOCHS,
            Some(&dir),
        );
        eprintln!(
            "pretrained SASRec: test NDCG@10 {:.4}, {:.2} s/epoch",
            out.test[0].get(Metric::Ndcg(10)),
            out.train_seconds / out.history.len() as f64
        );
        let stored = common::plain_run_config(sasrec, settings(EPOCHS));
        let items = pretrained_items(&stored, &dir, p.split.num_items, 64).unwrap();
        assert_eq!((items.rows, items.dim), (p.split.num_items as usize, 64));
        Source { dir, stored, items }
    })
}

/// LLMEmb (or LLMEmb+GAA) on ML-100K, aligned to [`source`]'s items;
/// `dir` keeps its checkpoints.
fn llmemb(gaa: bool, epochs: usize, dir: Option<&Path>) -> (Outcome, f64) {
    let (p, c, _cache) = ml100k();
    let pop = popularity_ndcg(&p, &c);
    let src = source(&p, &c);
    let text = text(&p);
    let semantic = SemanticInputs {
        user_semantic: Some(item_mean(&p.split, &text)),
        item_text: Some(text),
        pretrained_items: Some(src.items.clone()),
    };
    let mut method = MethodConfig {
        llmemb: Some(LlmembConfig::default()),
        pretrained: Some(Pretrained::Run(src.dir.display().to_string())),
        ..MethodConfig::default()
    };
    if gaa {
        method = with_gaa(&method);
    }
    let m = ModelConfig {
        max_len: LLMEMB_LEN,
        ..model(Backbone::Sasrec, Loss::Bce)
    };
    (run(&p, &c, &m, &method, &semantic, epochs, dir), pop)
}

#[test]
fn llmemb_learns_ml100k_from_a_pretrained_sasrec() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (out, pop) = llmemb(false, EPOCHS, Some(dir.path()));
    learned("LLMEmb", &out, pop);
    // Its checkpoint loads and scores the same without `E_srs` (a constant
    // of training, not a weight), as serving loads it.
    let (p, c, _cache) = ml100k();
    let m = ModelConfig {
        max_len: LLMEMB_LEN,
        ..model(Backbone::Sasrec, Loss::Bce)
    };
    let method = MethodConfig {
        llmemb: Some(LlmembConfig::default()),
        pretrained: Some(Pretrained::Run("unused".into())),
        ..MethodConfig::default()
    };
    let semantic = SemanticInputs {
        item_text: Some(text(&p)),
        ..Default::default()
    };
    let loaded = load_best(
        &m,
        &method,
        &semantic,
        p.split.num_items,
        dir.path(),
        &cpu(),
    )
    .unwrap();
    let b = hsuga_model::Batcher::new(&m, p.split.num_items, &cpu());
    let again = hsuga_eval::evaluate(
        &ModelScorer::new(&loaded, &b, None),
        &p.split,
        &p.groups,
        &c,
        hsuga_data::Phase::Test,
        hsuga_eval::Protocol::Sampled,
        512,
        |_, _| {},
    );
    assert_eq!(again.sampled.as_ref(), out.test_rankings.sampled.as_ref());
}

#[test]
fn llmemb_with_gaa_learns_ml100k() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (out, pop) = llmemb(true, EPOCHS, None);
    learned("LLMEmb+GAA", &out, pop);
    // Not LLMEmb's own run: the distillation term entered the loss (the
    // first batches of both runs are the same).
    let (plain, _) = llmemb(false, 1, None);
    assert!(differs(&plain, &out), "GAA added nothing to LLMEmb");
}

/// A pretrained run it cannot align to is refused, naming the key and the
/// folder, before training anything.
#[test]
fn llmemb_refuses_a_pretrained_run_it_cannot_align_to() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (p, c, _cache) = ml100k();
    let src = source(&p, &c);
    let (dir, n) = (src.dir.as_path(), p.split.num_items);
    let folder = dir.display().to_string();
    let wider = pretrained_items(&src.stored, dir, n, 32)
        .unwrap_err()
        .to_string();
    assert!(
        wider.contains("method.pretrained") && wider.contains(&folder) && wider.contains("hidden"),
        "{wider}"
    );
    let gru = RunConfig {
        model: model(Backbone::Gru4rec, Loss::Bce),
        ..src.stored.clone()
    };
    let e = pretrained_items(&gru, dir, n, 64).unwrap_err().to_string();
    assert!(e.contains("GRU4Rec run") && e.contains(&folder), "{e}");
    // Another catalogue: the checkpoint's tag refuses it.
    let e = pretrained_items(&src.stored, dir, n - 1, 64)
        .unwrap_err()
        .to_string();
    assert!(e.contains("best checkpoint") && e.contains(&folder), "{e}");
    let missing = dir.join("nowhere");
    let e = pretrained_items(&src.stored, &missing, n, 64)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&missing.display().to_string()), "{e}");
    // And the trainer refuses LLMEmb without the table, before training.
    let text = text(&p);
    let method = MethodConfig {
        llmemb: Some(LlmembConfig::default()),
        pretrained: Some(Pretrained::Run(folder.clone())),
        ..MethodConfig::default()
    };
    let e = fit(&Job {
        model: &model(Backbone::Sasrec, Loss::Bce),
        train: &settings(1),
        eval: &Default::default(),
        method: &method,
        semantic: &SemanticInputs {
            item_text: Some(text),
            ..Default::default()
        },
        seed: 42,
        split: &p.split,
        groups: &p.groups,
        candidates: &c,
        run_dir: None,
        device: cpu(),
        progress: Default::default(),
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("method.pretrained"), "{e}");
}
