//! LLM2Rec's and LLMEmb's item tables from frozen text, on every backbone:
//! the last item keeps its own text row (no off-by-one), the adapted table
//! really replaces the ID table (inputs and scores), and neither the text
//! rows nor LLMEmb's pretrained table take a gradient.

use hsuga_model::burn::module::{Module, ModuleVisitor, Param};
use hsuga_model::burn::tensor::Tensor;
use hsuga_model::{
    Backbone, Batcher, Extras, Llm2recSpec, LlmembConfig, LlmembSpec, Loss, Model, ModelConfig,
    Recommender, TextItems, TextItemsSpec, cpu, to_f32,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const N: usize = 6;
const D: usize = 5;
const H: usize = 8;

fn cfg(backbone: Backbone) -> ModelConfig {
    ModelConfig {
        loss: Loss::Ce,
        hidden: H,
        max_len: 6,
        dropout: 0.1,
        ..ModelConfig::from(backbone)
    }
}

/// A fixed `[N, D]` text table.
fn text() -> Vec<f32> {
    (0..N * D)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0)
        .collect()
}

/// A fixed `[N, H]` stand-in for the pretrained SASRec rows.
fn srs() -> Vec<f32> {
    (0..N * H).map(|i| (i as f32 * 0.7).sin()).collect()
}

/// Which system a case builds.
#[derive(Debug, Clone, Copy)]
enum System {
    Llm2rec,
    Llmemb,
}

fn spec<'a>(
    system: System,
    text: &'a [f32],
    srs: &'a [f32],
    llmemb: &'a LlmembConfig,
) -> TextItemsSpec<'a> {
    match system {
        System::Llm2rec => TextItemsSpec::Llm2rec(Llm2recSpec { text, dim: D }),
        System::Llmemb => TextItemsSpec::Llmemb(LlmembSpec {
            text,
            dim: D,
            cfg: llmemb,
            srs: Some(srs),
        }),
    }
}

/// burn's device RNG is process-global: tests that seed it take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Draws every initial weight now, in module order (burn initialises
/// lazily), so two models built after the same seed are equal.
struct Materialize;
impl ModuleVisitor for Materialize {
    fn visit_float<const K: usize>(&mut self, param: &Param<Tensor<K>>) {
        param.val();
    }
}

fn build(
    backbone: Backbone,
    system: System,
    text: &[f32],
    device: &hsuga_model::burn::tensor::Device,
) -> Recommender {
    let (srs, llmemb) = (srs(), LlmembConfig::default());
    let extras = Extras {
        text_items: Some(spec(system, text, &srs, &llmemb)),
        ..Extras::default()
    };
    device.seed(11);
    let m = Recommender::with_extras(&cfg(backbone), N as u32, &extras, device).unwrap();
    m.visit(&mut Materialize);
    m
}

fn row(table: &[f32], i: usize) -> &[f32] {
    &table[i * H..(i + 1) * H]
}

const CASES: [(Backbone, System); 6] = [
    (Backbone::Sasrec, System::Llm2rec),
    (Backbone::Bert4rec, System::Llm2rec),
    (Backbone::Gru4rec, System::Llm2rec),
    (Backbone::Sasrec, System::Llmemb),
    (Backbone::Bert4rec, System::Llmemb),
    (Backbone::Gru4rec, System::Llmemb),
];

/// Regression for the official SASRec/GRU4Rec `np.insert(Z, -1, 0)`: the
/// zero row landed before the last row, so item N scored with a zero vector
/// and its text row sat at the mask id. With every text row zero but item
/// N's, only row N of the table is non-zero (the adapter starts with zero
/// biases), it doubles when `Z[N]` doubles (it is `Adapter(Z[N])`), and
/// BERT4Rec's mask row is its own.
#[test]
fn the_last_item_scores_with_its_own_text_row() {
    let _turn = turn();
    let dev = cpu();
    for (backbone, system) in CASES {
        let case = format!("{backbone:?}/{system:?}");
        let mut only_last = vec![0f32; N * D];
        only_last[(N - 1) * D..].copy_from_slice(&[0.3, -0.2, 0.9, 0.1, -0.5]);
        let table = |z: &[f32]| to_f32(build(backbone, system, z, &dev).tables().scoring);
        let t1 = table(&only_last);
        let rows = t1.len() / H;
        let extra = if backbone == Backbone::Bert4rec { 1 } else { 0 };
        assert_eq!(rows, N + 1 + extra, "{case}: padding + items + mask");
        for i in 0..N {
            assert!(
                row(&t1, i).iter().all(|&v| v == 0.0),
                "{case}: row {i} should be zero: {:?}",
                row(&t1, i)
            );
        }
        assert!(
            row(&t1, N).iter().any(|&v| v.abs() > 1e-4),
            "{case}: item N's row is zero (off by one)"
        );
        let doubled: Vec<f32> = only_last.iter().map(|v| 2.0 * v).collect();
        let t2 = table(&doubled);
        for (a, b) in row(&t1, N).iter().zip(row(&t2, N)) {
            assert!(
                (2.0 * a - b).abs() < 1e-5,
                "{case}: row N is not Adapter(Z[N])"
            );
        }
        if extra == 1 {
            assert_ne!(row(&t1, N + 1), row(&t1, N), "{case}: mask row");
            assert_eq!(
                row(&t1, N + 1),
                row(&t2, N + 1),
                "{case}: mask row is learned, not text"
            );
        }
        // Scoring reads the same row: item N's score is rep · Adapter(Z[N]).
        let m = build(backbone, system, &only_last, &dev);
        let b = Batcher::new(&cfg(backbone), N as u32, &dev);
        let batch = b.eval_batch(&[&[1, 2, 3]]);
        let all = to_f32(m.score_all(&batch));
        let tables = m.tables();
        let rep = to_f32(m.represent_last(&tables, &batch));
        let want: f32 = rep.iter().zip(row(&t1, N)).map(|(r, e)| r * e).sum();
        assert!(
            (all[N - 1] - want).abs() < 1e-4,
            "{case}: {} vs {want}",
            all[N - 1]
        );
    }
}

/// The adapted table replaces the ID table: changing `Z[j]` for an item
/// outside the history changes item j's scores and no other; changing the
/// row of an item in the history changes the representation.
#[test]
fn changing_one_text_row_changes_only_that_items_scores() {
    let _turn = turn();
    let dev = cpu();
    let base = text();
    for (backbone, system) in CASES {
        let case = format!("{backbone:?}/{system:?}");
        let b = Batcher::new(&cfg(backbone), N as u32, &dev);
        let batch = b.eval_batch(&[&[1, 2, 3], &[2, 3]]);
        let scores = |z: &[f32]| {
            let m = build(backbone, system, z, &dev);
            let t = m.tables();
            (
                to_f32(m.score_all(&batch)),
                to_f32(m.represent_last(&t, &batch)),
            )
        };
        let (s0, r0) = scores(&base);
        let j = 5; // item 5: in no history
        let mut moved = base.clone();
        moved[(j - 1) * D] += 1.0;
        let (s1, r1) = scores(&moved);
        assert_eq!(r0, r1, "{case}: item {j} is in no history");
        for user in 0..2 {
            for item in 1..=N {
                let (a, b) = (s0[user * N + item - 1], s1[user * N + item - 1]);
                if item == j {
                    assert!(
                        (a - b).abs() > 1e-5,
                        "{case}: item {j}'s score did not move"
                    );
                } else {
                    assert_eq!(a, b, "{case}: item {item} moved with item {j}'s text");
                }
            }
        }
        // Item 2 is in both histories: its text row is the input vector.
        let mut input = base.clone();
        input[D] += 1.0;
        let (_, r2) = scores(&input);
        assert_ne!(r0, r2, "{case}: the input does not read the adapted table");
    }
}

/// One training step: `Z` and `E_srs` take no gradient, the adapter does.
#[test]
fn text_rows_and_the_pretrained_table_take_no_gradient() {
    let _turn = turn();
    let dev = cpu().autodiff();
    let base = text();
    for (backbone, system) in CASES {
        let case = format!("{backbone:?}/{system:?}");
        let model = build(backbone, system, &base, &dev);
        let b = Batcher::new(&cfg(backbone), N as u32, &dev);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let seqs: Vec<&[u32]> = vec![&[1, 2, 3, 4], &[3, 4, 5, 6], &[6, 5, 2]];
        let tb = b.train_batch(&seqs, |_, _| false, &mut rng);
        let (loss, _) = model.train_forward(&tb);
        let grads = loss.backward();
        let (text, srs) = match &model.text_items {
            Some(TextItems::Llm2rec(m)) => (m.text(), None),
            Some(TextItems::Llmemb(m)) => (m.text(), m.pretrained()),
            None => panic!("{case}: no text items"),
        };
        assert!(text.grad(&grads).is_none(), "{case}: Z took a gradient");
        if let System::Llmemb = system {
            let srs = srs.expect("built with E_srs");
            assert!(srs.grad(&grads).is_none(), "{case}: E_srs took a gradient");
        }
        // The adapter does learn: some parameter of shape [D, ·] has a gradient.
        struct AdapterGrad<'a>(&'a hsuga_model::burn::tensor::Gradients, bool);
        impl ModuleVisitor for AdapterGrad<'_> {
            fn visit_float<const K: usize>(&mut self, param: &Param<Tensor<K>>) {
                let t = param.val();
                if K == 2 && t.dims()[0] == D && t.grad(self.0).is_some() {
                    self.1 = true;
                }
            }
        }
        let mut v = AdapterGrad(&grads, false);
        model.visit(&mut v);
        assert!(v.1, "{case}: the adapter's first layer took no gradient");
    }
}

/// LLMEmb's alignment term is part of the training loss: α = 0 changes it.
#[test]
fn llmemb_adds_its_alignment_loss() {
    let _turn = turn();
    let dev = cpu();
    let base = text();
    let s = srs();
    let b = Batcher::new(&cfg(Backbone::Sasrec), N as u32, &dev);
    let seqs: Vec<&[u32]> = vec![&[1, 2, 3, 4], &[3, 4, 5, 6]];
    let loss = |alpha: f64| {
        let c = LlmembConfig {
            alpha,
            ..LlmembConfig::default()
        };
        let extras = Extras {
            text_items: Some(spec(System::Llmemb, &base, &s, &c)),
            ..Extras::default()
        };
        dev.seed(5);
        let m = Recommender::with_extras(&cfg(Backbone::Sasrec), N as u32, &extras, &dev).unwrap();
        m.visit(&mut Materialize);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let tb = b.train_batch(&seqs, |_, _| false, &mut rng);
        m.train_forward(&tb).0.into_scalar::<f32>()
    };
    let (without, with) = (loss(0.0), loss(1.0));
    assert!(
        (with - without).abs() > 1e-3,
        "alignment not added: {with} vs {without}"
    );
}
