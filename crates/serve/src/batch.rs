//! Micro-batching: recommendation requests go into one bounded queue, and
//! one scoring thread takes everything queued (waiting up to `window` after
//! the first for more) and scores it in one forward pass per run. Under
//! load, requests queue while a forward runs, so batches grow by
//! themselves; with `window = 0` a lone request never waits.
//!
//! Scoring runs on its own OS thread, never on the async runtime's workers
//! (a forward is milliseconds of CPU). The thread only runs forwards: each
//! request gets its row of the pass's score matrix back (shared, not
//! copied) and picks its own top K on the runtime's workers, so the one
//! serial thread is not also scanning every row's 12,101 scores (Beauty)
//! while the other core waits. Requests for different runs (during a
//! reload) are scored apart, each on the run it started with. A panic in a
//! forward answers that batch with an error and the thread goes on.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::run::Run;

/// One scored item: internal id and score.
pub type Scored = (u32, f32);

/// How the scoring thread batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// How long to wait after the first request for others (0: take only
    /// what is already queued).
    pub window: Duration,
    /// Most histories in one forward pass.
    pub max_batch: usize,
    /// Requests waiting beyond this are refused (503) instead of queued.
    pub queue: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            window: Duration::ZERO,
            max_batch: 128,
            queue: 4096,
        }
    }
}

struct Job {
    run: Arc<Run>,
    /// Internal ids, at most `max_len` of the most recent.
    history: Vec<u32>,
    /// The user's semantic embedding, for fusion runs.
    semantic: Option<Arc<[f32]>>,
    reply: oneshot::Sender<Result<RowScores, String>>,
}

/// One history's all-item scores: a row of the score matrix of the forward
/// pass it was in, shared with the other rows of that pass.
pub struct RowScores {
    matrix: Arc<Vec<f32>>,
    row: usize,
    items: usize,
}

impl RowScores {
    /// Column `j` is item `j + 1`.
    pub fn scores(&self) -> &[f32] {
        &self.matrix[self.row * self.items..(self.row + 1) * self.items]
    }
}

/// The handle requests use; the thread ends when the last handle drops.
pub struct MicroBatcher {
    tx: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

impl MicroBatcher {
    pub fn start(cfg: BatchConfig, metrics: Arc<Metrics>) -> Result<Self, ServeError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue.max(1));
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("hsuga-scorer".into())
            .spawn(move || worker(rx, cfg, &m))
            .map_err(|e| ServeError::Internal(format!("starting the scoring thread: {e}")))?;
        Ok(Self { tx, metrics })
    }

    /// The `k` best items for `history` under `run`, best first, leaving
    /// out `exclude` (sorted); `semantic` is the user's embedding when the
    /// run fuses one.
    pub async fn top_k(
        &self,
        run: Arc<Run>,
        history: Vec<u32>,
        exclude: Vec<u32>,
        semantic: Option<Arc<[f32]>>,
        k: usize,
    ) -> Result<Vec<Scored>, ServeError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            run,
            history,
            semantic,
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => self.metrics.queue_depth.inc(),
            Err(TrySendError::Full(_)) => {
                return Err(ServeError::Overloaded(
                    "the scoring queue is full; retry shortly".into(),
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ServeError::Internal(
                    "the scoring thread has stopped".into(),
                ));
            }
        }
        match answer.await {
            Ok(Ok(row)) => Ok(top_k(row.scores(), &exclude, k)),
            Ok(Err(e)) => Err(ServeError::Internal(e)),
            Err(_) => Err(ServeError::Internal(
                "the scoring thread dropped the request".into(),
            )),
        }
    }
}

fn worker(rx: Receiver<Job>, cfg: BatchConfig, metrics: &Metrics) {
    while let Some(jobs) = gather(&rx, cfg) {
        metrics.queue_depth.sub(jobs.len() as i64);
        score_jobs(jobs, metrics);
    }
}

/// The next batch: the first request (waiting for it), then what is queued
/// or arrives within the window, up to `max_batch`. `None` once every
/// handle has dropped.
fn gather(rx: &Receiver<Job>, cfg: BatchConfig) -> Option<Vec<Job>> {
    let first = rx.recv().ok()?;
    let mut jobs = vec![first];
    let deadline = Instant::now() + cfg.window;
    while jobs.len() < cfg.max_batch {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(j) => jobs.push(j),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
    }
    Some(jobs)
}

/// One forward per run; a reload in progress may leave two.
fn score_jobs(mut jobs: Vec<Job>, metrics: &Metrics) {
    while !jobs.is_empty() {
        let run = jobs[0].run.clone();
        let (same, rest): (Vec<Job>, Vec<Job>) =
            jobs.into_iter().partition(|j| Arc::ptr_eq(&j.run, &run));
        jobs = rest;
        metrics.batch_rows.observe(same.len() as f64);
        score_batch(&run, same);
    }
}

/// [`Run::score`] in sub-batches of similar history length, one
/// [`RowScores`] per history in the order given. A forward pass left-pads every row to the batch's longest
/// history and pays for the padding (attention is quadratic in it), so one
/// pass over 64 random ML-100K users (most padded to 200) cost more per
/// history than passes over rows of like length; rows are sorted by length
/// and a sub-batch ends where a row is no longer than half the sub-batch's
/// longest, so no row is padded to more than twice its length (or to its
/// length plus one, for the shortest).
pub fn score_by_length(run: &Run, histories: &[&[u32]], semantic: &[&[f32]]) -> Vec<RowScores> {
    let items = run.num_items() as usize;
    let mut order: Vec<usize> = (0..histories.len()).collect();
    order.sort_by_key(|&r| std::cmp::Reverse(histories[r].len()));
    let mut out: Vec<Option<RowScores>> = (0..histories.len()).map(|_| None).collect();
    let mut start = 0;
    while start < order.len() {
        let longest = histories[order[start]].len();
        let mut end = start + 1;
        while end < order.len() && histories[order[end]].len() * 2 > longest {
            end += 1;
        }
        let rows = &order[start..end];
        let h: Vec<&[u32]> = rows.iter().map(|&r| histories[r]).collect();
        let sem: Vec<&[f32]> = if semantic.is_empty() {
            Vec::new()
        } else {
            rows.iter().map(|&r| semantic[r]).collect()
        };
        let matrix = Arc::new(run.score(&h, &sem));
        for (row, &r) in rows.iter().enumerate() {
            out[r] = Some(RowScores {
                matrix: matrix.clone(),
                row,
                items,
            });
        }
        start = end;
    }
    out.into_iter()
        .map(|r| r.expect("every row is in one sub-batch"))
        .collect()
}

fn score_batch(run: &Run, jobs: Vec<Job>) {
    let histories: Vec<&[u32]> = jobs.iter().map(|j| j.history.as_slice()).collect();
    let semantic: Vec<&[f32]> = jobs
        .iter()
        .map(|j| j.semantic.as_deref().unwrap_or(&[]))
        .collect();
    match catch_unwind(AssertUnwindSafe(|| {
        score_by_length(run, &histories, &semantic)
    })) {
        Ok(rows) => {
            for (row, job) in rows.into_iter().zip(jobs) {
                let _ = job.reply.send(Ok(row));
            }
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(%what, rows = jobs.len(), "scoring failed");
            for job in jobs {
                let _ = job.reply.send(Err(format!("scoring failed: {what}")));
            }
        }
    }
}

/// Ranks `a` before `b`: the higher score first, the lower id on a tie.
fn better(a: &Scored, b: &Scored) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// A kept candidate, ordered so that a max-heap's top is the worst kept.
struct Kept(Scored);

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Kept {}
impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Kept {
    fn cmp(&self, other: &Self) -> Ordering {
        better(&self.0, &other.0)
    }
}

/// The `k` highest-scoring items of one row (column `j` = item `j + 1`),
/// best first, leaving out the sorted ids in `exclude`. Ties go to the
/// lower id, and a NaN score ranks below every number, so answers are
/// deterministic.
///
/// One pass with a heap of the `k` best so far: an item is looked up in
/// `exclude` only when it would enter the heap, and nothing of the row's
/// size is allocated. Once the heap is full, a block of 16 scores whose
/// largest is below the worst kept score is skipped whole (a vectorised
/// max instead of 16 heap comparisons); ties and signed zeros go through
/// the exact comparison. (Collecting, filtering and selecting over every
/// item cost about a third of a request on Beauty's 12,101 items.)
pub fn top_k(scores: &[f32], exclude: &[u32], k: usize) -> Vec<Scored> {
    const BLOCK: usize = 16;
    if k == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Kept> = BinaryHeap::with_capacity(k.min(scores.len()) + 1);
    for (b, block) in scores.chunks(BLOCK).enumerate() {
        if heap.len() == k {
            let worst = heap.peek().map_or(f32::NEG_INFINITY, |w| w.0.1);
            // NaN compares false, so it never raises the block's max; it
            // ranks as -inf, which cannot enter a full heap.
            let max = block
                .iter()
                .fold(f32::NEG_INFINITY, |m, &s| if s > m { s } else { m });
            if max < worst {
                continue;
            }
        }
        for (i, &s) in block.iter().enumerate() {
            let c: Scored = (
                (b * BLOCK + i) as u32 + 1,
                if s.is_nan() { f32::NEG_INFINITY } else { s },
            );
            if heap.len() == k
                && heap
                    .peek()
                    .is_some_and(|w| better(&c, &w.0) != Ordering::Less)
            {
                continue;
            }
            if exclude.binary_search(&c.0).is_ok() {
                continue;
            }
            heap.push(Kept(c));
            if heap.len() > k {
                heap.pop();
            }
        }
    }
    let mut out: Vec<Scored> = heap.into_iter().map(|kept| kept.0).collect();
    out.sort_unstable_by(better);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_excludes_and_breaks_ties_by_id() {
        let scores = [0.5, 2.0, f32::NAN, 2.0, -1.0, 3.0];
        assert_eq!(top_k(&scores, &[], 3), vec![(6, 3.0), (2, 2.0), (4, 2.0)]);
        // Excluded items never appear, even when they score best.
        assert_eq!(top_k(&scores, &[2, 6], 2), vec![(4, 2.0), (1, 0.5)]);
        // k past the catalogue: everything left, NaN last.
        let all = top_k(&scores, &[1], 100);
        assert_eq!(all.len(), 5);
        assert_eq!(all.last().unwrap().0, 3);
        assert!(top_k(&scores, &[], 0).is_empty());
    }

    /// The heap's answer equals the `k` first of the whole row sorted by
    /// (score descending, id ascending) without the excluded ids, on rows
    /// full of ties, NaNs and negative zeros, for k below, at and past the
    /// row's size.
    /// A block is skipped only when its best is strictly below the worst
    /// kept score: +0.0 ranks above a kept -0.0 though the two compare
    /// equal as floats.
    #[test]
    fn a_skipped_block_never_holds_an_item_that_belongs() {
        let mut scores = vec![-1.0f32; 32];
        scores[0] = 1.0;
        scores[1] = -0.0;
        for s in &mut scores[16..] {
            *s = -5.0;
        }
        scores[20] = 0.0;
        let got = top_k(&scores, &[], 2);
        assert_eq!(
            got.iter().map(|c| (c.0, c.1.to_bits())).collect::<Vec<_>>(),
            vec![(1, 1.0f32.to_bits()), (21, 0.0f32.to_bits())]
        );
    }

    #[test]
    fn top_k_equals_the_head_of_the_fully_sorted_row() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..200 {
            let n = 1 + (next() % 300) as usize;
            let scores: Vec<f32> = (0..n)
                .map(|_| match next() % 10 {
                    0 => f32::NAN,
                    1 => -0.0,
                    _ => (next() % 7) as f32 - 3.0,
                })
                .collect();
            let mut exclude: Vec<u32> = (1..=n as u32).filter(|_| next() % 4 == 0).collect();
            exclude.dedup();
            let mut full: Vec<Scored> = (1..=n as u32)
                .filter(|i| !exclude.contains(i))
                .map(|i| {
                    let s = scores[i as usize - 1];
                    (i, if s.is_nan() { f32::NEG_INFINITY } else { s })
                })
                .collect();
            full.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            for k in [1, 3, 10, n, n + 5] {
                let want: Vec<Scored> = full.iter().copied().take(k).collect();
                let got = top_k(&scores, &exclude, k);
                assert_eq!(
                    got.iter().map(|c| (c.0, c.1.to_bits())).collect::<Vec<_>>(),
                    want.iter()
                        .map(|c| (c.0, c.1.to_bits()))
                        .collect::<Vec<_>>(),
                    "round {round}, n {n}, k {k}"
                );
            }
        }
    }
}
