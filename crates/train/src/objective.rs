//! Training objectives beside the model's own loss: what a system with its
//! own extra loss and per-epoch state (RLMRec's alignment, RCL's relative
//! contrast) plugs into [`crate::fit`] without another edit of the loop.
//!
//! The trainer calls [`Objective::start_epoch`] once before each epoch's
//! first batch, with a plain (eval-mode) copy of the current weights, the
//! split and a random stream of that epoch alone, then [`Objective::loss`]
//! on every batch, with the autodiff model, the batch's users, the
//! [`TrainBatch`] and the student (each row's last-position
//! representation from the rank-loss forward); the extra losses are added
//! to the rank loss before the backward pass.
//!
//! An objective that must *change* the trained model at an epoch start
//! (MELT overwrites the tail items' rows) returns an [`EpochEdit`] from
//! [`Objective::edit_epoch`], which the trainer applies to the autodiff
//! model; the others keep the default, no edit.
//!
//! Reproducible and resumable by construction: the epoch stream is seeded
//! from the run's seed and the epoch number ([`epoch_rng`]), apart from the
//! stream that shuffles batches, so adding an objective leaves the batches
//! and negatives of the backbone's run unchanged; and state that must
//! survive a resume is either a function of the run's seed and data,
//! computed when the objective is built (RCL's weak positives), or redrawn
//! at every epoch start from the epoch stream (RCL's strong positives) —
//! nothing an objective holds needs storing in the run folder.
//!
//! Self-distillation ([`crate::distill`]) has the same step shape but stays
//! outside this trait: its cache teacher is refreshed from the trainer's
//! validation pass (the representations the evaluation computes anyway), a
//! hook that only it needs, and its online teacher encodes with the
//! evaluation batcher and batch size; folding those into the trait would
//! give every objective three hooks for one user.

use hsuga_data::Split;
use hsuga_model::burn::tensor::{Device, Tensor};
use hsuga_model::{Batcher, Recommender, TrainBatch};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::MethodConfig;
use crate::error::TrainError;
use crate::icsrec_objective::IcsrecObjective;
use crate::rcl_objective::RclObjective;
use crate::rlmrec_objective::RlmrecObjective;
use crate::semantic::SemanticInputs;

/// What an objective sees at the start of an epoch.
pub struct EpochStart<'a> {
    /// 1-based.
    pub epoch: usize,
    /// A plain (eval-mode, no autodiff) copy of the current weights.
    pub model: &'a Recommender,
    pub split: &'a Split,
    /// This epoch's own stream ([`epoch_rng`]).
    pub rng: &'a mut ChaCha8Rng,
}

/// What an objective sees at one training step.
pub struct Step<'a> {
    /// The model being trained (autodiff): a loss built from its forwards
    /// trains it.
    pub model: &'a Recommender,
    /// The batch rows' user indices (split order).
    pub users: &'a [usize],
    pub batch: &'a TrainBatch,
    /// `[B, D]` each row's last-position representation from the rank-loss
    /// forward (fused, when the model fuses).
    pub student: &'a Tensor<2>,
    /// Builds further inputs on the training (autodiff) device.
    pub batcher: &'a Batcher,
    pub split: &'a Split,
    /// `[U, S]` every user's semantic vector on the training device, when
    /// the model fuses it (attach rows with [`crate::attach_users`]).
    pub user_semantic: Option<&'a Tensor<2>>,
}

/// Changes an objective makes to the model being trained at an epoch
/// start (MELT's refresh of the tail items' rows), applied by the trainer
/// to the autodiff model before the epoch's first batch: the parameters
/// keep their ids, so the optimiser's moments carry over as they do for an
/// in-place `.data` write in PyTorch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochEdit {
    /// `(item id, new row)` of the backbone's item table.
    pub item_rows: Vec<(u32, Vec<f32>)>,
}

/// A training objective added to the model's own loss.
pub trait Objective {
    /// Called before each epoch's first batch (also the first epoch after
    /// a resume).
    fn start_epoch(&mut self, _start: EpochStart<'_>) {}

    /// Called after [`Self::start_epoch`] with the number of batches the
    /// epoch will run: what to change in the trained model before its
    /// first batch. A function of what `start_epoch` saw, so a resumed run
    /// makes the same edit. Nothing by default.
    fn edit_epoch(&mut self, _batches: usize) -> EpochEdit {
        EpochEdit::default()
    }

    /// The extra loss of one step (`[1]`), already weighted.
    fn loss(&mut self, step: &Step<'_>) -> Tensor<1>;
}

/// Salt of the objectives' epoch streams, so they never coincide with the
/// trainer's batch stream of the same seed.
const SALT: u64 = 0x5EED_0B1E_C71E_0000;

/// The random stream of one epoch of the objectives (seeded from the run's
/// seed and the epoch, like the trainer's own).
pub fn epoch_rng(seed: u64, epoch: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SALT);
    rng.set_stream(epoch as u64);
    rng
}

/// The objectives a method names, built on the training device.
pub fn build(
    method: &MethodConfig,
    semantic: &SemanticInputs,
    split: &Split,
    max_len: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<Box<dyn Objective>>, TrainError> {
    let mut out: Vec<Box<dyn Objective>> = Vec::new();
    if let Some(cfg) = &method.rlmrec {
        out.push(Box::new(RlmrecObjective::new(cfg, semantic, device)?));
    }
    if let Some(cfg) = &method.rcl {
        out.push(Box::new(RclObjective::new(cfg, split, max_len, seed)?));
    }
    if let Some(cfg) = &method.icsrec {
        out.push(Box::new(IcsrecObjective::new(cfg, split)?));
    }
    Ok(out)
}
