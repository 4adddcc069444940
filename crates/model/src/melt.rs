//! MELT (Kim et al., "MELT: Mutual Enhancement of Long-Tailed User and
//! Item for Sequential Recommendation", SIGIR 2023), written after the
//! official code (`rlqja1107/MELT`: `models/MELT_SASRec.py`, `embedder.py`,
//! `argument.py`; BASELINES.md §2): the two bilateral branches, the
//! head/tail splits, the item contexts, the curriculum weights and the
//! tail-user transfer at inference. Training (the three aligned loaders,
//! the epoch-start refresh of the tail items' rows) is
//! `hsuga_train::melt`.
//!
//! With `f(seq)` the backbone's next-item representation of a history
//! (`SequenceEncoder::encode_last` of an evaluation row, BASELINES.md §0):
//!
//! ```text
//! τ_u = quantile_p(train lengths)        tail user: len ≤ τ_u    (p = pareto, 0.8)
//! τ_i = quantile_{p−0.02}(train counts)  head item: count > τ_i   (items seen in train)
//! user branch (head users):  few_u = last R of full_u, R ~ U{1..max(1, ⌈τ_u⌉−1)}
//!   w_u = |sin( (π/2)(e/e_max) + (π/2)(len_u − τ_u − 1)/(L − τ_u − 1) )|,  len_u = min(len, L)
//!   L_u = mean_{u,dims} [ w_u · (W_U f(few_u) − f(full_u))² ]
//! item branch (head items):  n ~ U{1..max(1, ⌊min(|C_i|, τ_i)⌋)} contexts without replacement
//!   m_i = mean_c ( f(c) + W_U f(c) )
//!   w_i = |sin( (π/2)(e/e_max) + (π/100)(min(τ_i+50, n_ctx(i)) − (τ_i+1)) )|
//!   L_i = mean_{i,dims} [ (w_i · (W_I m_i − E[i]))² ]          (weight inside the square)
//! epoch start (no grad):  E[i] ← W_I( mean_{c ∈ C_i} f(c) )  for tail items with a context
//! inference:              h_u ← h_u + W_U h_u                 for tail users
//! L = L_rec + λ_u L_u + λ_i L_i
//! ```
//!
//! `e` is the 0-based epoch, `L` the model's `max_len` (the official
//! `len_u` counts the user context's items, so it is capped at `L`),
//! `n_ctx(i)` the
//! number of occurrences of `i` in the training sequences. Both losses are
//! reproduced as the official code computes them, the pitfall included:
//! `L_u` weights the squared difference (`w · diff²`), `L_i` squares the
//! weighted difference (`(w · diff)²`, in effect `w²`); the unit tests pin
//! both against hand-computed values. Neither `f(full_u)` nor `E[i]` is
//! detached (official).
//!
//! The contexts `C_i` of an item: for each occurrence of `i` at position
//! `p` of a user's *training* sequence `s`, the prefix `s[..=p]` and, when
//! `len(s) > 1`, the suffix `s[p..]` reversed (`[s_last, …, s_{p+1}, s_p]`,
//! also ending in `i`), each cut to its last `max_len` items.
//!
//! Choices that are ours (not the official code's):
//! - Contexts and lengths come from the leave-one-out *training* items only
//!   (the official code builds them from its own training split, too; no
//!   validation or test item can enter one — `tests/melt.rs` pins it).
//! - The default item split is the official quantile rule
//!   (`items = "quantile"`), because it is MELT's own and its `τ_i` also
//!   sets the contexts sampled and the weight `w_i`; `items = "groups"`
//!   uses the project's 20 % popularity groups for head/tail membership
//!   (the paper's columns), keeping `τ_i` for the sampling and the weight.
//! - `w_u` when `L − τ_u − 1 = 0` (the official divides by zero): every
//!   head user then has `len_u = L`, and the ratio is taken as 1, its
//!   value for capped users whenever `τ_u ≥ L` (long-sequence data with a
//!   short window, as ML-100K in the CPU tests); `R`'s upper bound gets
//!   the guard of BASELINES.md §2(7).
//! - Training runs `train.epochs` with the project's early stopping; the
//!   official loop runs exactly `e_max` epochs (validating every second),
//!   so a row that wants the official length sets `train.epochs = e_max`.
//! - GRU4Rec and BERT4Rec (the official code is SASRec/FMLP only): `f` is
//!   `h(seq)` of §0; for BERT4Rec that is the appended MASK's output, so a
//!   context "ending in `i`" is read as the history whose next item the
//!   MASK predicts — an adaptation.
//! - `W_U`, `W_I` are the project's [`linear`] layers: xavier-normal weights
//!   (official), the bias drawn by the same initialiser (the official keeps
//!   PyTorch's uniform bias).
//! - The tail rule at inference reads the user's *training* length, which
//!   a history alone does not tell (the test history holds the validation
//!   item too): the evaluation chain attaches each row's flag (`[B, 1]`,
//!   1 = tail) as [`crate::SeqBatch::user_semantic`] — a MELT model fuses
//!   no semantic vector, so that per-user slot carries the flag. `τ_u` is
//!   stored in the checkpoint: `hsuga serve` attaches each request's flag
//!   from the user's whole served history (`len ≤ τ_u`; the window the
//!   model reads may be shorter than `τ_u`, as on ML-100K under a short
//!   `max_len`). Without a flag (a bare `represent_last` on histories) the
//!   rule falls back to the length of the history given.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::transformer::linear;

fn d_lambda_u() -> f64 {
    0.1 // official README table, MELT+SASRec on Beauty
}
fn d_lambda_i() -> f64 {
    0.4 // official README table, Beauty
}
fn d_e_max() -> usize {
    180 // official README table, Beauty
}
fn d_pareto() -> f64 {
    0.8 // official argument.py `pareto_rule` for Amazon data
}

/// Which items are head items (trained on) and which are refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeltItems {
    /// Head = training count above `τ_i` (the official rule).
    #[default]
    Quantile,
    /// Head = the project's popularity groups (`hsuga_data::Groups`).
    Groups,
}

/// MELT's `[method.melt]` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeltConfig {
    /// λ_u, the weight of the user branch's loss.
    #[serde(default = "d_lambda_u")]
    pub lambda_u: f64,
    /// λ_i, the weight of the item branch's loss.
    #[serde(default = "d_lambda_i")]
    pub lambda_i: f64,
    /// The curriculum's horizon (epochs).
    #[serde(default = "d_e_max")]
    pub e_max: usize,
    /// The quantile of the user split (`τ_u`); the item split's is 0.02 lower.
    #[serde(default = "d_pareto")]
    pub pareto: f64,
    #[serde(default)]
    pub items: MeltItems,
}

impl Default for MeltConfig {
    fn default() -> Self {
        toml::from_str("").expect("every MELT setting has a default")
    }
}

impl MeltConfig {
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        for (key, v) in [("lambda_u", self.lambda_u), ("lambda_i", self.lambda_i)] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!("method.melt.{key} must be a number >= 0, got {v}"));
            }
        }
        if self.e_max == 0 {
            return bad("method.melt.e_max must be at least 1".into());
        }
        if !(self.pareto > 0.02 && self.pareto < 1.0) {
            return bad(format!(
                "method.melt.pareto must lie strictly between 0.02 and 1, got {}",
                self.pareto
            ));
        }
        Ok(())
    }
}

/// numpy's default (`linear`) quantile of `values`; 0 for none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (pos - lo as f64) * (v[hi] - v[lo])
}

/// The head/tail splits of users and items (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct MeltSplit {
    pub tau_u: f64,
    pub tau_i: f64,
    /// Per user: training length ≤ `τ_u`.
    pub tail_user: Vec<bool>,
    /// Per item id `0..=N` (0 never head): count > `τ_i`.
    pub head_item: Vec<bool>,
    /// Per item id, its training count (= `n_ctx`).
    pub count: Vec<u32>,
}

impl MeltSplit {
    /// From the training sequences; `head_items` (the project's groups)
    /// replaces the quantile rule for item membership when given.
    pub fn new(
        train: &[Vec<u32>],
        num_items: u32,
        pareto: f64,
        head_items: Option<&[bool]>,
    ) -> Self {
        let lens: Vec<f64> = train.iter().map(|s| s.len() as f64).collect();
        let tau_u = quantile(&lens, pareto);
        let mut count = vec![0u32; num_items as usize + 1];
        for s in train {
            for &i in s {
                if (1..=num_items).contains(&i) {
                    count[i as usize] += 1;
                }
            }
        }
        let seen: Vec<f64> = count[1..]
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| c as f64)
            .collect();
        let tau_i = quantile(&seen, pareto - 0.02);
        let head_item = match head_items {
            Some(h) => (0..=num_items as usize)
                .map(|i| i > 0 && h.get(i).copied().unwrap_or(false))
                .collect(),
            None => count
                .iter()
                .enumerate()
                .map(|(i, &c)| i > 0 && c as f64 > tau_i)
                .collect(),
        };
        Self {
            tau_u,
            tau_i,
            tail_user: train.iter().map(|s| s.len() as f64 <= tau_u).collect(),
            head_item,
            count,
        }
    }

    /// `R`'s upper bound in the user branch: `max(1, ⌈τ_u⌉ − 1)`.
    pub fn max_recent(&self) -> usize {
        (self.tau_u.ceil() as usize).saturating_sub(1).max(1)
    }

    /// How many contexts an item with `c` of them may sample:
    /// `max(1, ⌊min(c, τ_i)⌋)`.
    pub fn max_contexts(&self, c: usize) -> usize {
        ((c as f64).min(self.tau_i).floor() as usize).max(1)
    }
}

/// One context of an item: an occurrence and which way it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextRef {
    pub user: u32,
    pub pos: u32,
    /// The reversed suffix (else the prefix).
    pub reversed: bool,
}

/// Each item's contexts in the sequences given (the training split's, so
/// no validation or test item can enter one).
#[derive(Debug, Clone)]
pub struct MeltContexts {
    /// Per item id `0..=N`.
    pub of: Vec<Vec<ContextRef>>,
    max_len: usize,
}

impl MeltContexts {
    pub fn build(seqs: &[Vec<u32>], num_items: u32, max_len: usize) -> Self {
        let mut of = vec![Vec::new(); num_items as usize + 1];
        for (u, s) in seqs.iter().enumerate() {
            for (p, &i) in s.iter().enumerate() {
                if !(1..=num_items).contains(&i) {
                    continue;
                }
                let at = |reversed| ContextRef {
                    user: u as u32,
                    pos: p as u32,
                    reversed,
                };
                of[i as usize].push(at(false));
                if s.len() > 1 {
                    of[i as usize].push(at(true));
                }
            }
        }
        Self { of, max_len }
    }

    /// The ids of one context, oldest first, ending in the item.
    pub fn ids(&self, seqs: &[Vec<u32>], c: ContextRef) -> Vec<u32> {
        let s = &seqs[c.user as usize];
        let p = c.pos as usize;
        if c.reversed {
            // Reversed suffix [s_last … s_p], cut to its last max_len.
            let from = (p + self.max_len).min(s.len());
            s[p..from].iter().rev().copied().collect()
        } else {
            s[p + 1 - (p + 1).min(self.max_len)..=p].to_vec()
        }
    }
}

/// `w_u` of a head user of training length `len` at 0-based epoch `e`
/// (`len` counted up to `max_len`, as the official user context holds).
pub fn user_weight(e: usize, e_max: usize, len: usize, tau_u: f64, max_len: usize) -> f64 {
    use std::f64::consts::PI;
    let span = max_len as f64 - tau_u - 1.0;
    let from = len.min(max_len) as f64 - tau_u - 1.0;
    let ratio = if span.abs() < 1e-9 { 1.0 } else { from / span };
    (PI / 2.0 * e as f64 / e_max as f64 + PI / 2.0 * ratio)
        .sin()
        .abs()
}

/// `w_i` of a head item with `n_ctx` occurrences at 0-based epoch `e`.
pub fn item_weight(e: usize, e_max: usize, n_ctx: usize, tau_i: f64) -> f64 {
    use std::f64::consts::PI;
    let n = (tau_i + 50.0).min(n_ctx as f64);
    (PI / 2.0 * e as f64 / e_max as f64 + PI / 100.0 * (n - (tau_i + 1.0)))
        .sin()
        .abs()
}

/// MELT's trainable part: the user branch `W_U` and the item branch `W_I`,
/// with the tail threshold `τ_u` stored beside them (a constant, never
/// trained) so a reloaded run applies the same inference rule.
#[derive(Module, Debug)]
pub struct Melt {
    pub user: Linear,
    pub item: Linear,
    /// `[1]` = `τ_u`.
    tau_u: Param<Tensor<1>>,
}

fn column(v: &[f32], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len(), 1]), device)
}

impl Melt {
    pub fn new(d: usize, device: &Device) -> Self {
        Self {
            user: linear(d, d, device),
            item: linear(d, d, device),
            tau_u: Param::from_tensor(Tensor::zeros([1], device)).set_require_grad(false),
        }
    }

    /// The stored tail threshold.
    pub fn tau_u(&self) -> f64 {
        self.tau_u.val().into_scalar::<f32>() as f64
    }

    /// Records `τ_u` (the parameter keeps its id: checkpoints compare).
    pub fn set_tau_u(&mut self, tau_u: f64) {
        let device = self.tau_u.val().device();
        let t = Tensor::from_data(TensorData::new(vec![tau_u as f32], [1]), &device);
        self.tau_u = Param::initialized(self.tau_u.id, t).set_require_grad(false);
    }

    /// `h + tail ⊙ W_U h`: the transfer on the rows flagged tail.
    ///
    /// # Shapes
    /// - `h`: `[B, D]`; `tail`: `[B, 1]` (1 = tail, 0 = head); output `[B, D]`
    pub fn transfer(&self, h: Tensor<2>, tail: Tensor<2>) -> Tensor<2> {
        h.clone() + self.user.forward(h) * tail
    }

    /// `[B, 1]` tail flags from the histories of a batch alone: real items
    /// (ids `1..=num_items`, not padding or a MASK) `≤ τ_u`.
    pub fn tail_by_length(&self, items: Tensor<2, Int>, num_items: usize) -> Tensor<2> {
        let real = items
            .clone()
            .greater_elem(0)
            .int()
            .mul(items.lower_equal_elem(num_items as i64).int());
        let len = real.sum_dim(1).float(); // [B, 1]
        len.lower_equal_elem(self.tau_u() as f32).float()
    }

    /// `L_u`: `mean_{u,dims} [ w_u · (W_U few − full)² ]`.
    ///
    /// # Shapes
    /// - `few`, `full`: `[B, D]`; `w`: `B` weights; output `[1]`
    pub fn user_loss(&self, few: Tensor<2>, full: Tensor<2>, w: &[f32]) -> Tensor<1> {
        let device = full.device();
        let diff = self.user.forward(few) - full;
        (diff.powi_scalar(2) * column(w, &device)).mean()
    }

    /// `L_i`: `mean_{i,dims} [ (w_i · (W_I m_i − E[i]))² ]` with
    /// `m_i = mean_c (f(c) + W_U f(c))` over item `i`'s sampled contexts.
    ///
    /// # Shapes
    /// - `ctx`: `[K, D]` context representations, item by item, `counts[b]`
    ///   of them for item `b`; `rows`: `[B, D]` the items' rows; `w`: `B`
    ///   weights; output `[1]`
    pub fn item_loss(
        &self,
        ctx: Tensor<2>,
        counts: &[usize],
        rows: Tensor<2>,
        w: &[f32],
    ) -> Tensor<1> {
        let device = rows.device();
        let z = ctx.clone() + self.user.forward(ctx);
        let m = mean_by(counts, &device).matmul(z); // [B, D]
        let diff = (self.item.forward(m) - rows) * column(w, &device);
        diff.powi_scalar(2).mean()
    }

    /// The refreshed rows `W_I(mean of the contexts)`.
    ///
    /// # Shapes
    /// - `mean`: `[B, D]` → `[B, D]`
    pub fn refresh(&self, mean: Tensor<2>) -> Tensor<2> {
        self.item.forward(mean)
    }
}

/// `[B, K]` averaging matrix: row `b` holds `1/counts[b]` over its own
/// `counts[b]` consecutive columns.
fn mean_by(counts: &[usize], device: &Device) -> Tensor<2> {
    let k: usize = counts.iter().sum();
    let mut a = vec![0f32; counts.len() * k];
    let mut at = 0;
    for (b, &c) in counts.iter().enumerate() {
        for j in at..at + c {
            a[b * k + j] = 1.0 / c as f32;
        }
        at += c;
    }
    Tensor::from_data(TensorData::new(a, [counts.len(), k]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(v: Vec<f32>, r: usize, c: usize, device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, [r, c]), device)
    }

    /// A `Melt` of width 2 with hand-set branches.
    fn hand(device: &Device) -> Melt {
        let mut m = Melt::new(2, device);
        let set = |l: &mut Linear, w: Vec<f32>, b: Vec<f32>| {
            l.weight = Param::from_tensor(t2(w, 2, 2, device));
            l.bias = Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(b, [2]),
                device,
            )));
        };
        // burn's Linear computes x·W + b with W as [d_in, d_out].
        set(&mut m.user, vec![1.0, 2.0, 0.0, 1.0], vec![0.5, -0.5]);
        set(&mut m.item, vec![2.0, 0.0, 1.0, 1.0], vec![0.0, 1.0]);
        m
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }

    /// numpy: `np.quantile([1, 2, 3, 4, 10], 0.8)` = 4 + 0.2·6 = 5.2,
    /// `np.quantile([5], 0.3)` = 5.
    #[test]
    fn quantile_is_numpys_linear_rule() {
        close(quantile(&[10.0, 1.0, 3.0, 2.0, 4.0], 0.8), 5.2);
        close(quantile(&[5.0], 0.3), 5.0);
        close(quantile(&[1.0, 2.0], 0.5), 1.5);
    }

    /// The curriculum weights at hand-computed points.
    #[test]
    fn curriculum_weights_match_hand_values() {
        use std::f64::consts::PI;
        // w_u, e = 3 of e_max 180, len 12, τ_u 9.4, L 50:
        // |sin(π/2·3/180 + π/(2·39.6)·(12 − 10.4))|.
        let want = (PI / 2.0 * 3.0 / 180.0 + PI / 79.2 * 1.6).sin().abs();
        close(user_weight(3, 180, 12, 9.4, 50), want);
        close(want, 0.089_526_4);
        // At the boundary len = τ_u + 1, epoch 0: sin 0 = 0.
        close(user_weight(0, 180, 11, 10.0, 50), 0.0);
        // len counts up to L: 500 reads as 50.
        close(
            user_weight(3, 180, 500, 9.4, 50),
            user_weight(3, 180, 50, 9.4, 50),
        );
        // τ_u ≥ L: (20 − 60)/(20 − 60) = 1 → |sin(π/4 + π/2)|.
        close(user_weight(90, 180, 65, 59.0, 20), 0.5f64.sqrt());
        // L − τ_u − 1 = 0: the ratio is 1, not a division by zero.
        close(user_weight(0, 180, 30, 19.0, 20), 1.0);
        // w_i, e = 10, n_ctx 7, τ_i 3.6: |sin(π/2·10/180 + π/100·(7 − 4.6))|.
        let want = (PI / 2.0 * 10.0 / 180.0 + PI / 100.0 * 2.4).sin().abs();
        close(item_weight(10, 180, 7, 3.6), want);
        // n_ctx capped at τ_i + 50.
        close(
            item_weight(0, 180, 500, 3.6),
            (PI / 100.0 * 49.0).sin().abs(),
        );
    }

    /// `L_u = mean w·diff²` on a 2-user, 2-dim input, by hand:
    /// few₀ = (1, 0) → W_U few₀ = (1, 2) + (0.5, −0.5) = (1.5, 1.5);
    /// full₀ = (1, 1) → diff (0.5, 0.5), diff² (0.25, 0.25), w 2 → 1.0;
    /// few₁ = (0, 1) → (0, 1) + b = (0.5, 0.5); full₁ = (0.5, −0.5) →
    /// diff (0, 1), w 0.5 → (0, 0.5). Mean of 4 = 1.5 / 4 = 0.375.
    /// (A `(w·diff)²` would give (1+1+0+0.25)/4 = 0.5625.)
    #[test]
    fn user_loss_weights_the_squared_difference() {
        let device = crate::cpu();
        let m = hand(&device);
        let few = t2(vec![1.0, 0.0, 0.0, 1.0], 2, 2, &device);
        let full = t2(vec![1.0, 1.0, 0.5, -0.5], 2, 2, &device);
        let l = m.user_loss(few, full, &[2.0, 0.5]).into_scalar::<f32>() as f64;
        close(l, 0.375);
    }

    /// `L_i = mean (w·(W_I m − E))²` by hand. Item 0 has contexts
    /// (1, 0), (0, 1): f + W_U f = (2.5, 1.5), (0.5, 1.5) → m₀ = (1.5, 1.5);
    /// W_I m₀ = (1.5·2 + 1.5·1, 1.5·0 + 1.5·1) + (0, 1) = (4.5, 2.5);
    /// E₀ = (4, 2) → diff (0.5, 0.5), w 2 → (1, 1) → squares 1, 1.
    /// Item 1, context (0, 0): f + W_U f = (0.5, −0.5);
    /// W_I (0.5, −0.5) = (1 − 0.5, 0 − 0.5) + (0, 1) = (0.5, 0.5);
    /// E₁ = (0.5, 1.5) → diff (0, −1), w 0.5 → (0, −0.5) → 0, 0.25.
    /// Mean of 4 = 2.25 / 4 = 0.5625. (A `w·diff²` would give
    /// (0.5+0.5+0+0.5)/4 = 0.375.)
    #[test]
    fn item_loss_squares_the_weighted_difference() {
        let device = crate::cpu();
        let m = hand(&device);
        let ctx = t2(vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0], 3, 2, &device);
        let rows = t2(vec![4.0, 2.0, 0.5, 1.5], 2, 2, &device);
        let l = m
            .item_loss(ctx, &[2, 1], rows, &[2.0, 0.5])
            .into_scalar::<f32>() as f64;
        close(l, 0.5625);
    }

    /// The transfer adds `W_U h` on tail rows only; the length rule counts
    /// real items only (not padding, not a MASK id past the catalogue).
    #[test]
    fn transfer_touches_tail_rows_only() {
        let device = crate::cpu();
        let mut m = hand(&device);
        m.set_tau_u(2.0);
        close(m.tau_u(), 2.0);
        let h = t2(vec![1.0, 0.0, 1.0, 0.0], 2, 2, &device);
        let out = crate::to_f32(m.transfer(h, t2(vec![1.0, 0.0], 2, 1, &device)));
        assert_eq!(out, vec![2.5, 1.5, 1.0, 0.0]);
        // Catalogue of 5 items, MASK = 6: rows of 2 real + MASK, and 3 real.
        let items = Tensor::<2, Int>::from_data(
            TensorData::new(vec![0i64, 3, 4, 6, 1, 2, 3, 4], [2, 4]),
            &device,
        );
        assert_eq!(
            crate::to_f32(m.tail_by_length(items, 5)),
            vec![1.0, 0.0],
            "2 items ≤ τ_u = 2 is tail, 4 is not"
        );
    }

    /// Contexts on a hand-made sequence: the prefix and the reversed
    /// suffix of each occurrence, both ending in the item, cut to max_len;
    /// a one-item sequence gives the prefix only.
    #[test]
    fn contexts_are_prefixes_and_reversed_suffixes() {
        let seqs = vec![vec![5, 6, 7, 6], vec![6]];
        let c = MeltContexts::build(&seqs, 9, 3);
        let all =
            |i: usize| -> Vec<Vec<u32>> { c.of[i].iter().map(|&r| c.ids(&seqs, r)).collect() };
        assert_eq!(all(5), vec![vec![5], vec![7, 6, 5]]);
        assert_eq!(
            all(6),
            vec![vec![5, 6], vec![6, 7, 6], vec![6, 7, 6], vec![6], vec![6]]
        );
        assert_eq!(all(7), vec![vec![5, 6, 7], vec![6, 7]]);
        assert!(c.of[9].is_empty());
    }

    /// Splits: τ_u and τ_i by numpy's rule, tail users at `len ≤ τ_u`, head
    /// items at `count > τ_i`, items absent from training never head.
    #[test]
    fn splits_follow_the_quantiles() {
        let train = vec![vec![1, 2], vec![1, 2, 3], vec![1, 1, 2, 4, 1]];
        let s = MeltSplit::new(&train, 5, 0.8, None);
        // Lengths 2, 3, 5: position 1.6 → 3 + 0.6·2 = 4.2.
        close(s.tau_u, 4.2);
        assert_eq!(s.tail_user, vec![true, true, false]);
        // Counts of seen items: 1 → 5, 2 → 3, 3 → 1, 4 → 1; sorted 1 1 3 5,
        // q 0.78 → position 2.34 → 3 + 0.34·2 = 3.68.
        close(s.tau_i, 3.68);
        assert_eq!(s.head_item, vec![false, true, false, false, false, false]);
        assert_eq!(s.max_recent(), 4);
        assert_eq!(s.max_contexts(10), 3);
        assert_eq!(s.max_contexts(0), 1);
    }
}
