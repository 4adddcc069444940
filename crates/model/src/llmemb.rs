//! LLMEmb (Liu et al., "Large Language Model Empowered Embedding Generator
//! for Sequential Recommendation", AAAI 2025), the RAT stage, written after
//! the official code (`liuqidong07/LLMEmb`: `models/LLMEmb.py`,
//! `models/Adapter.py`, `models/utils.py` `Contrastive_Loss2`; BASELINES.md
//! §4).
//!
//! Frozen item text embeddings `Z` pass through a two-layer adapter
//! `Linear(d_text → 768) → Linear(768 → H)` with no activation between
//! (xavier-normal weights), and `Adapter(Z)` replaces the backbone's ID item
//! table everywhere (inputs, targets, negatives, scoring:
//! `score(u, j) = Adapter(Z[j]) · h_u`). Training adds
//! `α · Contrastive_Loss2_τ(X = E_srs[t], Y = Adapter(Z[t]))` over every
//! supervised target `t` of the batch (duplicates kept), where `E_srs` is the
//! frozen item table of a trained SASRec of the same hidden size:
//!
//! ```text
//! logits = X Yᵀ / τ
//! T      = softmax_row( (Y Yᵀ + X Xᵀ) / 2 · τ )
//! L      = mean_i ½ [ −Σ_j T_ij log softmax(logits)_ij − Σ_j T_ji log softmax(logitsᵀ)_ij ]
//! ```
//!
//! As in the official code the targets are multiplied (not divided) by τ and
//! are not detached (gradient reaches the adapter through `Y Yᵀ` too).
//!
//! Labelled "LLMEmb (w/o SCFT)" wherever it appears: the official `Z` comes
//! from LLaMA-7B after supervised contrastive fine-tuning (GPU-scale), PCA'd
//! to 1536; the project's item text embeddings (`inputs.item_text`) stand
//! in for them.
//!
//! The table is appended, not inserted: row 0 padding, rows `1..=N` the
//! items in order, then BERT4Rec's mask token (the official SASRec/GRU4Rec
//! `np.insert(Z, -1, 0)` shifts item N's vector onto the mask id;
//! `tests/text_items.rs` pins that item N scores with `Adapter(Z[N])`).
//!
//! Choices that are ours:
//! - The middle width defaults to 768 (BASELINES.md §4); the official
//!   adapter is `d/2` wide, which is 768 for its 1536-d input.
//! - Both biases start at zero (the official `_init_weights` leaves
//!   PyTorch's uniform bias init in place).
//! - BERT4Rec's mask token gets its own learned row `N(0, 0.01)` (the
//!   official `mask_embedding`), for every backbone whose vocabulary has one.
//! - The adapter maps the whole table once per step through the composed
//!   `d × H` map ([`crate::dual::Adapter`], same function and gradients);
//!   a BCE/BPR step adapts only the items it reads.
//! - `E_srs` is a constant of the run, not a parameter: checkpoints do not
//!   hold it, so a trained LLMEmb loads and serves without its pretrained
//!   SASRec run.
//! - The backbone's own ID table stays in the module, unused and without
//!   gradient.

use burn::module::{Module, Param};
use burn::tensor::activation::log_softmax;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::dual::{Adapter, adapted_table};
use crate::error::ModelError;
use crate::llm2rec::{frozen, special_rows};

fn d_alpha() -> f64 {
    0.01 // official experiments/*/rat/llmemb.bash
}
fn d_tau() -> f64 {
    2.0 // official experiments/*/rat/llmemb.bash
}
fn d_width() -> usize {
    768 // BASELINES.md §4 (the official d/2 of its 1536-d input)
}

/// LLMEmb's own `[method.llmemb]` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmembConfig {
    /// Weight α of the alignment loss.
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    /// Temperature τ of `Contrastive_Loss2`.
    #[serde(default = "d_tau")]
    pub tau: f64,
    /// Middle width of the adapter.
    #[serde(default = "d_width")]
    pub width: usize,
}

impl Default for LlmembConfig {
    fn default() -> Self {
        Self {
            alpha: d_alpha(),
            tau: d_tau(),
            width: d_width(),
        }
    }
}

impl LlmembConfig {
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            return bad(format!(
                "method.llmemb.alpha must be a number >= 0, got {}",
                self.alpha
            ));
        }
        if !(self.tau > 0.0 && self.tau.is_finite()) {
            return bad(format!(
                "method.llmemb.tau must be a positive number, got {}",
                self.tau
            ));
        }
        if self.width == 0 || self.width > crate::config::MAX_HIDDEN {
            return bad(format!(
                "method.llmemb.width must be in 1..={}, got {}",
                crate::config::MAX_HIDDEN,
                self.width
            ));
        }
        Ok(())
    }
}

/// LLMEmb's inputs: the frozen text rows and, to train, `E_srs`.
#[derive(Debug, Clone, Copy)]
pub struct LlmembSpec<'a> {
    /// Row-major `num_items × dim`; row `i - 1` is item `i`.
    pub text: &'a [f32],
    pub dim: usize,
    pub cfg: &'a LlmembConfig,
    /// Row-major `num_items × hidden` pretrained SASRec rows (row `i - 1` =
    /// item `i`). Needed to train; a model built only to load a checkpoint
    /// and score goes without.
    pub srs: Option<&'a [f32]>,
}

/// The item table `Adapter(Z)` and the alignment to `E_srs`; the backbone
/// lives in the recommender.
#[derive(Module, Debug)]
pub struct Llmemb {
    /// `[N, d]` frozen text embeddings (no gradient).
    text: Param<Tensor<2>>,
    adapter: Adapter,
    /// `[V - N - 1, H]` rows of ids without text (BERT4Rec's mask token).
    special: Option<Param<Tensor<2>>>,
    /// `[N, H]` `E_srs`, a constant (not saved in checkpoints).
    #[module(skip)]
    srs: Option<Tensor<2>>,
    #[module(skip)]
    alpha: f64,
    #[module(skip)]
    tau: f64,
}

impl Llmemb {
    /// `vocab` = rows of the backbone's table (padding + items + specials).
    pub fn new(
        spec: &LlmembSpec<'_>,
        hidden: usize,
        num_items: usize,
        vocab: usize,
        device: &Device,
    ) -> Self {
        let srs = spec.srs.map(|rows| {
            Tensor::from_data(TensorData::new(rows.to_vec(), [num_items, hidden]), device)
        });
        Self {
            text: frozen(spec.text, num_items, spec.dim, device),
            adapter: Adapter::with_width(spec.dim, spec.cfg.width, hidden, device).zero_bias(),
            special: special_rows(vocab - num_items - 1, hidden, device),
            srs,
            alpha: spec.cfg.alpha,
            tau: spec.cfg.tau,
        }
    }

    /// `[N, d]` the frozen text rows `Z`.
    pub fn text(&self) -> Tensor<2> {
        self.text.val()
    }

    /// `[N, H]` `E_srs`, when the model was built to train.
    pub fn pretrained(&self) -> Option<Tensor<2>> {
        self.srs.clone()
    }

    /// The item table: row 0 zero, rows `1..=N` `Adapter(Z)`, then the
    /// special rows; only the `used` items adapted when given.
    ///
    /// # Shapes
    /// - output: `[V, H]`
    pub fn table(&self, used: Option<Tensor<1, Int>>) -> Tensor<2> {
        adapted_table(
            self.text.val(),
            |x| self.adapter.forward(x),
            self.special.as_ref().map(Param::val),
            used,
        )
    }

    /// `α · Contrastive_Loss2_τ(E_srs[t], table[t])` over the step's
    /// targets `t` (ids in `1..=N`, duplicates kept).
    ///
    /// # Panics
    /// When the model was built without `E_srs` (only to score).
    ///
    /// # Shapes
    /// - `table`: `[V, H]`; `targets`: `[M]`; output: `[1]`
    pub fn align_loss(&self, table: &Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        let srs = self
            .srs
            .as_ref()
            .expect("training LLMEmb needs E_srs (LlmembSpec::srs)");
        let x = srs.clone().select(0, targets.clone().sub_scalar(1)); // [M, H]
        let y = table.clone().select(0, targets); // [M, H]
        contrastive_loss2(x, y, self.tau).mul_scalar(self.alpha)
    }
}

/// `Contrastive_Loss2(τ)` of the official code (see the module docs).
///
/// # Shapes
/// - `x`, `y`: `[M, H]`; output: `[1]`
pub fn contrastive_loss2(x: Tensor<2>, y: Tensor<2>, tau: f64) -> Tensor<1> {
    let logits = x.clone().matmul(y.clone().transpose()).div_scalar(tau); // [M, M]
    let sim = y.clone().matmul(y.transpose()) + x.clone().matmul(x.transpose());
    let targets = softmax(sim.mul_scalar(tau / 2.0), 1); // [M, M]
    // Row i: CE(logits_i, T_i). Column i: CE((logitsᵀ)_i, (Tᵀ)_i), taken
    // along dim 0 rather than through transposed copies (element-wise ops
    // on strided views are slow on burn's CPU backend).
    let rows = (targets.clone() * log_softmax(logits.clone(), 1)).sum_dim(1); // [M, 1]
    let cols = (targets * log_softmax(logits, 0)).sum_dim(0); // [1, M]
    (rows.mean() + cols.mean()).div_scalar(2.0).neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;

    fn t2(v: &[f32], r: usize, c: usize) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v.to_vec(), [r, c]), &cpu())
    }

    /// X = I, Y = [[1, 0], [1, 1]], τ = 2, worked on paper:
    /// - logits = XYᵀ/2 = [[.5, .5], [0, .5]]
    /// - T = softmax_row((YYᵀ + XXᵀ)/2·2) = softmax_row([[2, 1], [1, 3]])
    ///   = [[e/(e+1), 1/(e+1)], [1/(1+e²), e²/(1+e²)]] = [[.7311, .2689], [.1192, .8808]]
    /// - rows: a₀ = ln 2 = .69315; a₁ = .1192·ln(1+e^.5) + .8808·(ln(1+e^.5) − .5) = .53371
    /// - columns (logitsᵀ against Tᵀ): b₀ = .7311·.47408 + .1192·.97408 = .46275;
    ///   b₁ = (.2689 + .8808)·ln 2 = .79688
    /// - L = ((a₀ + b₀)/2 + (a₁ + b₁)/2)/2 = .62161
    ///
    /// Dividing the targets by τ instead (the CLIP tutorial's usual form)
    /// gives T = softmax_row([[.5, .25], [.25, .75]]) and another value.
    #[test]
    fn contrastive_loss2_matches_a_hand_computed_2x2_value() {
        let x = t2(&[1.0, 0.0, 0.0, 1.0], 2, 2);
        let y = t2(&[1.0, 0.0, 1.0, 1.0], 2, 2);
        let got = contrastive_loss2(x, y, 2.0).into_scalar::<f32>();
        assert!((got - 0.621_61).abs() < 1e-4, "{got}");
    }

    /// The same formula on a 3×3 input against plain f64 arithmetic.
    #[test]
    fn contrastive_loss2_matches_f64_arithmetic_on_3x3() {
        let x = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
        let y = [[0.5, -1.0], [2.0, 0.0], [0.0, 0.3]];
        let dot = |a: &[f64; 2], b: &[f64; 2]| a[0] * b[0] + a[1] * b[1];
        let log_softmax = |row: Vec<f64>| {
            let z = row.iter().map(|v| v.exp()).sum::<f64>().ln();
            row.into_iter().map(|v| v - z).collect::<Vec<_>>()
        };
        for tau in [1.0, 2.0, 3.0] {
            let logits = |i: usize, j: usize| dot(&x[i], &y[j]) / tau;
            let t: Vec<Vec<f64>> = (0..3)
                .map(|i| {
                    let s: Vec<f64> = (0..3)
                        .map(|j| (dot(&y[i], &y[j]) + dot(&x[i], &x[j])) / 2.0 * tau)
                        .collect();
                    log_softmax(s).into_iter().map(f64::exp).collect()
                })
                .collect();
            let want: f64 = (0..3)
                .map(|i| {
                    let row = log_softmax((0..3).map(|j| logits(i, j)).collect());
                    let col = log_softmax((0..3).map(|j| logits(j, i)).collect());
                    let a: f64 = (0..3).map(|j| -t[i][j] * row[j]).sum();
                    let b: f64 = (0..3).map(|j| -t[j][i] * col[j]).sum();
                    (a + b) / 2.0 / 3.0
                })
                .sum();
            let flat = |m: &[[f64; 2]]| m.iter().flatten().map(|&v| v as f32).collect::<Vec<_>>();
            let got = contrastive_loss2(t2(&flat(&x), 3, 2), t2(&flat(&y), 3, 2), tau)
                .into_scalar::<f32>() as f64;
            assert!((got - want).abs() < 1e-5, "τ = {tau}: {got} vs {want}");
        }
    }
}
