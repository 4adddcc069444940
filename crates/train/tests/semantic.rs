//! LLMInit, LLM-ESR, GAA self-distillation and HSU fusion in the trainer:
//! bad inputs fail before training, each ablation switch changes only what
//! it names (that the teacher carries no gradient is checked through `fit`
//! in `distill_through_fit.rs`), and LLM-ESR (+ GAA) learns
//! on the real ML-100K split with random Gaussian item text built here (no
//! model downloads).

mod common;

use common::{gaussian, ml100k, popularity_ndcg};
use hsuga_data::Split;
use hsuga_model::burn::tensor::{Tensor, TensorData};
use hsuga_model::{
    Backbone, Batcher, DualViewSpec, Extras, Fusion, Model, ModelConfig, Recommender,
    SequenceEncoder, cpu,
};
use hsuga_retrieval::{UserEmbeddings, active_users, retrieve};
use hsuga_train::{
    DistillConfig, Distiller, Job, Matrix, MethodConfig, RunConfig, SemanticInputs, TrainSettings,
    fit, item_mean,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// burn's device RNG is process-global: trainings take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A small split: 10 users whose training lengths are 10, 9, …, 1 (+ 2 held out).
fn toy_split() -> Split {
    let seqs: Vec<Vec<u32>> = (0..10u32)
        .map(|u| (0..(12 - u)).map(|k| 1 + (u + k) % 12).collect())
        .collect();
    Split::leave_one_out(&seqs, 12).unwrap()
}

fn toy_users() -> Matrix {
    gaussian(10, 4, 3)
}

/// Trains `method` for 8 epochs on ML-100K (random 384-d item "text",
/// users as the mean of their training items): the loss falls and test
/// NDCG@10 beats popularity.
fn learns_ml100k(label: &str, method: MethodConfig) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (p, c, _cache) = ml100k();
    let pop = popularity_ndcg(&p, &c);
    let text = gaussian(p.split.num_items as usize, 384, 7);
    let semantic = SemanticInputs {
        user_semantic: Some(item_mean(&p.split, &text)),
        item_text: Some(text),
        ..Default::default()
    };
    let model = ModelConfig {
        max_len: 50,
        dropout: 0.2,
        ..ModelConfig::default()
    };
    let train = TrainSettings {
        epochs: 8,
        progress: false,
        ..TrainSettings::default()
    };
    let out = fit(&Job {
        model: &model,
        train: &train,
        eval: &Default::default(),
        method: &method,
        semantic: &semantic,
        seed: 42,
        split: &p.split,
        groups: &p.groups,
        candidates: &c,
        run_dir: None,
        device: cpu(),
        progress: Default::default(),
    })
    .unwrap();
    let h = &out.history;
    eprintln!(
        "{label} ML-100K: loss {:.4} -> {:.4}, test HR@10 {:.4} NDCG@10 {:.4} (popularity NDCG@10 {pop:.4}), {:.1} s/epoch",
        h[0].loss,
        h.last().unwrap().loss,
        out.test[0].get(hsuga_eval::Metric::Hr(10)),
        out.test[0].get(hsuga_eval::Metric::Ndcg(10)),
        out.train_seconds / h.len() as f64
    );
    assert!(
        h.last().unwrap().loss < h[0].loss,
        "{label}: loss did not fall: {h:?}"
    );
    assert!(
        out.test[0].get(hsuga_eval::Metric::Ndcg(10)) > pop,
        "{label}: test NDCG@10 {:.4} not above popularity {pop:.4}",
        out.test[0].get(hsuga_eval::Metric::Ndcg(10))
    );
}

#[test]
fn llm_esr_with_gaa_learns_ml100k() {
    learns_ml100k(
        "LLM-ESR+GAA",
        MethodConfig {
            item_init: hsuga_train::ItemInit::Pca,
            dual_view: true,
            distill: Some(DistillConfig::default()),
            ..MethodConfig::default()
        },
    );
}

#[test]
fn hsu_gate_fusion_learns_ml100k() {
    learns_ml100k(
        "SASRec+HSU gate",
        MethodConfig {
            fusion: Fusion::Gate,
            ..MethodConfig::default()
        },
    );
}

#[test]
fn bad_inputs_fail_before_training() {
    let (p, c, _cache) = ml100k();
    let split = &p.split;
    let items = split.num_items as usize;
    let users = split.num_users();
    let dual = MethodConfig {
        dual_view: true,
        ..MethodConfig::default()
    };
    let gaa = MethodConfig {
        distill: Some(DistillConfig::default()),
        ..MethodConfig::default()
    };
    let check =
        |m: &MethodConfig, s: &SemanticInputs| s.check(m, 64, split).unwrap_err().to_string();
    let e = check(&dual, &SemanticInputs::default());
    assert!(e.contains("needs item text"), "{e}");
    let short = SemanticInputs {
        item_text: Some(gaussian(items - 1, 8, 1)),
        ..Default::default()
    };
    let e = check(&dual, &short);
    assert!(
        e.contains(&format!("{} rows", items - 1)) && e.contains(&format!("{items} items")),
        "{e}"
    );
    let ragged = SemanticInputs {
        item_text: Some(Matrix {
            rows: items,
            dim: 8,
            data: vec![0.0; items * 8 - 1],
        }),
        ..Default::default()
    };
    assert!(check(&dual, &ragged).contains("do not form"));
    let wrong_users = SemanticInputs {
        user_semantic: Some(gaussian(users + 1, 8, 1)),
        ..Default::default()
    };
    assert!(check(&gaa, &wrong_users).contains(&format!("{users} users")));
    let user_ok = SemanticInputs {
        user_semantic: Some(gaussian(users, 8, 1)),
        ..Default::default()
    };
    let too_many = MethodConfig {
        distill: Some(DistillConfig {
            k_tail: users,
            ..DistillConfig::default()
        }),
        ..MethodConfig::default()
    };
    let e = check(&too_many, &user_ok);
    assert!(e.contains("K =") && e.contains("other users"), "{e}");
    // The same refusals reach `fit` before any training.
    let e = fit(&Job {
        model: &ModelConfig::default(),
        train: &TrainSettings::default(),
        eval: &Default::default(),
        method: &too_many,
        semantic: &user_ok,
        seed: 1,
        split,
        groups: &hsuga_data::Groups::compute(split, hsuga_data::GroupRule::Pareto { ratio: 0.2 }),
        candidates: &c,
        run_dir: None,
        device: cpu(),
        progress: Default::default(),
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("other users"), "{e}");

    // Config-level refusals.
    let head = "name = \"x\"\ndataset = \"d.toml\"\n";
    let err = |body: &str| {
        RunConfig::from_toml(&format!("{head}{body}"))
            .unwrap_err()
            .to_string()
    };
    let inputs = "[inputs]\nitem_text = \"all-minilm-l6-v2\"\nuser_semantic = \"hsu:rules\"\n";
    assert!(err(&format!("{inputs}[method.distill]\nalpha = -0.1\n")).contains("alpha"));
    assert!(err(&format!("{inputs}[method.distill]\npercentile = 101\n")).contains("percentile"));
    assert!(err(&format!("{inputs}[method.distill]\npercentile = -1\n")).contains("[0, 100]"));
    assert!(err("[method]\ndual_view = true\n").contains("inputs.item_text"));
    assert!(err("[method]\nfusion = \"gate\"\n").contains("inputs.user_semantic"));
    assert!(err("[method]\ncross_attention = true\n").contains("dual_view"));
    assert!(err("[inputs]\nuser_semantic = \"hsu\"\n").contains("expected \"item-mean\""));
    let ok = RunConfig::from_toml(&format!(
        "{head}{inputs}[method]\nitem_init = \"pca\"\ndual_view = true\n[method.distill]\n"
    ))
    .unwrap();
    assert_eq!(RunConfig::from_toml(&ok.to_toml()).unwrap(), ok);
    assert_eq!(ok.method.distill.unwrap().alpha, 0.1);
}

#[test]
fn ablation_switches_change_only_what_they_name() {
    let split = toy_split();
    let emb = UserEmbeddings::new(4, toy_users().data).unwrap();
    let base = DistillConfig {
        k_active: 5,
        k_tail: 3,
        percentile: 75.0,
        ..DistillConfig::default()
    };
    let nb = |d: &DistillConfig| retrieve(&emb, &split, &d.retrieval()).unwrap();
    let full = nb(&base);
    let active = active_users(&split, base.active_ratio);
    let lists = |n: &hsuga_retrieval::Neighbours| -> Vec<Vec<u32>> {
        (0..10).map(|u| n.of(u).to_vec()).collect()
    };

    // w/o active-user filter: active users get all k_active, tail unchanged.
    let no_filter = nb(&DistillConfig {
        active_filter: false,
        ..base.clone()
    });
    for (u, &is_active) in active.iter().enumerate() {
        if is_active {
            assert_eq!(no_filter.of(u).len(), 5);
            assert!(full.of(u).iter().all(|v| no_filter.of(u).contains(v)));
        } else {
            assert_eq!(no_filter.of(u), full.of(u), "tail user {u} changed");
        }
    }
    // Percentile τ: only active users' lists change.
    let tau0 = nb(&DistillConfig {
        percentile: 0.0,
        ..base.clone()
    });
    for u in (0..10).filter(|&u| !active[u]) {
        assert_eq!(tau0.of(u), full.of(u));
    }
    assert_eq!(
        lists(&tau0),
        lists(&no_filter),
        "τ = 0 keeps every candidate"
    );
    // K per group: k_tail changes only tail users, k_active only active ones.
    let more_tail = nb(&DistillConfig {
        k_tail: 4,
        ..base.clone()
    });
    for (u, &is_active) in active.iter().enumerate() {
        if is_active {
            assert_eq!(more_tail.of(u), full.of(u));
        } else {
            assert_eq!(more_tail.of(u).len(), 4);
        }
    }
    let fewer_active = nb(&DistillConfig {
        k_active: 2,
        active_filter: false,
        ..base.clone()
    });
    for (u, &is_active) in active.iter().enumerate() {
        if is_active {
            assert_eq!(fewer_active.of(u).len(), 2);
        } else {
            assert_eq!(fewer_active.of(u), full.of(u));
        }
    }
    // Group ratio: moves the boundary, nothing else.
    let wider = DistillConfig {
        active_ratio: 0.3,
        active_filter: false,
        ..base.clone()
    };
    assert_eq!(active_users(&split, 0.3).iter().filter(|&&a| a).count(), 3);
    for (u, l) in lists(&nb(&wider)).iter().enumerate() {
        let want = if active_users(&split, 0.3)[u] { 5 } else { 3 };
        assert_eq!(l.len(), want, "user {u}");
    }
    // w/o group-aware SD: the same k for everyone, no filter.
    let uniform = nb(&DistillConfig {
        group_aware: false,
        k: 3,
        ..base.clone()
    });
    assert!((0..10).all(|u| uniform.of(u).len() == 3));
    // α changes only the weight of the loss.
    let d = |alpha| {
        Distiller::new(
            &DistillConfig {
                alpha,
                ..base.clone()
            },
            &toy_users(),
            &split,
        )
        .unwrap()
    };
    let (d1, d2) = (d(0.1), d(0.5));
    assert_eq!(d1.neighbours(), d2.neighbours());
    let s = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), &cpu());
    let l = |d: &Distiller| {
        d.loss(s.clone(), vec![0.0, 0.0], &cpu())
            .into_scalar::<f32>()
    };
    assert!((l(&d2) / l(&d1) - 5.0).abs() < 1e-5);
}

#[test]
fn active_group_boundary_is_the_top_20_percent() {
    // Lengths 10, 9, …, 1: exactly users 0 and 1 are active at 20%.
    let split = toy_split();
    let a = active_users(&split, 0.2);
    assert_eq!(a.iter().filter(|&&x| x).count(), 2);
    assert!(a[0] && a[1] && !a[2]);
}

#[test]
fn every_backbone_runs_llm_esr_with_fusion() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let split = toy_split();
    let text = gaussian(12, 6, 2);
    let users = toy_users();
    for backbone in [Backbone::Sasrec, Backbone::Bert4rec, Backbone::Gru4rec] {
        for fusion in [Fusion::Add, Fusion::Gate, Fusion::Concat] {
            let cfg = ModelConfig {
                backbone: backbone.into(),
                hidden: 8,
                max_len: 12,
                ..ModelConfig::default()
            };
            let dev = cpu().autodiff();
            let model = Recommender::with_extras(
                &cfg,
                12,
                &Extras {
                    dual_view: Some(DualViewSpec {
                        text: &text.data,
                        dim: 6,
                        cross_attention: true,
                    }),
                    fusion: Some((fusion, 4)),
                    ..Extras::default()
                },
                &dev,
            )
            .unwrap();
            let tables = model.tables();
            let vocab = model.encoder.item_table().dims()[0];
            // The adapter maps the table once: one row per id, [e_co; e_se].
            assert_eq!(tables.scoring.dims(), [vocab, 16], "{backbone:?}");
            let batcher = Batcher::new(&cfg, 12, &dev);
            let rows: Vec<&[u32]> = (0..4).map(|u| split.train[u].as_slice()).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let mut tb = batcher.train_batch(&rows, |_, _| false, &mut rng);
            let sem =
                Tensor::<2>::from_data(TensorData::new(users.data[..16].to_vec(), [4, 4]), &dev);
            tb.input.user_semantic = Some(sem);
            let (loss, student) = model.train_forward(&tb);
            assert_eq!(student.dims(), [4, 16]);
            let l = loss.into_scalar::<f32>();
            assert!(l.is_finite(), "{backbone:?} {fusion:?}: {l}");
        }
    }
}
