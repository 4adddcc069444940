//! CITIES on the real ML-100K split: it starts from a tiny SASRec trained
//! here into a folder, changes only the tail items' rows (head rows and
//! every other weight bit-identical to that run's), reads contexts from
//! training items only with the MASK at the centre, and its network `f`
//! learns (validation MSE falls below a constant guess); the run's folder
//! serves like any run. A pretrained run that is missing or of another
//! model is refused before anything trains.

mod common;

use common::{Source, job, ml100k, popularity_ndcg, settings, train_source};
use hsuga_data::{Candidates, Prepared};
use hsuga_eval::{Column, Metric};
use hsuga_model::burn::module::{Module, ModuleVisitor, Param};
use hsuga_model::burn::tensor::Tensor;
use hsuga_model::{Backbone, CitiesConfig, Loss, ModelConfig, cpu};
use hsuga_train::cities::{CitiesLog, pretrained_table, training_contexts};
use hsuga_train::{
    Matrix, MethodConfig, ModelScorer, Outcome, Pretrained, RunConfig, SemanticInputs,
    TrainSettings, fit, load_best,
};

/// burn's device RNG is process-global: trainings take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A CPU-test budget, not the paper's.
fn model() -> ModelConfig {
    ModelConfig {
        loss: Loss::Bce,
        max_len: 20,
        dropout: 0.2,
        ..ModelConfig::from(Backbone::Sasrec)
    }
}

const SOURCE_EPOCHS: usize = 6;

/// The SASRec run CITIES starts from, trained once per test binary.
fn source(p: &Prepared, c: &Candidates) -> &'static Source {
    static SOURCE: std::sync::OnceLock<Source> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| train_source(p, c, model(), SOURCE_EPOCHS, "cities-source-sasrec"))
}

/// `f` at a CPU-test budget: a narrower window (8 items a side, not 24),
/// up to 5 shots (not 10), 64 items a step (not 128), and a larger rate
/// with a shorter warm-up (1e-3 after 10 steps, not 1e-4 after 100), so
/// that it moves within a few epochs on a shared 2-core machine.
fn small(epochs: usize) -> CitiesConfig {
    CitiesConfig {
        half_window: 8,
        max_shots: 5,
        batch_size: 64,
        lr: 1e-3,
        warmup_steps: 10,
        epochs,
        ..CitiesConfig::default()
    }
}

fn cities(src: &Source, cfg: CitiesConfig) -> MethodConfig {
    MethodConfig {
        cities: Some(cfg),
        pretrained: Some(Pretrained::Run(src.dir.display().to_string())),
        ..MethodConfig::default()
    }
}

/// Every float parameter: its shape and bits, in visiting order.
#[derive(Default)]
struct Bits(Vec<(Vec<usize>, Vec<u32>)>);

impl ModuleVisitor for Bits {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let dims = t.dims().to_vec();
        let bits = hsuga_model::to_f32(t).iter().map(|v| v.to_bits()).collect();
        self.0.push((dims, bits));
    }
}

fn bits(m: &impl Module) -> Vec<(Vec<usize>, Vec<u32>)> {
    let mut b = Bits::default();
    m.visit(&mut b);
    b.0
}

/// Compares two models of one backbone parameter by parameter: every
/// weight but the item table bit-identical, and in the table (rows
/// `0..V`, a mask row included) every row identical but those `tail`
/// names; returns how many of those changed, and how many there are.
fn tail_rows_changed(
    before: &impl Module,
    after: &impl Module,
    n: u32,
    h: usize,
    tail: &dyn Fn(usize) -> bool,
) -> (usize, usize) {
    let (a, b) = (bits(before), bits(after));
    assert_eq!(a.len(), b.len());
    let is_table = |d: &[usize]| {
        d.len() == 2 && d[1] == h && (d[0] == n as usize + 1 || d[0] == n as usize + 2)
    };
    let (mut changed, mut tails, mut tables) = (0, 0, 0);
    for ((da, xa), (db, xb)) in a.iter().zip(&b) {
        assert_eq!(da, db);
        if !is_table(da) {
            assert_eq!(xa, xb, "a weight of shape {da:?} changed");
            continue;
        }
        tables += 1;
        for i in 0..da[0] {
            let (ra, rb) = (&xa[i * h..(i + 1) * h], &xb[i * h..(i + 1) * h]);
            if tail(i) {
                tails += 1;
                changed += usize::from(ra != rb);
            } else {
                assert_eq!(ra, rb, "row {i} changed");
            }
        }
    }
    assert_eq!(tables, 1, "one item table");
    (changed, tails)
}

/// The CITIES run's checkpoint, read back as serving reads it, differs from
/// the pretrained run's only in the rows of tail items that have a context;
/// it scores the test users exactly as the run reported, and a second run
/// of the same seed (a restart after a kill) writes the same bytes.
#[test]
fn cities_changes_only_tail_rows_and_serves_from_its_folder() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = std::time::Instant::now();
    let (p, c, _cache) = ml100k();
    let src = source(&p, &c);
    let run = tempfile::tempdir().unwrap();
    let cfg = small(2);
    let method = cities(src, cfg.clone());
    let semantic = SemanticInputs {
        pretrained_items: Some(src.items.clone()),
        ..Default::default()
    };
    let (m, t) = (
        model(),
        TrainSettings {
            progress: true,
            ..settings(1)
        },
    );
    let out = fit(&job(&p, &c, &m, &t, &method, &semantic, Some(run.path()))).unwrap();
    let n = p.split.num_items;
    let none = SemanticInputs::default();
    let before = load_best(&m, &MethodConfig::default(), &none, n, &src.dir, &cpu()).unwrap();
    let after = load_best(&m, &method, &none, n, run.path(), &cpu()).unwrap();
    let pop = p.split.train_popularity();
    let ctx = training_contexts(&p.split, cfg.half_window);
    let tail = |i: usize| i > 0 && pop[i] <= cfg.freq_bound && !ctx.at[i].is_empty();
    let (changed, tail_with_context) = tail_rows_changed(&before, &after, n, m.hidden, &tail);
    assert!(tail_with_context > 100, "{tail_with_context}");
    assert_eq!(changed, tail_with_context, "every inferred tail row is new");
    // What a killed run does (it starts again): the same seed writes the
    // same checkpoint, bit for bit.
    let again_dir = tempfile::tempdir().unwrap();
    fit(&job(
        &p,
        &c,
        &m,
        &t,
        &method,
        &semantic,
        Some(again_dir.path()),
    ))
    .unwrap();
    assert!(
        std::fs::read(run.path().join("best.bpk")).unwrap()
            == std::fs::read(again_dir.path().join("best.bpk")).unwrap(),
        "a restarted CITIES run wrote another checkpoint"
    );
    // Read back from its folder, it ranks the test users as reported.
    let batcher = hsuga_model::Batcher::new(&m, n, &cpu());
    let again = hsuga_eval::evaluate(
        &ModelScorer::new(&after, &batcher, None),
        &p.split,
        &p.groups,
        &c,
        hsuga_data::Phase::Test,
        hsuga_eval::Protocol::Sampled,
        512,
        |_, _| {},
    );
    assert_eq!(again.sampled.as_ref(), out.test_rankings.sampled.as_ref());
    let col = |o: &Outcome, col: Column, k: Metric| {
        o.test_rankings
            .sampled
            .as_ref()
            .unwrap()
            .column_mean(col, k)
    };
    eprintln!(
        "ML-100K seed 42, SASRec max_len 20, {SOURCE_EPOCHS} epochs; CITIES f {} epochs \
         (best {}): {tail_with_context} tail rows inferred. Test HR@10 / NDCG@10 — overall: base \
         {:.4} / {:.4}, CITIES {:.4} / {:.4}; tail items: base {:.4} / {:.4}, CITIES {:.4} / \
         {:.4}; head items: base {:.4}, CITIES {:.4}; popularity NDCG@10 {:.4} ({:.1} s)",
        out.epochs_run,
        out.best_epoch,
        col(&src.out, Column::Overall, Metric::Hr(10)),
        col(&src.out, Column::Overall, Metric::Ndcg(10)),
        col(&out, Column::Overall, Metric::Hr(10)),
        col(&out, Column::Overall, Metric::Ndcg(10)),
        col(&src.out, Column::TailItem, Metric::Hr(10)),
        col(&src.out, Column::TailItem, Metric::Ndcg(10)),
        col(&out, Column::TailItem, Metric::Hr(10)),
        col(&out, Column::TailItem, Metric::Ndcg(10)),
        col(&src.out, Column::HeadItem, Metric::Hr(10)),
        col(&out, Column::HeadItem, Metric::Hr(10)),
        popularity_ndcg(&p, &c),
        t0.elapsed().as_secs_f64()
    );
}

/// Every context of real ML-100K is a window of one user's training
/// items: MASK at the centre and nowhere else, the item itself at that
/// place in the user's sequence, the neighbours contiguous around it, and
/// no validation or test item that the user's training items lack.
#[test]
fn cities_contexts_read_training_items_only_with_the_mask_at_the_centre() {
    let (p, _c, _cache) = ml100k();
    let half = CitiesConfig::default().half_window;
    let ctx = training_contexts(&p.split, half);
    let mask = p.split.num_items + 1;
    assert_eq!(ctx.mask(), mask);
    let (mut windows, mut right_cut) = (0usize, 0usize);
    let mut w = Vec::new();
    for (i, occ) in ctx.at.iter().enumerate() {
        for &(u, pos) in occ {
            let train = &p.split.train[u as usize];
            assert_eq!(train[pos as usize] as usize, i);
            w.clear();
            ctx.window_into(&p.split.train, (u, pos), &mut w);
            assert_eq!(w.len(), 2 * half + 1);
            assert_eq!(w[half], mask);
            assert_eq!(w.iter().filter(|&&x| x == mask).count(), 1);
            let left: Vec<u32> = w[..half].iter().copied().filter(|&x| x != 0).collect();
            let right: Vec<u32> = w[half + 1..].iter().copied().filter(|&x| x != 0).collect();
            // Padding only on the outside of each half.
            assert!(w[..half].iter().skip_while(|&&x| x == 0).all(|&x| x != 0));
            assert!(w[half + 1..].iter().take_while(|&&x| x != 0).count() == right.len());
            let s = pos as usize;
            assert_eq!(&train[s - left.len()..s], &left[..]);
            assert_eq!(&train[s + 1..s + 1 + right.len()], &right[..]);
            assert!(left.len() + right.len() >= 2);
            for x in left.iter().chain(&right) {
                assert!(train.contains(x));
            }
            for held in [p.split.valid[u as usize], p.split.test[u as usize]] {
                if held != 0 && !train.contains(&held) {
                    assert!(
                        !w.contains(&held),
                        "user {u}'s held-out item {held} in a context"
                    );
                }
            }
            if s + 1 + half > train.len() {
                right_cut += 1;
            }
            windows += 1;
        }
    }
    // Windows whose right side a whole-sequence build would have filled
    // with validation or test items: they exist, and held none above.
    assert!(right_cut > 900, "{right_cut}");
    assert!(windows > 90_000, "{windows}");
}

/// `f` learns from real contexts: its validation MSE falls epoch after
/// epoch. (Against a constant guess, the mean head row, it is still above
/// at this budget: the tiny source's rows are near their random start, so
/// `f` spends its first epochs shrinking its output to their scale; the
/// test prints both.)
#[test]
fn cities_f_learns_on_ml100k() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = std::time::Instant::now();
    let (p, c, _cache) = ml100k();
    let src = source(&p, &c);
    let run = tempfile::tempdir().unwrap();
    let cfg = small(12);
    let method = cities(src, cfg);
    let semantic = SemanticInputs {
        pretrained_items: Some(src.items.clone()),
        ..Default::default()
    };
    let (m, t) = (
        model(),
        TrainSettings {
            progress: true,
            ..settings(1)
        },
    );
    let out = fit(&job(&p, &c, &m, &t, &method, &semantic, Some(run.path()))).unwrap();
    let log: CitiesLog =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("cities.json")).unwrap())
            .unwrap();
    let best = log.valid_mse[log.best_epoch - 1];
    eprintln!(
        "CITIES f on ML-100K ({} train / {} valid head items, {} epochs, best {}): valid MSE \
         (Σ k=1..5) {:.6} -> {best:.6}, mean-row guess {:.6}; train MSE {:.6} -> {:.6}; {:.2} \
         s/epoch; row norms: head {:.4}, tail before {:.4}, inferred {:.4}; tail HR@10 {:.4} \
         ({:.1} s)",
        log.head_train_items,
        log.head_valid_items,
        out.epochs_run,
        log.best_epoch,
        log.valid_mse[0],
        log.valid_mse_of_mean,
        log.train_mse[0],
        log.train_mse.last().unwrap(),
        out.train_seconds / out.epochs_run as f64,
        log.head_row_norm,
        log.tail_row_norm_before,
        log.inferred_row_norm,
        out.test_rankings
            .sampled
            .as_ref()
            .unwrap()
            .column_mean(Column::TailItem, Metric::Hr(10)),
        t0.elapsed().as_secs_f64()
    );
    // Falling, and still falling at the end of the budget: the best epoch
    // is the last one, far below the first.
    assert!(best < log.valid_mse[0] / 2.0, "{:?}", log.valid_mse);
    assert_eq!(log.best_epoch, out.epochs_run, "{:?}", log.valid_mse);
}

/// A missing pretrained run, or one of another `[model]`, is refused
/// naming the key and the folder, and nothing is written.
#[test]
fn cities_refuses_a_missing_or_mismatched_pretrained_run() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (p, c, _cache) = ml100k();
    let src = source(&p, &c);
    let n = p.split.num_items;
    let m = model();
    let longer = ModelConfig {
        max_len: 50,
        ..model()
    };
    let e = pretrained_table(&src.stored, &src.dir, &longer, n)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("method.pretrained")
            && e.contains(&src.dir.display().to_string())
            && e.contains("model.max_len: 20 → 50"),
        "{e}"
    );
    let bert = ModelConfig::from(Backbone::Bert4rec);
    let e = pretrained_table(&src.stored, &src.dir, &bert, n)
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.backbone"), "{e}");
    let gaa = RunConfig {
        method: MethodConfig {
            distill: Some(Default::default()),
            ..MethodConfig::default()
        },
        ..src.stored.clone()
    };
    let e = pretrained_table(&gaa, &src.dir, &m, n)
        .unwrap_err()
        .to_string();
    assert!(e.contains("plain backbone"), "{e}");
    // A folder without a run: refused by fit, nothing written.
    let missing = src.dir.join("nowhere");
    let method = MethodConfig {
        cities: Some(CitiesConfig::default()),
        pretrained: Some(Pretrained::Run(missing.display().to_string())),
        ..MethodConfig::default()
    };
    let run = tempfile::tempdir().unwrap();
    let out_dir = run.path().join("cities");
    let semantic = SemanticInputs {
        pretrained_items: Some(src.items.clone()),
        ..Default::default()
    };
    let t = settings(1);
    let e = fit(&job(&p, &c, &m, &t, &method, &semantic, Some(&out_dir)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("method.pretrained") && e.contains(&missing.display().to_string()),
        "{e}"
    );
    assert!(!out_dir.exists(), "nothing written");
}

/// `[method.cities]` reads the official defaults, round-trips, and its
/// mistakes are errors at load naming the key.
#[test]
fn cities_keys_are_checked_at_load() {
    let c = CitiesConfig::default();
    assert_eq!(
        (
            c.half_window,
            c.freq_bound,
            c.batch_size,
            c.max_shots,
            c.patience
        ),
        (24, 5, 128, 10, 10)
    );
    assert_eq!(
        (c.interpreter_layers, c.aggregator_layers, c.heads, c.lr),
        (2, 2, 4, 1e-4)
    );
    let load = |method: &str| {
        RunConfig::from_toml(&format!(
            "name = \"x\"\ndataset = \"d\"\n[method]\n{method}"
        ))
        .map_err(|e| e.to_string())
    };
    let ok = load("cities = { head = \"groups\" }\npretrained = { run = \"r\" }\n").unwrap();
    assert_eq!(
        ok.method.cities.as_ref().map(|c| c.head),
        Some(hsuga_model::CitiesHead::Groups)
    );
    assert_eq!(RunConfig::from_toml(&ok.to_toml()).unwrap(), ok);
    for (method, want) in [
        ("cities = {}\n", "it needs method.pretrained"),
        (
            "cities = { half_windw = 3 }\npretrained = { run = \"r\" }\n",
            "half_windw",
        ),
        (
            "cities = {}\nitem_init = \"pca\"\npretrained = { run = \"r\" }\n",
            "method.cities overwrites",
        ),
        (
            "cities = { heads = 3 }\npretrained = { run = \"r\" }\n",
            "method.cities.heads",
        ),
        (
            "cities = { val_ratio = 1.0 }\npretrained = { run = \"r\" }\n",
            "method.cities.val_ratio",
        ),
        (
            "cities = { head = \"top\" }\npretrained = { run = \"r\" }\n",
            "unknown variant",
        ),
    ] {
        let e = load(method).unwrap_err();
        assert!(e.contains(want), "{method}: {e}");
    }
}

/// A measurement, not a check (`--ignored`): `f` at the test budget's
/// settings run until its own early stop (patience 10, up to 300 epochs)
/// on the tiny source, with the test metrics of base and CITIES per column
/// and the row norms.
#[test]
#[ignore = "a measurement of several minutes"]
fn cities_until_early_stop_on_ml100k() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = std::time::Instant::now();
    let (p, c, _cache) = ml100k();
    let src = source(&p, &c);
    let run = tempfile::tempdir().unwrap();
    let method = cities(src, small(300));
    let semantic = SemanticInputs {
        pretrained_items: Some(src.items.clone()),
        ..Default::default()
    };
    let (m, t) = (model(), settings(1));
    let out = fit(&job(&p, &c, &m, &t, &method, &semantic, Some(run.path()))).unwrap();
    let log: CitiesLog =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("cities.json")).unwrap())
            .unwrap();
    let col = |o: &Outcome, col: Column, k: Metric| {
        o.test_rankings
            .sampled
            .as_ref()
            .unwrap()
            .column_mean(col, k)
    };
    for (label, o) in [("base", &src.out), ("CITIES", &out)] {
        eprintln!(
            "{label}: test HR@10 overall {:.4}, tail item {:.4}, head item {:.4}; NDCG@10 \
             overall {:.4}, tail item {:.4}",
            col(o, Column::Overall, Metric::Hr(10)),
            col(o, Column::TailItem, Metric::Hr(10)),
            col(o, Column::HeadItem, Metric::Hr(10)),
            col(o, Column::Overall, Metric::Ndcg(10)),
            col(o, Column::TailItem, Metric::Ndcg(10)),
        );
    }
    eprintln!(
        "f: {} epochs (best {}), valid MSE {:.6} -> {:.6} (mean-row guess {:.6}); row norms \
         head {:.4}, tail before {:.4}, inferred {:.4}; {} tail rows inferred, {} without \
         context ({:.1} s)",
        out.epochs_run,
        log.best_epoch,
        log.valid_mse[0],
        log.valid_mse[log.best_epoch - 1],
        log.valid_mse_of_mean,
        log.head_row_norm,
        log.tail_row_norm_before,
        log.inferred_row_norm,
        log.tail_inferred,
        log.tail_without_context,
        t0.elapsed().as_secs_f64()
    );
}

/// BERT4Rec (whose table has a MASK row, read by `f` and kept) and GRU4Rec
/// start CITIES too, and it changes only their tail rows.
#[test]
fn cities_changes_only_tail_rows_of_bert4rec_and_gru4rec() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = std::time::Instant::now();
    let (p, c, _cache) = ml100k();
    let n = p.split.num_items;
    let pop = p.split.train_popularity();
    for backbone in [Backbone::Bert4rec, Backbone::Gru4rec] {
        let m = ModelConfig {
            max_len: 10,
            ..ModelConfig::from(backbone)
        };
        let src = tempfile::tempdir().unwrap();
        let (plain, none) = (MethodConfig::default(), SemanticInputs::default());
        let t = settings(1);
        fit(&job(&p, &c, &m, &t, &plain, &none, Some(src.path()))).unwrap();
        let cfg = small(1);
        let method = MethodConfig {
            cities: Some(cfg.clone()),
            pretrained: Some(Pretrained::Run(src.path().display().to_string())),
            ..MethodConfig::default()
        };
        let before = load_best(&m, &plain, &none, n, src.path(), &cpu()).unwrap();
        let semantic = SemanticInputs {
            pretrained_items: Some(Matrix {
                rows: n as usize,
                dim: m.hidden,
                data: hsuga_model::to_f32(
                    hsuga_model::SequenceEncoder::item_table(&before.encoder)
                        .narrow(0, 1, n as usize),
                ),
            }),
            ..Default::default()
        };
        let run = tempfile::tempdir().unwrap();
        fit(&job(&p, &c, &m, &t, &method, &semantic, Some(run.path()))).unwrap();
        let after = load_best(&m, &method, &none, n, run.path(), &cpu()).unwrap();
        let ctx = training_contexts(&p.split, cfg.half_window);
        let tail = |i: usize| {
            (1..=n as usize).contains(&i) && pop[i] <= cfg.freq_bound && !ctx.at[i].is_empty()
        };
        let (changed, tails) = tail_rows_changed(&before, &after, n, m.hidden, &tail);
        assert!(
            tails > 100 && changed == tails,
            "{backbone:?}: {changed} of {tails}"
        );
    }
    eprintln!(
        "BERT4Rec and GRU4Rec sources and CITIES: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
