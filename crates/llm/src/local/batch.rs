//! Batched generation across callers: many sequences decoded by one loop.
//!
//! Why: decoding one token on a CPU reads every weight once for a handful of
//! multiply-adds each, so it is bound by memory bandwidth, not arithmetic.
//! A step that multiplies the weights by B sequences' rows at once
//! ([`Llama::step_batch`](super::model::Llama::step_batch)) reads them once
//! for all B, so B sequences cost far less than B single steps.
//!
//! How: with `batch = N > 1` a [`Batcher`] thread owns the loop. Callers
//! (HSU's worker threads, each blocked in `chat`) send their prompt and
//! wait for their own answer. The loop admits waiting requests at step
//! boundaries, up to N at once (an idle loop first waits up to
//! `batch_window_ms` for a batch to fill), prefills each (sharing the
//! prompt prefix with recent prompts through the prefix cache, so the
//! system message and worked examples common to every HSU prompt are
//! computed once and copied into each sequence's cache), then steps all
//! active sequences together: one batched product for the logits, each
//! sequence picks its own token (its own penalty history and random
//! stream), finished ones (end of turn or `max_tokens`) are answered at
//! once and leave the batch, the rest take one batched step.
//!
//! Each sequence's arithmetic is the one-at-a-time decoder's (same kernels,
//! same order), so answers do not depend on what else is in the batch. A
//! request that cannot run (empty, longer than the context) fails alone; if
//! the loop itself dies, every waiting caller gets an error, never a hang —
//! and HSU then stores nothing for that stage and retries it on the next run.
//!
//! Why copy the shared prefix instead of sharing it: a copy keeps each
//! sequence's attention one contiguous cache (the single-token kernel
//! unchanged), and copying a few hundred positions' keys and values is a
//! memory copy of a few MB — far less than prefilling them again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rand::SeedableRng;

use super::model::{BatchScratch, Cache};
use super::{Core, GenOptions, Generation, LlmError};
use crate::Finish;

/// The largest accepted `batch`: beyond it a step's activations outgrow the
/// caches and nothing is gained (see `benches/llm_results.md`).
pub const MAX_BATCH: usize = 64;
/// The longest accepted `batch_window_ms`.
pub const MAX_BATCH_WINDOW_MS: u64 = 10_000;

/// One sequence being decoded.
pub(super) struct Seq {
    pub(super) cache: Cache,
    /// The final-norm hidden state of its last position.
    pub(super) last: Vec<f32>,
    out: Vec<u32>,
    max_new: usize,
    opts: GenOptions,
    rng: rand_chacha::ChaCha8Rng,
    hidden_sum: Vec<f32>,
    n_hidden: usize,
    prompt_tokens: usize,
    prefill: Duration,
    decode_start: Instant,
    finish: Option<Finish>,
}

impl Seq {
    pub(super) fn done(&self) -> bool {
        self.finish.is_some()
    }

    /// Takes the hidden state of the token just run.
    pub(super) fn absorb(&mut self, hidden: &[f32]) {
        self.last.copy_from_slice(hidden);
        if self.opts.want_hidden {
            for (a, h) in self.hidden_sum.iter_mut().zip(hidden) {
                *a += h;
            }
            self.n_hidden += 1;
        }
    }
}

impl Core {
    /// Checks `prompt`, runs it (after the longest cached prefix) and
    /// returns the sequence ready for its first token.
    pub(super) fn prefill(
        &self,
        prompt: &[u32],
        o: &GenOptions,
        threads: usize,
    ) -> Result<Seq, LlmError> {
        if prompt.is_empty() {
            return Err(LlmError::Model("empty prompt".into()));
        }
        let ctx = self.model.cfg.context;
        if prompt.len() + 1 > ctx {
            return Err(LlmError::Model(format!(
                "prompt of {} tokens does not fit the context of {ctx}",
                prompt.len()
            )));
        }
        let max_new = o.max_tokens.min(ctx - prompt.len());
        let t0 = Instant::now();
        // Prefix cache: reuse the keys/values of the longest shared start with
        // a recent prompt (the system message and worked examples are shared
        // by every call of a kind; an edit call extends its selection call).
        let (mut cache, reused) = self.cached_prefix(prompt);
        cache.reserve(prompt.len() - reused + max_new);
        let hidden = self.model.forward(
            &prompt[reused..],
            &mut cache,
            &mut Default::default(),
            threads,
        )?;
        self.remember(prompt, &cache);
        let d = self.model.cfg.n_embd;
        Ok(Seq {
            cache,
            last: hidden[hidden.len() - d..].to_vec(),
            out: Vec::new(),
            max_new,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(o.seed),
            hidden_sum: vec![0f32; if o.want_hidden { d } else { 0 }],
            n_hidden: 0,
            prompt_tokens: prompt.len(),
            prefill: t0.elapsed(),
            decode_start: Instant::now(),
            finish: (max_new == 0).then_some(Finish::Length),
            opts: o.clone(),
        })
    }

    /// Picks the sequence's next token from its logits; the token to run
    /// next, or `None` when the sequence has finished.
    pub(super) fn advance(
        &self,
        seq: &mut Seq,
        logits: &mut [f32],
    ) -> Result<Option<u32>, LlmError> {
        let next = self.pick(logits, &seq.out, &seq.opts, &mut seq.rng)?;
        if seq.opts.stop_at_eos && self.stops.contains(&next) {
            seq.finish = Some(Finish::Stop);
            return Ok(None);
        }
        seq.out.push(next);
        if seq.out.len() >= seq.max_new {
            seq.finish = Some(Finish::Length);
            return Ok(None);
        }
        Ok(Some(next))
    }

    /// The answer of a finished sequence.
    pub(super) fn finish(&self, seq: Seq) -> Result<Generation, LlmError> {
        let hidden_mean = (seq.n_hidden > 0).then(|| {
            let scale = (1.0 / seq.n_hidden as f64) as f32;
            seq.hidden_sum.iter().map(|v| v * scale).collect()
        });
        Ok(Generation {
            text: self.decode(&seq.out)?,
            tokens: seq.out,
            finish: seq.finish.unwrap_or(Finish::Other),
            prompt_tokens: seq.prompt_tokens,
            prefill: seq.prefill,
            decode: seq.decode_start.elapsed(),
            hidden_mean,
        })
    }

    /// One step of every active sequence: logits for all in one product,
    /// each picks its token, then one batched step for those not finished.
    /// Returns the sequences that finished (or failed), with their tags;
    /// the others stay in `active`.
    fn step_all<T>(
        &self,
        active: &mut Vec<(Seq, T)>,
        s: &mut BatchScratch,
        threads: usize,
    ) -> Vec<(Result<Generation, LlmError>, T)> {
        let d = self.model.cfg.n_embd;
        let vocab = self.model.cfg.vocab;
        let mut hidden = std::mem::take(&mut s.hidden);
        hidden.clear();
        for (seq, _) in active.iter() {
            hidden.extend_from_slice(&seq.last);
        }
        self.model.logits_batch(&hidden, s, threads);
        s.hidden = hidden;
        let mut ended = Vec::new();
        let mut next = Vec::with_capacity(active.len());
        let mut logits = std::mem::take(&mut s.logits);
        let mut keep = Vec::with_capacity(active.len());
        for ((mut seq, tag), l) in active.drain(..).zip(logits.chunks_exact_mut(vocab)) {
            match self.advance(&mut seq, l) {
                Ok(Some(t)) => match self.model.check_step(seq.cache.len) {
                    Ok(()) => {
                        next.push(t);
                        keep.push((seq, tag));
                    }
                    Err(e) => ended.push((Err(e), tag)),
                },
                Ok(None) => ended.push((self.finish(seq), tag)),
                Err(e) => ended.push((Err(e), tag)),
            }
        }
        s.logits = logits;
        if keep.is_empty() {
            return ended;
        }
        let mut caches: Vec<&mut Cache> = keep.iter_mut().map(|(q, _)| &mut q.cache).collect();
        match self.model.step_batch(&next, &mut caches, s, threads) {
            Ok(()) => {
                for ((seq, _), h) in keep.iter_mut().zip(s.hidden.chunks_exact(d)) {
                    seq.absorb(h);
                }
                active.extend(keep);
            }
            // Every sequence was checked above: an error here is the
            // model's, and no sequence's cache can be trusted.
            Err(e) => ended.extend(
                keep.into_iter()
                    .map(|(_, tag)| (Err(LlmError::Model(e.to_string())), tag)),
            ),
        }
        ended
    }
}

/// Every prompt through one batched loop (all admitted at once), results in
/// the prompts' order. Runs on the current rayon pool.
pub(super) fn run_all(
    core: &Core,
    prompts: &[Vec<u32>],
    opts: &[GenOptions],
    threads: usize,
) -> Vec<Result<Generation, LlmError>> {
    let mut results: Vec<Option<Result<Generation, LlmError>>> =
        prompts.iter().map(|_| None).collect();
    let mut active = Vec::new();
    for (i, (p, o)) in prompts.iter().zip(opts).enumerate() {
        match core.prefill(p, o, threads) {
            Ok(seq) if seq.done() => results[i] = Some(core.finish(seq)),
            Ok(seq) => active.push((seq, i)),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let mut s = BatchScratch::default();
    while !active.is_empty() {
        for (r, i) in core.step_all(&mut active, &mut s, threads) {
            results[i] = Some(r);
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(LlmError::Model("no answer".into()))))
        .collect()
}

/// What the batched loop has done so far (how full its batches were).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Decoding steps run.
    pub steps: u64,
    /// Sequences over all those steps (`rows / steps` = mean batch).
    pub rows: u64,
    /// The most sequences one step ran.
    pub max_rows: u64,
    /// Requests answered (or failed).
    pub requests: u64,
}

#[derive(Debug, Default)]
struct Counters {
    steps: AtomicU64,
    rows: AtomicU64,
    max_rows: AtomicU64,
    requests: AtomicU64,
}

/// A request waiting for the loop, and where its answer goes.
struct Job {
    prompt: Vec<u32>,
    opts: GenOptions,
    reply: mpsc::Sender<Result<Generation, LlmError>>,
}

/// The batched decoding loop's thread and its request queue. Dropping it
/// closes the queue and joins the thread.
pub(super) struct Batcher {
    counters: Arc<Counters>,
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Batcher {
    /// Starts the loop on its own thread, running on `pool`.
    pub(super) fn start(core: Arc<Core>, pool: rayon::ThreadPool) -> Result<Self, LlmError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("llm-batch".into())
            .spawn(move || {
                // The receiver stays on this thread; the loop's body runs on
                // the pool (whose threads split each step's products).
                let rx = std::sync::Mutex::new(rx);
                pool.install(|| serve(&core, &rx, &c))
            })
            .map_err(|e| LlmError::Model(format!("batch thread: {e}")))?;
        Ok(Self {
            counters,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    pub(super) fn stats(&self) -> BatchStats {
        let c = &self.counters;
        BatchStats {
            steps: c.steps.load(Ordering::Relaxed),
            rows: c.rows.load(Ordering::Relaxed),
            max_rows: c.max_rows.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
        }
    }

    /// Queues one generation and waits for its answer.
    pub(super) fn generate(
        &self,
        prompt: Vec<u32>,
        opts: GenOptions,
    ) -> Result<Generation, LlmError> {
        let stopped = || LlmError::Model("the batched decoding loop has stopped".into());
        let (reply, answer) = mpsc::channel();
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(Job {
                prompt,
                opts,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The loop: admit, step, answer; until the queue closes.
fn serve(core: &Core, rx: &std::sync::Mutex<mpsc::Receiver<Job>>, counters: &Counters) {
    let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
    let cap = core.cfg.batch.max(1);
    let window = Duration::from_millis(core.cfg.batch_window_ms);
    let threads = core.cfg.threads.max(1);
    let mut active: Vec<(Seq, mpsc::Sender<Result<Generation, LlmError>>)> = Vec::new();
    let mut waiting: Vec<Job> = Vec::new();
    let mut s = BatchScratch::default();
    loop {
        if active.is_empty() && waiting.is_empty() {
            // Idle: block for a request, then give the others a moment.
            match rx.recv() {
                Ok(j) => waiting.push(j),
                Err(_) => return,
            }
            let deadline = Instant::now() + window;
            while waiting.len() < cap {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(j) => waiting.push(j),
                    Err(_) => break,
                }
            }
        }
        // Step boundary: take what has arrived, up to the batch size.
        while active.len() + waiting.len() < cap {
            match rx.try_recv() {
                Ok(j) => waiting.push(j),
                Err(_) => break,
            }
        }
        for job in waiting.drain(..) {
            // (A caller that has gone away is no one's concern.)
            match core.prefill(&job.prompt, &job.opts, threads) {
                Ok(seq) if seq.done() => {
                    counters.requests.fetch_add(1, Ordering::Relaxed);
                    let _ = job.reply.send(core.finish(seq));
                }
                Ok(seq) => active.push((seq, job.reply)),
                Err(e) => {
                    counters.requests.fetch_add(1, Ordering::Relaxed);
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        if active.is_empty() {
            continue;
        }
        let rows = active.len() as u64;
        counters.steps.fetch_add(1, Ordering::Relaxed);
        counters.rows.fetch_add(rows, Ordering::Relaxed);
        counters.max_rows.fetch_max(rows, Ordering::Relaxed);
        for (r, reply) in core.step_all(&mut active, &mut s, threads) {
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let _ = reply.send(r);
        }
    }
}
