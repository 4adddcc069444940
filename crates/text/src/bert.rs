//! The BERT encoder the in-process embedder runs (all-MiniLM-L6-v2: six
//! post-LayerNorm layers, absolute positions, exact GELU), on candle's
//! tensors and layers.
//!
//! Why our own and not `candle-transformers`' `BertModel`: that crate holds
//! every model candle ships and was the largest single item of a cold build
//! after the training backend (113 s of the 16-minute two-core build), for
//! the one encoder the main job needs. The forward is HF's `BertModel`
//! without the pooler: embeddings (word + position + token type, LayerNorm),
//! then per layer `x = LN(x + W_o·attn(x))`, `x = LN(x + W_2·gelu(W_1·x))`,
//! with `(1 − mask)·f32::MIN` added to the attention scores of padded keys.
//! `crates/text/tests/embedders.rs` holds it to sentence-transformers'
//! vectors (cosine ≥ 0.9999) and to `candle-transformers` (a
//! dev-dependency) on a batch with padding.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, embedding, layer_norm, linear};
use serde::Deserialize;

/// The fields of a BERT `config.json` the forward reads.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".into()
}

impl BertConfig {
    /// What this encoder cannot run, named.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act {:?}: only \"gelu\" (exact, erf) is supported",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type {:?}: only \"absolute\" is supported",
                self.position_embedding_type
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        Ok(())
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// A loaded BERT encoder (no pooler).
pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
}

impl Bert {
    /// Loads the weights under `vb` (or under `bert.` where the checkpoint
    /// keeps them there, as BERT checkpoints with task heads do).
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let e = vb.pp("embeddings");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let a = l.pp("attention");
                Ok(Layer {
                    query: linear(h, h, a.pp("self.query"))?,
                    key: linear(h, h, a.pp("self.key"))?,
                    value: linear(h, h, a.pp("self.value"))?,
                    attn_out: linear(h, h, a.pp("output.dense"))?,
                    attn_norm: layer_norm(h, eps, a.pp("output.LayerNorm"))?,
                    up: linear(h, cfg.intermediate_size, l.pp("intermediate.dense"))?,
                    down: linear(cfg.intermediate_size, h, l.pp("output.dense"))?,
                    out_norm: layer_norm(h, eps, l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word: embedding(cfg.vocab_size, h, e.pp("word_embeddings"))?,
            position: embedding(cfg.max_position_embeddings, h, e.pp("position_embeddings"))?,
            token_type: embedding(cfg.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            embed_norm: layer_norm(h, eps, e.pp("LayerNorm"))?,
            layers,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
        })
    }

    /// Token states of a padded batch.
    ///
    /// # Shapes
    /// `ids`, `mask`: `[b, t]` (`u32`; mask 1 on real tokens) → `[b, t, hidden]`.
    /// Token types are all 0 (single-segment input).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let positions = Tensor::arange(0u32, t as u32, ids.device())?;
        let types = ids.zeros_like()?;
        let x = self
            .word
            .forward(ids)?
            .add(&self.token_type.forward(&types)?)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        let mut x = self.embed_norm.forward(&x)?;
        // [b, 1, 1, t]: 0 on real keys, f32::MIN on padding.
        let mask = mask.to_dtype(DType::F32)?.reshape((b, 1, 1, t))?;
        let bias = ((1.0 - mask)? * f64::from(f32::MIN))?;
        let split = |x: &Tensor| -> Result<Tensor> {
            x.reshape((b, t, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let scale = (self.head_dim as f64).sqrt();
        for l in &self.layers {
            let q = split(&l.query.forward(&x)?)?;
            let k = split(&l.key.forward(&x)?)?;
            let v = split(&l.value.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?)? / scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let context = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((
                b,
                t,
                self.heads * self.head_dim,
            ))?;
            x = l
                .attn_norm
                .forward(&(l.attn_out.forward(&context)? + &x)?)?;
            let inner = l.up.forward(&x)?.gelu_erf()?;
            x = l.out_norm.forward(&(l.down.forward(&inner)? + &x)?)?;
        }
        Ok(x)
    }
}
