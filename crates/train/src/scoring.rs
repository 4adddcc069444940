//! The recommender behind evaluation's [`Scorer`] contract, and user
//! representations for the self-distillation teacher. Ranking and metrics
//! are not here: [`hsuga_eval::evaluate`] owns score → rank → metric for
//! every model.

use hsuga_data::Split;
use hsuga_eval::{Scorer, length_chunks};
use hsuga_model::burn::tensor::{Int, Tensor, TensorData};
use hsuga_model::{Batcher, Model, Recommender, SeqBatch};

/// Attaches the rows' user semantic embeddings to a batch, for fusing models.
pub fn attach_users(batch: &mut SeqBatch, user_semantic: Option<&Tensor<2>>, users: &[usize]) {
    if let Some(sem) = user_semantic {
        let idx: Vec<i64> = users.iter().map(|&u| u as i64).collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [users.len()]), &sem.device());
        batch.user_semantic = Some(sem.clone().select(0, idx));
    }
}

/// A plain (eval-mode) model with its item tables computed once for a
/// whole evaluation pass: any [`Model`] is evaluated through this one path.
pub struct ModelScorer<'a, M: Model = Recommender> {
    model: &'a M,
    tables: M::Tables,
    batcher: &'a Batcher,
    /// `[U, S]`, needed by fusing models.
    user_semantic: Option<&'a Tensor<2>>,
}

impl<'a, M: Model> ModelScorer<'a, M> {
    /// `model` should be a plain (non-autodiff) copy: `model.valid()`.
    pub fn new(model: &'a M, batcher: &'a Batcher, user_semantic: Option<&'a Tensor<2>>) -> Self {
        Self {
            model,
            tables: model.tables(),
            batcher,
            user_semantic,
        }
    }

    /// Width of a user representation.
    pub fn dim(&self) -> usize {
        self.model.dim(&self.tables)
    }
}

impl<M: Model> Scorer for ModelScorer<'_, M> {
    /// `[B, D]` last-position representations.
    type Encoded = Tensor<2>;

    fn num_items(&self) -> usize {
        self.model.num_items()
    }

    fn encode(&self, users: &[usize], histories: &[&[u32]]) -> Tensor<2> {
        let mut batch = self.batcher.eval_batch(histories);
        attach_users(&mut batch, self.user_semantic, users);
        self.model.represent_last(&self.tables, &batch)
    }

    fn score_candidates(&self, users: &Tensor<2>, candidates: &[Vec<u32>]) -> Vec<f32> {
        let cand = Recommender::candidate_tensor(candidates, &self.batcher.device);
        hsuga_model::to_f32(self.model.score_reps(&self.tables, users.clone(), cand))
    }

    fn score_all(&self, users: &Tensor<2>) -> Vec<f32> {
        hsuga_model::to_f32(self.model.score_all_reps(&self.tables, users.clone()))
    }
}

/// Each listed user's representation of their whole training sequence
/// (row-major `users.len() × D`, in the order given). `model` should be a
/// plain (eval-mode) copy.
pub fn represent_users<M: Model>(
    model: &M,
    batcher: &Batcher,
    split: &Split,
    users: &[usize],
    batch_size: usize,
    user_semantic: Option<&Tensor<2>>,
) -> (Vec<f32>, usize) {
    let scorer = ModelScorer::new(model, batcher, user_semantic);
    let d = scorer.dim();
    let slot: std::collections::HashMap<usize, usize> =
        users.iter().enumerate().map(|(i, &u)| (u, i)).collect();
    let mut out = vec![0f32; users.len() * d];
    for chunk in length_chunks(split, users, batch_size) {
        let hist: Vec<&[u32]> = chunk.iter().map(|&u| split.train[u].as_slice()).collect();
        let reps = hsuga_model::to_f32(scorer.encode(&chunk, &hist));
        for (j, u) in chunk.iter().enumerate() {
            let i = slot[u];
            out[i * d..(i + 1) * d].copy_from_slice(&reps[j * d..(j + 1) * d]);
        }
    }
    (out, d)
}
