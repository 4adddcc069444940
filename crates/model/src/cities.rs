//! CITIES (Jang et al., "CITIES: Contextual Inference of Tail-Item
//! Embeddings for Sequential Recommendation", ICDM 2020), written after the
//! official code (`swonj90/CITIES`: `model.py`, `cities.py`, `utils.py`,
//! `config.py`; BASELINES.md §1): the embedding-inference network `f` and
//! the contexts it reads. Training `f` and overwriting the tail rows of a
//! trained backbone is `hsuga_train::cities`.
//!
//! A *context* of an occurrence of item `i` at position `p` of a user's
//! training sequence `s` is the window
//! `pad_pre(s[p-h..p], h) ⧺ [MASK] ⧺ pad_post(s[p+1..p+1+h], h)` of
//! `2h + 1` ids (`h` = 24), kept only when the window holds more than two
//! real items (the item itself counted). `f` maps `K` contexts of one item
//! (`[K, 2h+1]`) to one `H`-wide embedding:
//!
//! ```text
//! X_k = E_pre[c_k] ⊙ w_t + PE/√H          (w: one learned scalar per slot, init 1)
//! X_k = Dropout(X_k); interpreter ×2 (post-LN, padded keys masked)
//! r_k = mean of X_k over the non-padding slots (the MASK slot included)
//! R   = aggregator ×2 over [r_1 … r_K] (no mask)
//! ê   = Linear(mean_k R_k)
//! layer: x = LN(x + Drop(MHA(x)));  x = LN(x + Drop(W2 Drop(ReLU(W1 x))))   (W1: H → 2H)
//! LN(x) = a ⊙ (x − mean) / (std_unbiased + 1e-6) + b
//! ```
//!
//! `E_pre` (the pretrained backbone's item table, padding row zeroed, MASK
//! row appended where the backbone has none) is an input of every forward,
//! not a weight of `f`: it is frozen, as in the official code.
//!
//! Choices that are ours (not the official code's):
//! - The sinusoidal position encoding is the textbook one. The official
//!   `div_term = 1 / (10000 ** arange(0, d, 2)) / d` (operator precedence)
//!   makes every dimension but the first two constant; we fix it. It
//!   matters little: the per-slot weights `w` carry position too.
//! - Weights start Xavier-normal with zero biases (the project's
//!   initialiser; the official layers keep PyTorch's defaults).
//! - Multi-head attention is the backbones' own ([`crate::transformer::Attention`],
//!   keys and values in one product; the same function as four separate
//!   `H × H` maps), with an additive `-1e9` bias on padded keys where the
//!   official code uses `masked_fill(-1e9)`.
//! - SASRec and GRU4Rec tables have no MASK row (BERT4Rec's has one and
//!   `f` reads it): the trainer appends a constant row drawn from the run's
//!   seed, `N(0, σ²)` with `σ` the standard deviation of the pretrained item
//!   rows. The official SASRec/GRU4Rec table has an untrained random row
//!   there; a constant token is all `f` needs.
//! - Contexts come from each user's *training* items only (the official
//!   code reads whole sequences of a user split, which under leave-one-out
//!   would leak validation and test items).
//! - `epochs` caps `f`'s training at 500 epochs (the official loop stops
//!   only early); `head = "groups"` offers the project's 20 % popularity
//!   split beside the official `count > 5`.
//! - The official code calls `clip_grad_norm_` once before any backward
//!   (no clipping in effect); we do not clip.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::batch::MASKED;
use crate::config::ModelConfig;
use crate::dropout::FastDropout;
use crate::error::ModelError;
use crate::transformer::{Attention, linear, linear_rows};

fn d_half_window() -> usize {
    24 // official config.py MAX_LEN
}
fn d_freq_bound() -> u32 {
    5 // official config.py FREQ_LBOUND
}
fn d_lr() -> f64 {
    1e-4 // official config.py LR
}
fn d_batch() -> usize {
    128 // official config.py BATCH_SIZE
}
fn d_max_shots() -> usize {
    10 // official config.py MAX_N_SHOT
}
fn d_patience() -> usize {
    10 // official config.py PATIENCE
}
fn d_layers() -> usize {
    2 // official config.py N_LAYER (interpreter and aggregator each)
}
fn d_heads() -> usize {
    4 // official config.py N_HEAD
}
fn d_dropout() -> f64 {
    0.2 // official model.py
}
fn d_attn_dropout() -> f64 {
    0.5 // official model.py (attention weights)
}
fn d_val_ratio() -> f64 {
    0.05 // official config.py VAL_RATIO
}
fn d_warmup() -> usize {
    100 // official cities.py scheduler
}
fn d_epochs() -> usize {
    // Ours: the official loop runs until early stopping; a cap keeps a
    // stalled validation from running forever.
    500
}

/// Which items train `f` (head) and which get their rows inferred (tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CitiesHead {
    /// Head = training count above `freq_bound` (the official rule).
    #[default]
    Count,
    /// Head = the project's popularity groups (the top 20 % of items by
    /// training count, `hsuga_data::Groups`), as the paper's columns split them.
    Groups,
}

/// CITIES's own `[method.cities]` keys; defaults from the official
/// `config.py`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CitiesConfig {
    /// Items on each side of the masked centre of a context.
    #[serde(default = "d_half_window")]
    pub half_window: usize,
    /// Head items have a training count above this (with `head = "count"`).
    #[serde(default = "d_freq_bound")]
    pub freq_bound: u32,
    /// How head and tail items are told apart.
    #[serde(default)]
    pub head: CitiesHead,
    /// Adam learning rate of `f` (after a linear warm-up).
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Linear warm-up steps of the learning rate.
    #[serde(default = "d_warmup")]
    pub warmup_steps: usize,
    /// Head items per step.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Contexts per item per step are drawn from `1..=max_shots`.
    #[serde(default = "d_max_shots")]
    pub max_shots: usize,
    /// Epochs without a lower validation MSE before `f` stops.
    #[serde(default = "d_patience")]
    pub patience: usize,
    /// Upper bound on `f`'s epochs.
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    /// Share of head items held out to validate `f`.
    #[serde(default = "d_val_ratio")]
    pub val_ratio: f64,
    /// Interpreter layers (over the slots of one context).
    #[serde(default = "d_layers")]
    pub interpreter_layers: usize,
    /// Aggregator layers (over the contexts of one item).
    #[serde(default = "d_layers")]
    pub aggregator_layers: usize,
    #[serde(default = "d_heads")]
    pub heads: usize,
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    /// Dropout on the attention weights.
    #[serde(default = "d_attn_dropout")]
    pub attn_dropout: f64,
}

impl Default for CitiesConfig {
    fn default() -> Self {
        toml::from_str("").expect("every CITIES setting has a default")
    }
}

impl CitiesConfig {
    /// Slots of one context (`2h + 1`).
    pub fn window(&self) -> usize {
        2 * self.half_window + 1
    }

    /// Checks the settings against the backbone's hidden size.
    pub fn validate(&self, hidden: usize) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.half_window == 0 || self.half_window > 1024 {
            return bad(format!(
                "method.cities.half_window must be in 1..=1024, got {}",
                self.half_window
            ));
        }
        for (key, v) in [
            ("batch_size", self.batch_size),
            ("max_shots", self.max_shots),
            ("epochs", self.epochs),
            ("interpreter_layers", self.interpreter_layers),
            ("aggregator_layers", self.aggregator_layers),
        ] {
            if v == 0 {
                return bad(format!("method.cities.{key} must be at least 1"));
            }
        }
        if self.batch_size > 65_536 || self.max_shots > 1_000 {
            return bad(format!(
                "method.cities.batch_size ({}) must be at most 65536 and max_shots ({}) at \
                 most 1000",
                self.batch_size, self.max_shots
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!(
                "method.cities.lr must be a positive number, got {}",
                self.lr
            ));
        }
        if !(self.val_ratio > 0.0 && self.val_ratio < 1.0) {
            return bad(format!(
                "method.cities.val_ratio must lie strictly between 0 and 1, got {}",
                self.val_ratio
            ));
        }
        for (key, p) in [
            ("dropout", self.dropout),
            ("attn_dropout", self.attn_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("method.cities.{key} must be in [0, 1), got {p}"));
            }
        }
        if self.heads == 0 || !hidden.is_multiple_of(self.heads) {
            return bad(format!(
                "method.cities.heads ({}) must divide model.hidden ({hidden})",
                self.heads
            ));
        }
        Ok(())
    }
}

/// Where the contexts of each item are: `(user, position)` of every
/// occurrence in the training sequences whose window holds more than two
/// items. Only the sequences given are read, so a caller handing in the
/// training split's sequences can leak no validation or test item.
#[derive(Debug, Clone)]
pub struct Contexts {
    /// Per item id (`0..=N`), its occurrences.
    pub at: Vec<Vec<(u32, u32)>>,
    half: usize,
    mask: u32,
}

impl Contexts {
    /// Indexes every occurrence of items `1..=num_items` in `seqs`; the
    /// centre of each window reads `mask` (`num_items + 1`).
    pub fn build(seqs: &[Vec<u32>], num_items: u32, half: usize) -> Self {
        let mut at = vec![Vec::new(); num_items as usize + 1];
        for (u, s) in seqs.iter().enumerate() {
            for (p, &i) in s.iter().enumerate() {
                let lo = p.saturating_sub(half);
                let hi = (p + half + 1).min(s.len());
                // Official `len(s[max(0,p-24):p+25]) > 2`.
                if hi - lo > 2 && (1..=num_items).contains(&i) {
                    at[i as usize].push((u as u32, p as u32));
                }
            }
        }
        Self {
            at,
            half,
            mask: num_items + 1,
        }
    }

    /// The MASK token id at every window's centre.
    pub fn mask(&self) -> u32 {
        self.mask
    }

    /// Slots of one window.
    pub fn width(&self) -> usize {
        2 * self.half + 1
    }

    /// The window around `seqs[user][pos]`, appended to `out`: 0 where it
    /// runs past either end of the sequence, MASK at the centre.
    pub fn window_into(&self, seqs: &[Vec<u32>], (user, pos): (u32, u32), out: &mut Vec<u32>) {
        let s = &seqs[user as usize];
        let (p, h) = (pos as usize, self.half);
        for k in 0..self.width() {
            // Slot k reads position p - h + k.
            let v = if k == h {
                self.mask
            } else if k + p < h || p + k - h >= s.len() {
                0
            } else {
                s[p + k - h]
            };
            out.push(v);
        }
    }
}

/// The official code's layer norm: gain and bias around
/// `(x − mean) / (std_unbiased + eps)`.
#[derive(Module, Debug)]
struct Norm {
    gain: Param<Tensor<1>>,
    bias: Param<Tensor<1>>,
}

impl Norm {
    fn new(h: usize, device: &Device) -> Self {
        Self {
            gain: Param::from_tensor(Tensor::ones([h], device)),
            bias: Param::from_tensor(Tensor::zeros([h], device)),
        }
    }

    /// # Shapes
    /// - `x`: `[B, T, H]` → `[B, T, H]`
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [_, _, h] = x.dims();
        let mean = x.clone().mean_dim(2);
        let centred = x - mean;
        let var = centred
            .clone()
            .powi_scalar(2)
            .sum_dim(2)
            .div_scalar((h - 1).max(1) as f64);
        let std = var.sqrt().add_scalar(1e-6);
        let g = self.gain.val().reshape([1, 1, h]);
        let b = self.bias.val().reshape([1, 1, h]);
        centred / std * g + b
    }
}

/// One post-LN encoder layer (official `EncoderLayer`).
#[derive(Module, Debug)]
struct Layer {
    attn: Attention,
    norm1: Norm,
    ffn_in: Linear,
    ffn_out: Linear,
    norm2: Norm,
    dropout: FastDropout,
}

impl Layer {
    fn new(h: usize, cfg: &CitiesConfig, device: &Device) -> Self {
        let attn_cfg = ModelConfig {
            hidden: h,
            heads: cfg.heads,
            dropout: cfg.attn_dropout,
            ..ModelConfig::default()
        };
        Self {
            attn: Attention::new(&attn_cfg, device),
            norm1: Norm::new(h, device),
            ffn_in: linear(h, 2 * h, device).zero_bias(),
            ffn_out: linear(2 * h, h, device).zero_bias(),
            norm2: Norm::new(h, device),
            dropout: FastDropout::new(cfg.dropout),
        }
    }

    /// # Shapes
    /// - `x`: `[B, T, H]`; `bias`: `[B, T, T]`; output `[B, T, H]`
    fn forward(&self, x: Tensor<3>, bias: Tensor<3>) -> Tensor<3> {
        let a = self.attn.forward(x.clone(), x.clone(), bias);
        let x = self.norm1.forward(x + self.dropout.forward(a));
        let f = self
            .dropout
            .forward(relu(linear_rows(&self.ffn_in, x.clone())));
        let f = self.dropout.forward(linear_rows(&self.ffn_out, f));
        self.norm2.forward(x + f)
    }
}

/// Zero biases on a freshly built linear layer.
trait ZeroBias {
    fn zero_bias(self) -> Self;
}

impl ZeroBias for Linear {
    fn zero_bias(mut self) -> Self {
        if let Some(b) = &self.bias {
            let [n] = b.dims();
            let device = b.device();
            self.bias = Some(Param::from_tensor(Tensor::zeros([n], &device)));
        }
        self
    }
}

/// The embedding-inference network `f` (see the module docs).
#[derive(Module, Debug)]
pub struct Cities {
    /// `[W]` one learned scalar per slot (official `PositionalAttention`).
    slot_weight: Param<Tensor<1>>,
    interpreter: Vec<Layer>,
    aggregator: Vec<Layer>,
    out: Linear,
    dropout: FastDropout,
    /// `[W, H]` the sinusoidal encoding divided by `√H` (a constant).
    #[module(skip)]
    pe: Tensor<2>,
}

/// `[W, H]` sinusoidal position encoding, `/√H`: slot `t`, pair `k`:
/// `sin(t / 10000^(2k/H))`, `cos(t / 10000^(2k/H))`.
pub fn position_encoding(w: usize, h: usize) -> Vec<f32> {
    let mut pe = vec![0f32; w * h];
    let scale = 1.0 / (h as f64).sqrt();
    for t in 0..w {
        for j in 0..h {
            let k2 = (j - j % 2) as f64;
            let angle = t as f64 / 10000f64.powf(k2 / h as f64);
            let v = if j % 2 == 0 { angle.sin() } else { angle.cos() };
            pe[t * h + j] = (v * scale) as f32;
        }
    }
    pe
}

impl Cities {
    /// A fresh `f` for `hidden`-wide item rows (seed the device first).
    pub fn new(cfg: &CitiesConfig, hidden: usize, device: &Device) -> Self {
        let w = cfg.window();
        Self {
            slot_weight: Param::from_tensor(Tensor::ones([w], device)),
            interpreter: (0..cfg.interpreter_layers)
                .map(|_| Layer::new(hidden, cfg, device))
                .collect(),
            aggregator: (0..cfg.aggregator_layers)
                .map(|_| Layer::new(hidden, cfg, device))
                .collect(),
            out: linear(hidden, hidden, device).zero_bias(),
            dropout: FastDropout::new(cfg.dropout),
            pe: Tensor::from_data(
                TensorData::new(position_encoding(w, hidden), [w, hidden]),
                device,
            ),
        }
    }

    /// The inferred embedding of each of `B` items from its `K` contexts.
    ///
    /// # Shapes
    /// - `table`: `[V, H]` frozen input rows (row 0 padding, the MASK id in
    ///   range); `contexts`: `[B, K, W]` ids; output: `[B, H]`
    pub fn forward(&self, table: Tensor<2>, contexts: Tensor<3, Int>) -> Tensor<2> {
        let [b, k, w] = contexts.dims();
        let [_, h] = table.dims();
        let n = b * k;
        let ids = contexts.reshape([n, w]);
        let x = table
            .select(0, ids.clone().reshape([n * w]))
            .reshape([n, w, h]);
        let x = x * self.slot_weight.val().reshape([1, w, 1])
            + self.pe.clone().to_device(&ids.device()).reshape([1, w, h]);
        let mut x = self.dropout.forward(x);
        // Padded keys masked; every query row keeps its MASK key.
        let real = ids.not_equal_elem(0).float(); // [n, w]
        let bias = (real.clone().neg().add_scalar(1.0) * MASKED)
            .reshape([n, 1, w])
            .expand([n, w, w]);
        for layer in &self.interpreter {
            x = layer.forward(x, bias.clone());
        }
        let keep = real.reshape([n, w, 1]);
        let count = keep.clone().sum_dim(1); // [n, 1, 1]
        let r = ((x * keep).sum_dim(1) / count).reshape([b, k, h]);
        let open = Tensor::zeros([b, k, k], &r.device());
        let mut r = r;
        for layer in &self.aggregator {
            r = layer.forward(r, open.clone());
        }
        self.out.forward(r.mean_dim(1).reshape([b, h]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The position encoding varies in every dimension pair (the official
    /// precedence bug left all but the first two constant).
    #[test]
    fn position_encoding_varies_beyond_the_first_two_dimensions() {
        let (w, h) = (49, 64);
        let pe = position_encoding(w, h);
        // Slot 0: sin 0 = 0, cos 0 = 1 (over √H).
        assert_eq!(pe[0], 0.0);
        assert!((pe[1] - 0.125).abs() < 1e-7);
        for j in 2..h {
            let col: Vec<f32> = (0..w).map(|t| pe[t * h + j]).collect();
            assert!(
                col.iter().any(|&v| (v - col[0]).abs() > 1e-6),
                "dimension {j} is constant"
            );
        }
        // Slot 3, dimension 4: sin(3 / 10000^(4/64)) / 8.
        let want = (3.0f64 / 10000f64.powf(4.0 / 64.0)).sin() / 8.0;
        assert!((pe[3 * h + 4] as f64 - want).abs() < 1e-6);
    }

    /// Windows on a hand-written sequence: the MASK at the centre, padding
    /// past either end, and the "more than two items" rule.
    #[test]
    fn windows_put_the_mask_at_the_centre() {
        let seqs = vec![vec![5, 6, 7, 8], vec![9, 3]];
        let c = Contexts::build(&seqs, 10, 2);
        assert_eq!(c.mask(), 11);
        assert_eq!(c.width(), 5);
        // User 1 has two items: no window holds more than two.
        assert!(c.at[9].is_empty() && c.at[3].is_empty());
        assert_eq!(c.at[5], vec![(0, 0)]);
        let mut w = Vec::new();
        c.window_into(&seqs, (0, 0), &mut w);
        assert_eq!(w, vec![0, 0, 11, 6, 7]);
        w.clear();
        c.window_into(&seqs, (0, 2), &mut w);
        assert_eq!(w, vec![5, 6, 11, 8, 0]);
        w.clear();
        c.window_into(&seqs, (0, 3), &mut w);
        assert_eq!(w, vec![6, 7, 11, 0, 0]);
    }

    /// The forward pass runs on two items × three contexts, and a context's
    /// padding slots do not change the result (masked keys, excluded mean).
    #[test]
    fn padding_slots_do_not_change_the_embedding() {
        let device = crate::cpu();
        let cfg = CitiesConfig {
            half_window: 2,
            ..CitiesConfig::default()
        };
        let f = Cities::new(&cfg, 8, &device);
        let mut rows: Vec<f32> = (0..13 * 8)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 10.0)
            .collect();
        rows[..8].iter_mut().for_each(|v| *v = 0.0);
        let table = Tensor::<2>::from_data(TensorData::new(rows.clone(), [13, 8]), &device);
        let ctx = |v: Vec<i64>| Tensor::<3, Int>::from_data(TensorData::new(v, [1, 1, 5]), &device);
        let a = crate::to_f32(f.forward(table.clone(), ctx(vec![0, 3, 12, 4, 0])));
        assert_eq!(a.len(), 8);
        // Another padding row value must not matter.
        rows[..8].iter_mut().for_each(|v| *v = 9.0);
        let table2 = Tensor::<2>::from_data(TensorData::new(rows, [13, 8]), &device);
        let b = crate::to_f32(f.forward(table2, ctx(vec![0, 3, 12, 4, 0])));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }
}
