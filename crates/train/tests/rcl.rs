//! RCL through `fit` on the real ML-100K split: it learns (loss falls,
//! validation NDCG@10 above popularity), a resumed run replays the epochs
//! of an uninterrupted one (weak positives rebuilt from the seed, strong
//! ones redrawn per epoch), RCL+HSU fuses in the key forwards and at
//! evaluation, and bad `method.rcl` keys fail at load naming the key. An
//! ignored test measures epoch times against plain SASRec.

mod common;

use common::{gaussian, ml100k, popularity_ndcg, popularity_valid, run, settings, small, turn};
use hsuga_data::Prepared;
use hsuga_eval::{Metric, Scorer};
use hsuga_model::burn::tensor::{Tensor, TensorData};
use hsuga_model::{
    Batcher, Extras, Fusion, Model, RclConfig, Recommender, RlmrecConfig, UserDenominator, cpu,
    to_f32,
};
use hsuga_train::objective::epoch_rng;
use hsuga_train::rcl_objective::RclObjective;
use hsuga_train::{
    EpochStart, Job, Matrix, MethodConfig, ModelScorer, Objective, Outcome, RunConfig,
    SemanticInputs, Step, TrainSettings, attach_users, fit, item_mean, load_best,
};

fn rcl() -> MethodConfig {
    MethodConfig {
        rcl: Some(RclConfig::default()),
        ..MethodConfig::default()
    }
}

fn rcl_hsu() -> MethodConfig {
    MethodConfig {
        fusion: Fusion::Gate,
        ..rcl()
    }
}

/// Users as the mean of their training items' random "text".
fn users(p: &Prepared) -> Matrix {
    item_mean(&p.split, &gaussian(p.split.num_items as usize, 64, 7))
}

#[test]
fn rcl_learns_ml100k() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let pop = popularity_valid(&p, &c);
    let out = run(
        &p,
        &c,
        &small(),
        &rcl(),
        &SemanticInputs::default(),
        10,
        None,
    );
    let h = &out.history;
    let valid = out.best_valid.get(Metric::Ndcg(10));
    eprintln!(
        "RCL ML-100K ({} epochs, hidden 64, max_len 20): loss {:.4} -> {:.4}, valid NDCG@10 \
         {valid:.4} (popularity {pop:.4}), test NDCG@10 {:.4}, {:.2} s/epoch",
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
}

/// Stopped after 2 epochs and resumed to 3, RCL's run equals the
/// uninterrupted one epoch by epoch: nothing the objective holds is lost.
#[test]
fn rcl_resumes_to_the_same_epochs() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let none = SemanticInputs::default();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let straight = run(&p, &c, &small(), &rcl(), &none, 3, Some(a.path()));
    run(&p, &c, &small(), &rcl(), &none, 2, Some(b.path()));
    let resumed = run(&p, &c, &small(), &rcl(), &none, 3, Some(b.path()));
    let key = |o: &Outcome| {
        o.history
            .iter()
            .map(|l| (l.loss, l.valid.as_ref().map(|m| m.get(Metric::Ndcg(10)))))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&straight), key(&resumed));
    // And the objective is in the loss: plain SASRec's first epoch differs.
    let plain = run(&p, &c, &small(), &MethodConfig::default(), &none, 1, None);
    assert!((plain.history[0].loss - straight.history[0].loss).abs() > 1e-4);
}

/// RCL+HSU: the keys are encoded with fusion (changing the semantic vector
/// of a key user who is not in the batch changes the loss), and a trained
/// RCL+HSU model's evaluation scores depend on the users' vectors.
#[test]
fn rcl_with_hsu_fuses_in_the_key_forwards_and_at_evaluation() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let m = small();
    let n = p.split.num_items;
    let sem = users(&p);
    let dev = cpu();
    // `add` fusion: the key-forward mechanism is the kind's, and the gate's
    // σ(−6) at initialisation would make the effect tiny.
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
    let mut obj = RclObjective::new(&RclConfig::default(), &p.split, m.max_len, 42).unwrap();
    obj.start_epoch(EpochStart {
        epoch: 1,
        model: &model,
        split: &p.split,
        rng: &mut epoch_rng(42, 1),
    });
    let batch_users: Vec<usize> = (0..16).collect();
    let weak = obj.weak_positives();
    let outsider = batch_users
        .iter()
        .map(|&u| weak[u])
        .find(|v| !batch_users.contains(v))
        .expect("some weak positive outside the batch");
    let batcher = Batcher::new(&m, n, &dev);
    let seen = p.split.train_item_sets();
    let rows: Vec<&[u32]> = batch_users
        .iter()
        .map(|&u| p.split.train[u].as_slice())
        .collect();
    let loss_with = |s: &Matrix, obj: &mut RclObjective| {
        let all = Tensor::<2>::from_data(TensorData::new(s.data.clone(), [s.rows, s.dim]), &dev);
        let mut rng = epoch_rng(7, 1);
        let mut tb = batcher.train_batch(
            &rows,
            |r, i| seen[batch_users[r]].binary_search(&i).is_ok(),
            &mut rng,
        );
        attach_users(&mut tb.input, Some(&all), &batch_users);
        let (_, student) = model.train_forward(&tb);
        hsuga_model::seed_dropout(1);
        let l = obj.loss(&Step {
            model: &model,
            users: &batch_users,
            batch: &tb,
            student: &student,
            batcher: &batcher,
            split: &p.split,
            user_semantic: Some(&all),
        });
        to_f32(l)[0]
    };
    let base = loss_with(&sem, &mut obj);
    assert_eq!(base, loss_with(&sem, &mut obj), "deterministic");
    let mut moved = sem.clone();
    for x in &mut moved.data[outsider * sem.dim..(outsider + 1) * sem.dim] {
        *x = -*x * 3.0 + 0.5;
    }
    let other = loss_with(&moved, &mut obj);
    assert!((base - other).abs() > 1e-6, "{base} vs {other}");

    // Through fit: the trained model's scores move with the user vectors.
    let semantic = SemanticInputs {
        user_semantic: Some(sem.clone()),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    run(&p, &c, &m, &rcl_hsu(), &semantic, 2, Some(dir.path()));
    let best = load_best(&m, &rcl_hsu(), &semantic, n, dir.path(), &dev).unwrap();
    let b = Batcher::new(&m, n, &dev);
    let score = |s: &Matrix| {
        let t = Tensor::<2>::from_data(TensorData::new(s.data.clone(), [s.rows, s.dim]), &dev);
        let sc = ModelScorer::new(&best, &b, Some(&t));
        let us: Vec<usize> = (0..8).collect();
        let hist: Vec<&[u32]> = us.iter().map(|&u| p.split.train[u].as_slice()).collect();
        sc.score_all(&sc.encode(&us, &hist))
    };
    let (x, y) = (score(&sem), score(&moved_all(&sem)));
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

/// Every user's vector changed.
fn moved_all(s: &Matrix) -> Matrix {
    let mut m = s.clone();
    m.data.iter_mut().for_each(|x| *x = 0.5 - *x);
    m
}

fn load(text: &str) -> Result<RunConfig, String> {
    RunConfig::from_toml(&format!("name = \"x\"\ndataset = \"d\"\n{text}"))
        .map_err(|e| e.to_string())
}

#[test]
fn bad_rcl_keys_fail_at_load() {
    for (text, want) in [
        (
            "[method]\nrcl = { percentile = 101 }\n",
            "method.rcl.percentile must be in [0, 100], got 101",
        ),
        (
            "[method]\nrcl = { percentile = -5 }\n",
            "method.rcl.percentile must be in [0, 100], got -5",
        ),
        (
            "[method]\nrcl = { temperature = 0 }\n",
            "method.rcl.temperature",
        ),
        ("[method]\nrcl = { weight = -0.1 }\n", "method.rcl.weight"),
        ("[method]\nrcl = { percentil = 90 }\n", "percentil"),
        (
            "[method]\nrcl = {}\ncities = {}\npretrained = { run = \"r\" }\n",
            "it takes no other method part",
        ),
        (
            "[method]\nrcl = {}\nfusion = \"gate\"\n",
            "need inputs.user_semantic",
        ),
    ] {
        let e = load(text).unwrap_err();
        assert!(e.contains(want), "{text}: {e}");
    }
    for ok in [
        "[method]\nrcl = { percentile = 0 }\n",
        "[method]\nrcl = { percentile = 100, relative_clip = false }\n",
        "[method]\nrcl = {}\nfusion = \"gate\"\n[inputs]\nitem_text = \"m\"\nuser_semantic = { hsu = \"rules\" }\n",
    ] {
        let c = load(ok).unwrap();
        assert_eq!(RunConfig::from_toml(&c.to_toml()).unwrap(), c);
    }
}

/// Epoch seconds of SASRec, RLMRec (all-user and batch denominators) and
/// RCL on ML-100K with the same settings (test profile; run with
/// `--ignored --nocapture`).
#[test]
#[ignore]
fn epoch_time_against_sasrec() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let text = gaussian(p.split.num_items as usize, 384, 7);
    let sem = SemanticInputs {
        user_semantic: Some(item_mean(&p.split, &text)),
        item_text: Some(text),
        ..Default::default()
    };
    let none = SemanticInputs::default();
    let rl = |d| MethodConfig {
        rlmrec: Some(RlmrecConfig {
            user_denominator: d,
            ..RlmrecConfig::default()
        }),
        ..MethodConfig::default()
    };
    let epochs = 4;
    let cases: [(&str, MethodConfig, &SemanticInputs); 4] = [
        ("SASRec", MethodConfig::default(), &none),
        ("RLMRec (all users)", rl(UserDenominator::All), &sem),
        ("RLMRec (batch)", rl(UserDenominator::Batch), &sem),
        ("RCL", rcl(), &none),
    ];
    // Three interleaved rounds. Wall: each case's fastest epoch after the
    // first (which warms caches and pools); CPU: the process's CPU seconds
    // per epoch of its cheapest run (validation only at the last epoch), so
    // that other work on a shared machine weighs less in either.
    let mut wall = [f64::INFINITY; 4];
    let mut cpu_s = [f64::INFINITY; 4];
    for _round in 0..3 {
        for (k, (_, method, s)) in cases.iter().enumerate() {
            let t0 = process_cpu_seconds();
            let out = fit(&Job {
                model: &small(),
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
            cpu_s[k] = cpu_s[k].min((process_cpu_seconds() - t0) / epochs as f64);
            for l in out.history.iter().skip(1) {
                wall[k] = wall[k].min(l.seconds);
            }
        }
    }
    for (k, (name, _, _)) in cases.iter().enumerate() {
        eprintln!(
            "{name}: wall {:.2} s/epoch ({:.2}x SASRec), CPU {:.2} s/epoch ({:.2}x SASRec)",
            wall[k],
            wall[k] / wall[0],
            cpu_s[k],
            cpu_s[k] / cpu_s[0]
        );
    }
}

/// User + system CPU seconds of this process, all threads (Linux).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the `(comm)`: utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}
