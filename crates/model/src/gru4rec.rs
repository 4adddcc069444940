//! GRU4Rec (Hidasi et al., ICLR 2016) as a next-item sequence model: item
//! embedding → dropout → one GRU layer; the state at each position is that
//! position's representation.
//!
//! Deviation: trained with the same per-position sampled loss as SASRec
//! (as in the LLM-ESR code) rather than GRU4Rec's session-parallel
//! mini-batches with in-batch negatives.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Gru, GruConfig, Initializer};
use burn::tensor::{Device, Tensor};

use crate::batch::SeqBatch;
use crate::config::ModelConfig;
use crate::dropout::FastDropout;

#[derive(Module, Debug)]
pub struct Gru4rec {
    pub items: Embedding,
    dropout: FastDropout,
    gru: Gru,
}

impl Gru4rec {
    pub fn new(cfg: &ModelConfig, num_items: u32, device: &Device) -> Self {
        let n = num_items as usize + 1;
        let h = cfg.hidden;
        Self {
            items: EmbeddingConfig::new(n, h)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: (2.0 / (n + h) as f64).sqrt(),
                })
                .init(device),
            dropout: FastDropout::new(cfg.dropout),
            gru: GruConfig::new(h, h, true).init(device),
        }
    }

    /// # Shapes
    /// - output: `[B, T, H]`
    pub fn forward(&self, batch: &SeqBatch) -> Tensor<3> {
        self.forward_embedded(self.items.forward(batch.items.clone()), batch)
    }

    /// The GRU over item vectors looked up elsewhere (LLM-ESR's semantic view).
    ///
    /// # Shapes
    /// - `items`: `[B, T, H]`; output: `[B, T, H]`
    pub fn forward_embedded(&self, items: Tensor<3>, batch: &SeqBatch) -> Tensor<3> {
        let x = items * batch.keep.clone();
        let x = self.dropout.forward(x);
        self.gru.forward(x, None)
    }

    /// `[N + 1, H]`
    pub fn item_table(&self) -> Tensor<2> {
        self.items.weight.val()
    }
}
