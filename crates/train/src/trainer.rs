//! The training loop: Adam, per-epoch validation NDCG@K, early stopping with
//! patience, best-checkpoint restore, and resume from the run folder.
//!
//! Reproducibility: the model is initialised after seeding the device; each
//! epoch draws its shuffling, masking and negatives from its own ChaCha
//! stream and reseeds dropout with a value derived from the seed and the
//! epoch, so a resumed run replays the same epochs. Runs may train side by
//! side in one process (one thread each): dropout streams are per thread,
//! and initialisation, which draws from burn's one process-wide RNG, takes
//! a lock (so does building a model to load a checkpoint into: loading
//! draws the initial weights it replaces).

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use hsuga_data::{Candidates, Groups, Phase, Split};
use hsuga_eval::{EvalConfig, Means, PhaseRanks, evaluate};
use hsuga_model::burn::module::{Module, ModuleVisitor, Param};
use hsuga_model::burn::optim::decay::WeightDecayConfig;
use hsuga_model::burn::optim::{AdamConfig, GradientsParams};
use hsuga_model::burn::tensor::Device;
use hsuga_model::burn::tensor::{Tensor, TensorData};
use hsuga_model::{
    Batcher, DualViewSpec, Extras, Llm2recSpec, LlmembSpec, Model, ModelConfig, Recommender,
    RlmrecSpec, TextItemsSpec,
};
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::config::{ItemInit, MethodConfig, TrainSettings, check_settings};
use crate::distill::Distiller;
use crate::epoch_commit;
use crate::error::TrainError;
use crate::log;
use crate::progress::Progress;
use crate::scoring::{ModelScorer, attach_users, represent_users};
use crate::semantic::{Matrix, SemanticInputs, pca_rows};

/// One line of the training log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based.
    pub epoch: usize,
    pub loss: f64,
    pub seconds: f64,
    pub train_seqs_per_s: f64,
    /// Validation on the selecting protocol, when the epoch evaluated.
    pub valid: Option<Means>,
    pub best: bool,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub best_epoch: usize,
    /// The best checkpoint's validation, on the selecting protocol.
    pub best_valid: Means,
    /// Its test metrics, one entry per protocol (the selecting one first).
    pub test: Vec<Means>,
    pub epochs_run: usize,
    pub stopped_early: bool,
    pub train_seconds: f64,
    /// The best checkpoint's rankings of every user, per protocol.
    pub valid: PhaseRanks,
    pub test_rankings: PhaseRanks,
    pub history: Vec<EpochLog>,
}

impl Outcome {
    /// 0-based rank of each user's test target (index = user) on the
    /// selecting protocol.
    pub fn test_ranks(&self) -> Vec<u32> {
        let r = match self.test.first().map(|m| m.protocol) {
            Some(p) => self.test_rankings.get(p),
            None => None,
        };
        r.map_or_else(Vec::new, |r| r.ranks.iter().map(|&x| x as u32).collect())
    }
}

/// Progress saved after every epoch (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    epochs_done: usize,
    best_epoch: usize,
    best_valid: Option<Means>,
    bad_evals: usize,
    train_seconds: f64,
    history: Vec<EpochLog>,
}

/// Everything one run needs.
pub struct Job<'a> {
    pub model: &'a ModelConfig,
    pub train: &'a TrainSettings,
    /// Protocols, cut-offs and the selection metric.
    pub eval: &'a EvalConfig,
    /// What the model adds to its backbone (`MethodConfig::default()`: nothing).
    pub method: &'a MethodConfig,
    /// The matrices the method reads (`SemanticInputs::default()`: none).
    pub semantic: &'a SemanticInputs,
    pub seed: u64,
    pub split: &'a Split,
    /// Head/tail users and items, recorded with every ranking.
    pub groups: &'a Groups,
    pub candidates: &'a Candidates,
    /// Where checkpoints and logs go; `None` keeps everything in
    /// memory (tests, benchmarks).
    pub run_dir: Option<&'a Path>,
    /// The plain device (autodiff is added for training).
    pub device: Device,
    /// Where the bars and epoch lines go (when `train.progress` is on).
    pub progress: Progress,
}

/// Held while a model draws its initial weights from burn's global RNG.
pub(crate) static INIT: Mutex<()> = Mutex::new(());

/// burn initialises weights lazily, on first use; this draws them all at
/// once, while [`INIT`] is held.
pub(crate) struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        param.val();
    }
}

/// Builds a model and draws all its initial weights while [`INIT`] is held.
/// Every model this crate builds goes through here, also those whose
/// weights a checkpoint then replaces: loading materialises the random
/// initial weights first, and those draws, unlocked, could land inside
/// another run's seeded initialisation and change its weights (a run's
/// result then depended on what else the process was doing).
fn build_alone(
    build: impl FnOnce() -> Result<Recommender, TrainError>,
) -> Result<Recommender, TrainError> {
    let _alone = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let model = build()?;
    model.visit(&mut Materialize);
    Ok(model)
}

/// Most memory a run may plan to use (a rough upper estimate, see
/// [`check_memory`]); a setting past it is an error before any allocation.
const MAX_TRAIN_BYTES: f64 = 64e9;

/// Refuses settings whose training would need more than [`MAX_TRAIN_BYTES`]:
/// the item table with its gradient and Adam's two moments, each layer's
/// activations, the attention scores of a batch (kept for backward), and
/// LLMEmb's `[M, M]` alignment matrices (M = the step's targets).
fn check_memory(
    model: &ModelConfig,
    num_items: u32,
    s: &TrainSettings,
    llmemb: bool,
) -> Result<(), TrainError> {
    let (items, hidden) = (num_items as f64 + 2.0, model.hidden as f64);
    let (batch, len) = (
        s.batch_size.max(s.eval_batch_size) as f64,
        model.max_len as f64,
    );
    let layers = model.backbone.layers() as f64;
    let table = 16.0 * items * hidden;
    let activations = 4.0 * 12.0 * batch * len * hidden * layers;
    let attention = 4.0 * 3.0 * batch * model.heads as f64 * len * len * layers;
    // LLMEmb's alignment: a few [M, M] matrices over the step's targets.
    let align = if llmemb {
        4.0 * 6.0 * (s.batch_size as f64 * len).powi(2)
    } else {
        0.0
    };
    let need = table + activations + attention + align;
    if need > MAX_TRAIN_BYTES {
        return Err(TrainError::Config(format!(
            "these settings would need about {:.0} GB to train ({} items × model.hidden {}, \
             batch {} × model.max_len {} × {} layers); the limit is {:.0} GB: lower \
             model.hidden, model.max_len or the batch sizes",
            need / 1e9,
            num_items,
            model.hidden,
            batch,
            model.max_len,
            layers,
            MAX_TRAIN_BYTES / 1e9
        )));
    }
    Ok(())
}

/// The dropout seed of one epoch.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(epoch as u64)
}

/// The tag stored in checkpoints: loading into another backbone or
/// catalogue size fails with a clear message.
pub fn model_tag(cfg: &ModelConfig, num_items: u32) -> String {
    format!(
        "{}/items={}/hidden={}/layers={}/heads={}/max_len={}",
        cfg.kind().name(),
        num_items,
        cfg.hidden,
        cfg.backbone.layers(),
        cfg.heads,
        cfg.max_len
    )
}

/// Batches of user indices for one epoch.
fn epoch_batches(
    split: &Split,
    min_len: usize,
    s: &TrainSettings,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<usize>> {
    let mut users: Vec<usize> = (0..split.num_users())
        .filter(|&u| split.train[u].len() >= min_len)
        .collect();
    users.shuffle(rng);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    if s.length_buckets {
        // Sort within large shuffled chunks: batches of similar lengths, but
        // each batch still a random draw of users.
        for chunk in users.chunks(s.batch_size * 32) {
            let mut c = chunk.to_vec();
            c.sort_by_key(|&u| split.train[u].len());
            batches.extend(c.chunks(s.batch_size).map(<[usize]>::to_vec));
        }
        batches.shuffle(rng);
    } else {
        batches.extend(users.chunks(s.batch_size).map(<[usize]>::to_vec));
    }
    batches
}

/// A `rows × dim` matrix as a device tensor.
fn matrix_tensor(m: &Matrix, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(m.data.clone(), [m.rows, m.dim]), device)
}

/// Builds the job's model (backbone + method parts) on a device; the same
/// recipe builds the training model and the one a checkpoint loads into.
struct Builder<'a> {
    model: &'a ModelConfig,
    method: &'a MethodConfig,
    semantic: &'a SemanticInputs,
    num_items: u32,
    item_init: Option<Vec<f32>>,
}

impl Builder<'_> {
    fn build(&self, device: &Device) -> Result<Recommender, TrainError> {
        let text = self.semantic.item_text.as_ref();
        let extras = Extras {
            item_init: self.item_init.as_deref(),
            dual_view: match (self.method.dual_view, text) {
                (true, Some(t)) => Some(DualViewSpec {
                    text: &t.data,
                    dim: t.dim,
                    cross_attention: self.method.cross_attention,
                }),
                _ => None,
            },
            fusion: self
                .semantic
                .user_semantic
                .as_ref()
                .map(|u| (self.method.fusion, u.dim)),
            text_items: match (&self.method.llm2rec, &self.method.llmemb, text) {
                (Some(_), _, Some(t)) => Some(TextItemsSpec::Llm2rec(Llm2recSpec {
                    text: &t.data,
                    dim: t.dim,
                })),
                (_, Some(cfg), Some(t)) => Some(TextItemsSpec::Llmemb(LlmembSpec {
                    text: &t.data,
                    dim: t.dim,
                    cfg,
                    // Absent when a checkpoint is only loaded to score.
                    srs: self.semantic.pretrained_items.as_ref().map(|m| &m.data[..]),
                })),
                _ => None,
            },
            rlmrec: match (&self.method.rlmrec, text, &self.semantic.user_semantic) {
                (Some(_), Some(t), Some(u)) => Some(RlmrecSpec {
                    user_dim: u.dim,
                    item_dim: t.dim,
                }),
                _ => None,
            },
            melt: self.method.melt.is_some(),
        };
        Ok(Recommender::with_extras(
            self.model,
            self.num_items,
            &extras,
            device,
        )?)
    }
}

/// Trains, selects the best epoch on the configured validation metric and
/// tests it.
pub fn fit(job: &Job<'_>) -> Result<Outcome, TrainError> {
    check_settings(job.model, job.train, job.eval, job.method, None)?;
    // CITIES retrains no backbone: its own stage, same outputs.
    if let Some(c) = &job.method.cities {
        return crate::cities::fit(job, c);
    }
    let metrics = job.eval.metrics();
    let select = job.eval.select;
    let selecting = job.eval.protocol.selecting();
    let split = job.split;
    job.semantic.check(job.method, job.model.hidden, split)?;
    let num_items = split.num_items;
    let s = job.train;
    check_memory(job.model, num_items, s, job.method.llmemb.is_some())?;
    let tag = model_tag(job.model, num_items) + &job.method.tag();
    let builder = Builder {
        model: job.model,
        method: job.method,
        semantic: job.semantic,
        num_items,
        item_init: match (job.method.item_init, &job.semantic.item_text) {
            (ItemInit::Pca, Some(t)) => {
                Some(pca_rows(t, job.model.hidden, num_items as usize + 1)?)
            }
            _ => None,
        },
    };
    let mut distiller = match &job.method.distill {
        Some(d) => {
            let users = job.semantic.user_semantic.as_ref().expect("checked above");
            Some(Distiller::new(d, users, split)?)
        }
        None => None,
    };
    if let Some(d) = &distiller {
        let q = hsuga_retrieval::neighbour_quality(d.neighbours(), split, job.seed);
        tracing::info!(
            neighbour_jaccard = q.neighbour_jaccard,
            random_jaccard = q.random_jaccard,
            "training-item overlap with semantic neighbours vs random users"
        );
        if let Some(dir) = job.run_dir {
            std::fs::create_dir_all(dir)?;
            std::fs::write(
                dir.join("neighbours.json"),
                serde_json::to_string_pretty(&q)?,
            )?;
        }
    }
    let ad = job.device.clone().autodiff();
    let mut model = build_alone(|| {
        ad.seed(job.seed);
        builder.build(&ad)
    })?;
    // MELT trains on from a pretrained backbone, with its own objective.
    let melt = match &job.method.melt {
        Some(cfg) => Some(crate::melt::start(job, cfg, &mut model, &ad)?),
        None => None,
    };
    // Fusing models read each row's user embedding; constants, no gradient.
    // MELT's scoring reads each row's tail flag in the same slot (its
    // rank loss and branches read none).
    let (users_ad, users_plain) = match (&job.semantic.user_semantic, model.fuses_users()) {
        (Some(u), true) => (
            Some(matrix_tensor(u, &ad)),
            Some(matrix_tensor(u, &job.device)),
        ),
        _ => (None, melt.as_ref().map(|m| m.tail_flags(&job.device))),
    };
    let mut adam = AdamConfig::new().with_epsilon(1e-8);
    if s.weight_decay > 0.0 {
        adam = adam.with_weight_decay(Some(WeightDecayConfig::new(s.weight_decay as f32)));
    }
    let mut optim = adam.init();
    // Systems' own losses beside the model's (RLMRec, RCL): see objective.
    let mut objectives = crate::objective::build(
        job.method,
        job.semantic,
        split,
        job.model.max_len,
        job.seed,
        &ad,
    )?;
    if let Some(m) = melt {
        objectives.push(Box::new(m));
    }
    let batcher = Batcher::new(job.model, num_items, &ad);
    let eval_batcher = Batcher::new(job.model, num_items, &job.device);
    let min_len = job.model.backbone.reading().min_train_len();
    let seen_sorted = split.train_item_sets();

    let mut state = State {
        epochs_done: 0,
        best_epoch: 0,
        best_valid: None,
        bad_evals: 0,
        train_seconds: 0.0,
        history: Vec::new(),
    };
    let mut best_model: Option<Recommender> = None;
    if let Some(dir) = job.run_dir {
        std::fs::create_dir_all(dir)?;
        let state_path = dir.join("state.json");
        if state_path.exists() {
            let text = std::fs::read_to_string(&state_path)?;
            state = serde_json::from_str(&text).map_err(|e| {
                TrainError::Checkpoint(format!(
                    "{}: {e}; remove the run folder to retrain",
                    state_path.display()
                ))
            })?;
            let (weights, moments) = epoch_commit::resume_files(dir, state.epochs_done)?;
            model = checkpoint::load(model, &tag, &weights)?;
            optim = optim.load(&moments).map_err(|e| {
                TrainError::Checkpoint(format!("{}: optimiser state: {e:?}", moments.display()))
            })?;
            tracing::info!(epochs_done = state.epochs_done, "resuming run");
        }
        // What a kill left of an epoch that never committed.
        epoch_commit::remove_stale(dir, state.epochs_done)?;
    }

    let mut stopped_early = state.bad_evals >= s.patience && state.epochs_done > 0;
    while !stopped_early && state.epochs_done < s.epochs {
        let epoch = state.epochs_done + 1;
        if let Some(d) = distiller.as_mut() {
            d.start_epoch();
        }
        let t0 = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(job.seed);
        rng.set_stream(epoch as u64);
        hsuga_model::seed_dropout(epoch_seed(job.seed, epoch));
        let batches = epoch_batches(split, min_len, s, &mut rng);
        if !objectives.is_empty() {
            let plain = model.valid();
            let mut orng = crate::objective::epoch_rng(job.seed, epoch);
            for o in objectives.iter_mut() {
                o.start_epoch(crate::objective::EpochStart {
                    epoch,
                    model: &plain,
                    split,
                    rng: &mut orng,
                });
            }
            let mut rows = Vec::new();
            for o in objectives.iter_mut() {
                rows.extend(o.edit_epoch(batches.len()).item_rows);
            }
            if !rows.is_empty() {
                overwrite_item_rows(&mut model, &rows);
            }
        }
        let bar = if s.progress {
            job.progress.epoch_bar(epoch, batches.len() as u64)
        } else {
            ProgressBar::hidden()
        };
        let mut loss_sum = 0.0f64;
        let mut loss_n = 0usize;
        let mut seqs = 0usize;
        for users in &batches {
            let rows: Vec<&[u32]> = users.iter().map(|&u| split.train[u].as_slice()).collect();
            let mut tb = batcher.train_batch(
                &rows,
                |r, item| seen_sorted[users[r]].binary_search(&item).is_ok(),
                &mut rng,
            );
            if tb.count == 0 {
                continue;
            }
            attach_users(&mut tb.input, users_ad.as_ref(), users);
            let (mut rank_loss, student) = model.train_forward(&tb);
            for o in objectives.iter_mut() {
                let step = crate::objective::Step {
                    model: &model,
                    users,
                    batch: &tb,
                    student: &student,
                    batcher: &batcher,
                    split,
                    user_semantic: users_ad.as_ref(),
                };
                rank_loss = rank_loss + o.loss(&step);
            }
            let loss = match distiller.as_mut() {
                Some(d) => {
                    let (teacher, _) = d.teacher(users, |list| {
                        represent_users(
                            &model.valid(),
                            &eval_batcher,
                            split,
                            list,
                            s.eval_batch_size,
                            users_plain.as_ref(),
                        )
                    });
                    rank_loss + d.loss(student, teacher, &ad)
                }
                None => rank_loss,
            };
            let lv = loss.clone().into_scalar::<f32>() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(s.lr, model, grads);
            loss_sum += lv;
            loss_n += 1;
            seqs += users.len();
            bar.inc(1);
            if loss_n.is_multiple_of(10) {
                bar.set_message(format!(
                    "loss {:.4}{}",
                    loss_sum / loss_n as f64,
                    last_valid(&state)
                ));
            }
        }
        bar.finish_and_clear();
        let train_s = t0.elapsed().as_secs_f64();
        let mut line = EpochLog {
            epoch,
            loss: loss_sum / loss_n.max(1) as f64,
            seconds: train_s,
            train_seqs_per_s: seqs as f64 / train_s.max(1e-9),
            valid: None,
            best: false,
        };
        if epoch.is_multiple_of(s.eval_every) || epoch == s.epochs {
            let plain = model.valid();
            let scorer = ModelScorer::new(&plain, &eval_batcher, users_plain.as_ref());
            let dim = scorer.dim();
            // Validation selects on one protocol: the other is for the end.
            // The representations are copied to the host only for a
            // distiller that refreshes its teacher cache from them.
            let keep_reps = distiller
                .as_ref()
                .is_some_and(|d| d.wants_validation_reps());
            let mut reps = vec![
                0f32;
                if keep_reps {
                    split.num_users() * dim
                } else {
                    0
                }
            ];
            let ev = evaluate(
                &scorer,
                split,
                job.groups,
                job.candidates,
                Phase::Valid,
                selecting.only(),
                s.eval_batch_size,
                |users, enc| {
                    if !keep_reps {
                        return;
                    }
                    let h = hsuga_model::to_f32(enc.clone());
                    for (j, &u) in users.iter().enumerate() {
                        reps[u * dim..(u + 1) * dim].copy_from_slice(&h[j * dim..(j + 1) * dim]);
                    }
                },
            );
            let m = Means::of(selecting, ev.selecting(job.eval), &metrics);
            if let Some(d) = distiller.as_mut().filter(|_| keep_reps) {
                d.refresh_from(reps, dim);
            }
            let better = state
                .best_valid
                .as_ref()
                .is_none_or(|b| m.get(select) > b.get(select));
            line.valid = Some(m.clone());
            if better {
                state.best_valid = Some(m);
                state.best_epoch = epoch;
                state.bad_evals = 0;
                line.best = true;
                if let Some(dir) = job.run_dir {
                    checkpoint::save(&plain, &tag, &dir.join("best.bpk"))?;
                }
                best_model = Some(plain);
            } else {
                state.bad_evals += 1;
            }
        }
        state.train_seconds += train_s;
        state.epochs_done = epoch;
        if s.progress {
            job.progress.println(&format!(
                "epoch {epoch:>3}  loss {:.4}  {:.1}s  {:.0} seq/s{}{}",
                line.loss,
                train_s,
                line.train_seqs_per_s,
                line.valid
                    .as_ref()
                    .map_or(String::new(), |m| format!("  valid {}", m.describe())),
                if line.best { "  *" } else { "" }
            ));
        }
        tracing::debug!(epoch, loss = line.loss, "epoch done");
        state.history.push(line);
        stopped_early = state.bad_evals >= s.patience;
        if let Some(dir) = job.run_dir {
            // This epoch's pair, then the one commit point, then the
            // previous pair goes (see epoch_commit).
            let commit_t0 = Instant::now();
            checkpoint::save(&model, &tag, &epoch_commit::weights(dir, epoch))?;
            let moments = epoch_commit::optimiser(dir, epoch);
            optim.save(&moments).map_err(|e| {
                TrainError::Checkpoint(format!("{}: optimiser state: {e:?}", moments.display()))
            })?;
            epoch_commit::sync(&moments)?;
            epoch_commit::commit(dir, &serde_json::to_string_pretty(&state)?)?;
            epoch_commit::remove_stale(dir, epoch)?;
            log::write_logs(dir, &state.history)?;
            // What crash safety costs per epoch (`HSUGA_LOG=hsuga_train=debug`).
            tracing::debug!(
                epoch,
                ms = commit_t0.elapsed().as_secs_f64() * 1000.0,
                "epoch committed"
            );
        }
    }

    // Best-checkpoint restore.
    let best = match (best_model, job.run_dir) {
        (Some(m), _) => m,
        (None, Some(dir)) if dir.join("best.bpk").exists() => {
            let fresh = build_alone(|| builder.build(&job.device))?;
            checkpoint::load(fresh, &tag, &dir.join("best.bpk"))?
        }
        _ => model.valid(),
    };
    let scorer = ModelScorer::new(&best, &eval_batcher, users_plain.as_ref());
    let ranks = |phase| {
        evaluate(
            &scorer,
            split,
            job.groups,
            job.candidates,
            phase,
            job.eval.protocol,
            s.eval_batch_size,
            |_, _| {},
        )
    };
    let valid = ranks(Phase::Valid);
    let test_rankings = ranks(Phase::Test);
    let outcome = Outcome {
        best_epoch: state.best_epoch,
        best_valid: Means::of(selecting, valid.selecting(job.eval), &metrics),
        test: test_rankings
            .each(job.eval)
            .into_iter()
            .map(|(p, r)| Means::of(p, r, &metrics))
            .collect(),
        epochs_run: state.epochs_done,
        stopped_early,
        train_seconds: state.train_seconds,
        valid,
        test_rankings,
        history: state.history,
    };
    if let Some(dir) = job.run_dir {
        log::write_outcome(dir, &outcome)?;
    }
    Ok(outcome)
}

/// Writes `(item, row)` into the trained item table (an objective's
/// [`crate::objective::EpochEdit`]): a fresh leaf of the same parameter id,
/// so the optimiser's moments for the table carry over.
fn overwrite_item_rows(model: &mut Recommender, rows: &[(u32, Vec<f32>)]) {
    use hsuga_model::SequenceEncoder;
    let weight = model.encoder.item_weight_mut();
    let old = weight.val();
    let [v, h] = old.dims();
    let device = old.device();
    let mut table = hsuga_model::to_f32(old);
    for (i, r) in rows {
        table[*i as usize * h..(*i as usize + 1) * h].copy_from_slice(r);
    }
    let fresh = Tensor::<2>::from_data(TensorData::new(table, [v, h]), &device).require_grad();
    *weight = Param::initialized(weight.id, fresh);
}

fn last_valid(state: &State) -> String {
    state
        .history
        .iter()
        .rev()
        .find_map(|l| l.valid.as_ref())
        .map_or(String::new(), |m| format!("  valid {}", m.describe()))
}

/// A run's model with its method's parts (LLMInit rows, dual view, fusion)
/// read back from `best.bpk`, for scoring and serving: built by the same
/// recipe as the model that trained, and checked against the same tag, so a
/// checkpoint of other parts is refused (a plain backbone: the default
/// method and no semantic inputs). `semantic` must hold what the built parts read
/// (the item text for the dual view, the user matrix's width for fusion);
/// LLMInit's PCA rows are not needed, the checkpoint replaces them.
pub fn load_best(
    cfg: &ModelConfig,
    method: &MethodConfig,
    semantic: &SemanticInputs,
    num_items: u32,
    dir: &Path,
    device: &Device,
) -> Result<Recommender, TrainError> {
    let builder = Builder {
        model: cfg,
        method,
        semantic,
        num_items,
        item_init: None,
    };
    let fresh = build_alone(|| builder.build(device))?;
    let tag = model_tag(cfg, num_items) + &method.tag();
    checkpoint::load(fresh, &tag, &dir.join("best.bpk"))
}
