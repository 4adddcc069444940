//! The in-process sentence embedder: all-MiniLM-L6-v2 on our BERT encoder
//! ([`crate::bert`]), as sentence-transformers runs it.
//!
//! Pipeline: tokenize (WordPiece, lower-casing, `[CLS] … [SEP]`), truncate at
//! [`MiniLm::max_tokens`] (256, the model's `max_seq_length`; the shipped
//! `tokenizer.json` fixes padding and truncation at 128, which we override),
//! sort by length and pad per batch to the longest text in it (no work on
//! padding beyond that), BERT forward, mean of the token states under the
//! attention mask, L2 normalisation. Texts over the limit are truncated, as
//! sentence-transformers does; the count is logged at `warn` and returned by
//! [`MiniLm::embed_with_report`].

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::bert::{Bert, BertConfig};
use crate::embedder::{TextEmbedder, check_texts};
use crate::error::{Result, TextError};
use crate::fetch::{MINILM_L6_V2, verify};

/// all-MiniLM-L6-v2 loaded in-process.
pub struct MiniLm {
    model: Bert,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    max_tokens: usize,
    batch_size: usize,
    workers: usize,
    id: String,
}

/// What one call did besides producing vectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbedReport {
    /// Texts cut at the token limit.
    pub truncated: usize,
    /// Tokens fed to the model, padding included.
    pub padded_tokens: usize,
    /// Real tokens (without padding).
    pub tokens: usize,
}

impl MiniLm {
    /// sentence-transformers' `max_seq_length` for this model.
    pub const DEFAULT_MAX_TOKENS: usize = 256;
    /// Texts per forward pass (measured on 2 cores: larger batches add padding
    /// and gain nothing).
    pub const DEFAULT_BATCH: usize = 32;

    /// Loads the verified model from a models directory (see [`crate::fetch`]).
    pub fn load(models_dir: &Path) -> Result<Self> {
        let dir = verify(&MINILM_L6_V2, models_dir)?;
        Self::load_dir(&dir)
    }

    /// Loads from a folder holding `config.json`, `tokenizer.json` and
    /// `model.safetensors` (unverified).
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let cfg_text =
            std::fs::read_to_string(&cfg_path).map_err(|e| TextError::io(&cfg_path, e))?;
        let config: BertConfig = serde_json::from_str(&cfg_text)
            .map_err(|e| TextError::Config(format!("{}: {e}", cfg_path.display())))?;
        config
            .check()
            .map_err(|e| TextError::Config(format!("{}: {e}", cfg_path.display())))?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| TextError::Tokenizer(format!("{}: {e}", tok_path.display())))?;
        // The shipped tokenizer pads and truncates to 128: we pad per batch
        // ourselves and truncate at the model's real limit.
        tokenizer.with_padding(None);
        let max_tokens = Self::DEFAULT_MAX_TOKENS.min(config.max_position_embeddings);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| TextError::Tokenizer(e.to_string()))?;
        let device = Device::Cpu;
        let weights = dir.join("model.safetensors");
        // SAFETY: the file is memory-mapped read-only; it was verified by hash
        // and nothing in hsuga writes it while loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device)? };
        let model = Bert::load(vb, &config)?;
        Ok(Self {
            model,
            tokenizer,
            device,
            dim: config.hidden_size,
            max_tokens,
            batch_size: Self::DEFAULT_BATCH,
            workers: default_workers(),
            id: format!("{}@{}", MINILM_L6_V2.name, max_tokens),
        })
    }

    /// Sets texts per forward pass.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Sets worker threads (each runs whole batches on one core); 1 runs
    /// batches one after another with candle's own multi-threaded matmuls.
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// The token limit (texts are truncated there).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Embeds texts and reports truncation and padding.
    pub fn embed_with_report(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, EmbedReport)> {
        check_texts(texts)?;
        let _span = tracing::debug_span!("minilm_embed", texts = texts.len()).entered();
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| TextError::Tokenizer(e.to_string()))?;
        let mut report = EmbedReport::default();
        for (i, enc) in encodings.iter().enumerate() {
            // Only [CLS] and [SEP]: the normaliser removed everything.
            if enc.get_ids().len() <= 2 {
                return Err(TextError::EmptyText { index: i });
            }
            if !enc.get_overflowing().is_empty() {
                report.truncated += 1;
            }
            report.tokens += enc.get_ids().len();
        }
        if report.truncated > 0 {
            tracing::warn!(
                texts = report.truncated,
                max_tokens = self.max_tokens,
                "texts truncated at the token limit"
            );
        }
        // Longest first, so each batch pads to a similar length.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].get_ids().len()));
        let batches: Vec<&[usize]> = order.chunks(self.batch_size).collect();
        report.padded_tokens = batches
            .iter()
            .map(|b| {
                b.len()
                    * b.iter()
                        .map(|&i| encodings[i].get_ids().len())
                        .max()
                        .unwrap_or(0)
            })
            .sum();
        let run = |batch: &[usize]| -> Result<Vec<Vec<f32>>> {
            let t = batch
                .iter()
                .map(|&i| encodings[i].get_ids().len())
                .max()
                .unwrap_or(0);
            let b = batch.len();
            let mut ids = vec![0u32; b * t];
            let mut mask = vec![0u32; b * t];
            for (row, &i) in batch.iter().enumerate() {
                let e = encodings[i].get_ids();
                ids[row * t..row * t + e.len()].copy_from_slice(e);
                mask[row * t..row * t + e.len()].fill(1);
            }
            self.forward(ids, mask, b, t)
        };
        let mut results: Vec<Option<BatchResult>> = Vec::new();
        results.resize_with(batches.len(), || None);
        let w = self.workers.min(batches.len());
        if w <= 1 {
            for (j, b) in batches.iter().enumerate() {
                results[j] = Some(run(b));
            }
        } else {
            // One batch per worker thread at a time, each forward on a
            // single-thread rayon pool: every op (not only the matmuls) runs
            // in parallel across cores, and small matmuls skip the fork/join
            // overhead. Batches are dealt round-robin (they are sorted by
            // length, so the work is balanced).
            let done: Vec<Vec<(usize, BatchResult)>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..w)
                    .map(|k| {
                        let (batches, run) = (&batches, &run);
                        s.spawn(move || {
                            let pool = rayon::ThreadPoolBuilder::new()
                                .num_threads(1)
                                .build()
                                .expect("a one-thread pool");
                            pool.install(|| {
                                batches
                                    .iter()
                                    .enumerate()
                                    .skip(k)
                                    .step_by(w)
                                    .map(|(j, b)| (j, run(b)))
                                    .collect()
                            })
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("embedding worker panicked"))
                    .collect()
            });
            for (j, r) in done.into_iter().flatten() {
                results[j] = Some(r);
            }
        }
        let mut out = vec![Vec::new(); texts.len()];
        for (batch, r) in batches.iter().zip(results) {
            let vecs = r.expect("every batch ran")?;
            for (row, &i) in batch.iter().enumerate() {
                out[i] = vecs[row].clone();
            }
        }
        Ok((out, report))
    }

    /// One padded batch → pooled, normalised vectors.
    ///
    /// # Shapes
    /// `ids`, `mask`: `[b, t]` row-major → `b` vectors of `dim`.
    fn forward(&self, ids: Vec<u32>, mask: Vec<u32>, b: usize, t: usize) -> Result<Vec<Vec<f32>>> {
        let ids = Tensor::from_vec(ids, (b, t), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, t), &self.device)?;
        let hidden = self.model.forward(&ids, &mask)?; // [b, t, d]
        let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [b, t, 1]
        let summed = hidden.broadcast_mul(&maskf)?.sum(1)?; // [b, d]
        let counts = maskf.sum(1)?; // [b, 1]
        let mean = summed.broadcast_div(&counts)?; // [b, d]
        let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?; // [b, 1]
        let normed = mean.broadcast_div(&norm)?;
        Ok(normed.to_vec2::<f32>()?)
    }
}

/// One batch's vectors, or why not.
type BatchResult = Result<Vec<Vec<f32>>>;

/// `HSUGA_EMBED_WORKERS`, else the number of cores.
fn default_workers() -> usize {
    std::env::var("HSUGA_EMBED_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

impl TextEmbedder for MiniLm {
    fn model_id(&self) -> &str {
        &self.id
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.embed_with_report(texts).map(|(v, _)| v)
    }
}
