//! RCL's contrastive terms as a training [`Objective`] (the mechanism is in
//! [`hsuga_model::rcl`]): the similarity and the weak positives are built
//! once per run from the training split, seeded (so a resumed run rebuilds
//! the same ones); the strong positives are redrawn at every epoch start
//! from the epoch's stream; each step encodes the queries and the strong
//! and weak keys with the model being trained, through the model contract
//! (each row fused with its own user's semantic vector when the model
//! fuses).

use hsuga_data::Split;
use hsuga_model::batch::tail;
use hsuga_model::burn::tensor::Tensor;
use hsuga_model::rcl::{Similarity, dense_percentile, rcl_loss, strong_positives};
use hsuga_model::{Model, RclConfig};

use crate::error::TrainError;
use crate::objective::{EpochStart, Objective, Step, epoch_rng};
use crate::scoring::attach_users;

/// RCL's run state.
pub struct RclObjective {
    cfg: RclConfig,
    /// Each user's weak positive (itself when none is above the threshold).
    weak: Vec<usize>,
    /// `ω_u = S[u, weak(u)]^smooth`.
    omega: Vec<f32>,
    /// Each user's last training item (`None`: no training items).
    last: Vec<Option<u32>>,
    /// This epoch's strong positives.
    strong: Vec<usize>,
    /// The similarity threshold (for the log and tests).
    pub threshold: f64,
}

impl RclObjective {
    /// Builds the similarity of the users' last `max_len` training items and
    /// draws the weak positives from the run's constant stream (epoch 0 of
    /// [`epoch_rng`]; epochs count from 1).
    pub fn new(
        cfg: &RclConfig,
        split: &Split,
        max_len: usize,
        seed: u64,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        let windows: Vec<&[u32]> = split.train.iter().map(|s| tail(s, max_len)).collect();
        let sim = Similarity::new(&windows);
        let threshold = dense_percentile(&sim.histogram(), cfg.percentile);
        let weak = sim.weak_positives(threshold, &mut epoch_rng(seed, 0));
        let with = weak.iter().enumerate().filter(|(u, w)| w.0 != *u).count();
        tracing::info!(
            threshold,
            users_with_weak_positive = with,
            users = weak.len(),
            "RCL similarity"
        );
        Ok(Self {
            cfg: cfg.clone(),
            omega: weak
                .iter()
                .map(|&(_, s)| (s as f64).powf(cfg.smooth) as f32)
                .collect(),
            weak: weak.into_iter().map(|(v, _)| v).collect(),
            last: windows.iter().map(|w| w.last().copied()).collect(),
            strong: Vec::new(),
            threshold,
        })
    }

    /// Each user's weak positive.
    pub fn weak_positives(&self) -> &[usize] {
        &self.weak
    }
}

impl Objective for RclObjective {
    fn start_epoch(&mut self, start: EpochStart<'_>) {
        self.strong = strong_positives(&self.last, start.rng);
    }

    fn loss(&mut self, step: &Step<'_>) -> Tensor<1> {
        let b = step.users.len();
        // One forward of 3B rows: the queries `h(seq_u)` (the training
        // input, without the last training item), then the strong and the
        // weak keys `h(M[v])`; each row fused with its own user's vector.
        let train = |v: usize| step.split.train[v].as_slice();
        let keys: Vec<usize> = step
            .users
            .iter()
            .copied()
            .chain(step.users.iter().map(|&u| self.strong[u]))
            .chain(step.users.iter().map(|&u| self.weak[u]))
            .collect();
        let hist: Vec<&[u32]> = keys
            .iter()
            .enumerate()
            .map(|(r, &v)| {
                let s = train(v);
                if r < b { &s[..s.len() - 1] } else { s }
            })
            .collect();
        let mut batch = step.batcher.eval_batch(&hist);
        attach_users(&mut batch, step.user_semantic, &keys);
        let tables = step.model.tables();
        let h = step.model.represent_last(&tables, &batch); // [3B, D]
        let omega: Vec<f32> = step.users.iter().map(|&u| self.omega[u]).collect();
        rcl_loss(
            &self.cfg,
            h.clone().narrow(0, 0, b),
            h.clone().narrow(0, b, b),
            h.narrow(0, 2 * b, b),
            &omega,
            &step.student.device(),
        )
    }
}
