//! Quantized forward pass of the llama family: `llama` GGUFs (SmolLM2-135M:
//! 30 layers, d = 576, 9 heads, 3 KV heads, tied embeddings) and `qwen2`
//! ones (Qwen2.5-Coder-0.5B: 24 layers, d = 896, 14 heads, 2 KV heads;
//! 1.5B: 28 layers, d = 1536, 12 heads, 2 KV heads). Qwen2 is the same
//! decoder with three differences, all read from the file: biases on the Q,
//! K and V projections, an untied output head (`output.weight`; a file
//! without one uses the embedding matrix), and rope on the two halves of
//! each head (ggml's "NEOX" order; llama GGUFs have their Q/K rows permuted
//! for the interleaved order). One implementation serves both, where
//! candle-transformers has `quantized_llama` and `quantized_qwen2`.
//!
//! Adapted from candle-transformers' `quantized_llama` with these changes:
//! it returns the final-norm hidden states (for the official HSUGA user
//! embedding: the mean over generated tokens); decoding weights are Q8_0
//! (candle has no fast CPU kernel for SmolLM2's Q4_1; one set of Q8_0
//! kernels serves every file: each matrix that is not Q8_0 — Q4_1, Q5_0,
//! Q4_K, Q6_K — is re-quantised at load); prompts of [`BATCH_MIN_TOKENS`] or more
//! run as candle tensor ops over the whole chunk (f32 GEMMs), while single
//! tokens run through [`Llama::step`], plain loops over preallocated buffers
//! and the [`q8`](super::q8) kernels — per token, candle's ~40 tensor ops per
//! layer (each allocating, KV concatenation copying the whole cache) cost
//! more than the arithmetic. The KV cache lives outside the weights so one
//! loaded model serves several generations at once. The token embeddings
//! stay in the file's quantisation, a row dequantized per lookup.

use std::io::{Read, Seek};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{DType, Device, Module, Tensor};
use rayon::prelude::*;

use super::q8::{Q8Matrix, Q8Vec};
use crate::LlmError;

mod batched;
pub use batched::BatchScratch;

type Result<T> = std::result::Result<T, LlmError>;

/// The GGUF architectures this decoder runs (`general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// SmolLM2: no biases, tied embeddings, interleaved rope.
    Llama,
    /// Qwen2 / Qwen2.5: Q/K/V biases, rope on halves.
    Qwen2,
}

impl Arch {
    /// From `general.architecture`; any other is an error naming it.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        match arch.as_str() {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            other => Err(LlmError::Model(format!(
                "GGUF architecture {other:?} is not supported (llama, qwen2)"
            ))),
        }
    }

    /// The prefix of its hyper-parameter keys (`qwen2.block_count`).
    fn key(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }

    /// Which rope pairs: llama GGUFs permute Q/K rows for adjacent pairs
    /// (llama.cpp's `LLAMA_ROPE_TYPE_NORM`), Qwen2's pairs `i` and
    /// `i + head_dim / 2` (`LLAMA_ROPE_TYPE_NEOX`).
    fn rope(self) -> RopeStyle {
        match self {
            Arch::Llama => RopeStyle::Interleaved,
            Arch::Qwen2 => RopeStyle::Halves,
        }
    }
}

/// Which positions of a head rope rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// `(2i, 2i + 1)`: candle's `rope_i`.
    Interleaved,
    /// `(i, i + head_dim / 2)`: candle's `rope`.
    Halves,
}

/// Hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub arch: Arch,
    pub rope_style: RopeStyle,
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

/// Prompt chunks at least this long run as one batch of tensor ops; shorter
/// ones (and decoding) token by token.
pub const BATCH_MIN_TOKENS: usize = 8;

/// A weight matrix for whole-chunk prefill: dequantized f32 (many tokens are
/// compute-bound, a real GEMM wins by several times) or candle's quantized
/// matmul when the f32 copies are turned off.
enum Batched {
    F32(Tensor),
    Quant(QMatMul),
}

impl Batched {
    fn new(t: QTensor, f32_prefill: bool) -> Result<Self> {
        Ok(if f32_prefill {
            // `(in, out)`, already transposed for `x.matmul`.
            Batched::F32(t.dequantize(&Device::Cpu)?.t()?.contiguous()?)
        } else {
            Batched::Quant(QMatMul::from_qtensor(t)?)
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Batched::F32(w) => x.broadcast_matmul(w)?,
            Batched::Quant(q) => q.forward(x)?,
        })
    }
}

/// A decoding weight: the tensor's own Q8_0 blocks, or it quantised to Q8_0.
fn q8_matrix(t: &QTensor) -> Result<Q8Matrix> {
    let (rows, cols) = t.shape().dims2()?;
    Ok(if t.dtype() == GgmlDType::Q8_0 {
        Q8Matrix::from_ggml_q8_0(rows, cols, &t.data()?)
    } else {
        let x = t
            .dequantize(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Q8Matrix::quantize(rows, cols, &x)
    })
}

/// RMSNorm weights, as a tensor for chunks and a slice for single tokens.
struct Norm {
    t: Tensor,
    w: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn new(t: QTensor, eps: f64) -> Result<Self> {
        let t = t.dequantize(&Device::Cpu)?;
        Ok(Self {
            w: t.to_vec1()?,
            t,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(x, &self.t, self.eps)?)
    }

    /// candle's RMSNorm row kernel, same operation order.
    fn row(&self, x: &[f32], out: &mut [f32]) {
        let sum2: f32 = x.iter().map(|v| v * v).sum();
        let m = (sum2 / x.len() as f32 + self.eps).sqrt();
        for ((o, &v), &a) in out.iter_mut().zip(x).zip(&self.w) {
            *o = v / m * a;
        }
    }
}

struct Layer {
    wq: Batched,
    wk: Batched,
    wv: Batched,
    wo: Batched,
    w1: Batched,
    w2: Batched,
    w3: Batched,
    /// Decoding weights: Q, K and V stacked; gate (w1) and up (w3) stacked.
    qkv: Q8Matrix,
    o: Q8Matrix,
    gate_up: Q8Matrix,
    down: Q8Matrix,
    attn_norm: Norm,
    ffn_norm: Norm,
    /// Qwen2's Q/K/V biases.
    bias: Option<QkvBias>,
}

/// Biases added to the Q, K and V projections (Qwen2).
struct QkvBias {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// Q, K and V stacked, as [`Layer::qkv`]'s rows.
    stacked: Vec<f32>,
}

/// The token embedding table in the file's own quantisation, a row
/// dequantized when looked up (Qwen2.5's 151,936 × 896 table would take
/// 545 MB as f32; the same values either way).
struct Embedding {
    dtype: GgmlDType,
    cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
}

impl Embedding {
    fn new(t: &QTensor) -> Result<Self> {
        let (_, cols) = t.shape().dims2()?;
        let dtype = t.dtype();
        Ok(Self {
            dtype,
            cols,
            row_bytes: cols / dtype.block_size() * dtype.type_size(),
            data: t.data()?.into_owned(),
        })
    }

    /// Appends token `token`'s row to `out`.
    fn row_into(&self, token: u32, out: &mut Vec<f32>) -> Result<()> {
        let t = token as usize;
        let bytes = self
            .data
            .get(t * self.row_bytes..(t + 1) * self.row_bytes)
            .ok_or_else(|| LlmError::Model(format!("token {token} is outside the vocabulary")))?;
        let row = candle_core::quantized::ggml_file::qtensor_from_ggml(
            self.dtype,
            bytes,
            vec![self.cols],
            &Device::Cpu,
        )?;
        out.extend(row.dequantize(&Device::Cpu)?.to_vec1::<f32>()?);
        Ok(())
    }
}

/// The weights. Immutable once loaded; share it between threads.
pub struct Llama {
    pub cfg: LlamaConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Norm,
    output: Q8Matrix,
    cos: Tensor,
    sin: Tensor,
    /// `cos`/`sin` as `(context, rope_dim / 2)` rows for single tokens.
    cos_rows: Vec<f32>,
    sin_rows: Vec<f32>,
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

/// Per-generation key/value cache: per layer, one row of `n_kv_head *
/// head_dim` keys (after rope) and values per position.
#[derive(Debug, Default, Clone)]
pub struct Cache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    row: usize,
    pub len: usize,
}

impl Cache {
    /// A copy of the first `len` positions.
    pub fn prefix(&self, len: usize) -> Cache {
        let len = len.min(self.len);
        let cut = |l: &Vec<Vec<f32>>| l.iter().map(|r| r[..len * self.row].to_vec()).collect();
        Cache {
            k: cut(&self.k),
            v: cut(&self.v),
            row: self.row,
            len,
        }
    }

    /// Room for `more` positions, so that decoding never reallocates.
    pub fn reserve(&mut self, more: usize) {
        for l in self.k.iter_mut().chain(self.v.iter_mut()) {
            l.reserve(more * self.row);
        }
    }
}

/// Buffers of single-token steps, reused across tokens (one per generation).
#[derive(Debug, Default)]
pub struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    y: Vec<f32>,
    proj: Vec<f32>,
    gate_up: Vec<f32>,
    act: Vec<f32>,
    scores: Vec<f32>,
    xq: Q8Vec,
    /// The last step's final-norm hidden state.
    pub hidden: Vec<f32>,
    /// The last [`Llama::logits`].
    pub logits: Vec<f32>,
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

/// candle's interleaved rope (`rope_i`) on one head.
fn rope(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    for ((p, &c), &s) in x.chunks_exact_mut(2).zip(cos).zip(sin) {
        let (a, b) = (p[0], p[1]);
        p[0] = a * c - b * s;
        p[1] = a * s + b * c;
    }
}

/// candle's rope on halves (`rope`) on one head: pairs `(i, i + hd / 2)`.
fn rope_halves(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let (lo, hi) = x.split_at_mut(x.len() / 2);
    for (((a, b), &c), &s) in lo.iter_mut().zip(hi).zip(cos).zip(sin) {
        let (x0, x1) = (*a, *b);
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

/// Eight f32 lanes, as one AVX2 register.
type Lanes = [f32; 8];

#[inline(always)]
fn add8(a: Lanes, b: Lanes) -> Lanes {
    std::array::from_fn(|l| a[l] + b[l])
}

/// `acc += a * b` lane-wise with single rounding, over `a.len() <= 8` lanes.
#[inline(always)]
fn fma8(acc: &mut Lanes, a: &[f32], b: &[f32]) {
    for ((acc, &a), &b) in acc.iter_mut().zip(a).zip(b) {
        *acc = a.mul_add(b, *acc);
    }
}

/// `q · k` as the `gemm` crate's "horizontal" kernel sums it: one 8-lane
/// FMA accumulator, reduced as `(l0+l4 + l2+l6) + (l1+l5 + l3+l7)`.
#[inline(always)]
fn dot_horizontal(q: &[f32], k: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (kc, qc) in k.chunks(8).zip(q.chunks(8)) {
        fma8(&mut acc, kc, qc);
    }
    let x: [f32; 4] = std::array::from_fn(|i| acc[i] + acc[i + 4]);
    (x[0] + x[2]) + (x[1] + x[3])
}

/// `q · k` as the `gemm` crate's row-major matrix–vector kernel sums it: 8
/// accumulators over 64-value steps added pairwise, 8-value steps, the
/// lanes in order, then the rest.
#[inline(always)]
fn dot_gemv(q: &[f32], k: &[f32]) -> f32 {
    let mut acc = [[0f32; 8]; 8];
    let (kc, qc) = (k.chunks_exact(64), q.chunks_exact(64));
    let (kr, qr) = (kc.remainder(), qc.remainder());
    for (kb, qb) in kc.zip(qc) {
        for (a, (ka, qa)) in acc
            .iter_mut()
            .zip(kb.chunks_exact(8).zip(qb.chunks_exact(8)))
        {
            fma8(a, ka, qa);
        }
    }
    let mut s = add8(
        add8(add8(acc[0], acc[1]), add8(acc[2], acc[3])),
        add8(add8(acc[4], acc[5]), add8(acc[6], acc[7])),
    );
    let (kc, qc) = (kr.chunks_exact(8), qr.chunks_exact(8));
    let (kt, qt) = (kc.remainder(), qc.remainder());
    for (ka, qa) in kc.zip(qc) {
        fma8(&mut s, ka, qa);
    }
    let mut sum = s[1..].iter().fold(s[0], |a, &b| a + b);
    for (a, b) in kt.iter().zip(qt) {
        sum = a.mul_add(*b, sum);
    }
    sum
}

/// The sum of `xs` as candle's `vec_sum` computes it: 4 × 8 lanes over
/// 32-value steps, reduced pairwise, then the rest in order.
#[inline(always)]
fn sum_candle(xs: &[f32]) -> f32 {
    let steps = xs.chunks_exact(32);
    let rest = steps.remainder();
    let mut acc = [[0f32; 8]; 4];
    for step in steps {
        for (a, c) in acc.iter_mut().zip(step.chunks_exact(8)) {
            for (a, &c) in a.iter_mut().zip(c) {
                *a += c;
            }
        }
    }
    let x = add8(add8(acc[0], acc[1]), add8(acc[2], acc[3]));
    let t: [f32; 4] = std::array::from_fn(|i| x[i] + x[i + 4]);
    rest.iter()
        .fold((t[0] + t[1]) + (t[2] + t[3]), |a, &b| a + b)
}

/// One query head against `len` cached positions of its key/value head:
/// scaled scores, softmax, weighted sum of values into `y`.
///
/// Every sum runs in the order candle's tensor attention used on an AVX2
/// machine — the `gemm` crate's kernels for `q·kᵀ` (its "horizontal" kernel
/// up to 256 keys, its row-major matrix–vector kernel beyond) and `p·v`
/// (column-major: one FMA per position, in order) and candle's 32-wide
/// softmax sum — which kept decoding close to the candle forward pass.
/// Bit-identity with candle is not a goal (candle itself sums otherwise on
/// CPUs with AVX-512): tests compare logits within a tolerance.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_head_impl(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    row: usize,
    kv_off: usize,
    len: usize,
    scores: &mut Vec<f32>,
    y: &mut [f32],
) {
    let hd = q.len();
    let scale = (1.0 / (hd as f64).sqrt()) as f32;
    scores.clear();
    for j in 0..len {
        let k = &keys[j * row + kv_off..][..hd];
        let d = if len <= 256 {
            dot_horizontal(q, k)
        } else {
            dot_gemv(q, k)
        };
        scores.push(d * scale);
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
    }
    let sum = sum_candle(scores);
    for s in scores.iter_mut() {
        *s /= sum;
    }
    let v0 = &values[kv_off..][..hd];
    for (o, &v) in y.iter_mut().zip(v0) {
        *o = v * scores[0];
    }
    for (j, &p) in scores.iter().enumerate().skip(1) {
        for (o, &v) in y.iter_mut().zip(&values[j * row + kv_off..][..hd]) {
            *o = v.mul_add(p, *o);
        }
    }
}

/// [`attend_head_impl`] compiled with FMA instructions where the CPU has
/// them (without, `mul_add` is a slow library call).
#[allow(clippy::too_many_arguments)]
fn attend_head(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    row: usize,
    kv_off: usize,
    len: usize,
    scores: &mut Vec<f32>,
    y: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        fn fma(
            q: &[f32],
            keys: &[f32],
            values: &[f32],
            row: usize,
            kv_off: usize,
            len: usize,
            scores: &mut Vec<f32>,
            y: &mut [f32],
        ) {
            attend_head_impl(q, keys, values, row, kv_off, len, scores, y)
        }
        // SAFETY: the features were just detected.
        return unsafe { fma(q, keys, values, row, kv_off, len, scores, y) };
    }
    attend_head_impl(q, keys, values, row, kv_off, len, scores, y)
}

impl Llama {
    pub fn load<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        requantize_q8: bool,
        f32_prefill: bool,
    ) -> Result<Self> {
        let dev = Device::Cpu;
        let arch = Arch::from_gguf(ct)?;
        let key = |k: &str| format!("{}.{k}", arch.key());
        let n_embd = md_u32(ct, &key("embedding_length"))?;
        let n_head = md_u32(ct, &key("attention.head_count"))?;
        let cfg = LlamaConfig {
            arch,
            rope_style: arch.rope(),
            n_layer: md_u32(ct, &key("block_count"))?,
            n_embd,
            n_head,
            n_kv_head: md_u32(ct, &key("attention.head_count_kv"))?,
            rope_dim: md_u32(ct, &key("rope.dimension_count")).unwrap_or(n_embd / n_head),
            rope_base: md_f32(ct, &key("rope.freq_base")).unwrap_or(10_000.0),
            rms_eps: f64::from(
                md_f32(ct, &key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
            ),
            context: md_u32(ct, &key("context_length")).unwrap_or(2048),
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
        let embed = Embedding::new(&embed_q)?;
        let vocab = embed_q.shape().dims2()?.0;
        let norm = Norm::new(get("output_norm.weight", false)?, cfg.rms_eps)?;
        let output = if ct.tensor_infos.contains_key("output.weight") {
            q8_matrix(&get("output.weight", true)?)?
        } else {
            // Tied embeddings: the output head is the embedding matrix.
            q8_matrix(&embed_q)?
        };
        drop(embed_q);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("blk.{i}");
            let mut w = |n: &str| -> Result<(Q8Matrix, Batched)> {
                let t = get(&format!("{p}.{n}.weight"), true)?;
                Ok((q8_matrix(&t)?, Batched::new(t, f32_prefill)?))
            };
            let (q, wq) = w("attn_q")?;
            let (k, wk) = w("attn_k")?;
            let (v, wv) = w("attn_v")?;
            let (o, wo) = w("attn_output")?;
            let (gate, w1) = w("ffn_gate")?;
            let (down, w2) = w("ffn_down")?;
            let (up, w3) = w("ffn_up")?;
            let bias = match arch {
                Arch::Llama => None,
                Arch::Qwen2 => {
                    let mut b = |n: &str| -> Result<Tensor> {
                        Ok(get(&format!("{p}.{n}.bias"), false)?.dequantize(&dev)?)
                    };
                    let (q, k, v) = (b("attn_q")?, b("attn_k")?, b("attn_v")?);
                    let stacked = Tensor::cat(&[&q, &k, &v], 0)?.to_vec1()?;
                    Some(QkvBias { q, k, v, stacked })
                }
            };
            layers.push(Layer {
                bias,
                wq,
                wk,
                wv,
                wo,
                w1,
                w2,
                w3,
                qkv: Q8Matrix::concat_rows(&[q, k, v]),
                o,
                gate_up: Q8Matrix::concat_rows(&[gate, up]),
                down,
                attn_norm: Norm::new(get(&format!("{p}.attn_norm.weight"), false)?, cfg.rms_eps)?,
                ffn_norm: Norm::new(get(&format!("{p}.ffn_norm.weight"), false)?, cfg.rms_eps)?,
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
        let (cos, sin) = (freqs.cos()?, freqs.sin()?);
        let cfg = LlamaConfig { vocab, ..cfg };
        Ok(Self {
            cos_rows: cos.flatten_all()?.to_vec1()?,
            sin_rows: sin.flatten_all()?.to_vec1()?,
            cos,
            sin,
            cfg,
            embed,
            layers,
            norm,
            output,
            weight_dtype,
            span: tracing::span!(tracing::Level::TRACE, "llama"),
        })
    }

    fn head_dim(&self) -> usize {
        self.cfg.n_embd / self.cfg.n_head
    }

    pub fn new_cache(&self) -> Cache {
        Cache {
            k: vec![Vec::new(); self.cfg.n_layer],
            v: vec![Vec::new(); self.cfg.n_layer],
            row: self.cfg.n_kv_head * self.head_dim(),
            len: 0,
        }
    }

    /// Rope on one head of a single token.
    fn rope_row(&self, head: &mut [f32], cos: &[f32], sin: &[f32]) {
        match self.cfg.rope_style {
            RopeStyle::Interleaved => rope(head, cos, sin),
            RopeStyle::Halves => rope_halves(head, cos, sin),
        }
    }

    fn check_context(&self, pos: usize, seq: usize) -> Result<()> {
        if pos + seq > self.cfg.context {
            return Err(LlmError::Model(format!(
                "{} tokens exceed the model's context of {}",
                pos + seq,
                self.cfg.context
            )));
        }
        Ok(())
    }

    /// Runs `tokens` at positions `cache.len..` and returns the final-norm
    /// hidden states: one batch for [`BATCH_MIN_TOKENS`] or more, else token
    /// by token. `threads > 1` splits single-token work over the current
    /// rayon pool.
    ///
    /// # Shapes
    /// returns `seq * n_embd` values, row-major `(seq, n_embd)`
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut Cache,
        s: &mut Scratch,
        threads: usize,
    ) -> Result<Vec<f32>> {
        if tokens.len() >= BATCH_MIN_TOKENS {
            return Ok(self
                .forward_batch(tokens, cache)?
                .flatten_all()?
                .to_vec1()?);
        }
        let mut out = Vec::with_capacity(tokens.len() * self.cfg.n_embd);
        for &t in tokens {
            self.step(t, cache, s, threads)?;
            out.extend_from_slice(&s.hidden);
        }
        Ok(out)
    }

    /// A whole chunk as candle tensor ops.
    ///
    /// # Shapes
    /// returns `(seq, n_embd)`
    fn forward_batch(&self, tokens: &[u32], cache: &mut Cache) -> Result<Tensor> {
        let _span = self.span.enter();
        let dev = Device::Cpu;
        let seq = tokens.len();
        let pos = cache.len;
        self.check_context(pos, seq)?;
        let (nh, nkv, d) = (self.cfg.n_head, self.cfg.n_kv_head, self.cfg.n_embd);
        let hd = self.head_dim();
        let mut rows = Vec::with_capacity(seq * d);
        for &t in tokens {
            self.embed.row_into(t, &mut rows)?;
        }
        let mut x = Tensor::from_vec(rows, (1, seq, d), &dev)?;
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let mask = {
            let m: Vec<f32> = (0..seq)
                .flat_map(|i| {
                    (0..pos + seq).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 })
                })
                .collect();
            Tensor::from_vec(m, (seq, pos + seq), &dev)?
        };
        for (li, layer) in self.layers.iter().enumerate() {
            let h = layer.attn_norm.forward(&x)?;
            let mut q = layer.wq.forward(&h)?; // (1, seq, nh*hd)
            let mut k = layer.wk.forward(&h)?;
            let mut v = layer.wv.forward(&h)?;
            if let Some(b) = &layer.bias {
                q = q.broadcast_add(&b.q)?;
                k = k.broadcast_add(&b.k)?;
                v = v.broadcast_add(&b.v)?;
            }
            let q = q.reshape((1, seq, nh, hd))?.transpose(1, 2)?.contiguous()?;
            let k = k
                .reshape((1, seq, nkv, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = v.reshape((1, seq, nkv, hd))?; // (1, seq, nkv, hd)
            let rope = match self.cfg.rope_style {
                RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i,
                RopeStyle::Halves => candle_nn::rotary_emb::rope,
            };
            let q = rope(&q, &cos, &sin)?;
            let k = rope(&k, &cos, &sin)?; // (1, nkv, seq, hd)
            cache.k[li].extend(k.transpose(1, 2)?.flatten_all()?.to_vec1::<f32>()?);
            cache.v[li].extend(v.flatten_all()?.to_vec1::<f32>()?);
            // All positions, as (1, nkv, pos + seq, hd).
            let all = |c: &[f32]| -> Result<Tensor> {
                Ok(Tensor::from_slice(c, (1, pos + seq, nkv, hd), &dev)?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let (k, v) = (all(&cache.k[li])?, all(&cache.v[li])?);
            let k = repeat_kv(k, nh / nkv)?;
            let v = repeat_kv(v, nh / nkv)?;
            let att = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?; // (1, nh, seq, kv)
            let att = att.broadcast_add(&mask)?;
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

    /// One token at position `cache.len`; its final-norm hidden state is left
    /// in `s.hidden`. `threads > 1` splits the matrix products and the
    /// attention heads over the current rayon pool.
    pub fn step(
        &self,
        token: u32,
        cache: &mut Cache,
        s: &mut Scratch,
        threads: usize,
    ) -> Result<()> {
        let _span = self.span.enter();
        let pos = cache.len;
        self.check_context(pos, 1)?;
        let (nh, nkv, d) = (self.cfg.n_head, self.cfg.n_kv_head, self.cfg.n_embd);
        let hd = self.head_dim();
        let kvd = nkv * hd;
        let half = self.cos_rows.len() / self.cfg.context;
        let cos = &self.cos_rows[pos * half..(pos + 1) * half];
        let sin = &self.sin_rows[pos * half..(pos + 1) * half];
        s.x.clear();
        self.embed.row_into(token, &mut s.x)?;
        s.h.resize(d, 0.0);
        s.y.resize(d, 0.0);
        s.proj.resize(d, 0.0);
        for (li, layer) in self.layers.iter().enumerate() {
            // Attention.
            layer.attn_norm.row(&s.x, &mut s.h);
            s.qkv.resize(layer.qkv.rows(), 0.0);
            layer.qkv.matvec(&s.h, &mut s.xq, &mut s.qkv, threads);
            if let Some(b) = &layer.bias {
                for (x, b) in s.qkv.iter_mut().zip(&b.stacked) {
                    *x += b;
                }
            }
            let (q, kv) = s.qkv.split_at_mut(nh * hd);
            for head in q.chunks_exact_mut(hd).chain(kv[..kvd].chunks_exact_mut(hd)) {
                self.rope_row(head, cos, sin);
            }
            cache.k[li].extend_from_slice(&kv[..kvd]);
            cache.v[li].extend_from_slice(&kv[kvd..]);
            let (keys, values) = (&cache.k[li], &cache.v[li]);
            let q = &*q;
            let head = |(h, y): (usize, &mut [f32]), scores: &mut Vec<f32>| {
                let kv_off = (h / (nh / nkv)) * hd;
                let qh = &q[h * hd..(h + 1) * hd];
                attend_head(qh, keys, values, kvd, kv_off, pos + 1, scores, y);
            };
            if threads > 1 {
                s.y.par_chunks_mut(hd)
                    .enumerate()
                    .for_each_init(Vec::new, |scores, hy| head(hy, scores));
            } else {
                for hy in s.y.chunks_exact_mut(hd).enumerate() {
                    head(hy, &mut s.scores);
                }
            }
            layer.o.matvec(&s.y, &mut s.xq, &mut s.proj, threads);
            for (x, p) in s.x.iter_mut().zip(&s.proj) {
                *x += p;
            }
            // Feed-forward: down(silu(gate(h)) * up(h)).
            layer.ffn_norm.row(&s.x, &mut s.h);
            s.gate_up.resize(layer.gate_up.rows(), 0.0);
            layer
                .gate_up
                .matvec(&s.h, &mut s.xq, &mut s.gate_up, threads);
            let (gate, up) = s.gate_up.split_at(layer.gate_up.rows() / 2);
            s.act.clear();
            s.act.extend(
                gate.iter()
                    .zip(up)
                    .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u),
            );
            layer.down.matvec(&s.act, &mut s.xq, &mut s.proj, threads);
            for (x, p) in s.x.iter_mut().zip(&s.proj) {
                *x += p;
            }
        }
        cache.len += 1;
        s.hidden.resize(d, 0.0);
        self.norm.row(&s.x, &mut s.hidden);
        Ok(())
    }

    /// Next-token logits from one hidden state, left in `s.logits`.
    ///
    /// # Shapes
    /// `hidden`: `(n_embd,)` → `s.logits`: `(vocab,)`
    pub fn logits(&self, hidden: &[f32], s: &mut Scratch, threads: usize) {
        s.logits.resize(self.output.rows(), 0.0);
        self.output
            .matvec(hidden, &mut s.xq, &mut s.logits, threads);
    }
}

/// Grouped-query attention: each of the `nkv` key/value heads repeated
/// `n` times in place, `(b, nkv, s, hd)` → `(b, nkv·n, s, hd)` (head `h`
/// reads kv head `h / n`), contiguous.
fn repeat_kv(x: Tensor, n: usize) -> candle_core::Result<Tensor> {
    if n == 1 {
        return x.contiguous();
    }
    let (b, nkv, s, hd) = x.dims4()?;
    // n copies along the sequence axis, then each kv head's n copies read
    // as n heads: one contiguous copy, no strided broadcast.
    Tensor::cat(&vec![&x; n], 2)?.reshape((b, nkv * n, s, hd))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention in f64, the plain way.
    fn reference(q: &[f32], keys: &[f32], values: &[f32], row: usize, off: usize) -> Vec<f64> {
        let hd = q.len();
        let len = keys.len() / row;
        let scores: Vec<f64> = (0..len)
            .map(|j| {
                let k = &keys[j * row + off..][..hd];
                q.iter()
                    .zip(k)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
                    / (hd as f64).sqrt()
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        (0..hd)
            .map(|d| {
                (0..len)
                    .map(|j| e[j] / sum * values[j * row + off + d] as f64)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn attention_matches_an_f64_reference() {
        let mut s = 7u32;
        let mut rnd = || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        };
        // Head sizes with and without 8- and 64-value tails; both score
        // kernels (up to 256 keys and beyond).
        for (hd, len) in [(64, 3), (64, 300), (20, 40), (72, 260)] {
            let row = 2 * hd;
            let q: Vec<f32> = (0..hd).map(|_| rnd()).collect();
            let keys: Vec<f32> = (0..len * row).map(|_| rnd()).collect();
            let values: Vec<f32> = (0..len * row).map(|_| rnd()).collect();
            let (mut scores, mut y) = (Vec::new(), vec![0f32; hd]);
            attend_head(&q, &keys, &values, row, hd, len, &mut scores, &mut y);
            for (got, want) in y.iter().zip(reference(&q, &keys, &values, row, hd)) {
                assert!(
                    (*got as f64 - want).abs() < 1e-5,
                    "{hd} {len}: {got} {want}"
                );
            }
        }
    }

    /// Both builds of the attention kernel — the portable one (the only one
    /// on CPUs without AVX2/FMA, where `mul_add` is a library call) and the
    /// `avx2,fma` one [`attend_head`] picks here — against the f64 reference
    /// and each other. Tolerance: both round the same operations in f32
    /// (measured here: max |Δ| 4.5e-8, to each other and to the reference);
    /// 1e-5 would still catch a score or value row off by one position.
    #[test]
    fn each_attention_build_this_cpu_runs_matches_the_f64_reference() {
        let mut s = 9u32;
        let mut rnd = || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        };
        for (hd, len) in [(64, 5), (64, 300), (24, 33)] {
            let row = 3 * hd;
            let q: Vec<f32> = (0..hd).map(|_| rnd()).collect();
            let keys: Vec<f32> = (0..len * row).map(|_| rnd()).collect();
            let values: Vec<f32> = (0..len * row).map(|_| rnd()).collect();
            let want = reference(&q, &keys, &values, row, 2 * hd);
            let (mut scores, mut portable, mut picked) =
                (Vec::new(), vec![0f32; hd], vec![0f32; hd]);
            attend_head_impl(
                &q,
                &keys,
                &values,
                row,
                2 * hd,
                len,
                &mut scores,
                &mut portable,
            );
            attend_head(
                &q,
                &keys,
                &values,
                row,
                2 * hd,
                len,
                &mut scores,
                &mut picked,
            );
            for ((a, b), w) in portable.iter().zip(&picked).zip(&want) {
                assert!((*a as f64 - w).abs() < 1e-5, "portable {hd} {len}: {a} {w}");
                assert!(
                    (*b as f64 - w).abs() < 1e-5,
                    "dispatched {hd} {len}: {b} {w}"
                );
                assert!(
                    (a - b).abs() < 1e-5,
                    "portable vs dispatched {hd} {len}: {a} {b}"
                );
            }
        }
    }

    #[test]
    fn scalar_rows_match_the_definitions() {
        let mut x = [1.0f32, 2.0, 3.0, 4.0];
        rope(&mut x, &[0.0, 1.0], &[1.0, 0.0]);
        assert_eq!(x, [-2.0, 1.0, 3.0, 4.0]);
        // Halves: pairs (0, 2) and (1, 3).
        let mut x = [1.0f32, 2.0, 3.0, 4.0];
        rope_halves(&mut x, &[0.0, 1.0], &[1.0, 0.0]);
        assert_eq!(x, [-3.0, 2.0, 1.0, 4.0]);
        let norm = Norm {
            t: Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap(),
            w: vec![1.0, 2.0],
            eps: 0.0,
        };
        let mut out = [0f32; 2];
        norm.row(&[3.0, 4.0], &mut out);
        let rms = (12.5f32).sqrt();
        assert_eq!(out, [3.0 / rms, 4.0 / rms * 2.0]);
        // candle's kernel: another implementation, equal within rounding.
        let batch = norm.forward(&Tensor::new(&[[3f32, 4.0]], &Device::Cpu).unwrap());
        for (b, o) in batch.unwrap().to_vec2::<f32>().unwrap()[0].iter().zip(out) {
            assert!((b - o).abs() <= 1e-6 * o.abs(), "{b} {o}");
        }
    }
}
