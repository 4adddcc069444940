//! ICSRec (Qin et al., "Intent Contrastive Learning with Cross
//! Subsequences for Sequential Recommendation", WSDM 2024), written after
//! the official code (`QinHsiu/ICSRec`: `src/datasets.py`, `src/trainers.py`,
//! `src/models.py`; BASELINES.md §6). The trainer's objective that drives
//! it is `hsuga_train::icsrec_objective`; this file holds the data side
//! (prefix samples, same-target positives), the InfoNCE with false-negative
//! masking and the k-means.
//!
//! - Samples: every training prefix `(train[:t] → train[t])`, `t = 1 ..
//!   |train| − 1`, of every user ([`Samples`]); the same-target index is
//!   built from training parts only.
//! - Rec loss: full-softmax cross-entropy — the backbone's own `model.loss =
//!   "ce"`, required at load; with SASRec's causal mask and a target at
//!   every position, one forward of a user's sequence is the CE of all its
//!   prefixes.
//! - CICL: `z1 = h(s1)`, `z2 = h(s2)`, `s2` a prefix of another sample with
//!   the same target; `L_CICL = InfoNCE(z1, z2; labels = targets)`.
//! - InfoNCE with FNM ([`info_nce_fnm`], official `--f_neg`): `Z = [z1;
//!   z2]`, `S = Z Zᵀ / T` (dot similarity, T = 1); positives `S[i, i+B]`,
//!   `S[i+B, i]`; negatives the full row of `S` with **every column of the
//!   same label** (self, the positive, and any other same-label sample)
//!   masked out; CE with the positive as class 0, mean over the `2B` rows.
//! - FICL: at every epoch start, the representations of training samples
//!   (eval mode) are clustered by k-means ([`KMeans`]: Lloyd's, L2, `niter`
//!   20, faiss's split of empty clusters); the centroids are L2-normalised
//!   after training, as the official code does; a query takes the nearest
//!   centroid by L2 on the **unnormalised** centroids and returns its id and
//!   normalised centroid. `L_FICL = Σ_v InfoNCE(z_v, c_v; labels = intent
//!   ids)`, FNM by intent, for both views.
//! - `L = L_rec + λ L_CICL + β L_FICL`; defaults the official Beauty script's
//!   λ = 0.3, β = 0.1, K = 256 (HSUGA's port defaults to 0.1 / 0.1 / 512; the
//!   official values are the method's own, and Fashion/Steam have none).
//! - Inference: the backbone's plain scoring (no clusters, no parameters
//!   of ICSRec's own).
//!
//! Choices that are ours:
//! - The positive view is drawn **uniformly at random** among the other
//!   samples with the same target (HSUGA's port), fresh at every step;
//!   fallback: the sample itself when no other sample has its target. The
//!   official takes the last such sample in file order, fixed for the run.
//! - The trainer's batches are users (each once per epoch): per step, each
//!   batch user contributes `samples_per_user` (default 1) uniformly drawn
//!   training positions as contrastive anchors (each a forward of its
//!   prefix with the model being trained, as is its positive view); the
//!   official iterates over all prefixes as batch rows. The rec loss still
//!   covers every prefix of the window the backbone reads (its last
//!   `max_len + 1` items).
//! - k-means clusters a seeded uniform sample of at most `cluster_points`
//!   (default 20,000) training samples per epoch, `nredo` 1, initialised at
//!   `K` distinct random points drawn from the epoch's stream (the official:
//!   all samples, faiss with `nredo` 5 and a fixed seed 1).
//! - The rec loss' softmax spans items `1..=N` (the project's CE); the
//!   official spans all `N + 2` rows (padding and mask rows as classes).
//! - A masked column is set to `-1e9` (its softmax weight underflows to 0
//!   exactly, as with `-inf`, without `inf` arithmetic in the backward).
//! - With HSU fusion (`method.fusion`, Table 1's ICSRec+HSU) every forward
//!   is fused — the rec pass, both contrastive views and the clustering
//!   pass — each row with **its own** user's semantic vector: view 2, a
//!   prefix of another user, gets that user's vector (HSUGA's repo fuses it
//!   with the anchor's, and skips fusion at evaluation, BASELINES.md §9).

use std::collections::HashMap;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

fn d_lambda() -> f64 {
    0.3 // official scripts/beauty.sh --lambda_0
}
fn d_beta() -> f64 {
    0.1 // official scripts/beauty.sh --beta_0
}
fn d_intents() -> usize {
    256 // official scripts/beauty.sh --intent_num
}
fn d_temperature() -> f64 {
    1.0 // official --temperature
}
fn d_iters() -> usize {
    20 // official KMeans niter
}
fn d_cluster_points() -> usize {
    20_000 // ours: a CPU budget
}
fn d_one() -> usize {
    1 // ours: one contrastive sample per batch user
}

/// ICSRec's `[method.icsrec]` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcsrecConfig {
    /// λ, weight of the coarse intent contrast `L_CICL`.
    #[serde(default = "d_lambda")]
    pub lambda: f64,
    /// β, weight of the fine intent contrast `L_FICL`.
    #[serde(default = "d_beta")]
    pub beta: f64,
    /// K, the number of intents (k-means clusters).
    #[serde(default = "d_intents")]
    pub intents: usize,
    /// T of both InfoNCEs.
    #[serde(default = "d_temperature")]
    pub temperature: f64,
    /// Lloyd iterations per clustering.
    #[serde(default = "d_iters")]
    pub kmeans_iters: usize,
    /// Most training samples clustered per epoch (a seeded uniform sample).
    #[serde(default = "d_cluster_points")]
    pub cluster_points: usize,
    /// Contrastive anchors per batch user per step.
    #[serde(default = "d_one")]
    pub samples_per_user: usize,
}

impl Default for IcsrecConfig {
    fn default() -> Self {
        Self {
            lambda: d_lambda(),
            beta: d_beta(),
            intents: d_intents(),
            temperature: d_temperature(),
            kmeans_iters: d_iters(),
            cluster_points: d_cluster_points(),
            samples_per_user: d_one(),
        }
    }
}

impl IcsrecConfig {
    /// The checks that need no data (the number of training samples is
    /// checked against `intents` when the run starts, [`Samples`]).
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        for (key, v) in [("lambda", self.lambda), ("beta", self.beta)] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!(
                    "method.icsrec.{key} must be a number >= 0, got {v}"
                ));
            }
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "method.icsrec.temperature must be a positive number, got {}",
                self.temperature
            ));
        }
        for (key, v) in [
            ("intents", self.intents),
            ("kmeans_iters", self.kmeans_iters),
            ("cluster_points", self.cluster_points),
            ("samples_per_user", self.samples_per_user),
        ] {
            if v == 0 {
                return bad(format!("method.icsrec.{key} must be at least 1"));
            }
        }
        if self.intents > self.cluster_points {
            return bad(format!(
                "method.icsrec.intents ({}) must not exceed method.icsrec.cluster_points ({}): \
                 k-means needs at least one point per intent",
                self.intents, self.cluster_points
            ));
        }
        Ok(())
    }
}

/// A training sample: user `u`'s prefix `train[u][..t]` predicting
/// `train[u][t]`.
pub type Sample = (usize, usize);

/// Every training prefix of every user, and the samples of each target.
#[derive(Debug, Clone)]
pub struct Samples {
    /// `offsets[u]` = the flat index of user `u`'s first sample.
    offsets: Vec<usize>,
    /// Target item → its samples, in user then position order.
    by_target: HashMap<u32, Vec<Sample>>,
    total: usize,
}

impl Samples {
    /// From each user's training sequence (training parts only).
    pub fn new(train: &[Vec<u32>]) -> Self {
        let mut offsets = Vec::with_capacity(train.len() + 1);
        let mut by_target: HashMap<u32, Vec<Sample>> = HashMap::new();
        let mut total = 0;
        for (u, s) in train.iter().enumerate() {
            offsets.push(total);
            for (t, &y) in s.iter().enumerate().skip(1) {
                by_target.entry(y).or_default().push((u, t));
            }
            total += s.len().saturating_sub(1);
        }
        offsets.push(total);
        Self {
            offsets,
            by_target,
            total,
        }
    }

    /// How many training samples there are.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The sample at a flat index `0..len()`.
    pub fn at(&self, i: usize) -> Sample {
        let u = self.offsets.partition_point(|&o| o <= i) - 1;
        (u, i - self.offsets[u] + 1)
    }

    /// The samples whose target is `item`.
    pub fn with_target(&self, item: u32) -> &[Sample] {
        self.by_target.get(&item).map_or(&[], Vec::as_slice)
    }

    /// The positive view of `me` (target `y`): uniform among the other
    /// samples with target `y`, else `me` itself.
    pub fn positive<R: Rng>(&self, me: Sample, y: u32, rng: &mut R) -> Sample {
        let group = self.with_target(y);
        if group.len() < 2 {
            return me;
        }
        let k = rng.random_range(0..group.len() - 1);
        match group.iter().position(|&s| s == me) {
            Some(p) if k >= p => group[k + 1],
            Some(_) => group[k],
            // `me` is not a training sample of `y`: any of the group.
            None => group[rng.random_range(0..group.len())],
        }
    }
}

/// Masked logit (see the header).
const MASKED: f32 = -1e9;

/// Each row's InfoNCE with false-negative masking (`[2B, 1]`, rows of `z1`
/// then of `z2`): `-log softmax([S[i, pos(i)] | S[i, ·] masked])_0` where
/// `S = [z1; z2][z1; z2]ᵀ / T` and every column whose label equals row
/// `i`'s is masked out of the negatives.
///
/// # Shapes
/// - `z1`, `z2`: `[B, D]`; `labels`: `B` labels shared by `z1[i]` and
///   `z2[i]`
pub fn info_nce_fnm_rows(z1: Tensor<2>, z2: Tensor<2>, labels: &[u32], t: f64) -> Tensor<2> {
    let [b, _] = z1.dims();
    assert_eq!(labels.len(), b, "one label per row");
    let device = z1.device();
    let pos = (z1.clone() * z2.clone()).sum_dim(1).div_scalar(t); // [B, 1]
    let z = Tensor::cat(vec![z1, z2], 0); // [2B, D]
    let s = z.clone().matmul(z.transpose()).div_scalar(t); // [2B, 2B]
    let n = 2 * b;
    let label = |i: usize| labels[i % b];
    let same: Vec<bool> = (0..n * n).map(|k| label(k / n) == label(k % n)).collect();
    let mask = Tensor::<2, Bool>::from_data(TensorData::new(same, [n, n]), &device);
    let logits = Tensor::cat(
        vec![
            Tensor::cat(vec![pos.clone(), pos], 0),
            s.mask_fill(mask, MASKED),
        ],
        1,
    ); // [2B, 1 + 2B]
    log_softmax(logits, 1).narrow(1, 0, 1).neg()
}

/// [`info_nce_fnm_rows`] averaged over the `2B` rows (`[1]`; PyTorch's
/// `CrossEntropyLoss` mean).
pub fn info_nce_fnm(z1: Tensor<2>, z2: Tensor<2>, labels: &[u32], t: f64) -> Tensor<1> {
    info_nce_fnm_rows(z1, z2, labels, t).mean()
}

/// faiss's perturbation when an empty cluster takes half of another.
const SPLIT_EPS: f32 = 1.0 / 1024.0;

/// k-means centroids: the raw ones that queries search, and their
/// L2-normalised rows that the fine contrast reads.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    pub k: usize,
    pub dim: usize,
    /// Row-major `k × dim` (unnormalised).
    pub centroids: Vec<f32>,
    /// Row-major `k × dim`, each row L2-normalised (eps 1e-12).
    pub normalised: Vec<f32>,
}

impl KMeans {
    /// Lloyd's algorithm on `n = points.len() / dim` points: `k` distinct
    /// random points to start, then `iters` rounds of nearest-centroid
    /// assignment (L2) and mean update, an empty cluster taking half of a
    /// non-empty one as faiss does. Deterministic for the stream. The
    /// distances run on `device` (one `[n, d] × [d, k]` product per round).
    ///
    /// # Panics
    /// When there are fewer points than clusters, or `k`/`dim` is 0.
    pub fn train<R: Rng>(
        points: &[f32],
        dim: usize,
        k: usize,
        iters: usize,
        rng: &mut R,
        device: &Device,
    ) -> Self {
        assert!(dim > 0 && k > 0 && points.len().is_multiple_of(dim));
        let n = points.len() / dim;
        assert!(n >= k, "k-means of {n} points into {k} clusters");
        let x = Tensor::<2>::from_data(TensorData::new(points.to_vec(), [n, dim]), device);
        let mut c: Vec<f32> = rand::seq::index::sample(rng, n, k)
            .into_iter()
            .flat_map(|i| points[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        for _ in 0..iters {
            let assign = nearest_tensor(x.clone(), &c, k, dim, device);
            let mut sums = vec![0f64; k * dim];
            let mut size = vec![0usize; k];
            for (i, &a) in assign.iter().enumerate() {
                size[a] += 1;
                for (s, &v) in sums[a * dim..(a + 1) * dim]
                    .iter_mut()
                    .zip(&points[i * dim..(i + 1) * dim])
                {
                    *s += v as f64;
                }
            }
            for j in 0..k {
                if size[j] > 0 {
                    for (cv, s) in c[j * dim..(j + 1) * dim]
                        .iter_mut()
                        .zip(&sums[j * dim..(j + 1) * dim])
                    {
                        *cv = (*s / size[j] as f64) as f32;
                    }
                }
            }
            split_empty(&mut c, &mut size, n, dim, rng);
        }
        let normalised = c
            .chunks(dim)
            .flat_map(|r| {
                let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                r.iter().map(move |v| v / norm)
            })
            .collect();
        Self {
            k,
            dim,
            centroids: c,
            normalised,
        }
    }

    /// Each row's nearest centroid by L2 on the unnormalised centroids.
    pub fn assign(&self, points: &[f32], device: &Device) -> Vec<usize> {
        let n = points.len() / self.dim;
        let x = Tensor::<2>::from_data(TensorData::new(points.to_vec(), [n, self.dim]), device);
        nearest_tensor(x, &self.centroids, self.k, self.dim, device)
    }

    /// The normalised centroids of the given intents as `[B, dim]`.
    pub fn normalised_rows(&self, ids: &[usize], device: &Device) -> Tensor<2> {
        let rows: Vec<f32> = ids
            .iter()
            .flat_map(|&j| {
                self.normalised[j * self.dim..(j + 1) * self.dim]
                    .iter()
                    .copied()
            })
            .collect();
        Tensor::from_data(TensorData::new(rows, [ids.len(), self.dim]), device)
    }
}

/// Nearest centroid of each row of `x` (`[n, d]`): argmin of `‖c‖² − 2 x·c`
/// (`‖x‖²` is the same for every centroid), the first on ties.
fn nearest_tensor(x: Tensor<2>, c: &[f32], k: usize, dim: usize, device: &Device) -> Vec<usize> {
    let ct = Tensor::<2>::from_data(TensorData::new(c.to_vec(), [k, dim]), device);
    let c2 = ct.clone().powf_scalar(2.0).sum_dim(1).reshape([1, k]);
    let [n, _] = x.dims();
    let d = c2.expand([n, k]) - x.matmul(ct.transpose()).mul_scalar(2.0);
    d.argmin(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("int tensor converts to i64")
        .into_iter()
        .map(|j| j as usize)
        .collect()
}

/// faiss `split_clusters`: each empty cluster copies a cluster `j` drawn
/// with probability `(size_j − 1) / (n − k)` (scanning cyclically), both
/// perturbed symmetrically by [`SPLIT_EPS`], and takes half its points.
fn split_empty<R: Rng>(c: &mut [f32], size: &mut [usize], n: usize, dim: usize, rng: &mut R) {
    let k = size.len();
    if n <= k {
        return;
    }
    for ci in 0..k {
        if size[ci] != 0 {
            continue;
        }
        let mut cj = 0;
        loop {
            let p = (size[cj] as f64 - 1.0) / (n - k) as f64;
            if rng.random::<f64>() < p {
                break;
            }
            cj = (cj + 1) % k;
        }
        let src: Vec<f32> = c[cj * dim..(cj + 1) * dim].to_vec();
        for (j, &v) in src.iter().enumerate() {
            let (a, b) = if j % 2 == 0 {
                (1.0 + SPLIT_EPS, 1.0 - SPLIT_EPS)
            } else {
                (1.0 - SPLIT_EPS, 1.0 + SPLIT_EPS)
            };
            c[ci * dim + j] = v * a;
            c[cj * dim + j] = v * b;
        }
        size[ci] = size[cj] / 2;
        size[cj] -= size[ci];
    }
}
