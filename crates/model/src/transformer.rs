//! The transformer block shared by SASRec and BERT4Rec, written as in
//! SASRec.pytorch / LLM-ESR: `Q = LN(x)`, `x = Q + MHA(Q, x, x)`,
//! `x = LN(x)`, `x = x + FFN(x)`, padding zeroed after every block. The
//! point-wise FFN keeps the hidden size (two `hidden × hidden` layers with
//! ReLU), as those codes do.

use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Device, Tensor};

use crate::batch::SeqBatch;
use crate::config::ModelConfig;
use crate::dropout::FastDropout;
use crate::recommender::SequenceEncoder;

pub(crate) fn linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::XavierNormal { gain: 1.0 })
        .init(device)
}

/// `layer` over the last dimension of `[B, T, D]` as one `[B·T, D]` matrix
/// product. burn's `Linear` on a 3-d input broadcasts the weight into B
/// small batched products (128 × [50×64]·[64×64] in a SASRec step), which
/// `perf` showed taking half of the step.
///
/// # Shapes
/// - `x`: `[B, T, D_in]` → `[B, T, D_out]`
pub(crate) fn linear_rows(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, t, d] = x.dims();
    let y = layer.forward(x.reshape([b * t, d]));
    let d_out = y.dims()[1];
    y.reshape([b, t, d_out])
}

/// Multi-head attention with separate query input (already normalised) and
/// key/value input, dropout on the attention weights.
#[derive(Module, Debug)]
pub struct Attention {
    query: Linear,
    /// Keys and values in one `hidden × 2·hidden` product.
    key_value: Linear,
    out: Linear,
    dropout: FastDropout,
    heads: usize,
}

impl Attention {
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let h = cfg.hidden;
        Self {
            query: linear(h, h, device),
            key_value: linear(h, 2 * h, device),
            out: linear(h, h, device),
            dropout: FastDropout::new(cfg.dropout),
            heads: cfg.heads,
        }
    }

    /// # Shapes
    /// - `q_in`: `[B, Tq, H]`; `kv_in`: `[B, T, H]`; `bias`: `[B, Tq, T]`
    /// - output: `[B, Tq, H]`
    pub fn forward(&self, q_in: Tensor<3>, kv_in: Tensor<3>, bias: Tensor<3>) -> Tensor<3> {
        let [b, t, h] = q_in.dims();
        let heads = self.heads;
        let dh = h / heads;
        let scale = 1.0 / (dh as f64).sqrt();
        let q = linear_rows(&self.query, q_in).mul_scalar(scale); // [B, T, H]
        let kv = linear_rows(&self.key_value, kv_in); // [B, T, 2H]
        let k = kv.clone().narrow(2, 0, h);
        let v = kv.narrow(2, h, h);
        let ctx = if heads == 1 {
            let scores = q.matmul(k.swap_dims(1, 2)) + bias; // [B, Tq, T]
            let w = self.dropout.forward(softmax(scores, 2));
            w.matmul(v) // [B, Tq, H]
        } else {
            // Queries may be fewer than keys (the last position only).
            let split = |x: Tensor<3>| {
                let [_, tx, _] = x.dims();
                x.reshape([b, tx, heads, dh]).swap_dims(1, 2) // [B, h, Tx, dh]
            };
            let scores = split(q).matmul(split(k).swap_dims(2, 3)) + bias.unsqueeze_dim::<4>(1);
            let w = self.dropout.forward(softmax(scores, 3));
            w.matmul(split(v)).swap_dims(1, 2).reshape([b, t, h])
        };
        linear_rows(&self.out, ctx)
    }
}

#[derive(Module, Debug)]
pub struct Block {
    attn_norm: LayerNorm,
    attn: Attention,
    ffn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    dropout: FastDropout,
}

impl Block {
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let h = cfg.hidden;
        let ln = || {
            LayerNormConfig::new(h)
                .with_epsilon(cfg.layer_norm_eps)
                .init(device)
        };
        Self {
            attn_norm: ln(),
            attn: Attention::new(cfg, device),
            ffn_norm: ln(),
            ffn_in: linear(h, h, device),
            ffn_out: linear(h, h, device),
            dropout: FastDropout::new(cfg.dropout),
        }
    }

    /// # Shapes
    /// - `x`: `[B, T, H]` → `[B, T, H]`
    pub fn forward(&self, x: Tensor<3>, batch: &SeqBatch) -> Tensor<3> {
        let q = self.attn_norm.forward(x.clone());
        let x = q.clone() + self.attn.forward(q, x, batch.attn_bias.clone());
        self.feed_forward(x) * batch.keep.clone()
    }

    /// The block's output at the last position only: every position still
    /// serves as a key, but one query replaces T (normalisation, the
    /// feed-forward and the residuals are per position). The last slot of a
    /// left-padded batch is always a real item, so no padding mask applies.
    ///
    /// # Shapes
    /// - `x`: `[B, T, H]` → `[B, 1, H]`
    pub fn forward_last(&self, x: Tensor<3>, batch: &SeqBatch) -> Tensor<3> {
        let [_, t, _] = x.dims();
        let q = self.attn_norm.forward(x.clone().narrow(1, t - 1, 1));
        let bias = batch.attn_bias.clone().narrow(1, t - 1, 1);
        let x = q.clone() + self.attn.forward(q, x, bias);
        self.feed_forward(x)
    }

    fn feed_forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.ffn_norm.forward(x);
        let f = self
            .dropout
            .forward(relu(linear_rows(&self.ffn_in, x.clone())));
        x + self.dropout.forward(linear_rows(&self.ffn_out, f))
    }
}

/// Item + learned position embeddings, the shared front of both transformers.
#[derive(Module, Debug)]
pub struct Transformer {
    pub items: burn::nn::Embedding,
    positions: burn::nn::Embedding,
    dropout: FastDropout,
    blocks: Vec<Block>,
    last_norm: LayerNorm,
    scale: f64,
}

impl Transformer {
    /// `vocab` = number of item ids including padding (and any mask token).
    pub fn new(cfg: &ModelConfig, layers: usize, vocab: usize, device: &Device) -> Self {
        let h = cfg.hidden;
        // Xavier-normal over the table, as SASRec.pytorch initialises it.
        let emb = |n: usize| {
            burn::nn::EmbeddingConfig::new(n, h)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: (2.0 / (n + h) as f64).sqrt(),
                })
                .init(device)
        };
        Self {
            items: emb(vocab),
            positions: emb(cfg.max_len + 1),
            dropout: FastDropout::new(cfg.dropout),
            blocks: (0..layers).map(|_| Block::new(cfg, device)).collect(),
            last_norm: LayerNormConfig::new(h)
                .with_epsilon(cfg.layer_norm_eps)
                .init(device),
            scale: (h as f64).sqrt(),
        }
    }

    /// # Shapes
    /// - output: `[B, T, H]`
    pub fn forward(&self, batch: &SeqBatch) -> Tensor<3> {
        self.forward_embedded(self.items.forward(batch.items.clone()), batch)
    }

    /// The encoder over item vectors looked up elsewhere (LLM-ESR's semantic
    /// view feeds adapted text embeddings through the same blocks).
    ///
    /// # Shapes
    /// - `items`: `[B, T, H]` (unscaled item vectors); output: `[B, T, H]`
    pub fn forward_embedded(&self, items: Tensor<3>, batch: &SeqBatch) -> Tensor<3> {
        let mut x = self.embed(items, batch);
        for block in &self.blocks {
            x = block.forward(x, batch);
        }
        self.last_norm.forward(x)
    }

    /// [`Self::forward_embedded`] at the last position only: the final block
    /// runs one query instead of T, which is all that scoring and the
    /// self-distillation teacher read.
    ///
    /// # Shapes
    /// - `items`: `[B, T, H]`; output: `[B, H]`
    pub fn forward_embedded_last(&self, items: Tensor<3>, batch: &SeqBatch) -> Tensor<2> {
        let mut x = self.embed(items, batch);
        let (last, rest) = self.blocks.split_last().expect("at least one layer");
        for block in rest {
            x = block.forward(x, batch);
        }
        let [b, _, h] = x.dims();
        self.last_norm
            .forward(last.forward_last(x, batch))
            .reshape([b, h])
    }

    fn embed(&self, items: Tensor<3>, batch: &SeqBatch) -> Tensor<3> {
        let x = items.mul_scalar(self.scale) + self.positions.forward(batch.positions.clone());
        self.dropout.forward(x) * batch.keep.clone()
    }
}

/// SASRec and BERT4Rec encode as this transformer; they differ in their
/// vocabulary (BERT4Rec's mask token) and in how they read histories.
impl SequenceEncoder for Transformer {
    fn encode(&self, batch: &SeqBatch) -> Tensor<3> {
        self.forward(batch)
    }
    fn encode_embedded(&self, items: Tensor<3>, batch: &SeqBatch) -> Tensor<3> {
        self.forward_embedded(items, batch)
    }
    fn encode_embedded_last(&self, items: Tensor<3>, batch: &SeqBatch) -> Tensor<2> {
        self.forward_embedded_last(items, batch)
    }
    fn encode_last(&self, batch: &SeqBatch) -> Tensor<2> {
        let items = self.items.forward(batch.items.clone());
        self.forward_embedded_last(items, batch)
    }
    /// `[V, H]`: row `i` scores item `i`; row 0 (padding) and any special
    /// token's row are never scored.
    fn item_table(&self) -> Tensor<2> {
        self.items.weight.val()
    }
    fn item_weight_mut(&mut self) -> &mut Param<Tensor<2>> {
        &mut self.items.weight
    }
}
