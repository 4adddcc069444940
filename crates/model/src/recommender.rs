//! One recommender over any backbone: the [`SequenceEncoder`] interface,
//! the losses, and scoring (paper eq. 5: dot product of the sequence
//! representation with item embeddings).

use burn::module::Module;
use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::batch::{SeqBatch, TrainBatch};
use crate::bert4rec::Bert4rec;
use crate::config::{Backbone, Loss, ModelConfig};
use crate::error::ModelError;
use crate::gru4rec::Gru4rec;
use crate::sasrec::Sasrec;

/// What every backbone offers: per-position representations of a history
/// and the item table that scores them.
pub trait SequenceEncoder {
    /// # Shapes
    /// - output: `[B, T, H]`
    fn encode(&self, batch: &SeqBatch) -> Tensor<3>;
    /// `[V, H]` item embeddings; row `i` scores item `i` for `1 <= i <= N`.
    fn item_table(&self) -> Tensor<2>;

    /// The representation that predicts the next item: the last position
    /// (batches are left-padded, so it is the last real item — or, for
    /// BERT4Rec, the appended mask token).
    ///
    /// # Shapes
    /// - output: `[B, H]`
    fn encode_last(&self, batch: &SeqBatch) -> Tensor<2> {
        let h = self.encode(batch);
        let [b, t, d] = h.dims();
        h.narrow(1, t - 1, 1).reshape([b, d])
    }
}

/// A backbone chosen at run time. (One model per process: the size
/// difference between variants does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Encoder {
    Sasrec(Sasrec),
    Bert4rec(Bert4rec),
    Gru4rec(Gru4rec),
}

impl SequenceEncoder for Encoder {
    fn encode(&self, batch: &SeqBatch) -> Tensor<3> {
        match self {
            Encoder::Sasrec(m) => m.forward(batch),
            Encoder::Bert4rec(m) => m.forward(batch),
            Encoder::Gru4rec(m) => m.forward(batch),
        }
    }

    fn item_table(&self) -> Tensor<2> {
        match self {
            Encoder::Sasrec(m) => m.item_table(),
            Encoder::Bert4rec(m) => m.item_table(),
            Encoder::Gru4rec(m) => m.item_table(),
        }
    }
}

/// A sequential recommender: encoder + loss. Build it on `device.autodiff()`
/// to train, and call [`Module::valid`] for a plain copy to evaluate.
#[derive(Module, Debug)]
pub struct Recommender {
    pub encoder: Encoder,
    #[module(skip)]
    loss: Loss,
    num_items: usize,
}

impl Recommender {
    /// Builds a freshly initialised model for a catalogue of `num_items`
    /// items (ids `1..=num_items`). Seed the device first for reproducible
    /// initialisation.
    pub fn new(cfg: &ModelConfig, num_items: u32, device: &Device) -> Result<Self, ModelError> {
        cfg.validate()?;
        if num_items == 0 {
            return Err(ModelError::Input("the catalogue has no items".into()));
        }
        let encoder = match cfg.backbone {
            Backbone::Sasrec => Encoder::Sasrec(Sasrec::new(cfg, num_items, device)),
            Backbone::Bert4rec => Encoder::Bert4rec(Bert4rec::new(cfg, num_items, device)),
            Backbone::Gru4rec => Encoder::Gru4rec(Gru4rec::new(cfg, num_items, device)),
        };
        Ok(Self {
            encoder,
            loss: cfg.loss,
            num_items: num_items as usize,
        })
    }

    pub fn num_items(&self) -> usize {
        self.num_items
    }

    /// The training loss of one batch (a scalar, `[1]`).
    pub fn loss(&self, batch: &TrainBatch) -> Tensor<1> {
        let h = self.encoder.encode(&batch.input);
        let [b, t, d] = h.dims();
        let hs = h.reshape([b * t, d]).select(0, batch.rows.clone()); // [M, H]
        let table = self.encoder.item_table();
        match self.loss {
            Loss::Bce | Loss::Bpr => {
                let pos = (hs.clone() * table.clone().select(0, batch.targets.clone())).sum_dim(1); // [M, 1]
                let neg = (hs * table.select(0, batch.negatives.clone())).sum_dim(1);
                match self.loss {
                    Loss::Bce => (log_sigmoid(pos).mean() + log_sigmoid(neg.neg()).mean()).neg(),
                    _ => log_sigmoid(pos - neg).mean().neg(),
                }
            }
            Loss::Ce => {
                let items = table.narrow(0, 1, self.num_items); // [N, H]
                let logp = log_softmax(hs.matmul(items.transpose()), 1); // [M, N]
                let idx = batch.targets.clone().sub_scalar(1).unsqueeze_dim::<2>(1); // [M, 1]
                logp.gather(1, idx).mean().neg()
            }
        }
    }

    /// Scores candidate items for each history.
    ///
    /// # Shapes
    /// - `candidates`: `[B, C]` item ids; output: `[B, C]`
    pub fn score_candidates(&self, batch: &SeqBatch, candidates: Tensor<2, Int>) -> Tensor<2> {
        let h = self.encoder.encode_last(batch); // [B, H]
        let [b, d] = h.dims();
        let [_, c] = candidates.dims();
        let e = self
            .encoder
            .item_table()
            .select(0, candidates.reshape([b * c]))
            .reshape([b, c, d]); // [B, C, H]
        e.matmul(h.reshape([b, d, 1])).reshape([b, c])
    }

    /// Scores every item `1..=N` for each history.
    ///
    /// # Shapes
    /// - output: `[B, N]` (column `j` is item `j + 1`)
    pub fn score_all(&self, batch: &SeqBatch) -> Tensor<2> {
        let h = self.encoder.encode_last(batch); // [B, H]
        let items = self.encoder.item_table().narrow(0, 1, self.num_items);
        h.matmul(items.transpose())
    }

    /// Candidate ids as a device tensor.
    pub fn candidate_tensor(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
        let b = rows.len();
        let c = rows.first().map_or(0, |r| r.len());
        let flat: Vec<i64> = rows
            .iter()
            .flat_map(|r| r.iter().map(|&i| i as i64))
            .collect();
        Tensor::from_data(TensorData::new(flat, [b, c]), device)
    }
}
