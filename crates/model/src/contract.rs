//! The model contract: what training, evaluation and serving ask of a
//! recommender, whatever its backbone and its parts (dual view, fusion,
//! LLMInit rows). The trainer, `hsuga_eval`'s scorer and self-distillation
//! talk to a model only through this trait, so a system added in its own
//! file is trained, evaluated and served by the same code.
//!
//! A backbone supplies the two halves below it: [`crate::Reading`] (how it
//! turns histories into input and training targets) and
//! [`crate::SequenceEncoder`] (its representations and item table).

use burn::tensor::{Int, Tensor};

use crate::batch::{SeqBatch, TrainBatch};

pub trait Model {
    /// What one pass over the weights precomputes for scoring (item tables
    /// after any adapter), so that it runs once per pass, not per batch.
    type Tables;

    /// Items `1..=N` the model scores.
    fn num_items(&self) -> usize;

    /// The tables of the current weights.
    fn tables(&self) -> Self::Tables;

    /// Width `D` of a user representation under these tables.
    fn dim(&self, tables: &Self::Tables) -> usize;

    /// One training forward: the loss (`[1]`) and each row's last-position
    /// representation (`[B, D]`, the self-distillation student).
    fn train_forward(&self, batch: &TrainBatch) -> (Tensor<1>, Tensor<2>);

    /// The user representation that predicts the next item.
    ///
    /// # Shapes
    /// - output: `[B, D]`
    fn represent_last(&self, tables: &Self::Tables, batch: &SeqBatch) -> Tensor<2>;

    /// Scores candidates against representations already computed.
    ///
    /// # Shapes
    /// - `reps`: `[B, D]`; `candidates`: `[B, C]` item ids; output: `[B, C]`
    fn score_reps(
        &self,
        tables: &Self::Tables,
        reps: Tensor<2>,
        candidates: Tensor<2, Int>,
    ) -> Tensor<2>;

    /// Scores every item against representations already computed.
    ///
    /// # Shapes
    /// - `reps`: `[B, D]`; output: `[B, N]` (column `j` is item `j + 1`)
    fn score_all_reps(&self, tables: &Self::Tables, reps: Tensor<2>) -> Tensor<2>;

    /// The training loss of one batch (`[1]`).
    fn loss(&self, batch: &TrainBatch) -> Tensor<1> {
        self.train_forward(batch).0
    }

    /// Scores candidate items for each history.
    ///
    /// # Shapes
    /// - `candidates`: `[B, C]`; output: `[B, C]`
    fn score_candidates(&self, batch: &SeqBatch, candidates: Tensor<2, Int>) -> Tensor<2> {
        let tables = self.tables();
        let reps = self.represent_last(&tables, batch);
        self.score_reps(&tables, reps, candidates)
    }

    /// Scores every item `1..=N` for each history.
    ///
    /// # Shapes
    /// - output: `[B, N]`
    fn score_all(&self, batch: &SeqBatch) -> Tensor<2> {
        let tables = self.tables();
        let reps = self.represent_last(&tables, batch);
        self.score_all_reps(&tables, reps)
    }
}
