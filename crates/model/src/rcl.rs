//! RCL (Wang et al., "Relative Contrastive Learning for Sequential
//! Recommendation with Similarity-based Positive Pair Selection", CIKM
//! 2024), written after the official code (`Cloudcatcher888/RCL`:
//! `code/main.py`, `code/model.py`, `code/utils.py`, run as `--ssl 8 --max 1`,
//! its default; BASELINES.md §7). The trainer's objective that drives it is
//! `hsuga_train::rcl_objective`; this file holds the data side (similarity,
//! positives) and the loss.
//!
//! - `M[u]` = the last `max_len` items of u's training sequence (its last
//!   training item included, as in the official code: keys are training
//!   data only).
//! - Similarity `S[i,j] = |set(M[i]) ∩ set(M[j])|` for `i ≠ j` (0 on the
//!   diagonal), built sparsely through item → users lists
//!   ([`Similarity`]); `thr = percentile_p(S)` over the **dense** `U × U`
//!   matrix, zeros included, from a histogram of counts
//!   ([`dense_percentile`], numpy's linear interpolation).
//! - Weak positive of `i`: uniform among `j` with `S[i,j] > thr`, else `i`
//!   itself; drawn once per run ([`Similarity::weak_positives`], seeded).
//! - Strong positive of `i`: uniform among the other users whose last
//!   training item equals `i`'s, else `i`; re-drawn every epoch
//!   ([`strong_positives`]).
//! - Per step, with `q = h(seq_u)`, `k_y = h(M[strong(u)])`,
//!   `k_w = h(M[weak(u)])`:
//!   `Y = rownorm(q k_yᵀ)`, `W = rownorm(q k_wᵀ)` (each **row of the B×B
//!   logit matrix** L2-normalised), relative clip `W_ii ← min(W_ii, min_j Y_jj)`
//!   ([`relative_clip`]), `L_y = CE(Y/T, I)`,
//!   `L_w = Σ_i ω_i CE_i(W/T) / Σ_i ω_i` with `ω_i = S[u_i, weak(u_i)]^0.1`,
//!   and `L = L_rec + 0.1·L_y + 0.1·L_w`, `T = 0.1` ([`rcl_loss`]).
//! - Inference: the backbone's plain scoring (RCL has no parameters of its
//!   own).
//!
//! Choices that are ours:
//! - Padding is not an item: the intersection counts real items only. The
//!   official `np.intersect1d` on zero-padded rows counts the padding id 0
//!   as one shared item for most pairs (both users shorter than `max_len`),
//!   which shifts every such `S` by +1; that artefact is not copied, so our
//!   thresholds and weights are the intended ones, not the official numbers.
//! - The dense matrix is `U × U` over our users; the official one is
//!   `(U+1) × (U+1)` with an all-zero row and column for its padding user 0
//!   (a few more zeros in the percentile).
//! - `L_rec` is the backbone's own loss (`model.loss`, e.g. SASRec's BCE at
//!   every position); the official is BCE at the last position only with
//!   one negative: set `model.last_target_only = true` (SASRec) for that.
//! - The query forward (`q = h(seq)`, seq = the training input) and the
//!   two key forwards run as one forward of `3B` rows (the official runs
//!   three; each has its own dropout either way). `h` is §0's: the last
//!   position, BERT4Rec's appended mask token.
//! - Batches are the trainer's (each user once per epoch, shuffled); the
//!   official samples `B` users with replacement, `⌊U/B⌋` steps per epoch.
//! - `min_j Y_jj` keeps its gradient (the official in-place assignment of
//!   the minimum into `W` does not detach it).
//! - A batch whose weights `ω` are all 0 (no weak positive above the
//!   threshold for any row) adds no `L_w` (PyTorch's weighted mean is NaN).
//! - With HSU fusion (`method.fusion`, Table 1's RCL+HSU) every forward is
//!   fused, the keys with **their own** users' semantic vectors (HSUGA's
//!   repo fuses a foreign view with the anchor's, and its RCL trainer never
//!   passes users at all, BASELINES.md §9).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

fn d_percentile() -> f64 {
    95.0 // official --perc
}
fn d_temperature() -> f64 {
    0.1 // official, hard-coded
}
fn d_weight() -> f64 {
    0.1 // official, hard-coded for both terms (HSUGA's rcl_scale)
}
fn d_smooth() -> f64 {
    0.1 // official --smooth_loss
}
fn d_true() -> bool {
    true // official --max 1
}

/// RCL's `[method.rcl]` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RclConfig {
    /// Percentile (0–100) of the dense similarity matrix above which a user
    /// is a weak positive.
    #[serde(default = "d_percentile")]
    pub percentile: f64,
    /// T of both cross-entropies.
    #[serde(default = "d_temperature")]
    pub temperature: f64,
    /// Weight of `L_y` and of `L_w`.
    #[serde(default = "d_weight")]
    pub weight: f64,
    /// Exponent of the similarity weights `ω = S^smooth`.
    #[serde(default = "d_smooth")]
    pub smooth: f64,
    /// The relative clip (`--max 1`); `false` is plain two-tier CL.
    #[serde(default = "d_true")]
    pub relative_clip: bool,
}

impl Default for RclConfig {
    fn default() -> Self {
        Self {
            percentile: d_percentile(),
            temperature: d_temperature(),
            weight: d_weight(),
            smooth: d_smooth(),
            relative_clip: true,
        }
    }
}

impl RclConfig {
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if !(0.0..=100.0).contains(&self.percentile) {
            return bad(format!(
                "method.rcl.percentile must be in [0, 100], got {}",
                self.percentile
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "method.rcl.temperature must be a positive number, got {}",
                self.temperature
            ));
        }
        if !(self.weight >= 0.0 && self.weight.is_finite()) {
            return bad(format!(
                "method.rcl.weight must be a number >= 0, got {}",
                self.weight
            ));
        }
        if !(self.smooth >= 0.0 && self.smooth.is_finite()) {
            return bad(format!(
                "method.rcl.smooth must be a number >= 0, got {}",
                self.smooth
            ));
        }
        Ok(())
    }
}

/// The sparse co-occurrence similarity of users' key windows.
#[derive(Debug, Clone)]
pub struct Similarity {
    /// Per user, `(j, S[i,j])` for every `j ≠ i` with `S[i,j] > 0`, by `j`.
    rows: Vec<Vec<(u32, u32)>>,
}

impl Similarity {
    /// From each user's key window `M[u]` (item ids ≥ 1; duplicates count
    /// once, 0 is never an item). Cost `Σ_items deg²`.
    pub fn new(windows: &[&[u32]]) -> Self {
        let u = windows.len();
        let sets: Vec<Vec<u32>> = windows
            .iter()
            .map(|w| {
                let mut s: Vec<u32> = w.iter().copied().filter(|&i| i > 0).collect();
                s.sort_unstable();
                s.dedup();
                s
            })
            .collect();
        let max_item = sets.iter().flatten().copied().max().unwrap_or(0) as usize;
        let mut holders: Vec<Vec<u32>> = vec![Vec::new(); max_item + 1];
        for (v, s) in sets.iter().enumerate() {
            for &i in s {
                holders[i as usize].push(v as u32);
            }
        }
        let mut count = vec![0u32; u];
        let mut touched: Vec<u32> = Vec::new();
        let rows = sets
            .iter()
            .enumerate()
            .map(|(me, s)| {
                for &i in s {
                    for &v in &holders[i as usize] {
                        if v as usize != me {
                            if count[v as usize] == 0 {
                                touched.push(v);
                            }
                            count[v as usize] += 1;
                        }
                    }
                }
                touched.sort_unstable();
                touched
                    .drain(..)
                    .map(|v| (v, std::mem::take(&mut count[v as usize])))
                    .collect()
            })
            .collect();
        Self { rows }
    }

    pub fn num_users(&self) -> usize {
        self.rows.len()
    }

    /// `S[i,j]`.
    pub fn get(&self, i: usize, j: usize) -> u32 {
        let row = &self.rows[i];
        row.binary_search_by_key(&(j as u32), |&(v, _)| v)
            .map_or(0, |k| row[k].1)
    }

    /// Counts of each value of the dense `U × U` matrix: entry `c` is how
    /// many of its `U²` cells hold `c` (the diagonal and every pair without
    /// a shared item in entry 0).
    pub fn histogram(&self) -> Vec<u64> {
        let u = self.rows.len() as u64;
        let mut hist = vec![0u64; 1];
        let mut nnz = 0u64;
        for row in &self.rows {
            for &(_, c) in row {
                let c = c as usize;
                if hist.len() <= c {
                    hist.resize(c + 1, 0);
                }
                hist[c] += 1;
                nnz += 1;
            }
        }
        hist[0] = u * u - nnz;
        hist
    }

    /// Each user's weak positive and its similarity: uniform among the `j`
    /// with `S[i,j] > thr`, else `(i, 0)`.
    pub fn weak_positives<R: Rng>(&self, thr: f64, rng: &mut R) -> Vec<(usize, u32)> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let above: Vec<&(u32, u32)> =
                    row.iter().filter(|&&(_, c)| c as f64 > thr).collect();
                if above.is_empty() {
                    (i, 0)
                } else {
                    let &(j, c) = above[rng.random_range(0..above.len())];
                    (j as usize, c)
                }
            })
            .collect()
    }
}

/// The `p`-th percentile (0–100) of the values a histogram counts
/// (`hist[v]` cells hold `v`), with numpy's default linear interpolation
/// between the two nearest ranks.
pub fn dense_percentile(hist: &[u64], p: f64) -> f64 {
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return 0.0;
    }
    // The value at 0-based rank k of the sorted cells.
    let at = |k: u64| -> f64 {
        let mut cum = 0u64;
        for (v, &c) in hist.iter().enumerate() {
            cum += c;
            if cum > k {
                return v as f64;
            }
        }
        (hist.len() - 1) as f64
    };
    let h = (n - 1) as f64 * p / 100.0;
    let lo = h.floor();
    let (a, b) = (at(lo as u64), at(h.ceil() as u64));
    a + (h - lo) * (b - a)
}

/// Each user's strong positive: uniform among the other users whose last
/// key item (`last[u]`, `None` for an empty window) is the same, else the
/// user itself.
pub fn strong_positives<R: Rng>(last: &[Option<u32>], rng: &mut R) -> Vec<usize> {
    let mut by_item: std::collections::HashMap<u32, Vec<usize>> = Default::default();
    for (u, l) in last.iter().enumerate() {
        if let Some(i) = l {
            by_item.entry(*i).or_default().push(u);
        }
    }
    last.iter()
        .enumerate()
        .map(|(u, l)| {
            let Some(group) = l.and_then(|i| by_item.get(&i)) else {
                return u;
            };
            if group.len() < 2 {
                return u;
            }
            // Uniform among the group without u.
            let k = rng.random_range(0..group.len() - 1);
            let me = group
                .iter()
                .position(|&v| v == u)
                .expect("u is in its group");
            group[if k >= me { k + 1 } else { k }]
        })
        .collect()
}

/// Each row L2-normalised (PyTorch's `F.normalize(x, dim=1)`, eps 1e-12).
///
/// # Shapes
/// - `x`: `[B, C]` → `[B, C]`
pub fn row_normalise(x: Tensor<2>) -> Tensor<2> {
    let n = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / n
}

/// The diagonal of a square matrix as `[B, 1]`.
fn diagonal(x: Tensor<2>, eye: Tensor<2>) -> Tensor<2> {
    (x * eye).sum_dim(1)
}

/// The relative clip: `W_ii ← min(W_ii, min_j Y_jj)`, the rest of `W` as
/// is, so no weak-positive logit exceeds the batch's smallest
/// strong-positive logit.
///
/// # Shapes
/// - `y`, `w`: `[B, B]` → `[B, B]`
pub fn relative_clip(y: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    let [b, _] = w.dims();
    let eye = Tensor::<2>::eye(b, &w.device());
    let y_min = diagonal(y, eye.clone()).min().reshape([1, 1]); // [1, 1]
    let w_diag = diagonal(w.clone(), eye.clone()); // [B, 1]
    let clipped = w_diag.clone().min_pair(y_min.expand([b, 1]));
    w + eye * (clipped - w_diag)
}

/// `-log softmax(x / T)_ii` per row.
///
/// # Shapes
/// - `x`: `[B, B]`; output: `[B, 1]`
fn diagonal_ce(x: Tensor<2>, t: f64) -> Tensor<2> {
    let [b, _] = x.dims();
    let eye = Tensor::<2>::eye(b, &x.device());
    diagonal(log_softmax(x.div_scalar(t), 1), eye).neg()
}

/// RCL's contrastive terms `weight·(L_y + L_w)` (`[1]`).
///
/// # Shapes
/// - `q`, `k_y`, `k_w`: `[B, D]`; `omega`: `B` weights `S^smooth`
pub fn rcl_loss(
    cfg: &RclConfig,
    q: Tensor<2>,
    k_y: Tensor<2>,
    k_w: Tensor<2>,
    omega: &[f32],
    device: &Device,
) -> Tensor<1> {
    let [b, _] = q.dims();
    let t = cfg.temperature;
    let y = row_normalise(q.clone().matmul(k_y.transpose()));
    let w = row_normalise(q.matmul(k_w.transpose()));
    let w = if cfg.relative_clip {
        relative_clip(y.clone(), w)
    } else {
        w
    };
    let l_y = diagonal_ce(y, t).mean();
    let total: f32 = omega.iter().sum();
    let l = if total > 0.0 {
        let om = Tensor::<2>::from_data(TensorData::new(omega.to_vec(), [b, 1]), device);
        l_y + (diagonal_ce(w, t) * om).sum().div_scalar(total as f64)
    } else {
        l_y
    };
    l.mul_scalar(cfg.weight)
}
