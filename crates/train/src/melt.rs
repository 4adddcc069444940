//! MELT's training ([`hsuga_model::melt`] has the branches, the splits,
//! the contexts and the weights): the backbone of the trained run named by
//! `method.pretrained` (checked and read as CITIES reads it,
//! [`crate::cities`]) is trained on by the normal loop ([`crate::fit`])
//! with `W_U` and `W_I`, under `L = L_rec + λ_u L_u + λ_i L_i`, through
//! this [`Objective`]:
//!
//! - at every epoch start, from the plain copy of the weights, each tail
//!   item's row is recomputed as `W_I(mean of its contexts' f)` and handed
//!   back as an [`EpochEdit`], which the trainer writes into the trained
//!   item table before the first batch; the contexts are encoded in
//!   batches of similar length (sorted by length), so padding costs little;
//! - the head users and the head items are shuffled once per epoch (the
//!   epoch's own stream) and cut into `batches − 1` slices of
//!   `⌈|head| / (batches − 1)⌉`, the official aligned loaders: step `k`
//!   reads slice `k`, so each is cycled once per epoch beside the normal
//!   batches (the last steps may read none);
//! - each step encodes, with the model being trained (dropout on, as the
//!   official `model.train()`), the few-item and full histories of its
//!   head users and `n` sampled contexts of each of its head items.
//!
//! Everything random is drawn from the epoch's stream
//! ([`crate::objective::epoch_rng`]), and the refresh is a function of the
//! weights at the epoch start, so a resumed run replays the same epochs
//! (`tests/melt.rs` pins 2 + 1 epochs = 3). The splits, contexts and `τ_u`
//! are functions of the training split; `τ_u` is also stored in the model,
//! which applies the tail-user transfer at inference (see
//! [`hsuga_model::melt`]).

use std::path::Path;
use std::time::Instant;

use hsuga_data::{Groups, Split};
use hsuga_model::batch::tail;
use hsuga_model::burn::tensor::{Device, Int, Tensor, TensorData};
use hsuga_model::melt::{MeltContexts, MeltSplit, item_weight, user_weight};
use hsuga_model::{Batcher, MeltConfig, MeltItems, ModelConfig, Recommender, SequenceEncoder};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::Pretrained;
use crate::error::TrainError;
use crate::objective::{EpochEdit, EpochStart, Objective, Step};
use crate::trainer::Job;

/// Most contexts encoded in one refresh batch.
const REFRESH_BATCH: usize = 1024;
/// Most contexts encoded in one batch of a step (sorted by length).
const STEP_CHUNK: usize = 512;

/// MELT's run state.
pub struct MeltObjective {
    cfg: MeltConfig,
    model: ModelConfig,
    num_items: u32,
    /// The splits (a function of the training split).
    pub split: MeltSplit,
    /// The contexts of every item (training items only).
    pub contexts: MeltContexts,
    /// Head users (training length > τ_u).
    head_users: Vec<usize>,
    /// Head items with at least one context.
    head_items: Vec<u32>,
    /// Tail items with at least one context (refreshed).
    pub tail_items: Vec<u32>,
    // This epoch's state.
    epoch: usize,
    users: Vec<usize>,
    items: Vec<u32>,
    per_step: (usize, usize),
    step: usize,
    rng: ChaCha8Rng,
    edit: EpochEdit,
    /// Seconds the last refresh took (for the log and the benchmark).
    pub refresh_seconds: f64,
}

impl MeltObjective {
    /// The splits and contexts of `split` (`groups` decides the head items
    /// with `items = "groups"`).
    pub fn new(cfg: &MeltConfig, model: &ModelConfig, split: &Split, groups: &Groups) -> Self {
        let n = split.num_items;
        let head = match cfg.items {
            MeltItems::Quantile => None,
            MeltItems::Groups => Some(groups.head_items.as_slice()),
        };
        let s = MeltSplit::new(&split.train, n, cfg.pareto, head);
        let contexts = MeltContexts::build(&split.train, n, model.max_len);
        let head_users = (0..split.num_users())
            .filter(|&u| !s.tail_user[u] && !split.train[u].is_empty())
            .collect();
        let with_ctx = |i: &u32| !contexts.of[*i as usize].is_empty();
        let head_items = (1..=n)
            .filter(|&i| s.head_item[i as usize])
            .filter(with_ctx)
            .collect();
        let tail_items = (1..=n)
            .filter(|&i| !s.head_item[i as usize])
            .filter(with_ctx)
            .collect();
        Self {
            cfg: cfg.clone(),
            model: model.clone(),
            num_items: n,
            split: s,
            contexts,
            head_users,
            head_items,
            tail_items,
            epoch: 0,
            users: Vec::new(),
            items: Vec::new(),
            per_step: (0, 0),
            step: 0,
            rng: ChaCha8Rng::seed_from_u64(0),
            edit: EpochEdit::default(),
            refresh_seconds: 0.0,
        }
    }

    /// `[U, 1]` per user: 1 for a tail user (training length ≤ τ_u), the
    /// flag the evaluation chain attaches to each row.
    pub fn tail_flags(&self, device: &Device) -> Tensor<2> {
        let v: Vec<f32> = self
            .split
            .tail_user
            .iter()
            .map(|&t| f32::from(u8::from(t)))
            .collect();
        let u = v.len();
        Tensor::from_data(TensorData::new(v, [u, 1]), device)
    }

    /// The refreshed rows `W_I(mean_c f(c))` of every tail item with a
    /// context, under `model`'s weights (a plain copy).
    pub fn refresh(&self, model: &Recommender, seqs: &[Vec<u32>]) -> Vec<(u32, Vec<f32>)> {
        let melt = model
            .melt
            .as_ref()
            .expect("a MELT objective trains a model with MELT's branches");
        let device = model.encoder.item_table().device();
        let batcher = Batcher::new(&self.model, self.num_items, &device);
        let h = self.model.hidden;
        // Every context of every tail item, by length.
        let mut all: Vec<(usize, Vec<u32>)> = Vec::new();
        for (k, &i) in self.tail_items.iter().enumerate() {
            for &c in &self.contexts.of[i as usize] {
                all.push((k, self.contexts.ids(seqs, c)));
            }
        }
        all.sort_by_key(|(_, ids)| ids.len());
        let mut sum = vec![0f64; self.tail_items.len() * h];
        let mut count = vec![0usize; self.tail_items.len()];
        for chunk in all.chunks(REFRESH_BATCH) {
            let hist: Vec<&[u32]> = chunk.iter().map(|(_, c)| c.as_slice()).collect();
            let reps = hsuga_model::to_f32(model.encoder.encode_last(&batcher.eval_batch(&hist)));
            for (j, (k, _)) in chunk.iter().enumerate() {
                count[*k] += 1;
                for (s, &r) in sum[k * h..(k + 1) * h]
                    .iter_mut()
                    .zip(&reps[j * h..(j + 1) * h])
                {
                    *s += r as f64;
                }
            }
        }
        let mean: Vec<f32> = sum
            .chunks(h)
            .zip(&count)
            .flat_map(|(s, &c)| s.iter().map(move |&x| (x / c as f64) as f32))
            .collect();
        let t = self.tail_items.len();
        if t == 0 {
            return Vec::new();
        }
        let rows = hsuga_model::to_f32(
            melt.refresh(Tensor::from_data(TensorData::new(mean, [t, h]), &device)),
        );
        self.tail_items
            .iter()
            .zip(rows.chunks(h))
            .map(|(&i, r)| (i, r.to_vec()))
            .collect()
    }
}

/// `f` of each history on the training device, in chunks of similar
/// length, rows back in the order given.
///
/// # Shapes
/// - output: `[K, H]`
fn encode_sorted(model: &Recommender, batcher: &Batcher, hist: &[Vec<u32>]) -> Tensor<2> {
    let mut order: Vec<usize> = (0..hist.len()).collect();
    order.sort_by_key(|&k| hist[k].len());
    let parts: Vec<Tensor<2>> = order
        .chunks(STEP_CHUNK)
        .map(|c| {
            let rows: Vec<&[u32]> = c.iter().map(|&k| hist[k].as_slice()).collect();
            model.encoder.encode_last(&batcher.eval_batch(&rows))
        })
        .collect();
    let sorted = Tensor::cat(parts, 0);
    // Row k of the output is row `place[k]` of the sorted encoding.
    let mut place = vec![0i64; hist.len()];
    for (at, &k) in order.iter().enumerate() {
        place[k] = at as i64;
    }
    let device = sorted.device();
    sorted.select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(place, [hist.len()]), &device),
    )
}

impl Objective for MeltObjective {
    fn start_epoch(&mut self, start: EpochStart<'_>) {
        self.epoch = start.epoch;
        self.users = self.head_users.clone();
        self.users.shuffle(start.rng);
        self.items = self.head_items.clone();
        self.items.shuffle(start.rng);
        self.rng = ChaCha8Rng::from_rng(start.rng);
        let t0 = Instant::now();
        self.edit = EpochEdit {
            item_rows: self.refresh(start.model, &start.split.train),
        };
        self.refresh_seconds = t0.elapsed().as_secs_f64();
    }

    fn edit_epoch(&mut self, batches: usize) -> EpochEdit {
        let slices = batches.saturating_sub(1).max(1);
        self.per_step = (
            self.users.len().div_ceil(slices),
            self.items.len().div_ceil(slices),
        );
        self.step = 0;
        std::mem::take(&mut self.edit)
    }

    fn loss(&mut self, step: &Step<'_>) -> Tensor<1> {
        let model = step.model;
        let melt = model
            .melt
            .as_ref()
            .expect("a MELT objective trains a model with MELT's branches");
        let device = step.student.device();
        let k = self.step;
        self.step += 1;
        let slice = |len: usize, per: usize| (k * per).min(len)..((k + 1) * per).min(len);
        let users = &self.users[slice(self.users.len(), self.per_step.0)];
        let items = &self.items[slice(self.items.len(), self.per_step.1)];
        let e = self.epoch.saturating_sub(1); // 0-based, as the official
        let max_len = self.model.max_len;
        let mut total = Tensor::<1>::zeros([1], &device);
        let seqs = &step.split.train;
        if !users.is_empty() {
            let r_max = self.split.max_recent();
            let mut hist = Vec::with_capacity(2 * users.len());
            for &u in users {
                let r = self.rng.random_range(1..=r_max);
                hist.push(tail(&seqs[u], r).to_vec());
            }
            for &u in users {
                hist.push(tail(&seqs[u], max_len).to_vec());
            }
            let f = encode_sorted(model, step.batcher, &hist);
            let b = users.len();
            let w: Vec<f32> = users
                .iter()
                .map(|&u| {
                    user_weight(e, self.cfg.e_max, seqs[u].len(), self.split.tau_u, max_len) as f32
                })
                .collect();
            let l_u = melt.user_loss(f.clone().narrow(0, 0, b), f.narrow(0, b, b), &w);
            total = total + l_u.mul_scalar(self.cfg.lambda_u);
        }
        if !items.is_empty() {
            let mut hist = Vec::new();
            let mut counts = Vec::with_capacity(items.len());
            for &i in items {
                let c = &self.contexts.of[i as usize];
                let n = self.rng.random_range(1..=self.split.max_contexts(c.len()));
                for j in rand::seq::index::sample(&mut self.rng, c.len(), n) {
                    hist.push(self.contexts.ids(seqs, c[j]));
                }
                counts.push(n);
            }
            let f = encode_sorted(model, step.batcher, &hist);
            let ids: Vec<i64> = items.iter().map(|&i| i as i64).collect();
            let rows = model.encoder.item_table().select(
                0,
                Tensor::<1, Int>::from_data(TensorData::new(ids, [items.len()]), &device),
            );
            let w: Vec<f32> = items
                .iter()
                .map(|&i| {
                    item_weight(
                        e,
                        self.cfg.e_max,
                        self.split.count[i as usize] as usize,
                        self.split.tau_i,
                    ) as f32
                })
                .collect();
            let l_i = melt.item_loss(f, &counts, rows, &w);
            total = total + l_i.mul_scalar(self.cfg.lambda_i);
        }
        total
    }
}

/// Starts a MELT run: the backbone of the run `method.pretrained` names
/// (checked as CITIES checks it, and against the table the caller read,
/// `SemanticInputs::pretrained_items`) replaces the freshly built one of
/// `model` (built on `device`, the training device), `τ_u` is recorded in
/// the model, and the objective is built.
pub(crate) fn start(
    job: &Job<'_>,
    cfg: &MeltConfig,
    model: &mut Recommender,
    device: &Device,
) -> Result<MeltObjective, TrainError> {
    let dir = match &job.method.pretrained {
        Some(Pretrained::Run(d)) => Path::new(d),
        other => {
            return Err(TrainError::Config(format!(
                "method.melt trains a trained backbone run on: method.pretrained must name its \
                 folder ({{ run = \"…\" }}), got {other:?}"
            )));
        }
    };
    let n = job.split.num_items;
    let pre = crate::cities::load_pretrained(None, dir, job.model, n, device)?;
    if let Some(given) = &job.semantic.pretrained_items {
        let now = hsuga_model::to_f32(pre.encoder.item_table().narrow(0, 1, n as usize));
        if given
            .data
            .iter()
            .map(|v| v.to_bits())
            .ne(now.iter().map(|v| v.to_bits()))
        {
            return Err(TrainError::Inputs(format!(
                "method.pretrained = {{ run = \"{}\" }}: its item table changed since it was \
                 read (the run folder was replaced while this run started); start again",
                dir.display()
            )));
        }
    }
    model.encoder = pre.encoder;
    let objective = MeltObjective::new(cfg, job.model, job.split, job.groups);
    model
        .melt
        .as_mut()
        .expect("a MELT run builds MELT's branches")
        .set_tau_u(objective.split.tau_u);
    tracing::info!(
        tau_u = objective.split.tau_u,
        tau_i = objective.split.tau_i,
        head_users = objective.head_users.len(),
        head_items = objective.head_items.len(),
        tail_items_refreshed = objective.tail_items.len(),
        "MELT splits"
    );
    Ok(objective)
}
