//! MELT on the real ML-100K split: it starts from a tiny SASRec trained
//! here into a folder; its contexts read training items only; the
//! epoch-start refresh rewrites exactly the tail items' rows, each equal to
//! `W_I(mean of its contexts' f)` computed by hand from the plain model;
//! the transfer at inference touches tail users only (by training length,
//! as recorded with the run); a resumed run replays the uninterrupted one;
//! a missing or mismatched pretrained run and bad keys fail at load naming
//! them; and it learns. An ignored test measures its epoch time against
//! SASRec's.

mod common;

use common::{
    Source, job, ml100k, popularity_ndcg, popularity_valid, settings, small, train_source, turn,
};
use hsuga_data::{Candidates, Prepared};
use hsuga_eval::{Column, Metric, Scorer};
use hsuga_model::burn::tensor::{Tensor, TensorData};
use hsuga_model::melt::MeltContexts;
use hsuga_model::{
    Backbone, Batcher, Extras, MeltConfig, MeltItems, Model, ModelConfig, Recommender,
    SequenceEncoder, cpu, to_f32,
};
use hsuga_train::cities::pretrained_table;
use hsuga_train::melt::MeltObjective;
use hsuga_train::objective::epoch_rng;
use hsuga_train::{
    EpochStart, Matrix, MethodConfig, ModelScorer, Objective, Outcome, Pretrained, RunConfig,
    SemanticInputs, TrainSettings, fit, load_best,
};

const SOURCE_EPOCHS: usize = 8;

fn source(p: &Prepared, c: &Candidates) -> &'static Source {
    static SOURCE: std::sync::OnceLock<Source> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| train_source(p, c, small(), SOURCE_EPOCHS, "melt-source-sasrec"))
}

/// The learning test's source: a 10-item window (MELT's epoch costs
/// about half the 20-item one's).
fn short() -> ModelConfig {
    ModelConfig {
        max_len: 10,
        ..small()
    }
}

fn short_source(p: &Prepared, c: &Candidates) -> &'static Source {
    static SOURCE: std::sync::OnceLock<Source> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| train_source(p, c, short(), SOURCE_EPOCHS, "melt-source-sasrec-10"))
}

fn melt(src: &Source, cfg: MeltConfig) -> MethodConfig {
    MethodConfig {
        melt: Some(cfg),
        pretrained: Some(Pretrained::Run(src.dir.display().to_string())),
        ..MethodConfig::default()
    }
}

fn with_items(src: &Source) -> SemanticInputs {
    SemanticInputs {
        pretrained_items: Some(src.items.clone()),
        ..Default::default()
    }
}

/// A MELT model (plain device) with the source's backbone and fresh
/// branches drawn from `seed`, `τ_u` set.
fn melt_model(p: &Prepared, src: &Source, tau_u: f64, seed: u64) -> Recommender {
    let m = small();
    let n = p.split.num_items;
    let device = cpu();
    device.seed(seed);
    let mut model = Recommender::with_extras(
        &m,
        n,
        &Extras {
            melt: true,
            ..Extras::default()
        },
        &device,
    )
    .unwrap();
    let none = SemanticInputs::default();
    let pre = load_best(&m, &MethodConfig::default(), &none, n, &src.dir, &device).unwrap();
    model.encoder = pre.encoder;
    model.melt.as_mut().unwrap().set_tau_u(tau_u);
    model
}

/// Every MELT context of real ML-100K is a prefix or a reversed suffix of
/// one user's *training* items ending in the item, at most `max_len`
/// long; no validation or test item the user's training lacks is in one.
#[test]
fn melt_contexts_read_training_items_only() {
    let (p, _c, _cache) = ml100k();
    let max_len = 20;
    let ctx = MeltContexts::build(&p.split.train, p.split.num_items, max_len);
    let (mut prefixes, mut suffixes, mut held_out_checked) = (0usize, 0usize, 0usize);
    for (i, cs) in ctx.of.iter().enumerate() {
        for &c in cs {
            let train = &p.split.train[c.user as usize];
            let ids = ctx.ids(&p.split.train, c);
            assert_eq!(
                *ids.last().unwrap() as usize,
                i,
                "a context ends in its item"
            );
            assert!(!ids.is_empty() && ids.len() <= max_len);
            let s = c.pos as usize;
            if c.reversed {
                let want: Vec<u32> = train[s..(s + max_len).min(train.len())]
                    .iter()
                    .rev()
                    .copied()
                    .collect();
                assert_eq!(ids, want);
                suffixes += 1;
            } else {
                assert_eq!(ids, train[(s + 1).saturating_sub(max_len)..=s].to_vec());
                prefixes += 1;
            }
            for held in [
                p.split.valid[c.user as usize],
                p.split.test[c.user as usize],
            ] {
                if held != 0 && !train.contains(&held) {
                    assert!(!ids.contains(&held), "user {}'s held-out {held}", c.user);
                    held_out_checked += 1;
                }
            }
        }
    }
    let interactions: usize = p.split.train.iter().map(Vec::len).sum();
    assert_eq!(prefixes, interactions);
    assert_eq!(suffixes, interactions, "every ML-100K user has > 1 item");
    assert!(held_out_checked > 100_000, "{held_out_checked}");
}

/// The epoch-start refresh returns a row for exactly the tail items that
/// have a context (no head item, no padding), and one such row equals
/// `W_I(mean_c f(c))` computed here context by context from the plain
/// model's weights, with `W_I` applied by hand (`x·W + b`).
#[test]
fn melt_refresh_rewrites_exactly_the_tail_rows() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let src = source(&p, &c);
    let m = small();
    let mut obj = MeltObjective::new(&MeltConfig::default(), &m, &p.split, &p.groups);
    let model = melt_model(&p, src, obj.split.tau_u, 7);
    obj.start_epoch(EpochStart {
        epoch: 1,
        model: &model,
        split: &p.split,
        rng: &mut epoch_rng(42, 1),
    });
    let rows = obj.edit_epoch(8).item_rows;
    let n = p.split.num_items as usize;
    eprintln!(
        "refresh of {} tail items: {:.2} s",
        obj.tail_items.len(),
        obj.refresh_seconds
    );
    let mut touched = vec![false; n + 2];
    for (i, _) in &rows {
        assert!(!touched[*i as usize], "item {i} twice");
        touched[*i as usize] = true;
    }
    let mut tails = 0;
    for (i, &t) in touched.iter().enumerate() {
        let want =
            (1..=n).contains(&i) && !obj.split.head_item[i] && !obj.contexts.of[i].is_empty();
        assert_eq!(t, want, "item {i}: head {}", obj.split.head_item[i.min(n)]);
        tails += usize::from(want);
    }
    assert!(tails > 1000, "{tails} tail rows");
    assert!(obj.split.head_item.iter().filter(|&&h| h).count() > 300);
    // A second call hands nothing more: the edit is made once per epoch.
    assert!(obj.edit_epoch(8).item_rows.is_empty());
    // One tail item with several contexts, by hand.
    let (item, row) = rows
        .iter()
        .find(|(i, _)| obj.contexts.of[*i as usize].len() >= 4)
        .unwrap();
    let batcher = Batcher::new(&m, n as u32, &cpu());
    let h = m.hidden;
    let mut mean = vec![0f64; h];
    let cs = &obj.contexts.of[*item as usize];
    for &cx in cs {
        let ids = obj.contexts.ids(&p.split.train, cx);
        let f = to_f32(model.encoder.encode_last(&batcher.eval_batch(&[&ids])));
        for (a, x) in mean.iter_mut().zip(&f) {
            *a += *x as f64 / cs.len() as f64;
        }
    }
    let branch = &model.melt.as_ref().unwrap().item;
    let w = to_f32(branch.weight.val()); // [d_in, d_out]
    let b = to_f32(branch.bias.as_ref().unwrap().val());
    for j in 0..h {
        let want = (0..h).map(|k| mean[k] * w[k * h + j] as f64).sum::<f64>() + b[j] as f64;
        assert!(
            (row[j] as f64 - want).abs() < 1e-4,
            "item {item} dim {j}: {} vs {want}",
            row[j]
        );
    }
}

/// Through `fit`: after one epoch the trained table differs from the
/// pretrained one by the refresh in the tail rows and only by one epoch of
/// Adam (8 steps at 1e-3) in the head rows — the edit reached the trained
/// model, in the tail rows only — and the checkpoint records `τ_u`.
#[test]
fn melt_fit_writes_the_refresh_and_records_tau_u() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let src = source(&p, &c);
    let run = tempfile::tempdir().unwrap();
    let method = melt(src, MeltConfig::default());
    let (m, t) = (small(), settings(1));
    fit(&job(
        &p,
        &c,
        &m,
        &t,
        &method,
        &with_items(src),
        Some(run.path()),
    ))
    .unwrap();
    let n = p.split.num_items;
    let none = SemanticInputs::default();
    let after = load_best(&m, &method, &none, n, run.path(), &cpu()).unwrap();
    let obj = MeltObjective::new(&MeltConfig::default(), &m, &p.split, &p.groups);
    let stored = after.melt.as_ref().unwrap().tau_u();
    assert!(
        (stored - obj.split.tau_u).abs() < 1e-3,
        "{stored} vs {}",
        obj.split.tau_u
    );
    assert!(
        obj.split.tau_u > 20.0,
        "ML-100K's 80 % length: {}",
        obj.split.tau_u
    );
    let h = m.hidden;
    let table = to_f32(after.encoder.item_table());
    let before = &src.items.data;
    let moved = |i: usize| {
        let (a, b) = (&table[i * h..(i + 1) * h], &before[(i - 1) * h..i * h]);
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let step_bound = 0.05; // 8 Adam steps of about lr = 1e-3 each, with room
    let mut far = 0;
    for &i in &obj.tail_items {
        far += usize::from(moved(i as usize) > step_bound);
    }
    let head: Vec<usize> = (1..=n as usize)
        .filter(|&i| obj.split.head_item[i])
        .collect();
    let head_max = head.iter().map(|&i| moved(i)).fold(0f32, f32::max);
    eprintln!(
        "{far} of {} tail rows moved > {step_bound}; head rows moved at most {head_max:.4}",
        obj.tail_items.len()
    );
    assert!(head_max < step_bound, "a head row moved {head_max}");
    assert!(
        far * 100 >= obj.tail_items.len() * 95,
        "{far} of {}",
        obj.tail_items.len()
    );
}

/// At inference `W_U` transfers the tail users only: with each row's flag
/// attached (the training length, as the evaluation chain does), a tail
/// user's representation is `h + W_U h` and a head user's is `h`, whatever
/// the history given (the test history, one item longer); with no flag
/// (serving a history) the history's length decides against the stored
/// `τ_u`.
#[test]
fn melt_transfers_tail_users_only() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let src = source(&p, &c);
    let m = small();
    let n = p.split.num_items;
    let obj = MeltObjective::new(&MeltConfig::default(), &m, &p.split, &p.groups);
    let model = melt_model(&p, src, obj.split.tau_u, 7);
    let batcher = Batcher::new(&m, n, &cpu());
    let flags = obj.tail_flags(&cpu());
    let scorer = ModelScorer::new(&model, &batcher, Some(&flags));
    let tau = obj.split.tau_u;
    // Users on both sides of τ_u, including one whose training length is
    // ⌊τ_u⌋ (tail) though its test history is one item longer.
    let mut users: Vec<usize> = Vec::new();
    for want_tail in [true, false] {
        users.extend(
            (0..p.split.num_users())
                .filter(|&u| obj.split.tail_user[u] == want_tail)
                .take(5),
        );
    }
    if let Some(u) = (0..p.split.num_users()).find(|&u| p.split.train[u].len() == tau as usize) {
        users.push(u);
    }
    let hist: Vec<Vec<u32>> = users.iter().map(|&u| p.split.test_input(u)).collect();
    let refs: Vec<&[u32]> = hist.iter().map(Vec::as_slice).collect();
    let got = to_f32(scorer.encode(&users, &refs));
    let plain = to_f32(model.encoder.encode_last(&batcher.eval_batch(&refs)));
    let h = m.hidden;
    let wu = model.melt.as_ref().unwrap().user.clone();
    let transferred = to_f32(wu.forward(Tensor::<2>::from_data(
        TensorData::new(plain.clone(), [users.len(), h]),
        &cpu(),
    )));
    let (mut tails, mut heads) = (0, 0);
    for (r, &u) in users.iter().enumerate() {
        let tail = p.split.train[u].len() as f64 <= tau;
        assert_eq!(tail, obj.split.tail_user[u]);
        for j in 0..h {
            let want = plain[r * h + j] + if tail { transferred[r * h + j] } else { 0.0 };
            assert!(
                (got[r * h + j] - want).abs() < 1e-4,
                "user {u} (tail {tail}) dim {j}"
            );
        }
        if tail { tails += 1 } else { heads += 1 }
    }
    assert!(tails >= 5 && heads >= 5);
    // No flag: the history's real items against τ_u (max_len 20 < τ_u here,
    // so every truncated history reads as tail).
    let served = to_f32(model.represent_last(&model.tables(), &batcher.eval_batch(&refs)));
    for (r, _) in users.iter().enumerate() {
        let want = plain[r * h] + transferred[r * h];
        assert!((served[r * h] - want).abs() < 1e-4);
    }
}

/// Stopped after 2 epochs and resumed to 3, MELT's run equals the
/// uninterrupted one epoch by epoch (the refresh and the aligned loaders
/// are functions of the weights and the epoch's stream).
#[test]
fn melt_resumes_to_the_same_epochs() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let src = short_source(&p, &c);
    let method = melt(src, MeltConfig::default());
    let semantic = with_items(src);
    let m = short();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (t2, t3) = (settings(2), settings(3));
    let straight = fit(&job(&p, &c, &m, &t3, &method, &semantic, Some(a.path()))).unwrap();
    fit(&job(&p, &c, &m, &t2, &method, &semantic, Some(b.path()))).unwrap();
    let resumed = fit(&job(&p, &c, &m, &t3, &method, &semantic, Some(b.path()))).unwrap();
    let key = |o: &Outcome| {
        o.history
            .iter()
            .map(|l| (l.loss, l.valid.as_ref().map(|v| v.get(Metric::Ndcg(10)))))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&straight), key(&resumed));
    assert_eq!(
        straight.test_rankings.sampled.as_ref(),
        resumed.test_rankings.sampled.as_ref()
    );
}

const LEARN_EPOCHS: usize = 6;

/// MELT learns on ML-100K from a tiny source (10-item window, the CPU
/// budget): its loss falls to well under half its first epoch's, and the
/// epoch it selects on validation ranks the test items above popularity.
/// Measured (seed 42, 2 shared cores): loss 4.47 → 1.62 over 6 epochs;
/// validation NDCG@10 0.246, 0.186, 0.248, 0.249 (selected), 0.165, 0.101
/// — the random `W_I`'s first refresh and the random `W_U` transfer on the
/// 80 % tail users shake it first, as in the official code, which runs
/// 180 epochs; test NDCG@10 0.229 against popularity's 0.2215 (source
/// 0.227). Not asserted: beating the source, which this budget does not.
#[test]
fn melt_learns_on_ml100k() {
    let _turn = turn();
    let t0 = std::time::Instant::now();
    let (p, c, _cache) = ml100k();
    let src = short_source(&p, &c);
    let method = melt(src, MeltConfig::default());
    let (m, t) = (short(), settings(LEARN_EPOCHS));
    let out = fit(&job(&p, &c, &m, &t, &method, &with_items(src), None)).unwrap();
    let col = |o: &Outcome, col: Column, k: Metric| {
        o.test_rankings
            .sampled
            .as_ref()
            .unwrap()
            .column_mean(col, k)
    };
    let (pop, pop_valid) = (popularity_ndcg(&p, &c), popularity_valid(&p, &c));
    let test = col(&out, Column::Overall, Metric::Ndcg(10));
    eprintln!(
        "MELT ML-100K (SASRec max_len 10, source {SOURCE_EPOCHS} epochs; MELT {} epochs, best \
         {}): loss {:?}; valid {:?}; valid NDCG@10 source {:.4} -> MELT {:.4} (popularity {pop_valid:.4}); \
         test NDCG@10 overall source {:.4} -> MELT {test:.4} (popularity {pop:.4}); tail users \
         {:.6} -> {:.6}; head users {:.4} -> {:.4}; tail items {:.4} -> {:.4}; head items {:.4} \
         -> {:.4}; {:.2} s/epoch ({:.1} s)",
        out.epochs_run,
        out.best_epoch,
        out.history.iter().map(|l| l.loss).collect::<Vec<_>>(),
        out.history
            .iter()
            .map(|l| l.valid.as_ref().map(|v| v.get(Metric::Ndcg(10))))
            .collect::<Vec<_>>(),
        src.out.best_valid.get(Metric::Ndcg(10)),
        out.best_valid.get(Metric::Ndcg(10)),
        col(&src.out, Column::Overall, Metric::Ndcg(10)),
        col(&src.out, Column::TailUser, Metric::Ndcg(10)),
        col(&out, Column::TailUser, Metric::Ndcg(10)),
        col(&src.out, Column::HeadUser, Metric::Ndcg(10)),
        col(&out, Column::HeadUser, Metric::Ndcg(10)),
        col(&src.out, Column::TailItem, Metric::Ndcg(10)),
        col(&out, Column::TailItem, Metric::Ndcg(10)),
        col(&src.out, Column::HeadItem, Metric::Ndcg(10)),
        col(&out, Column::HeadItem, Metric::Ndcg(10)),
        out.train_seconds / out.epochs_run as f64,
        t0.elapsed().as_secs_f64()
    );
    let (first, last) = (out.history[0].loss, out.history.last().unwrap().loss);
    assert!(last < first / 2.0, "loss {first:.4} -> {last:.4}");
    // Measured on an Intel Xeon (AVX-512): 0.229 against popularity's 0.2215
    // (random ranking of 101 candidates: about 0.045). The selected epoch's
    // validation lead is 0.001, so another CPU's rounding may select a
    // neighbouring epoch: the bound keeps 5 % of room below popularity.
    assert!(
        test > 0.95 * pop,
        "test NDCG@10 {test:.4} vs popularity {pop:.4}"
    );
}

/// A missing pretrained run, or one of another `[model]`, is refused
/// naming the key and the folder, and nothing is written.
#[test]
fn melt_refuses_a_missing_or_mismatched_pretrained_run() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let src = source(&p, &c);
    let n = p.split.num_items;
    let longer = ModelConfig {
        max_len: 50,
        ..small()
    };
    // The runner's check (shared with CITIES), before anything trains.
    let e = pretrained_table(&src.stored, &src.dir, &longer, n)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("method.pretrained")
            && e.contains(&src.dir.display().to_string())
            && e.contains("model.max_len: 20 → 50"),
        "{e}"
    );
    let t = settings(1);
    let semantic = with_items(src);
    // fit on a model the checkpoint does not fit: refused, nothing written.
    let run = tempfile::tempdir().unwrap();
    let out_dir = run.path().join("melt");
    let method = melt(src, MeltConfig::default());
    let e = fit(&job(
        &p,
        &c,
        &longer,
        &t,
        &method,
        &semantic,
        Some(&out_dir),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("method.pretrained") && e.contains(&src.dir.display().to_string()),
        "{e}"
    );
    assert!(!out_dir.exists(), "nothing written");
    // A folder without a run.
    let missing = src.dir.join("nowhere");
    let method = MethodConfig {
        pretrained: Some(Pretrained::Run(missing.display().to_string())),
        ..method
    };
    let e = fit(&job(
        &p,
        &c,
        &small(),
        &t,
        &method,
        &semantic,
        Some(&out_dir),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("method.pretrained") && e.contains(&missing.display().to_string()),
        "{e}"
    );
    assert!(!out_dir.exists(), "nothing written");
}

/// `[method.melt]` reads the Beauty defaults, round-trips, and its mistakes
/// are errors at load naming the key.
#[test]
fn melt_keys_are_checked_at_load() {
    let d = MeltConfig::default();
    assert_eq!(
        (d.lambda_u, d.lambda_i, d.e_max, d.pareto, d.items),
        (0.1, 0.4, 180, 0.8, MeltItems::Quantile)
    );
    let load = |method: &str| {
        RunConfig::from_toml(&format!(
            "name = \"x\"\ndataset = \"d\"\n[method]\n{method}"
        ))
        .map_err(|e| e.to_string())
    };
    let ok =
        load("melt = { items = \"groups\", e_max = 41 }\npretrained = { run = \"r\" }\n").unwrap();
    let got = ok.method.melt.as_ref().unwrap();
    assert_eq!((got.items, got.e_max), (MeltItems::Groups, 41));
    assert_eq!(RunConfig::from_toml(&ok.to_toml()).unwrap(), ok);
    // A MELT checkpoint is not a plain backbone's.
    assert_eq!(ok.method.tag(), "/melt");
    for (method, want) in [
        ("melt = {}\n", "it needs method.pretrained"),
        (
            "melt = { lambda = 0.1 }\npretrained = { run = \"r\" }\n",
            "lambda",
        ),
        (
            "melt = { lambda_u = -1 }\npretrained = { run = \"r\" }\n",
            "method.melt.lambda_u",
        ),
        (
            "melt = { e_max = 0 }\npretrained = { run = \"r\" }\n",
            "method.melt.e_max",
        ),
        (
            "melt = { pareto = 1.5 }\npretrained = { run = \"r\" }\n",
            "method.melt.pareto",
        ),
        (
            "melt = { items = \"top\" }\npretrained = { run = \"r\" }\n",
            "unknown variant",
        ),
        (
            "melt = {}\ndual_view = true\npretrained = { run = \"r\" }\n",
            "method.melt trains",
        ),
        (
            "melt = {}\ncities = {}\npretrained = { run = \"r\" }\n",
            "takes no other method part",
        ),
    ] {
        let e = load(method).unwrap_err();
        assert!(e.contains(want), "{method}: {e}");
    }
}

/// BERT4Rec and GRU4Rec start MELT too (f = h(seq), BERT4Rec with the
/// appended MASK): one epoch runs and its refresh reaches the table.
#[test]
fn melt_runs_on_bert4rec_and_gru4rec() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let n = p.split.num_items;
    for backbone in [Backbone::Bert4rec, Backbone::Gru4rec] {
        let m = ModelConfig {
            max_len: 10,
            ..ModelConfig::from(backbone)
        };
        let src = tempfile::tempdir().unwrap();
        let (plain, none) = (MethodConfig::default(), SemanticInputs::default());
        let t = settings(1);
        fit(&job(&p, &c, &m, &t, &plain, &none, Some(src.path()))).unwrap();
        let before = load_best(&m, &plain, &none, n, src.path(), &cpu()).unwrap();
        let semantic = SemanticInputs {
            pretrained_items: Some(Matrix {
                rows: n as usize,
                dim: m.hidden,
                data: to_f32(before.encoder.item_table().narrow(0, 1, n as usize)),
            }),
            ..Default::default()
        };
        let method = MethodConfig {
            melt: Some(MeltConfig::default()),
            pretrained: Some(Pretrained::Run(src.path().display().to_string())),
            ..MethodConfig::default()
        };
        let out = fit(&job(&p, &c, &m, &t, &method, &semantic, None)).unwrap();
        assert!(out.history[0].loss.is_finite(), "{backbone:?}");
        let ndcg = out.best_valid.get(Metric::Ndcg(10));
        assert!(ndcg > 0.0, "{backbone:?}: {ndcg}");
    }
}

/// Epoch seconds of MELT against SASRec on ML-100K (max_len 20, test
/// profile; `--ignored --nocapture`): MELT's epoch includes its refresh.
#[test]
#[ignore = "a measurement"]
fn melt_epoch_time_against_sasrec() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let src = source(&p, &c);
    let m = small();
    let t = TrainSettings {
        eval_every: 3,
        ..settings(3)
    };
    let none = SemanticInputs::default();
    let sasrec = fit(&job(&p, &c, &m, &t, &MethodConfig::default(), &none, None)).unwrap();
    let method = melt(src, MeltConfig::default());
    let ours = fit(&job(&p, &c, &m, &t, &method, &with_items(src), None)).unwrap();
    let best = |o: &Outcome| {
        o.history
            .iter()
            .map(|l| l.seconds)
            .fold(f64::INFINITY, f64::min)
    };
    eprintln!(
        "epoch seconds (fastest of 3): SASRec {:.2}, MELT {:.2} ({:.1}x)",
        best(&sasrec),
        best(&ours),
        best(&ours) / best(&sasrec)
    );
}

/// A measurement, not a check (`--ignored --nocapture`): MELT for 12
/// epochs from the tiny source, validation NDCG@10 per epoch.
#[test]
#[ignore = "a measurement of a few minutes"]
fn melt_longer_on_ml100k() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let src = source(&p, &c);
    let method = melt(src, MeltConfig::default());
    let (m, t) = (small(), settings(12));
    let out = fit(&job(&p, &c, &m, &t, &method, &with_items(src), None)).unwrap();
    for l in &out.history {
        eprintln!(
            "epoch {}: loss {:.4}, valid NDCG@10 {:.4}, {:.1} s",
            l.epoch,
            l.loss,
            l.valid
                .as_ref()
                .map_or(f64::NAN, |v| v.get(Metric::Ndcg(10))),
            l.seconds
        );
    }
    let col = |o: &Outcome, col: Column| {
        o.test_rankings
            .sampled
            .as_ref()
            .unwrap()
            .column_mean(col, Metric::Ndcg(10))
    };
    for (label, o) in [("source", &src.out), ("MELT", &out)] {
        eprintln!(
            "{label}: best epoch {}, valid {:.4}; test NDCG@10 overall {:.4}, tail users {:.4}, \
             head users {:.4}, tail items {:.4}, head items {:.4}",
            o.best_epoch,
            o.best_valid.get(Metric::Ndcg(10)),
            col(o, Column::Overall),
            col(o, Column::TailUser),
            col(o, Column::HeadUser),
            col(o, Column::TailItem),
            col(o, Column::HeadItem),
        );
    }
}

/// Epoch seconds of MELT against SASRec at the ML-100K grid row's window
/// (max_len 200, dropout 0.2; one epoch each from a one-epoch source,
/// `--ignored --nocapture`).
#[test]
#[ignore = "a measurement of several minutes"]
fn melt_epoch_time_at_the_grid_window() {
    let _turn = turn();
    let (p, c, _cache) = ml100k();
    let m = ModelConfig {
        max_len: 200,
        dropout: 0.2,
        ..ModelConfig::from(Backbone::Sasrec)
    };
    let dir = tempfile::tempdir().unwrap();
    let (plain, none) = (MethodConfig::default(), SemanticInputs::default());
    let t = settings(1);
    let sasrec = fit(&job(&p, &c, &m, &t, &plain, &none, Some(dir.path()))).unwrap();
    let before = load_best(&m, &plain, &none, p.split.num_items, dir.path(), &cpu()).unwrap();
    let n = p.split.num_items as usize;
    let semantic = SemanticInputs {
        pretrained_items: Some(Matrix {
            rows: n,
            dim: m.hidden,
            data: to_f32(before.encoder.item_table().narrow(0, 1, n)),
        }),
        ..Default::default()
    };
    let method = MethodConfig {
        melt: Some(MeltConfig::default()),
        pretrained: Some(Pretrained::Run(dir.path().display().to_string())),
        ..MethodConfig::default()
    };
    let ours = fit(&job(&p, &c, &m, &t, &method, &semantic, None)).unwrap();
    let obj = MeltObjective::new(&MeltConfig::default(), &m, &p.split, &p.groups);
    let contexts: usize = obj
        .tail_items
        .iter()
        .map(|&i| obj.contexts.of[i as usize].len())
        .sum();
    eprintln!(
        "max_len 200: SASRec {:.1} s/epoch, MELT {:.1} s/epoch ({:.1}x); tau_u {:.1}, tau_i \
         {:.1}, {} tail items refreshed from {contexts} contexts",
        sasrec.history[0].seconds,
        ours.history[0].seconds,
        ours.history[0].seconds / sasrec.history[0].seconds,
        obj.split.tau_u,
        obj.split.tau_i,
        obj.tail_items.len()
    );
}
