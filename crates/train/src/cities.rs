//! CITIES's training stage ([`hsuga_model::cities`] has the network and the
//! contexts): read the trained backbone run named by `method.pretrained`,
//! train the embedding-inference network `f` on head items, overwrite every
//! tail item's row of the backbone's item table with `f(all its
//! contexts)`, and evaluate the unchanged backbone with that table through
//! the normal evaluation chain. [`crate::fit`] dispatches here when
//! `method.cities` is set, so a CITIES run folder is a normal run folder:
//! `best.bpk` is the backbone with its new table (`hsuga serve` and `hsuga
//! report` read it like any run, without the pretrained run), beside the
//! ranks, `result.json` and, of `f`'s training, `cities.json` and the
//! epoch logs (`log.csv`: epoch, training MSE; validation MSE is in
//! `cities.json`).
//!
//! The official training (BASELINES.md §1): each step draws 128 head items
//! with replacement and one shot count `k ~ U{1..10}`, `k` contexts per
//! item with replacement, and minimises `MSE(f(contexts), E_pre[i])`; an
//! epoch is `⌊|train head| / 128⌋` steps; Adam (ε 1e-6) at 1e-4 with a
//! 100-step linear warm-up and a linear decay towards zero at step 10⁶;
//! early stop on the validation MSE (5 % of the head items, summed over
//! `k = 1..10`) with patience 10. Tail items without a context keep their
//! pretrained row.
//!
//! Ours: the validation contexts are drawn once per run (seeded), so that
//! epochs compare on the same draws (the official code redraws them each
//! epoch); head items without any context are left out of both halves.
//!
//! Killed mid-run, a CITIES run restarts from the beginning: nothing is
//! written to its folder before `f` has finished and the table is
//! overwritten (then `best.bpk`, atomically, and the logs), and the run is
//! deterministic in its seed, so the restart writes the same table. (`f`
//! trains in seconds to minutes on the paper's datasets; per-epoch commits
//! were not worth their code.)

use std::path::Path;
use std::time::Instant;

use hsuga_data::{Phase, Split};
use hsuga_eval::{Means, evaluate};
use hsuga_model::burn::module::{Module, Param};
use hsuga_model::burn::optim::{AdamConfig, GradientsParams};
use hsuga_model::burn::tensor::{Device, Int, Tensor, TensorData};
use hsuga_model::{
    Batcher, Cities, CitiesConfig, CitiesHead, Contexts, ModelConfig, Recommender, SequenceEncoder,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{MethodConfig, Pretrained, RunConfig};
use crate::error::TrainError;
use crate::scoring::ModelScorer;
use crate::semantic::{Matrix, SemanticInputs};
use crate::trainer::{EpochLog, Job, Outcome, load_best, model_tag};

/// The official scheduler's horizon: the learning rate decays linearly
/// towards zero at this step (cities.py; ≈ constant in practice).
const DECAY_STEPS: usize = 1_000_000;

/// Most contexts run through `f` in one inference batch.
const INFER_CONTEXTS: usize = 4096;

/// The `[model]` keys in which two backbone settings differ, as
/// `key: a → b`.
pub fn model_differences(a: &ModelConfig, b: &ModelConfig) -> Vec<String> {
    let table = |m: &ModelConfig| toml::Table::try_from(m.clone()).unwrap_or_default();
    let (ta, tb) = (table(a), table(b));
    let mut keys: Vec<&String> = ta.keys().chain(tb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let show = |t: &toml::Table| t.get(k).map_or("unset".into(), |v| v.to_string());
            let (x, y) = (show(&ta), show(&tb));
            (x != y).then(|| format!("model.{k}: {x} → {y}"))
        })
        .collect()
}

/// The pretrained backbone in `dir`, checked for a CITIES (or MELT) run with
/// `model` on a catalogue of `num_items`: the run is a plain backbone (no
/// method part) with the same `[model]` (CITIES evaluates it unchanged, so
/// another `max_len`, `causal` or `hidden` would evaluate another model),
/// and its best checkpoint loads. Every error names `method.pretrained`
/// and the folder. Whether it ran on the same dataset is the caller's check.
pub(crate) fn load_pretrained(
    stored: Option<&RunConfig>,
    dir: &Path,
    model: &ModelConfig,
    num_items: u32,
    device: &Device,
) -> Result<Recommender, TrainError> {
    let fail = |msg: String| {
        TrainError::Inputs(format!(
            "method.pretrained = {{ run = \"{}\" }}: {msg}",
            dir.display()
        ))
    };
    if let Some(stored) = stored {
        if stored.method != MethodConfig::default() {
            return Err(fail(format!(
                "is a run with method parts ({}); CITIES and MELT start from a plain backbone \
                 run",
                toml::to_string(&stored.method)
                    .unwrap_or_default()
                    .trim()
                    .replace('\n', ", ")
            )));
        }
        let diff = model_differences(&stored.model, model);
        if !diff.is_empty() {
            return Err(fail(format!(
                "its [model] differs from this run's ({}); CITIES evaluates that backbone \
                 unchanged (MELT trains it on), so they must match",
                diff.join("; ")
            )));
        }
    }
    load_best(
        model,
        &MethodConfig::default(),
        &SemanticInputs::default(),
        num_items,
        dir,
        device,
    )
    .map_err(|e| fail(format!("its best checkpoint: {e}")))
}

/// The item rows `1..=N` of a backbone as a matrix (row `i - 1` = item `i`).
fn item_rows(model: &Recommender, num_items: u32) -> Matrix {
    let table = model.encoder.item_table();
    let [_, h] = table.dims();
    let n = num_items as usize;
    Matrix {
        rows: n,
        dim: h,
        data: hsuga_model::to_f32(table.narrow(0, 1, n)),
    }
}

/// The item table (`num_items × hidden`) of the finished backbone run in
/// `dir`, whose resolved config is `stored`, after checking that CITIES
/// with `model` can start from it (see the module docs): what the runner
/// hands to a CITIES run as `SemanticInputs::pretrained_items`, so the
/// run's input digest covers the table it starts from.
pub fn pretrained_table(
    stored: &RunConfig,
    dir: &Path,
    model: &ModelConfig,
    num_items: u32,
) -> Result<Matrix, TrainError> {
    let m = load_pretrained(Some(stored), dir, model, num_items, &hsuga_model::cpu())?;
    Ok(item_rows(&m, num_items))
}

/// The contexts CITIES reads: windows over each user's *training* items
/// only, so no validation or test item can enter one (the official code
/// reads whole sequences, which under leave-one-out would leak them).
pub fn training_contexts(split: &Split, half_window: usize) -> Contexts {
    Contexts::build(&split.train, split.num_items, half_window)
}

/// What a CITIES run records of `f` (`cities.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CitiesLog {
    pub head_train_items: usize,
    pub head_valid_items: usize,
    /// Tail items whose rows were replaced.
    pub tail_inferred: usize,
    /// Tail items without any context (rows kept).
    pub tail_without_context: usize,
    pub best_epoch: usize,
    /// Per epoch: mean training MSE and the validation MSE summed over
    /// `k = 1..=max_shots`.
    pub train_mse: Vec<f64>,
    pub valid_mse: Vec<f64>,
    /// The validation MSE (summed the same way) of a constant guess, the
    /// mean row of the training head items: what `f` must beat to have
    /// learnt anything from the contexts.
    pub valid_mse_of_mean: f64,
    /// Mean L2 norm of the head items' rows, of the tail rows before, and
    /// of the inferred rows: an `f` far from converged infers rows of
    /// another scale, which then outscore (or underscore) every head item.
    pub head_row_norm: f64,
    pub tail_row_norm_before: f64,
    pub inferred_row_norm: f64,
}

/// One fixed validation draw: per shot count `k`, `[items, k, W]` ids and
/// the items.
struct ValidDraw {
    per_k: Vec<(usize, Vec<u32>)>,
    items: Vec<u32>,
}

/// The learning rate of optimiser step `step` (0-based), as the official
/// `LambdaLR`: linear warm-up from 0, then linear decay to 0 at
/// [`DECAY_STEPS`].
fn lr_at(cfg: &CitiesConfig, step: usize) -> f64 {
    let w = cfg.warmup_steps;
    if step < w {
        cfg.lr * step as f64 / w.max(1) as f64
    } else {
        cfg.lr * (DECAY_STEPS.saturating_sub(step) as f64 / (DECAY_STEPS - w).max(1) as f64)
    }
}

/// `[B, K, W]` windows of `items` from `k` contexts each, drawn with
/// replacement.
fn draw(
    ctx: &Contexts,
    seqs: &[Vec<u32>],
    items: &[u32],
    k: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<u32> {
    let mut out = Vec::with_capacity(items.len() * k * ctx.width());
    for &i in items {
        let occ = &ctx.at[i as usize];
        for _ in 0..k {
            ctx.window_into(seqs, occ[rng.random_range(0..occ.len())], &mut out);
        }
    }
    out
}

fn ids_tensor(ids: &[u32], b: usize, k: usize, w: usize, device: &Device) -> Tensor<3, Int> {
    let v: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
    Tensor::from_data(TensorData::new(v, [b, k, w]), device)
}

/// `table[items]` as `[B, H]` targets.
fn targets(table: &[f32], h: usize, items: &[u32], device: &Device) -> Tensor<2> {
    let mut v = Vec::with_capacity(items.len() * h);
    for &i in items {
        v.extend_from_slice(&table[i as usize * h..(i as usize + 1) * h]);
    }
    Tensor::from_data(TensorData::new(v, [items.len(), h]), device)
}

/// The validation MSE of `f` (plain device), summed over the shot counts.
fn valid_mse(
    f: &Cities,
    input: &Tensor<2>,
    table: &[f32],
    h: usize,
    w: usize,
    draw: &ValidDraw,
    device: &Device,
) -> f64 {
    let mut total = 0.0;
    for (k, ids) in &draw.per_k {
        let mut sq = 0.0f64;
        // 64 items at a time (the official validation batch).
        for (c, chunk) in draw.items.chunks(64).enumerate() {
            let per = k * w;
            let part = &ids[c * 64 * per..(c * 64 + chunk.len()) * per];
            let pred = f.forward(input.clone(), ids_tensor(part, chunk.len(), *k, w, device));
            let diff = pred - targets(table, h, chunk, device);
            sq += diff.powi_scalar(2).sum().into_scalar::<f32>() as f64;
        }
        total += sq / (draw.items.len() * h) as f64;
    }
    total
}

/// Trains `f`, replaces the tail rows and evaluates (see the module docs).
pub(crate) fn fit(job: &Job<'_>, cfg: &CitiesConfig) -> Result<Outcome, TrainError> {
    let split = job.split;
    job.semantic.check(job.method, job.model.hidden, split)?;
    let dir = match &job.method.pretrained {
        Some(Pretrained::Run(d)) => Path::new(d),
        other => {
            return Err(TrainError::Config(format!(
                "method.cities reads a trained backbone run: method.pretrained must name its \
                 folder ({{ run = \"…\" }}), got {other:?}"
            )));
        }
    };
    let n = split.num_items;
    let h = job.model.hidden;
    let device = job.device.clone();
    let mut model = load_pretrained(None, dir, job.model, n, &device)?;
    let e_pre = item_rows(&model, n);
    if let Some(given) = &job.semantic.pretrained_items
        && given
            .data
            .iter()
            .map(|v| v.to_bits())
            .ne(e_pre.data.iter().map(|v| v.to_bits()))
    {
        return Err(TrainError::Inputs(format!(
            "method.pretrained = {{ run = \"{}\" }}: its item table changed since it was read \
             (the run folder was replaced while this run started); start again",
            dir.display()
        )));
    }
    let full = hsuga_model::to_f32(model.encoder.item_table()); // [V, H]
    let v = full.len() / h;

    // The frozen input rows of f: padding zeroed, items, then the MASK row
    // (the backbone's own where it has one, BERT4Rec; else a seeded draw).
    let mut rng = ChaCha8Rng::seed_from_u64(job.seed);
    rng.set_stream(0xC171E5);
    let mut input = vec![0f32; (n as usize + 2) * h];
    input[h..(n as usize + 1) * h].copy_from_slice(&full[h..(n as usize + 1) * h]);
    let mask_row = &mut input[(n as usize + 1) * h..];
    if v > n as usize + 1 {
        mask_row.copy_from_slice(&full[(n as usize + 1) * h..(n as usize + 2) * h]);
    } else {
        let m = e_pre.data.iter().map(|&x| x as f64).sum::<f64>() / e_pre.data.len() as f64;
        let var = e_pre
            .data
            .iter()
            .map(|&x| (x as f64 - m).powi(2))
            .sum::<f64>()
            / e_pre.data.len() as f64;
        let sd = var.sqrt();
        for x in mask_row.iter_mut() {
            // Box–Muller.
            let u: f64 = rng.random::<f64>().max(1e-12);
            let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * rng.random::<f64>()).cos();
            *x = (z * sd) as f32;
        }
    }

    // Head and tail items, and the contexts (training sequences only).
    let ctx = training_contexts(split, cfg.half_window);
    let w = ctx.width();
    let pop = split.train_popularity();
    let is_head = |i: usize| match cfg.head {
        CitiesHead::Count => pop[i] > cfg.freq_bound,
        CitiesHead::Groups => job.groups.head_items[i],
    };
    let mut head: Vec<u32> = (1..=n)
        .filter(|&i| is_head(i as usize) && !ctx.at[i as usize].is_empty())
        .collect();
    head.shuffle(&mut rng);
    let n_valid = ((head.len() as f64 * cfg.val_ratio).round() as usize).max(1);
    if head.len() < n_valid + 1 {
        return Err(TrainError::Inputs(format!(
            "method.cities: {} head item(s) with a context; at least two are needed to train \
             and validate f (lower method.cities.freq_bound, or head = \"groups\")",
            head.len()
        )));
    }
    let valid_items: Vec<u32> = head[..n_valid].to_vec();
    let train_items: Vec<u32> = head[n_valid..].to_vec();
    let draw_v = ValidDraw {
        per_k: (1..=cfg.max_shots)
            .map(|k| (k, draw(&ctx, &split.train, &valid_items, k, &mut rng)))
            .collect(),
        items: valid_items.clone(),
    };

    // f, initialised under the process-wide lock, from the run's seed.
    let ad = device.clone().autodiff();
    let mut f = {
        let _alone = crate::trainer::INIT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        ad.seed(job.seed);
        let f = Cities::new(cfg, h, &ad);
        f.visit(&mut crate::trainer::Materialize);
        f
    };
    let input_ad = Tensor::<2>::from_data(TensorData::new(input.clone(), [n as usize + 2, h]), &ad);
    let input_plain =
        Tensor::<2>::from_data(TensorData::new(input.clone(), [n as usize + 2, h]), &device);
    let mut optim = AdamConfig::new().with_epsilon(1e-6).init();
    let steps_per_epoch = (train_items.len() / cfg.batch_size).max(1);
    let mut step = 0usize;
    let mut best: Option<(f64, usize, Cities)> = None;
    let mut history = Vec::new();
    let mut log = CitiesLog {
        head_train_items: train_items.len(),
        head_valid_items: valid_items.len(),
        tail_inferred: 0,
        tail_without_context: 0,
        best_epoch: 0,
        train_mse: Vec::new(),
        valid_mse: Vec::new(),
        head_row_norm: 0.0,
        tail_row_norm_before: 0.0,
        inferred_row_norm: 0.0,
        valid_mse_of_mean: {
            let mut mean = vec![0f64; h];
            for &i in &train_items {
                for (m, &x) in mean
                    .iter_mut()
                    .zip(&input[i as usize * h..(i as usize + 1) * h])
                {
                    *m += x as f64 / train_items.len() as f64;
                }
            }
            let sq: f64 = valid_items
                .iter()
                .flat_map(|&i| &input[i as usize * h..(i as usize + 1) * h])
                .zip(mean.iter().cycle())
                .map(|(&x, m)| (x as f64 - m).powi(2))
                .sum();
            sq / (valid_items.len() * h) as f64 * cfg.max_shots as f64
        },
    };
    let mut bad = 0usize;
    let mut train_seconds = 0.0;
    let mut epochs_run = 0;
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        let mut erng = ChaCha8Rng::seed_from_u64(job.seed);
        erng.set_stream(epoch as u64);
        hsuga_model::seed_dropout(job.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch as u64);
        let mut loss_sum = 0.0;
        for _ in 0..steps_per_epoch {
            let items: Vec<u32> = (0..cfg.batch_size)
                .map(|_| train_items[erng.random_range(0..train_items.len())])
                .collect();
            let k = erng.random_range(1..=cfg.max_shots);
            let ids = draw(&ctx, &split.train, &items, k, &mut erng);
            let pred = f.forward(input_ad.clone(), ids_tensor(&ids, items.len(), k, w, &ad));
            let loss = (pred - targets(&input, h, &items, &ad))
                .powi_scalar(2)
                .mean();
            loss_sum += loss.clone().into_scalar::<f32>() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &f);
            f = optim.step(lr_at(cfg, step), f, grads);
            step += 1;
        }
        let plain = f.valid();
        let vm = valid_mse(&plain, &input_plain, &input, h, w, &draw_v, &device);
        let seconds = t0.elapsed().as_secs_f64();
        train_seconds += seconds;
        epochs_run = epoch;
        let better = best.as_ref().is_none_or(|(b, _, _)| vm < *b);
        let mse = loss_sum / steps_per_epoch as f64;
        log.train_mse.push(mse);
        log.valid_mse.push(vm);
        history.push(EpochLog {
            epoch,
            loss: mse,
            seconds,
            train_seqs_per_s: (steps_per_epoch * cfg.batch_size) as f64 / seconds.max(1e-9),
            valid: None,
            best: better,
        });
        if job.train.progress {
            job.progress.println(&format!(
                "CITIES f epoch {epoch:>3}  train MSE {mse:.6}  valid MSE (Σk) {vm:.6}  \
                 {seconds:.1}s{}",
                if better { "  *" } else { "" }
            ));
        }
        if better {
            best = Some((vm, epoch, plain));
            bad = 0;
        } else {
            bad += 1;
            if bad >= cfg.patience {
                break;
            }
        }
    }
    let (_, best_epoch, f) = best.expect("at least one epoch ran");
    log.best_epoch = best_epoch;

    // Every tail item with a context: f(all its contexts), batched by count.
    let mut table = full.clone();
    let mut by_k: std::collections::BTreeMap<usize, Vec<u32>> = Default::default();
    for i in 1..=n {
        if is_head(i as usize) {
            continue;
        }
        match ctx.at[i as usize].len() {
            0 => log.tail_without_context += 1,
            k => by_k.entry(k).or_default().push(i),
        }
    }
    for (k, items) in &by_k {
        for chunk in items.chunks((INFER_CONTEXTS / k).max(1)) {
            let mut ids = Vec::with_capacity(chunk.len() * k * w);
            for &i in chunk {
                for &occ in &ctx.at[i as usize] {
                    ctx.window_into(&split.train, occ, &mut ids);
                }
            }
            let pred = hsuga_model::to_f32(f.forward(
                input_plain.clone(),
                ids_tensor(&ids, chunk.len(), *k, w, &device),
            ));
            for (j, &i) in chunk.iter().enumerate() {
                table[i as usize * h..(i as usize + 1) * h]
                    .copy_from_slice(&pred[j * h..(j + 1) * h]);
            }
            log.tail_inferred += chunk.len();
        }
    }
    let norm = |t: &[f32], items: &mut dyn Iterator<Item = u32>| {
        let (mut sum, mut count) = (0.0f64, 0usize);
        for i in items {
            let r = &t[i as usize * h..(i as usize + 1) * h];
            sum += r.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
            count += 1;
        }
        sum / count.max(1) as f64
    };
    log.head_row_norm = norm(&full, &mut (1..=n).filter(|&i| is_head(i as usize)));
    log.tail_row_norm_before = norm(&full, &mut by_k.values().flatten().copied());
    log.inferred_row_norm = norm(&table, &mut by_k.values().flatten().copied());
    // The same parameter id as the pretrained row table: a restart writes
    // the same checkpoint bytes.
    let weight = model.encoder.item_weight_mut();
    *weight = Param::initialized(
        weight.id,
        Tensor::from_data(TensorData::new(table, [v, h]), &device),
    );
    tracing::info!(
        best_epoch,
        tail_inferred = log.tail_inferred,
        tail_without_context = log.tail_without_context,
        head_row_norm = log.head_row_norm,
        inferred_row_norm = log.inferred_row_norm,
        "CITIES: tail rows replaced"
    );

    // The unchanged backbone with the new table, through the normal chain.
    let eval_batcher = Batcher::new(job.model, n, &device);
    let scorer = ModelScorer::new(&model, &eval_batcher, None);
    let ranks = |phase| {
        evaluate(
            &scorer,
            split,
            job.groups,
            job.candidates,
            phase,
            job.eval.protocol,
            job.train.eval_batch_size,
            |_, _| {},
        )
    };
    let valid = ranks(Phase::Valid);
    let test_rankings = ranks(Phase::Test);
    let metrics = job.eval.metrics();
    let selecting = job.eval.protocol.selecting();
    let outcome = Outcome {
        best_epoch,
        best_valid: Means::of(selecting, valid.selecting(job.eval), &metrics),
        test: test_rankings
            .each(job.eval)
            .into_iter()
            .map(|(p, r)| Means::of(p, r, &metrics))
            .collect(),
        epochs_run,
        stopped_early: epochs_run < cfg.epochs,
        train_seconds,
        valid,
        test_rankings,
        history,
    };
    if let Some(out) = job.run_dir {
        std::fs::create_dir_all(out)?;
        let tag = model_tag(job.model, n) + &job.method.tag();
        crate::checkpoint::save(&model, &tag, &out.join("best.bpk"))?;
        std::fs::write(out.join("cities.json"), serde_json::to_string_pretty(&log)?)?;
        crate::log::write_logs(out, &outcome.history)?;
        crate::log::write_outcome(out, &outcome)?;
    }
    Ok(outcome)
}
