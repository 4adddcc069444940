//! GRU4Rec (Hidasi et al., ICLR 2016) as a next-item sequence model: item
//! embedding → dropout → one GRU layer; the state at each position is that
//! position's representation.
//!
//! Batches are left-padded ([`crate::batch`]), so the GRU must not read the
//! padding: a padded position carries the previous state through unchanged
//! (`h_t = keep_t · gru(x_t, h_{t−1}) + (1 − keep_t) · h_{t−1}`, `h_0 = 0`).
//! Every row therefore starts its first real item from the zero state, and
//! its states at real positions are those of the unpadded row, whatever the
//! longest history in the batch. (Reading the padding as zero inputs, as
//! `burn::nn::Gru::forward` would, moves the state before the first item, so
//! a user's scores depended on the other users in its evaluation chunk.)
//!
//! The recurrence is written here rather than calling `Gru::forward`, which
//! has no mask. The parameters stay in burn's [`Gru`] module (the same record
//! as before), and the step is cheaper than burn's: the input projections of
//! all positions are computed before the loop, and the states are stacked
//! once at the end instead of written into a `[B, T, H]` buffer per step.
//!
//! Deviation: trained with the same per-position sampled loss as SASRec
//! (as in the LLM-ESR code) rather than GRU4Rec's session-parallel
//! mini-batches with in-batch negatives.

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Gru, GruConfig, Initializer, Linear};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::batch::{Examples, Reading, SeqBatch, next_item_examples};
use crate::config::ModelConfig;
use crate::dropout::FastDropout;
use crate::error::ModelError;
use crate::recommender::SequenceEncoder;

/// GRU4Rec's own `[model]` keys (it has one GRU layer and no attention of
/// its own; `heads` serves the dual view's cross-attention).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gru4recConfig {
    /// Supervise just the last item of each training sequence (one target
    /// per user and epoch) instead of every next item. The LLM-ESR code
    /// trains GRU4Rec this way (its `SeqDataset` without `--aug`); on for
    /// that parity row, off by default.
    #[serde(default)]
    pub last_target_only: bool,
}

impl Gru4recConfig {
    pub fn validate(&self, _shared: &ModelConfig) -> Result<(), ModelError> {
        Ok(())
    }
}

impl Reading for Gru4recConfig {
    /// The recurrence is causal by construction; the mask only matters to
    /// the dual view's cross-attention.
    fn causal(&self) -> bool {
        true
    }
    fn examples(
        &self,
        seqs: &[&[u32]],
        max_len: usize,
        _num_items: u32,
        _rng: &mut dyn RngCore,
    ) -> Examples {
        next_item_examples(seqs, max_len, self.last_target_only)
    }
}

#[derive(Module, Debug)]
pub struct Gru4rec {
    pub items: Embedding,
    dropout: FastDropout,
    /// Parameters only: the recurrence is [`Gru4rec::scan`]. PyTorch's GRU
    /// (reset gate applied after the hidden product), sigmoid gates, tanh
    /// candidate, no clipping.
    gru: Gru,
}

impl Gru4rec {
    pub fn new(cfg: &ModelConfig, _own: &Gru4recConfig, num_items: u32, device: &Device) -> Self {
        let n = num_items as usize + 1;
        let h = cfg.hidden;
        Self {
            items: EmbeddingConfig::new(n, h)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: (2.0 / (n + h) as f64).sqrt(),
                })
                .init(device),
            dropout: FastDropout::new(cfg.dropout),
            gru: GruConfig::new(h, h, true).init(device),
        }
    }

    /// Runs the masked recurrence, hands each position's state to `emit` in
    /// order and returns the last one.
    ///
    /// With `z`, `r`, `n` the update, reset and candidate gates:
    /// `z = σ(W_z x + b_z + U_z h + c_z)`, `r = σ(W_r x + b_r + U_r h + c_r)`,
    /// `n = tanh(W_n x + b_n + r ⊙ (U_n h + c_n))`, `h' = (1 − z) ⊙ n + z ⊙ h`
    /// (burn's and PyTorch's GRU), then the padding mask above.
    ///
    /// Speed: the input projections of all positions are computed up front
    /// (one product per gate, `c_z` and `c_r` folded into them), time-major
    /// so that each step's slice is contiguous; on burn's CPU backend an
    /// element-wise op on a strided view takes a slow path.
    fn scan(
        &self,
        items: Tensor<3>,
        batch: &SeqBatch,
        mut emit: impl FnMut(Tensor<2>),
    ) -> Tensor<2> {
        let [b, t, _] = items.dims();
        let h = self.gru.d_hidden;
        let x = self.dropout.forward(items * batch.keep.clone());
        // [T·B, H], time-major.
        let x = x.swap_dims(0, 1).reshape([t * b, h]);
        let (z, r, n) = (
            &self.gru.update_gate,
            &self.gru.reset_gate,
            &self.gru.new_gate,
        );
        let bias = |l: &Linear| l.bias.as_ref().map(|p| p.val());
        // [T, B, H] per gate, each as one step per position.
        let project = |g: &burn::nn::GateController, fold_hidden_bias: bool| {
            let mut p = x.clone().matmul(g.input_transform.weight.val());
            let hidden_bias = bias(&g.hidden_transform).filter(|_| fold_hidden_bias);
            for c in bias(&g.input_transform).into_iter().chain(hidden_bias) {
                p = p + c.unsqueeze();
            }
            steps(p.reshape([t, b, h]))
        };
        let (xz, xr, xn) = (project(z, true), project(r, true), project(n, false));
        let (uz, ur, un) = (
            z.hidden_transform.weight.val(),
            r.hidden_transform.weight.val(),
            n.hidden_transform.weight.val(),
        );
        let cn = bias(&n.hidden_transform).map(|c| c.unsqueeze::<2>());
        // Columns before `padded` hold padding in some row; from there on
        // every row is real and the mask would be a no-op.
        let padded = batch.padded_steps.min(t);
        let keep: Vec<(Tensor<2>, Tensor<2>)> = if padded > 0 {
            let k = batch.keep.clone().narrow(1, 0, padded).swap_dims(0, 1); // [P, B, 1]
            let k = k.reshape([padded, b, 1]);
            let skip = k.clone().neg().add_scalar(1.0);
            (0..padded)
                .map(|s| {
                    let at = |m: &Tensor<3>| m.clone().narrow(0, s, 1).reshape([b, 1]);
                    (at(&k), at(&skip))
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut state: Tensor<2> = Tensor::zeros([b, h], &x.device());
        for (s, ((xz, xr), xn)) in xz.into_iter().zip(xr).zip(xn).enumerate() {
            let zt = sigmoid(xz + state.clone().matmul(uz.clone()));
            let rt = sigmoid(xr + state.clone().matmul(ur.clone()));
            let hn = state.clone().matmul(un.clone());
            let hn = match &cn {
                Some(c) => hn + c.clone(),
                None => hn,
            };
            let nt = (xn + rt * hn).tanh();
            // (1 − z) n + z h, with one product fewer.
            let next = nt.clone() + zt * (state.clone() - nt);
            state = match keep.get(s) {
                // Exact on 0/1 weights: a real row gets `next`, a padded
                // row keeps `state` (both finite).
                Some((k, skip)) => next * k.clone() + state * skip.clone(),
                None => next,
            };
            emit(state.clone());
        }
        state
    }
}

impl SequenceEncoder for Gru4rec {
    fn encode(&self, batch: &SeqBatch) -> Tensor<3> {
        self.encode_embedded(self.items.forward(batch.items.clone()), batch)
    }

    /// The state after each row's last item (the last position).
    fn encode_last(&self, batch: &SeqBatch) -> Tensor<2> {
        self.encode_embedded_last(self.items.forward(batch.items.clone()), batch)
    }

    fn encode_embedded(&self, items: Tensor<3>, batch: &SeqBatch) -> Tensor<3> {
        let mut states = Vec::with_capacity(batch.len);
        self.scan(items, batch, |h| states.push(h));
        Tensor::stack(states, 1)
    }

    /// The last position only, without stacking the other states.
    fn encode_embedded_last(&self, items: Tensor<3>, batch: &SeqBatch) -> Tensor<2> {
        self.scan(items, batch, |_| {})
    }

    /// `[N + 1, H]`
    fn item_table(&self) -> Tensor<2> {
        self.items.weight.val()
    }

    fn item_weight_mut(&mut self) -> &mut Param<Tensor<2>> {
        &mut self.items.weight
    }
}

/// `[T, B, D]` as `T` tensors `[B, D]`, one per position.
///
/// The backward pass of a slice writes its gradient into zeros of the whole
/// input's shape, so slicing `T` steps straight out of `[T, B, D]` costs
/// `T` full-size buffers (quadratic in `T`; the larger part of a step at
/// length 200). Slicing first into about `√T` blocks and then each block
/// into its steps costs about `2√T` full-size buffers instead.
fn steps(x: Tensor<3>) -> Vec<Tensor<2>> {
    let [t, b, d] = x.dims();
    let block = t.isqrt().max(1);
    let mut out = Vec::with_capacity(t);
    for start in (0..t).step_by(block) {
        let len = block.min(t - start);
        let chunk = x.clone().narrow(0, start, len);
        for k in 0..len {
            out.push(chunk.clone().narrow(0, k, 1).reshape([b, d]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batcher;
    use crate::recommender::SequenceEncoder;
    use crate::registry::Backbone;

    /// On rows without padding the masked recurrence is burn's GRU: the cell
    /// written here is the one the parameters were made for.
    #[test]
    fn the_recurrence_equals_burns_gru_on_unpadded_rows() {
        let dev = crate::cpu();
        dev.seed(7);
        let cfg = ModelConfig {
            hidden: 8,
            max_len: 6,
            dropout: 0.0,
            ..ModelConfig::from(Backbone::Gru4rec)
        };
        let m = Gru4rec::new(&cfg, &Gru4recConfig::default(), 20, &dev);
        let batch = Batcher::new(&cfg, 20, &dev).seq_batch(&[&[1, 2, 3, 4, 5], &[6, 7, 8, 9, 20]]);
        let x = m.items.forward(batch.items.clone());
        let want = crate::to_f32(m.gru.forward(x.clone(), None));
        let got = crate::to_f32(m.encode_embedded(x, &batch));
        assert_eq!(want.len(), got.len());
        let worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "differs from burn's GRU by {worst}");
    }
}
