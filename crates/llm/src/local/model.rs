//! Quantized llama forward pass (SmolLM2-135M: 30 layers, d = 576, 9 heads,
//! 3 KV heads, tied embeddings), adapted from candle-transformers'
//! `quantized_llama` with two changes: it returns the final-norm hidden
//! states (for the official HSUGA user embedding: the mean over generated
//! tokens), and it can re-quantise weights to Q8_0 at load (candle has no
//! fast CPU kernel for the file's Q4_1; Q8_0 is ≈5× faster). The KV cache
//! lives outside the weights so one loaded model serves several generations
//! at once.

use std::io::{Read, Seek};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{D, DType, Device, Module, Tensor};
use candle_transformers::quantized_nn::RmsNorm;

use crate::LlmError;

type Result<T> = std::result::Result<T, LlmError>;

/// Hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub rope_dim: usize,
    pub rope_base: f32,
    pub rms_eps: f64,
    pub context: usize,
    pub vocab: usize,
}

/// A weight matrix: quantized for decoding (one token: memory-bound, the
/// quantized dot products win) and, optionally, dequantized f32 for prompt
/// prefill (many tokens: compute-bound, a real GEMM wins by several times).
struct Linear {
    q: QMatMul,
    /// `(in, out)`, already transposed for `x.matmul`.
    f32_t: Option<Tensor>,
}

/// Prompt chunks at least this long use the f32 weights.
const F32_MIN_TOKENS: usize = 8;

impl Linear {
    fn new(t: QTensor, f32_prefill: bool) -> Result<Self> {
        let f32_t = if f32_prefill {
            Some(t.dequantize(&Device::Cpu)?.t()?.contiguous()?)
        } else {
            None
        };
        Ok(Self {
            q: QMatMul::from_qtensor(t)?,
            f32_t,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, seq, _) = x.dims3()?;
        match &self.f32_t {
            Some(w) if seq >= F32_MIN_TOKENS => Ok(x.broadcast_matmul(w)?),
            _ => Ok(self.q.forward(x)?),
        }
    }
}

struct Layer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    w1: Linear,
    w2: Linear,
    w3: Linear,
    attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
}

/// The weights. Immutable once loaded; share it between threads.
pub struct Llama {
    pub cfg: LlamaConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    /// Dtype the matmul weights ended up in (after any re-quantisation).
    pub weight_dtype: GgmlDType,
    span: tracing::Span,
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llama")
            .field("cfg", &self.cfg)
            .field("weight_dtype", &self.weight_dtype)
            .finish()
    }
}

/// Per-generation key/value cache.
#[derive(Debug, Default, Clone)]
pub struct Cache {
    kv: Vec<Option<(Tensor, Tensor)>>,
    pub len: usize,
}

impl Cache {
    /// The cache of the first `len` positions (tensor views, no copy).
    pub fn prefix(&self, len: usize) -> Result<Cache> {
        let len = len.min(self.len);
        let kv = self
            .kv
            .iter()
            .map(|e| match e {
                Some((k, v)) => Ok(Some((k.narrow(2, 0, len)?, v.narrow(2, 0, len)?))),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Cache { kv, len })
    }
}

fn md_u32(ct: &gguf_file::Content, key: &str) -> Result<usize> {
    ct.metadata
        .get(key)
        .ok_or_else(|| LlmError::Model(format!("GGUF metadata has no `{key}`")))?
        .to_u32()
        .map(|v| v as usize)
        .map_err(|e| LlmError::Model(format!("`{key}`: {e}")))
}

fn md_f32(ct: &gguf_file::Content, key: &str) -> Option<f32> {
    ct.metadata.get(key).and_then(|v| v.to_f32().ok())
}

impl Llama {
    pub fn load<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        requantize_q8: bool,
        f32_prefill: bool,
    ) -> Result<Self> {
        let dev = Device::Cpu;
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        if arch != "llama" {
            return Err(LlmError::Model(format!(
                "architecture {arch:?} is not supported (llama only)"
            )));
        }
        let n_embd = md_u32(ct, "llama.embedding_length")?;
        let n_head = md_u32(ct, "llama.attention.head_count")?;
        let cfg = LlamaConfig {
            n_layer: md_u32(ct, "llama.block_count")?,
            n_embd,
            n_head,
            n_kv_head: md_u32(ct, "llama.attention.head_count_kv")?,
            rope_dim: md_u32(ct, "llama.rope.dimension_count").unwrap_or(n_embd / n_head),
            rope_base: md_f32(ct, "llama.rope.freq_base").unwrap_or(10_000.0),
            rms_eps: f64::from(
                md_f32(ct, "llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            ),
            context: md_u32(ct, "llama.context_length").unwrap_or(2048),
            vocab: 0,
        };
        let mut weight_dtype = GgmlDType::F32;
        let mut get = |name: &str, requant: bool| -> Result<QTensor> {
            let t = ct
                .tensor(reader, name, &dev)
                .map_err(|e| LlmError::Model(format!("tensor {name}: {e}")))?;
            let t = if requant && requantize_q8 && t.dtype() != GgmlDType::Q8_0 {
                let dims = t.shape().dims().to_vec();
                if dims.last().is_some_and(|d| d % 32 == 0) && t.dtype() != GgmlDType::F32 {
                    QTensor::quantize(&t.dequantize(&dev)?, GgmlDType::Q8_0)?
                } else {
                    t
                }
            } else {
                t
            };
            if requant {
                weight_dtype = t.dtype();
            }
            Ok(t)
        };
        let embed_q = get("token_embd.weight", false)?;
        let embed = embed_q.dequantize(&dev)?;
        let vocab = embed.dim(0)?;
        let norm = RmsNorm::from_qtensor(get("output_norm.weight", false)?, cfg.rms_eps)?;
        let output = if ct.tensor_infos.contains_key("output.weight") {
            QMatMul::from_qtensor(get("output.weight", true)?)?
        } else {
            // Tied embeddings: the output head is the embedding matrix.
            let q = if requantize_q8 {
                QTensor::quantize(&embed, GgmlDType::Q8_0)?
            } else {
                embed_q
            };
            QMatMul::from_qtensor(q)?
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("blk.{i}");
            let mm = |t: QTensor| Linear::new(t, f32_prefill);
            layers.push(Layer {
                wq: mm(get(&format!("{p}.attn_q.weight"), true)?)?,
                wk: mm(get(&format!("{p}.attn_k.weight"), true)?)?,
                wv: mm(get(&format!("{p}.attn_v.weight"), true)?)?,
                wo: mm(get(&format!("{p}.attn_output.weight"), true)?)?,
                w1: mm(get(&format!("{p}.ffn_gate.weight"), true)?)?,
                w2: mm(get(&format!("{p}.ffn_down.weight"), true)?)?,
                w3: mm(get(&format!("{p}.ffn_up.weight"), true)?)?,
                attn_norm: RmsNorm::from_qtensor(
                    get(&format!("{p}.attn_norm.weight"), false)?,
                    cfg.rms_eps,
                )?,
                ffn_norm: RmsNorm::from_qtensor(
                    get(&format!("{p}.ffn_norm.weight"), false)?,
                    cfg.rms_eps,
                )?,
            });
        }
        let head_dim = cfg.n_embd / cfg.n_head;
        let theta: Vec<f32> = (0..cfg.rope_dim.min(head_dim))
            .step_by(2)
            .map(|i| 1.0 / cfg.rope_base.powf(i as f32 / head_dim as f32))
            .collect();
        let n_theta = theta.len();
        let theta = Tensor::new(theta, &dev)?;
        let pos = Tensor::arange(0u32, cfg.context as u32, &dev)?
            .to_dtype(DType::F32)?
            .reshape((cfg.context, 1))?;
        let freqs = pos.matmul(&theta.reshape((1, n_theta))?)?;
        let cfg = LlamaConfig { vocab, ..cfg };
        Ok(Self {
            cos: freqs.cos()?,
            sin: freqs.sin()?,
            cfg,
            embed,
            layers,
            norm,
            output,
            weight_dtype,
            span: tracing::span!(tracing::Level::TRACE, "llama"),
        })
    }

    pub fn new_cache(&self) -> Cache {
        Cache {
            kv: (0..self.cfg.n_layer).map(|_| None).collect(),
            len: 0,
        }
    }

    /// Runs `tokens` at positions `cache.len..` and returns the final-norm
    /// hidden states.
    ///
    /// # Shapes
    /// returns `(seq, n_embd)`
    pub fn forward(&self, tokens: &[u32], cache: &mut Cache) -> Result<Tensor> {
        let _span = self.span.enter();
        let dev = Device::Cpu;
        let seq = tokens.len();
        let pos = cache.len;
        if pos + seq > self.cfg.context {
            return Err(LlmError::Model(format!(
                "{} tokens exceed the model's context of {}",
                pos + seq,
                self.cfg.context
            )));
        }
        let (nh, nkv) = (self.cfg.n_head, self.cfg.n_kv_head);
        let hd = self.cfg.n_embd / nh;
        let ids = Tensor::new(tokens, &dev)?;
        let mut x = self.embed.index_select(&ids, 0)?.unsqueeze(0)?; // (1, seq, d)
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let mask = if seq > 1 {
            let m: Vec<f32> = (0..seq)
                .flat_map(|i| {
                    (0..pos + seq).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 })
                })
                .collect();
            Some(Tensor::from_vec(m, (seq, pos + seq), &dev)?)
        } else {
            None
        };
        for (li, layer) in self.layers.iter().enumerate() {
            let h = layer.attn_norm.forward(&x)?;
            let q = layer.wq.forward(&h)?; // (1, seq, nh*hd)
            let k = layer.wk.forward(&h)?;
            let v = layer.wv.forward(&h)?;
            let q = q.reshape((1, seq, nh, hd))?.transpose(1, 2)?.contiguous()?;
            let k = k
                .reshape((1, seq, nkv, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = v
                .reshape((1, seq, nkv, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
            let (k, v) = match &cache.kv[li] {
                Some((kc, vc)) => (Tensor::cat(&[kc, &k], 2)?, Tensor::cat(&[vc, &v], 2)?),
                None => (k, v),
            };
            cache.kv[li] = Some((k.clone(), v.clone()));
            let k = candle_transformers::utils::repeat_kv(k, nh / nkv)?.contiguous()?;
            let v = candle_transformers::utils::repeat_kv(v, nh / nkv)?.contiguous()?;
            let att = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?; // (1, nh, seq, kv)
            let att = match &mask {
                Some(m) => att.broadcast_add(m)?,
                None => att,
            };
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v)?; // (1, nh, seq, hd)
            let y = y.transpose(1, 2)?.reshape((1, seq, nh * hd))?;
            x = (x + layer.wo.forward(&y)?)?;
            let h = layer.ffn_norm.forward(&x)?;
            let gate = candle_nn::ops::silu(&layer.w1.forward(&h)?)?;
            let up = layer.w3.forward(&h)?;
            x = (x + layer.w2.forward(&(gate * up)?)?)?;
        }
        cache.len += seq;
        Ok(self.norm.forward(&x)?.squeeze(0)?)
    }

    /// Next-token logits from one hidden state.
    ///
    /// # Shapes
    /// `hidden`: `(n_embd,)` → `(vocab,)`
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self
            .output
            .forward(&hidden.unsqueeze(0)?)?
            .squeeze(0)?
            .to_dtype(DType::F32)?)
    }

    /// The last row of `(seq, d)` hidden states.
    pub fn last(hidden: &Tensor) -> Result<Tensor> {
        let n = hidden.dim(0)?;
        Ok(hidden.narrow(0, n - 1, 1)?.squeeze(0)?)
    }

    /// Mean over rows.
    pub fn mean_rows(rows: &[Tensor]) -> Result<Vec<f32>> {
        let t = Tensor::stack(rows, 0)?;
        Ok(t.mean(D::Minus2)?.to_vec1::<f32>()?)
    }
}
