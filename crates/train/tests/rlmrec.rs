//! RLMRec-Con through `fit` on the real ML-100K split (random item "text",
//! users as the mean of their training items' text, no downloads): it
//! learns (loss falls, validation NDCG@10 above popularity), its term
//! really enters the loss while `kd_weight = 0` replays SASRec's run
//! exactly (the objective draws from no stream the backbone uses), its
//! projectors are checkpointed and load back, and a config without the
//! inputs it needs fails at load naming the key.

mod common;

use common::{gaussian, ml100k, popularity_ndcg, popularity_valid, settings, small, turn};
use hsuga_data::{Candidates, Phase, Prepared};
use hsuga_eval::{Metric, Protocol, evaluate};
use hsuga_model::{Backbone, ModelConfig, RlmrecConfig, UserDenominator, cpu};
use hsuga_train::{
    Job, MethodConfig, ModelScorer, Outcome, RunConfig, SemanticInputs, TrainSettings, fit,
    item_mean, load_best,
};

const EPOCHS: usize = 10;

fn semantic(p: &Prepared) -> SemanticInputs {
    let text = gaussian(p.split.num_items as usize, 64, 7);
    SemanticInputs {
        user_semantic: Some(item_mean(&p.split, &text)),
        item_text: Some(text),
        ..Default::default()
    }
}

fn rlmrec(cfg: RlmrecConfig) -> MethodConfig {
    MethodConfig {
        rlmrec: Some(cfg),
        ..MethodConfig::default()
    }
}

fn run(
    p: &Prepared,
    c: &Candidates,
    method: &MethodConfig,
    semantic: &SemanticInputs,
    epochs: usize,
    dir: Option<&std::path::Path>,
) -> Outcome {
    common::run(p, c, &small(), method, semantic, epochs, dir)
}

fn report(label: &str, out: &Outcome, pop: f64) -> f64 {
    let h = &out.history;
    let valid = out.best_valid.get(Metric::Ndcg(10));
    eprintln!(
        "{label} ML-100K ({} epochs, hidden 64, max_len 20): loss {:.4} -> {:.4}, valid NDCG@10 \
         {valid:.4} (popularity {pop:.4}), test NDCG@10 {:.4}, {:.2} s/epoch",
        h.len(),
        h[0].loss,
        h.last().unwrap().loss,
        out.test[0].get(Metric::Ndcg(10)),
        out.train_seconds / h.len() as f64
    );
    valid
}

#[test]
fn rlmrec_learns_ml100k_and_its_projectors_load_back() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let pop = popularity_valid(&p, &c);
    let sem = semantic(&p);
    let method = rlmrec(RlmrecConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let out = run(&p, &c, &method, &sem, EPOCHS, Some(dir.path()));
    let valid = report("RLMRec", &out, pop);
    let h = &out.history;
    assert!(
        h.last().unwrap().loss < h[0].loss,
        "loss did not fall: {h:?}"
    );
    assert!(
        valid > pop,
        "valid NDCG@10 {valid:.4} not above popularity {pop:.4}"
    );
    let (test, pop_test) = (out.test[0].get(Metric::Ndcg(10)), popularity_ndcg(&p, &c));
    assert!(
        test > pop_test,
        "test NDCG@10 {test:.4} not above popularity {pop_test:.4}"
    );
    // The checkpoint holds the projectors: it loads into RLMRec's model
    // (tag and shapes checked) and ranks as the run did.
    let loaded = load_best(
        &small(),
        &method,
        &sem,
        p.split.num_items,
        dir.path(),
        &cpu(),
    )
    .unwrap();
    assert!(loaded.rlmrec.is_some());
    let b = hsuga_model::Batcher::new(&small(), p.split.num_items, &cpu());
    let again = evaluate(
        &ModelScorer::new(&loaded, &b, None),
        &p.split,
        &p.groups,
        &c,
        Phase::Test,
        Protocol::Sampled,
        512,
        |_, _| {},
    );
    assert_eq!(again.sampled.as_ref(), out.test_rankings.sampled.as_ref());
    // A plain backbone's method refuses that checkpoint.
    let e = load_best(
        &small(),
        &MethodConfig::default(),
        &SemanticInputs::default(),
        p.split.num_items,
        dir.path(),
        &cpu(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("rlmrec"), "{e}");
}

/// `kd_weight = 0`: every loss of every epoch equals plain SASRec's (same
/// batches, negatives and dropout; the projectors initialise after the
/// encoder). `kd_weight` at its default: the losses differ.
#[test]
fn rlmrec_term_enters_the_loss_and_leaves_the_backbones_streams_alone() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let sem = semantic(&p);
    let plain = run(
        &p,
        &c,
        &MethodConfig::default(),
        &SemanticInputs::default(),
        2,
        None,
    );
    let zero = rlmrec(RlmrecConfig {
        kd_weight: 0.0,
        ..RlmrecConfig::default()
    });
    let zero = run(&p, &c, &zero, &sem, 2, None);
    let losses = |o: &Outcome| o.history.iter().map(|l| l.loss).collect::<Vec<_>>();
    assert_eq!(losses(&plain), losses(&zero));
    let on = run(&p, &c, &rlmrec(RlmrecConfig::default()), &sem, 2, None);
    assert!(
        losses(&plain)
            .iter()
            .zip(losses(&on))
            .all(|(a, b)| (a - b).abs() > 1e-6),
        "{:?} vs {:?}",
        losses(&plain),
        losses(&on)
    );
}

fn load(text: &str) -> Result<RunConfig, String> {
    RunConfig::from_toml(&format!("name = \"x\"\ndataset = \"d\"\n{text}"))
        .map_err(|e| e.to_string())
}

#[test]
fn rlmrec_without_its_inputs_or_with_bad_keys_fails_at_load() {
    for (text, want) in [
        (
            "[method]\nrlmrec = {}\n[inputs]\nitem_text = \"m\"\n",
            "inputs.user_semantic",
        ),
        (
            "[method]\nrlmrec = {}\n[inputs]\nuser_semantic = { file = \"u\" }\n",
            "inputs.item_text",
        ),
        ("[method]\nrlmrec = {}\n", "method.rlmrec"),
        (
            "[method]\nrlmrec = { kd_temperature = 0 }\n[inputs]\nitem_text = \"m\"\nuser_semantic = \"item-mean\"\n",
            "method.rlmrec.kd_temperature",
        ),
        (
            "[method]\nrlmrec = { kd_weight = -1 }\n[inputs]\nitem_text = \"m\"\nuser_semantic = \"item-mean\"\n",
            "method.rlmrec.kd_weight",
        ),
        (
            "[method]\nrlmrec = { kd_wieght = 1 }\n[inputs]\nitem_text = \"m\"\nuser_semantic = \"item-mean\"\n",
            "kd_wieght",
        ),
        (
            "[method]\nrlmrec = { user_denominator = \"some\" }\n[inputs]\nitem_text = \"m\"\nuser_semantic = \"item-mean\"\n",
            "unknown variant",
        ),
        (
            "[method]\nrlmrec = {}\ndual_view = true\n[inputs]\nitem_text = \"m\"\nuser_semantic = \"item-mean\"\n",
            "method.rlmrec aligns",
        ),
    ] {
        let e = load(text).unwrap_err();
        assert!(e.contains(want), "{text}: {e}");
    }
    let ok = load(
        "[method]\nrlmrec = { user_denominator = \"batch\" }\n[inputs]\nitem_text = \"m\"\nuser_semantic = { hsu = \"rules\" }\n",
    )
    .unwrap();
    assert_eq!(RunConfig::from_toml(&ok.to_toml()).unwrap(), ok);
    let r = ok.method.rlmrec.unwrap();
    assert_eq!((r.kd_weight, r.kd_temperature), (1e-2, 0.2));
}

/// Epoch seconds on Beauty (22k users) of SASRec and RLMRec with either
/// user denominator, Beauty's SASRec settings (test profile; run with
/// `--ignored --nocapture`): what the official all-user denominator costs
/// where users are many.
#[test]
#[ignore]
fn beauty_epoch_time_of_the_user_denominators() {
    let _turn = turn();
    let cache = tempfile::tempdir().unwrap();
    let cfg =
        hsuga_data::DatasetConfig::load(std::path::Path::new("../../configs/datasets/beauty.toml"))
            .unwrap();
    let p = hsuga_data::prepare(&cfg, cache.path()).unwrap();
    let c = hsuga_data::candidates(&p, 100, 42).unwrap();
    let text = gaussian(p.split.num_items as usize, 384, 7);
    let sem = SemanticInputs {
        user_semantic: Some(item_mean(&p.split, &text)),
        item_text: Some(text),
        ..Default::default()
    };
    let none = SemanticInputs::default();
    let model = ModelConfig {
        max_len: 50,
        dropout: 0.5,
        ..ModelConfig::from(Backbone::Sasrec)
    };
    let rl = |d| {
        rlmrec(RlmrecConfig {
            user_denominator: d,
            ..RlmrecConfig::default()
        })
    };
    let cases = [
        ("SASRec", MethodConfig::default(), &none),
        ("RLMRec (all users)", rl(UserDenominator::All), &sem),
        ("RLMRec (batch)", rl(UserDenominator::Batch), &sem),
    ];
    let epochs = 2;
    let mut secs = [0.0; 3];
    for (k, (_, method, s)) in cases.iter().enumerate() {
        let out = fit(&Job {
            model: &model,
            train: &TrainSettings {
                eval_every: epochs,
                ..settings(epochs)
            },
            eval: &Default::default(),
            method,
            semantic: s,
            seed: 42,
            split: &p.split,
            groups: &p.groups,
            candidates: &c,
            run_dir: None,
            device: cpu(),
            progress: Default::default(),
        })
        .unwrap();
        secs[k] = out
            .history
            .iter()
            .map(|l| l.seconds)
            .fold(f64::INFINITY, f64::min);
    }
    eprintln!(
        "Beauty: {} users, {} items",
        p.split.num_users(),
        p.split.num_items
    );
    for (k, (name, _, _)) in cases.iter().enumerate() {
        eprintln!(
            "{name}: {:.1} s/epoch ({:.2}x SASRec)",
            secs[k],
            secs[k] / secs[0]
        );
    }
}
