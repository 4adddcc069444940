//! ICSRec through `fit` on the real ML-100K split: it learns (loss falls,
//! validation and test NDCG@10 above popularity) and its scores are the
//! plain backbone's; ICSRec+HSU fuses the positive view with its own user's
//! vector and fuses at evaluation; more intents than training samples fails
//! before any training, and bad `method.icsrec` keys fail at load naming
//! the key. An ignored test measures epoch times against SASRec.

mod common;

use common::{gaussian, ml100k, popularity_ndcg, popularity_valid, settings, turn};
use hsuga_data::{Candidates, Prepared};
use hsuga_eval::{Metric, Scorer};
use hsuga_model::burn::tensor::{Tensor, TensorData};
use hsuga_model::{
    Batcher, Extras, Fusion, IcsrecConfig, Loss, Model, ModelConfig, Recommender, SequenceEncoder,
    cpu, to_f32,
};
use hsuga_train::icsrec_objective::IcsrecObjective;
use hsuga_train::objective::epoch_rng;
use hsuga_train::{
    EpochStart, Matrix, MethodConfig, ModelScorer, Objective, Outcome, RunConfig, SemanticInputs,
    Step, TrainError, TrainSettings, attach_users, fit, item_mean, load_best,
};

/// The shared short-window SASRec with ICSRec's full-softmax CE.
fn small() -> ModelConfig {
    ModelConfig {
        loss: Loss::Ce,
        ..common::small()
    }
}

fn icsrec(cfg: IcsrecConfig) -> MethodConfig {
    MethodConfig {
        icsrec: Some(cfg),
        ..MethodConfig::default()
    }
}

/// Users as the mean of their training items' random "text".
fn users(p: &Prepared) -> Matrix {
    item_mean(&p.split, &gaussian(p.split.num_items as usize, 64, 7))
}

#[allow(clippy::too_many_arguments)]
fn try_run(
    p: &Prepared,
    c: &Candidates,
    model: &ModelConfig,
    method: &MethodConfig,
    semantic: &SemanticInputs,
    train: &TrainSettings,
    dir: Option<&std::path::Path>,
) -> Result<Outcome, TrainError> {
    fit(&common::job(p, c, model, train, method, semantic, dir))
}

fn run(
    p: &Prepared,
    c: &Candidates,
    method: &MethodConfig,
    semantic: &SemanticInputs,
    epochs: usize,
    dir: Option<&std::path::Path>,
) -> Outcome {
    try_run(p, c, &small(), method, semantic, &settings(epochs), dir).unwrap()
}

/// ICSRec's rec loss and coarse intent contrast (official Beauty λ 0.3,
/// K 256, the clustering pass running on 2,000 prefixes per epoch) learn on
/// ML-100K in 15 epochs: loss falls, validation and test NDCG@10 beat
/// popularity. β = 0 here: with the official β = 0.1 the fine contrast held
/// validation NDCG@10 at 0.232 after 16 epochs, below popularity's 0.245
/// (and near random with K = 512), measured and reported rather than
/// hidden; FICL's mechanism is tested in `hsuga-model`'s `tests/icsrec.rs`
/// and runs in the HSU test's `fit`. Then the best checkpoint's scores
/// equal the plain backbone's `E_j · h_u` from its own encoder.
#[test]
fn icsrec_learns_ml100k_and_scores_as_its_backbone() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let pop = popularity_valid(&p, &c);
    let dir = tempfile::tempdir().unwrap();
    let method = icsrec(IcsrecConfig {
        beta: 0.0,
        cluster_points: 2000,
        ..IcsrecConfig::default()
    });
    let none = SemanticInputs::default();
    let out = run(&p, &c, &method, &none, 15, Some(dir.path()));
    let h = &out.history;
    let valid = out.best_valid.get(Metric::Ndcg(10));
    eprintln!(
        "ICSRec ML-100K ({} epochs, hidden 64, max_len 20, CE): loss {:.4} -> {:.4}, valid \
         NDCG@10 {valid:.4} (popularity {pop:.4}), test NDCG@10 {:.4}, {:.2} s/epoch",
        h.len(),
        h[0].loss,
        h.last().unwrap().loss,
        out.test[0].get(Metric::Ndcg(10)),
        out.train_seconds / h.len() as f64
    );
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

    // Inference: the backbone's scoring, nothing of ICSRec's.
    let (m, n, dev) = (small(), p.split.num_items, cpu());
    let best = load_best(&m, &method, &none, n, dir.path(), &dev).unwrap();
    let b = Batcher::new(&m, n, &dev);
    let us: Vec<usize> = (0..16).collect();
    let hist: Vec<&[u32]> = us.iter().map(|&u| p.split.train[u].as_slice()).collect();
    let sc = ModelScorer::new(&best, &b, None);
    let got = sc.score_all(&sc.encode(&us, &hist));
    let hu = best.encoder.encode_last(&b.eval_batch(&hist)); // [16, H]
    let items = best.encoder.item_table().narrow(0, 1, n as usize);
    let want = to_f32(hu.matmul(items.transpose()));
    assert_eq!(got.len(), want.len());
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "scores differ from the backbone's by {diff}");
}

/// ICSRec+HSU: with β = 0 (the clustering out of the loss), changing the
/// semantic vector of a positive view's user who is not in the batch
/// changes the loss — the view is fused with its own user's vector — while
/// changing a user who is neither in the batch nor a view does not; and a
/// trained ICSRec+HSU model's evaluation scores depend on the users'
/// vectors.
#[test]
fn icsrec_with_hsu_fuses_each_view_with_its_own_user_and_at_evaluation() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let m = small();
    let n = p.split.num_items;
    let sem = users(&p);
    let dev = cpu();
    // `add` fusion: the gate's σ(−6) at initialisation would make the
    // effect tiny.
    let model = Recommender::with_extras(
        &m,
        n,
        &Extras {
            fusion: Some((Fusion::Add, sem.dim)),
            ..Extras::default()
        },
        &dev,
    )
    .unwrap();
    let cfg = IcsrecConfig {
        lambda: 1.0,
        beta: 0.0,
        intents: 8,
        cluster_points: 500,
        ..IcsrecConfig::default()
    };
    let mut obj = IcsrecObjective::new(&cfg, &p.split).unwrap();
    let batch_users: Vec<usize> = (0..16).collect();
    let batcher = Batcher::new(&m, n, &dev);
    let seen = p.split.train_item_sets();
    let rows: Vec<&[u32]> = batch_users
        .iter()
        .map(|&u| p.split.train[u].as_slice())
        .collect();
    let mut loss_with = |s: &Matrix| {
        // The same epoch start each time: the same draws.
        obj.start_epoch(EpochStart {
            epoch: 1,
            model: &model,
            split: &p.split,
            rng: &mut epoch_rng(42, 1),
        });
        let all = Tensor::<2>::from_data(TensorData::new(s.data.clone(), [s.rows, s.dim]), &dev);
        let mut rng = epoch_rng(7, 1);
        let mut tb = batcher.train_batch(
            &rows,
            |r, i| seen[batch_users[r]].binary_search(&i).is_ok(),
            &mut rng,
        );
        attach_users(&mut tb.input, Some(&all), &batch_users);
        let (_, student) = model.train_forward(&tb);
        let l = obj.loss(&Step {
            model: &model,
            users: &batch_users,
            batch: &tb,
            student: &student,
            batcher: &batcher,
            split: &p.split,
            user_semantic: Some(&all),
        });
        (to_f32(l)[0], obj.last_views().to_vec())
    };
    let (base, views) = loss_with(&sem);
    assert_eq!(views.len(), 2 * batch_users.len());
    assert_eq!(base, loss_with(&sem).0, "deterministic");
    let (ours, positives) = views.split_at(batch_users.len());
    assert!(ours.iter().all(|(u, _)| batch_users.contains(u)));
    let outsider = positives
        .iter()
        .map(|&(v, _)| v)
        .find(|v| !batch_users.contains(v))
        .expect("some positive view from outside the batch");
    let bystander = (0..p.split.num_users())
        .find(|v| !batch_users.contains(v) && !views.iter().any(|(w, _)| w == v))
        .unwrap();
    let moved = |who: usize| {
        let mut s = sem.clone();
        for x in &mut s.data[who * sem.dim..(who + 1) * sem.dim] {
            *x = -*x * 3.0 + 0.5;
        }
        s
    };
    let other = loss_with(&moved(outsider)).0;
    assert!((base - other).abs() > 1e-6, "{base} vs {other}");
    assert_eq!(base, loss_with(&moved(bystander)).0);

    // Through fit: the trained model's scores move with the user vectors.
    let hsu = MethodConfig {
        fusion: Fusion::Gate,
        ..icsrec(IcsrecConfig {
            cluster_points: 2000,
            ..IcsrecConfig::default()
        })
    };
    let semantic = SemanticInputs {
        user_semantic: Some(sem.clone()),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    run(&p, &c, &hsu, &semantic, 2, Some(dir.path()));
    let best = load_best(&m, &hsu, &semantic, n, dir.path(), &dev).unwrap();
    let score = |s: &Matrix| {
        let t = Tensor::<2>::from_data(TensorData::new(s.data.clone(), [s.rows, s.dim]), &dev);
        let sc = ModelScorer::new(&best, &batcher, Some(&t));
        let us: Vec<usize> = (0..8).collect();
        let hist: Vec<&[u32]> = us.iter().map(|&u| p.split.train[u].as_slice()).collect();
        sc.score_all(&sc.encode(&us, &hist))
    };
    let mut all_moved = sem.clone();
    all_moved.data.iter_mut().for_each(|x| *x = 0.5 - *x);
    let (x, y) = (score(&sem), score(&all_moved));
    let diff = x
        .iter()
        .zip(&y)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        diff > 1e-5,
        "fusion left evaluation scores unchanged ({diff})"
    );
}

/// The bad input: more intents than training samples is an error
/// naming `method.icsrec.intents` when the run starts, before any training
/// (the run folder is never written).
#[test]
fn more_intents_than_training_samples_fails_before_training() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let cfg = IcsrecConfig {
        intents: 1_000_000,
        cluster_points: 1_000_000,
        ..IcsrecConfig::default()
    };
    let e = try_run(
        &p,
        &c,
        &small(),
        &icsrec(cfg),
        &SemanticInputs::default(),
        &settings(1),
        Some(&run_dir),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("method.icsrec.intents = 1000000 exceeds the"),
        "{e}"
    );
    assert!(!run_dir.exists(), "a run folder was written");
}

fn load(text: &str) -> Result<RunConfig, String> {
    RunConfig::from_toml(&format!("name = \"x\"\ndataset = \"d\"\n{text}"))
        .map_err(|e| e.to_string())
}

#[test]
fn bad_icsrec_keys_fail_at_load() {
    let ce = "[model]\nloss = \"ce\"\n";
    for (text, want) in [
        (
            "[method]\nicsrec = {}\n".to_string(),
            "method.icsrec trains with full-softmax cross-entropy",
        ),
        (
            format!("{ce}[method]\nicsrec = {{ lambda = -0.3 }}\n"),
            "method.icsrec.lambda must be a number >= 0, got -0.3",
        ),
        (
            format!("{ce}[method]\nicsrec = {{ beta = -1 }}\n"),
            "method.icsrec.beta must be a number >= 0, got -1",
        ),
        (
            format!("{ce}[method]\nicsrec = {{ intents = 0 }}\n"),
            "method.icsrec.intents must be at least 1",
        ),
        (
            format!("{ce}[method]\nicsrec = {{ intents = 512, cluster_points = 100 }}\n"),
            "method.icsrec.intents (512) must not exceed method.icsrec.cluster_points (100)",
        ),
        (
            format!("{ce}[method]\nicsrec = {{ temperature = 0 }}\n"),
            "method.icsrec.temperature",
        ),
        (
            format!("{ce}[method]\nicsrec = {{ lamda = 0.3 }}\n"),
            "lamda",
        ),
        (
            format!("{ce}[method]\nicsrec = {{}}\nfusion = \"gate\"\n"),
            "need inputs.user_semantic",
        ),
        (
            format!("{ce}[method]\nicsrec = {{}}\ncities = {{}}\npretrained = {{ run = \"r\" }}\n"),
            "method.cities",
        ),
    ] {
        let e = load(&text).unwrap_err();
        assert!(e.contains(want), "{text}: {e}");
    }
    for ok in [
        format!("{ce}[method]\nicsrec = {{}}\n"),
        format!("{ce}[method]\nicsrec = {{ lambda = 0, beta = 0, intents = 1 }}\n"),
        format!(
            "{ce}[method]\nicsrec = {{}}\nfusion = \"gate\"\n[inputs]\nitem_text = \"m\"\nuser_semantic = {{ hsu = \"rules\" }}\n"
        ),
    ] {
        let c = load(&ok).unwrap();
        assert_eq!(RunConfig::from_toml(&c.to_toml()).unwrap(), c);
    }
}

/// Epoch seconds of SASRec (BCE and CE) and ICSRec on ML-100K with the
/// same settings (test profile; run with `--ignored --nocapture`).
#[test]
#[ignore]
fn epoch_time_against_sasrec() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let none = SemanticInputs::default();
    let bce = ModelConfig {
        loss: Loss::Bce,
        ..small()
    };
    let epochs = 3;
    let cases: [(&str, &ModelConfig, MethodConfig); 4] = [
        ("SASRec (BCE)", &bce, MethodConfig::default()),
        ("SASRec (CE)", &small(), MethodConfig::default()),
        ("ICSRec", &small(), icsrec(IcsrecConfig::default())),
        (
            "ICSRec (2,000 clustered)",
            &small(),
            icsrec(IcsrecConfig {
                cluster_points: 2000,
                ..IcsrecConfig::default()
            }),
        ),
    ];
    // Two interleaved rounds; each case's fastest epoch after the first.
    let mut wall = [f64::INFINITY; 4];
    for _round in 0..2 {
        for (k, (_, model, method)) in cases.iter().enumerate() {
            let train = TrainSettings {
                eval_every: epochs,
                ..settings(epochs)
            };
            let out = try_run(&p, &c, model, method, &none, &train, None).unwrap();
            for l in out.history.iter().skip(1) {
                wall[k] = wall[k].min(l.seconds);
            }
        }
    }
    for (k, (name, _, _)) in cases.iter().enumerate() {
        eprintln!(
            "{name}: wall {:.2} s/epoch ({:.2}x SASRec BCE, {:.2}x SASRec CE)",
            wall[k],
            wall[k] / wall[0],
            wall[k] / wall[1]
        );
    }
}
