//! RLMRec-Con's `L_kd` as a training [`Objective`]: the model's projectors
//! ([`hsuga_model::rlmrec`]) against the run's semantic matrices, which
//! stay here as constants of the training device (no gradient, not in the
//! checkpoint).

use hsuga_model::burn::tensor::{Device, Int, Tensor, TensorData};
use hsuga_model::rlmrec::{ItemRows, KdInputs};
use hsuga_model::{RlmrecConfig, SequenceEncoder};

use crate::error::TrainError;
use crate::objective::{Objective, Step};
use crate::semantic::{Matrix, SemanticInputs};

/// `L_kd` with the run's item text and user semantic vectors.
pub struct RlmrecObjective {
    cfg: RlmrecConfig,
    /// `[U, d_u]`.
    users: Tensor<2>,
    /// `[N, d_i]`, row `i - 1` = item `i`.
    items: Tensor<2>,
}

fn tensor(m: &Matrix, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(m.data.clone(), [m.rows, m.dim]), device)
}

impl RlmrecObjective {
    pub fn new(
        cfg: &RlmrecConfig,
        semantic: &SemanticInputs,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let (Some(items), Some(users)) = (&semantic.item_text, &semantic.user_semantic) else {
            return Err(TrainError::Inputs(
                "method.rlmrec needs item text embeddings and user semantic vectors".into(),
            ));
        };
        Ok(Self {
            cfg: cfg.clone(),
            users: tensor(users, device),
            items: tensor(items, device),
        })
    }
}

/// Each row's target and negative at its last supervised position (the
/// largest flat index of the row); rows without one are left out.
pub fn last_targets(
    step_rows: &[i64],
    targets: &[i64],
    negatives: &[i64],
    t: usize,
) -> (Vec<i64>, Vec<i64>) {
    let mut best: std::collections::BTreeMap<i64, (i64, usize)> = Default::default();
    for (k, &flat) in step_rows.iter().enumerate() {
        let row = flat / t as i64;
        let e = best.entry(row).or_insert((flat, k));
        if flat >= e.0 {
            *e = (flat, k);
        }
    }
    best.values()
        .map(|&(_, k)| (targets[k], negatives[k]))
        .unzip()
}

fn host(t: Tensor<1, Int>) -> Vec<i64> {
    t.into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("int tensor converts to i64")
}

impl Objective for RlmrecObjective {
    fn loss(&mut self, step: &Step<'_>) -> Tensor<1> {
        let rl = step
            .model
            .rlmrec
            .as_ref()
            .expect("an RLMRec objective trains a model with RLMRec's projectors");
        let b = step.batch;
        let (pos, neg) = last_targets(
            &host(b.rows.clone()),
            &host(b.targets.clone()),
            &host(b.negatives.clone()),
            b.input.len,
        );
        let device = step.student.device();
        let ids = |v: &[i64], shift: i64| {
            let v: Vec<i64> = v.iter().map(|&i| i - shift).collect();
            let n = v.len();
            Tensor::<1, Int>::from_data(TensorData::new(v, [n]), &device)
        };
        let table = step.model.encoder.item_table();
        let users: Vec<i64> = step.users.iter().map(|&u| u as i64).collect();
        let items = (!pos.is_empty()).then(|| ItemRows {
            e_pos: table.clone().select(0, ids(&pos, 0)),
            e_neg: table.select(0, ids(&neg, 0)),
            z_pos: self.items.clone().select(0, ids(&pos, 1)),
            z_neg: self.items.clone().select(0, ids(&neg, 1)),
        });
        let x = KdInputs {
            user_semantic: self.users.clone(),
            users: ids(&users, 0),
            items,
        };
        rl.kd_loss(&self.cfg, step.student.clone(), x)
    }
}
