//! One decoding step for several sequences at once (batched generation).
//!
//! Each sequence brings one token at its own position and its own KV
//! [`Cache`]. The matrix products take all the sequences' rows together
//! ([`Q8Matrix::matmul`]: each weight group is read from memory once for the
//! whole batch, which is where the time of CPU decoding goes); norms, rope
//! and attention run per sequence, against that sequence's cache only.
//!
//! Every per-row operation is the single-token [`Llama::step`]'s, in the same
//! order, so a sequence decoded in a batch gets the logits it gets alone (the
//! tests bound the difference; measured: none).

use rayon::prelude::*;

use super::{Cache, Llama, Result, attend_head};
use crate::LlmError;
use crate::local::q8::Q8Vec;

/// Buffers of batched steps, reused across steps; rows are sequences.
#[derive(Debug, Default)]
pub struct BatchScratch {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    y: Vec<f32>,
    proj: Vec<f32>,
    gate_up: Vec<f32>,
    act: Vec<f32>,
    scores: Vec<f32>,
    xq: Vec<Q8Vec>,
    /// The last step's final-norm hidden states, `(n, n_embd)`.
    pub hidden: Vec<f32>,
    /// The last [`Llama::logits_batch`], `(n, vocab)`.
    pub logits: Vec<f32>,
}

impl Llama {
    /// Checks that a sequence whose cache holds `cache_len` positions can run
    /// one more token (a batch step refuses all sequences if one cannot, so
    /// callers check each first and fail only that one).
    pub fn check_step(&self, cache_len: usize) -> Result<()> {
        self.check_context(cache_len, 1)
    }

    /// One token per sequence: `tokens[i]` at position `caches[i].len`. The
    /// final-norm hidden states are left in `s.hidden`, `(n, n_embd)`.
    /// `threads > 1` splits the matrix products' rows and the
    /// (sequence, head) attention pairs over the current rayon pool.
    pub fn step_batch(
        &self,
        tokens: &[u32],
        caches: &mut [&mut Cache],
        s: &mut BatchScratch,
        threads: usize,
    ) -> Result<()> {
        let _span = self.span.enter();
        let n = tokens.len();
        if n != caches.len() {
            return Err(LlmError::Model(format!(
                "{n} tokens for {} caches",
                caches.len()
            )));
        }
        for c in caches.iter() {
            self.check_context(c.len, 1)?;
        }
        let (nh, nkv, d) = (self.cfg.n_head, self.cfg.n_kv_head, self.cfg.n_embd);
        let hd = self.head_dim();
        let kvd = nkv * hd;
        let half = self.cos_rows.len() / self.cfg.context;
        s.x.clear();
        for &t in tokens {
            self.embed.row_into(t, &mut s.x)?;
        }
        s.h.resize(n * d, 0.0);
        s.y.resize(n * d, 0.0);
        s.proj.resize(n * d, 0.0);
        for (li, layer) in self.layers.iter().enumerate() {
            // Attention.
            for (x, h) in s.x.chunks_exact(d).zip(s.h.chunks_exact_mut(d)) {
                layer.attn_norm.row(x, h);
            }
            let rows = layer.qkv.rows();
            s.qkv.resize(n * rows, 0.0);
            layer.qkv.matmul(&s.h, n, &mut s.xq, &mut s.qkv, threads);
            for (i, qkv) in s.qkv.chunks_exact_mut(rows).enumerate() {
                if let Some(b) = &layer.bias {
                    for (x, b) in qkv.iter_mut().zip(&b.stacked) {
                        *x += b;
                    }
                }
                let pos = caches[i].len;
                let cos = &self.cos_rows[pos * half..(pos + 1) * half];
                let sin = &self.sin_rows[pos * half..(pos + 1) * half];
                let (q, kv) = qkv.split_at_mut(nh * hd);
                for head in q.chunks_exact_mut(hd).chain(kv[..kvd].chunks_exact_mut(hd)) {
                    self.rope_row(head, cos, sin);
                }
                caches[i].k[li].extend_from_slice(&kv[..kvd]);
                caches[i].v[li].extend_from_slice(&kv[kvd..]);
            }
            let qkv = &s.qkv;
            let caches_ref: Vec<&Cache> = caches.iter().map(|c| &**c).collect();
            // Query head `h` of sequence `i` fills `y[i * d + h * hd..][..hd]`.
            let head = |(j, y): (usize, &mut [f32]), scores: &mut Vec<f32>| {
                let (i, h) = (j / nh, j % nh);
                let c = caches_ref[i];
                let kv_off = (h / (nh / nkv)) * hd;
                let q = &qkv[i * rows + h * hd..][..hd];
                attend_head(q, &c.k[li], &c.v[li], kvd, kv_off, c.len + 1, scores, y);
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
            layer.o.matmul(&s.y, n, &mut s.xq, &mut s.proj, threads);
            for (x, p) in s.x.iter_mut().zip(&s.proj) {
                *x += p;
            }
            // Feed-forward: down(silu(gate(h)) * up(h)).
            for (x, h) in s.x.chunks_exact(d).zip(s.h.chunks_exact_mut(d)) {
                layer.ffn_norm.row(x, h);
            }
            let rows = layer.gate_up.rows();
            s.gate_up.resize(n * rows, 0.0);
            layer
                .gate_up
                .matmul(&s.h, n, &mut s.xq, &mut s.gate_up, threads);
            s.act.clear();
            for gu in s.gate_up.chunks_exact(rows) {
                let (gate, up) = gu.split_at(rows / 2);
                s.act.extend(
                    gate.iter()
                        .zip(up)
                        .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u),
                );
            }
            layer
                .down
                .matmul(&s.act, n, &mut s.xq, &mut s.proj, threads);
            for (x, p) in s.x.iter_mut().zip(&s.proj) {
                *x += p;
            }
        }
        for c in caches.iter_mut() {
            c.len += 1;
        }
        s.hidden.resize(n * d, 0.0);
        for (x, h) in s.x.chunks_exact(d).zip(s.hidden.chunks_exact_mut(d)) {
            self.norm.row(x, h);
        }
        Ok(())
    }

    /// Next-token logits of `n` hidden states at once, left in `s.logits`.
    ///
    /// # Shapes
    /// `hidden`: `(n, n_embd)` → `s.logits`: `(n, vocab)`
    pub fn logits_batch(&self, hidden: &[f32], s: &mut BatchScratch, threads: usize) {
        let n = hidden.len() / self.cfg.n_embd;
        s.logits.resize(n * self.output.rows(), 0.0);
        self.output
            .matmul(hidden, n, &mut s.xq, &mut s.logits, threads);
    }
}
