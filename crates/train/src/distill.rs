//! Retrieval-augmented self-distillation (LLM-ESR) and its group-aware form
//! (GAA, HSUGA paper §3.4, eq. 4 and 8): the student is the user's own
//! last-position representation, the teacher the (masked) mean of their
//! semantic neighbours' representations, detached; the loss
//! `alpha · MSE(student, teacher)` is added to the ranking loss.
//!
//! Neighbours come from [`hsuga_retrieval::retrieve`] once per run. A
//! neighbour's representation encodes its whole training sequence (as the
//! LLM-ESR code does) with an eval-mode copy of the model, so the teacher
//! carries no gradient and no dropout noise. Two teacher modes:
//! - [`Teacher::Cache`]: every user's representation is kept on the host and
//!   refreshed every `refresh` steps, or — with `refresh = 0` — from each
//!   epoch's validation pass, which encodes exactly those sequences anyway;
//! - [`Teacher::Online`]: the batch's distinct neighbours are encoded in the
//!   same step (the official code encodes K sequences per example, with
//!   gradient tracking; we encode each distinct neighbour once, without).
//!
//! The MSE is the mean over users and dimensions (PyTorch's `MSELoss`, as in
//! the LLM-ESR code); eq. 4's squared norm is that times the dimension.

use std::collections::HashMap;

use hsuga_data::Split;
use hsuga_model::burn::tensor::{Device, Tensor, TensorData};
use hsuga_retrieval::{Neighbours, UserEmbeddings, retrieve};

use crate::config::{DistillConfig, Teacher};
use crate::error::TrainError;
use crate::semantic::Matrix;

/// Neighbours, the teacher mode and (cache mode) the stored representations.
#[derive(Debug)]
pub struct Distiller {
    neighbours: Neighbours,
    alpha: f64,
    mode: Teacher,
    refresh: usize,
    /// Row-major `[U, D]` representations (cache mode).
    cache: Option<(Vec<f32>, usize)>,
    steps_since_refresh: usize,
    refreshed_this_epoch: bool,
}

impl Distiller {
    /// Retrieves every user's neighbours from their semantic embeddings.
    pub fn new(cfg: &DistillConfig, users: &Matrix, split: &Split) -> Result<Self, TrainError> {
        let emb = UserEmbeddings::new(users.dim, users.data.clone())
            .map_err(|e| TrainError::Inputs(format!("user semantic embeddings: {e}")))?;
        let neighbours = retrieve(&emb, split, &cfg.retrieval())
            .map_err(|e| TrainError::Inputs(format!("neighbour retrieval: {e}")))?;
        Ok(Self {
            neighbours,
            alpha: cfg.alpha,
            mode: cfg.teacher,
            refresh: cfg.refresh,
            cache: None,
            steps_since_refresh: 0,
            refreshed_this_epoch: false,
        })
    }

    pub fn neighbours(&self) -> &Neighbours {
        &self.neighbours
    }

    /// Whether the caller should hand over each validation pass's
    /// representations ([`Self::refresh_from`]).
    pub fn wants_validation_reps(&self) -> bool {
        self.mode == Teacher::Cache && self.refresh == 0
    }

    /// Stores every user's representation (cache mode, per-epoch refresh).
    pub fn refresh_from(&mut self, reps: Vec<f32>, dim: usize) {
        self.cache = Some((reps, dim));
        self.steps_since_refresh = 0;
        self.refreshed_this_epoch = true;
    }

    /// Call at the start of each epoch: a per-epoch cache that no validation
    /// pass refreshed (`eval_every > 1`) is dropped and recomputed.
    pub fn start_epoch(&mut self) {
        if self.wants_validation_reps() && !self.refreshed_this_epoch {
            self.cache = None;
        }
        self.refreshed_this_epoch = false;
    }

    /// The teacher rows for `users` (row-major `[B, D]`). `encode(list)`
    /// returns the listed users' representations from an eval-mode copy of
    /// the current weights; it is called only when this step needs it.
    pub fn teacher(
        &mut self,
        users: &[usize],
        encode: impl FnOnce(&[usize]) -> (Vec<f32>, usize),
    ) -> (Vec<f32>, usize) {
        match self.mode {
            Teacher::Online => {
                let mut distinct: Vec<usize> = users
                    .iter()
                    .flat_map(|&u| self.neighbours.of(u).iter().map(|&v| v as usize))
                    .collect();
                distinct.sort_unstable();
                distinct.dedup();
                let (reps, d) = encode(&distinct);
                let slot: HashMap<usize, usize> =
                    distinct.iter().enumerate().map(|(i, &v)| (v, i)).collect();
                (self.means(users, &reps, d, |v| slot[&v]), d)
            }
            Teacher::Cache => {
                let stale = self.refresh > 0 && self.steps_since_refresh >= self.refresh;
                if self.cache.is_none() || stale {
                    let all: Vec<usize> = (0..self.neighbours.num_users()).collect();
                    self.cache = Some(encode(&all));
                    self.steps_since_refresh = 0;
                }
                self.steps_since_refresh += 1;
                let (reps, d) = self.cache.as_ref().expect("cache filled above");
                (self.means(users, reps, *d, |v| v), *d)
            }
        }
    }

    /// The mean of each user's neighbours' rows of `reps`.
    fn means(
        &self,
        users: &[usize],
        reps: &[f32],
        d: usize,
        row: impl Fn(usize) -> usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; users.len() * d];
        for (i, &u) in users.iter().enumerate() {
            let nb = self.neighbours.of(u);
            let acc = &mut out[i * d..(i + 1) * d];
            for &v in nb {
                let r = row(v as usize);
                for (a, x) in acc.iter_mut().zip(&reps[r * d..(r + 1) * d]) {
                    *a += x;
                }
            }
            let inv = 1.0 / nb.len().max(1) as f32;
            acc.iter_mut().for_each(|a| *a *= inv);
        }
        out
    }

    /// `alpha · MSE(student, teacher)`; the teacher is a constant built from
    /// host data, so no gradient reaches the neighbours' encodings
    /// (`tests/distill_through_fit.rs` checks that through `fit`: items only
    /// teachers read move exactly as without distillation).
    ///
    /// # Shapes
    /// - `student`: `[B, D]`; `teacher`: row-major `B × D`; output: `[1]`
    pub fn loss(&self, student: Tensor<2>, teacher: Vec<f32>, device: &Device) -> Tensor<1> {
        let dims = student.dims();
        let t = Tensor::<2>::from_data(TensorData::new(teacher, dims), device);
        (student - t).powf_scalar(2.0).mean().mul_scalar(self.alpha)
    }
}
