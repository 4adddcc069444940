//! Turning item histories into device tensors.
//!
//! Batches are left-padded to the longest history *in the batch* (not to
//! `max_len`), so short-sequence datasets do no padding work. Positions are
//! counted so that the last item always sits at position `max_len`, exactly
//! as if the batch were padded to `max_len`; padded keys are masked out of
//! attention, and GRU4Rec carries its state unchanged through padding, so a
//! user's output does not depend on what else is in the batch.

use std::cell::RefCell;
use std::collections::HashMap;

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, RngCore};

use crate::config::ModelConfig;

/// Additive attention bias for masked positions; finite so that fully
/// masked rows (padding queries) stay NaN-free.
pub const MASKED: f32 = -1e9;

/// How a backbone reads histories: the data side of the model contract,
/// implemented by each backbone's settings in its model's file, so that a
/// backbone's masking or target choice lives with the backbone.
pub trait Reading {
    /// Each position attends to itself and earlier positions only.
    fn causal(&self) -> bool;
    /// Pad every batch to `max_len` and let queries attend to the padding
    /// (SASRec.pytorch's and LLM-ESR's behaviour; see the backbone's flag).
    fn attend_padding(&self) -> bool {
        false
    }
    /// Token ids past the catalogue (BERT4Rec's mask token is `N + 1`).
    fn extra_tokens(&self) -> usize {
        0
    }
    /// The shortest training sequence that yields a supervised position
    /// (a next-item model needs an input and a target).
    fn min_train_len(&self) -> usize {
        2
    }
    /// The input row that predicts the item after `history` (evaluation,
    /// serving), at most `max_len` long: a next-item model reads the last
    /// `max_len` items.
    fn eval_row(&self, history: &[u32], max_len: usize, _num_items: u32) -> Vec<u32> {
        tail(history, max_len).to_vec()
    }
    /// Training input rows and their supervised positions from training
    /// sequences (each may be longer than `max_len`).
    fn examples(
        &self,
        seqs: &[&[u32]],
        max_len: usize,
        num_items: u32,
        rng: &mut dyn RngCore,
    ) -> Examples;
}

/// Training rows and what they supervise.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Examples {
    /// One input row per sequence, at most `max_len` long.
    pub inputs: Vec<Vec<u32>>,
    /// `(row, slot counted from the row's first item, target item)`.
    pub supervised: Vec<(usize, usize, u32)>,
}

/// Next-item examples (SASRec, GRU4Rec): input = the sequence without its
/// last item, target at each position = the next item, or at the last
/// position only with `last_target_only`.
pub fn next_item_examples(seqs: &[&[u32]], max_len: usize, last_target_only: bool) -> Examples {
    let mut ex = Examples::default();
    for (r, s) in seqs.iter().enumerate() {
        let s = tail(s, max_len + 1);
        let input = &s[..s.len().saturating_sub(1)];
        let first = if last_target_only {
            input.len().saturating_sub(1)
        } else {
            0
        };
        for (k, &target) in s.iter().enumerate().skip(1 + first) {
            ex.supervised.push((r, k - 1, target));
        }
        ex.inputs.push(input.to_vec());
    }
    ex
}

/// Encoder input: `[B, T]` item ids (0 = padding) with what attention needs.
#[derive(Debug, Clone)]
pub struct SeqBatch {
    /// `[B, T]` item ids, left-padded with 0.
    pub items: Tensor<2, Int>,
    /// `[B, T]` learned-position ids, 0 on padding.
    pub positions: Tensor<2, Int>,
    /// `[B, T, 1]` 1.0 on real items, 0.0 on padding.
    pub keep: Tensor<3>,
    /// `[B, T, T]` additive attention bias: padded keys and (when causal)
    /// future keys get [`MASKED`].
    pub attn_bias: Tensor<3>,
    pub batch: usize,
    pub len: usize,
    /// The leading columns in which some row is padding (`len` minus the
    /// shortest row): GRU4Rec masks its state update there and nowhere else.
    pub padded_steps: usize,
    /// `[B, S]` each row's user semantic embedding, for models that fuse it
    /// (HSU alone); set by the caller, who knows which user a row is.
    pub user_semantic: Option<Tensor<2>>,
}

impl SeqBatch {
    /// The batch twice over (`[2B, …]`): LLM-ESR runs both views through the
    /// one shared backbone in a single call, which halves per-op overhead on
    /// the small tensors of short-sequence data.
    pub fn doubled(&self) -> SeqBatch {
        let two = |t: &Tensor<3>| Tensor::cat(vec![t.clone(), t.clone()], 0);
        SeqBatch {
            items: Tensor::cat(vec![self.items.clone(), self.items.clone()], 0),
            positions: Tensor::cat(vec![self.positions.clone(), self.positions.clone()], 0),
            keep: two(&self.keep),
            attn_bias: two(&self
                .attn_bias
                .clone()
                .expand([self.batch, self.len, self.len])),
            batch: 2 * self.batch,
            len: self.len,
            padded_steps: self.padded_steps,
            user_semantic: None,
        }
    }
}

/// A training batch: encoder input plus, for each supervised position, the
/// target and one sampled negative.
#[derive(Debug, Clone)]
pub struct TrainBatch {
    pub input: SeqBatch,
    /// `[M]` flat indices `b * T + t` of the supervised positions.
    pub rows: Tensor<1, Int>,
    /// `[M]` target item per supervised position.
    pub targets: Tensor<1, Int>,
    /// `[M]` sampled negative per supervised position (BCE, BPR).
    pub negatives: Tensor<1, Int>,
    /// Number of supervised positions.
    pub count: usize,
}

/// Builds batches on one device and caches the constant causal masks per
/// length, so a training step allocates no mask it has built before.
#[derive(Debug)]
pub struct Batcher {
    pub device: Device,
    cfg: ModelConfig,
    num_items: u32,
    causal_cache: RefCell<HashMap<usize, Tensor<3>>>,
}

impl Batcher {
    pub fn new(cfg: &ModelConfig, num_items: u32, device: &Device) -> Self {
        Self {
            device: device.clone(),
            cfg: cfg.clone(),
            num_items,
            causal_cache: RefCell::new(HashMap::new()),
        }
    }

    pub fn max_len(&self) -> usize {
        self.cfg.max_len
    }

    fn reading(&self) -> &dyn Reading {
        self.cfg.backbone.reading()
    }

    /// `[1, T, T]`: 0 on and below the diagonal, [`MASKED`] above it.
    fn causal_bias(&self, t: usize) -> Tensor<3> {
        self.causal_cache
            .borrow_mut()
            .entry(t)
            .or_insert_with(|| {
                let mut v = vec![0f32; t * t];
                for q in 0..t {
                    for k in q + 1..t {
                        v[q * t + k] = MASKED;
                    }
                }
                Tensor::from_data(TensorData::new(v, [1, t, t]), &self.device)
            })
            .clone()
    }

    /// Encoder input from already-truncated rows (each at most `max_len`).
    pub fn seq_batch(&self, rows: &[&[u32]]) -> SeqBatch {
        let b = rows.len();
        let max_len = self.cfg.max_len;
        let attend_padding = self.reading().attend_padding();
        let longest = rows.iter().map(|r| r.len()).max().unwrap_or(1).max(1);
        let shortest = rows.iter().map(|r| r.len()).min().unwrap_or(0);
        let t = if attend_padding {
            max_len.max(longest)
        } else {
            longest
        };
        let mut items = vec![0i64; b * t];
        let mut pos = vec![0i64; b * t];
        let mut keep = vec![0f32; b * t];
        let mut pad = vec![0f32; b * t];
        for (r, row) in rows.iter().enumerate() {
            debug_assert!(row.len() <= max_len);
            let off = t - row.len();
            for s in 0..t {
                let i = r * t + s;
                if s >= off {
                    items[i] = row[s - off] as i64;
                    // Last slot -> max_len, as if padded to max_len.
                    pos[i] = (max_len + s + 1 - t) as i64;
                    keep[i] = 1.0;
                } else if !attend_padding {
                    pad[i] = MASKED;
                }
            }
        }
        let dev = &self.device;
        let pad = Tensor::<3>::from_data(TensorData::new(pad, [b, 1, t]), dev);
        let attn_bias = if self.reading().causal() {
            pad + self.causal_bias(t)
        } else {
            pad.expand([b, t, t])
        };
        SeqBatch {
            items: Tensor::from_data(TensorData::new(items, [b, t]), dev),
            positions: Tensor::from_data(TensorData::new(pos, [b, t]), dev),
            keep: Tensor::from_data(TensorData::new(keep, [b, t, 1]), dev),
            attn_bias,
            batch: b,
            len: t,
            padded_steps: t - shortest,
            user_semantic: None,
        }
    }

    /// Input for scoring the item that follows each history (evaluation,
    /// serving), as the backbone reads it ([`Reading::eval_row`]).
    pub fn eval_batch(&self, histories: &[&[u32]]) -> SeqBatch {
        let r = self.reading();
        let rows: Vec<Vec<u32>> = histories
            .iter()
            .map(|h| r.eval_row(h, self.cfg.max_len, self.num_items))
            .collect();
        let refs: Vec<&[u32]> = rows.iter().map(|r| r.as_slice()).collect();
        self.seq_batch(&refs)
    }

    /// A training batch from training sequences, with the examples the
    /// backbone chooses ([`Reading::examples`]) and one sampled negative per
    /// supervised position. `seen(b, item)` says whether row `b`'s user
    /// interacted with `item` (negatives avoid those).
    pub fn train_batch<R: Rng>(
        &self,
        seqs: &[&[u32]],
        seen: impl Fn(usize, u32) -> bool,
        rng: &mut R,
    ) -> TrainBatch {
        let n = self.num_items;
        let Examples {
            inputs,
            supervised: sup,
        } = self
            .reading()
            .examples(seqs, self.cfg.max_len, n, rng as &mut dyn RngCore);
        let refs: Vec<&[u32]> = inputs.iter().map(|r| r.as_slice()).collect();
        let input = self.seq_batch(&refs);
        let t = input.len;
        let mut rows = Vec::with_capacity(sup.len());
        let mut targets = Vec::with_capacity(sup.len());
        let mut negatives = Vec::with_capacity(sup.len());
        for &(r, k, target) in &sup {
            let off = t - inputs[r].len();
            rows.push((r * t + off + k) as i64);
            targets.push(target as i64);
            negatives.push(sample_negative(n, |i| seen(r, i), rng) as i64);
        }
        let m = rows.len();
        let dev = &self.device;
        TrainBatch {
            input,
            rows: Tensor::from_data(TensorData::new(rows, [m]), dev),
            targets: Tensor::from_data(TensorData::new(targets, [m]), dev),
            negatives: Tensor::from_data(TensorData::new(negatives, [m]), dev),
            count: m,
        }
    }
}

/// The last `n` items of a history.
pub fn tail(s: &[u32], n: usize) -> &[u32] {
    &s[s.len().saturating_sub(n)..]
}

/// A uniform item in `1..=n` that `seen` rejects not; gives up after many
/// tries (a user who has seen nearly everything) and returns any item.
pub fn sample_negative<R: Rng>(n: u32, seen: impl Fn(u32) -> bool, rng: &mut R) -> u32 {
    let mut i = rng.random_range(1..=n);
    for _ in 0..100 {
        if !seen(i) {
            return i;
        }
        i = rng.random_range(1..=n);
    }
    i
}
