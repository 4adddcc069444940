//! BERT4Rec: bidirectional transformer trained by masked-item prediction
//! (Sun et al., CIKM 2019), with the SASRec-style blocks of the LLM-ESR code.
//!
//! Training masks items (80% mask token / 10% random / 10% unchanged) and,
//! for a share of sequences, only the last item (as LLM-ESR does); inference
//! appends the mask token and reads its representation. Scores use the
//! shared item table (no separate output bias), as in the LLM-ESR code.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::batch::SeqBatch;
use crate::config::ModelConfig;
use crate::transformer::Transformer;

#[derive(Module, Debug)]
pub struct Bert4rec {
    pub net: Transformer,
}

impl Bert4rec {
    pub fn new(cfg: &ModelConfig, num_items: u32, device: &Device) -> Self {
        // ids: 0 padding, 1..=N items, N + 1 mask token.
        Self {
            net: Transformer::new(cfg, num_items as usize + 2, device),
        }
    }

    /// # Shapes
    /// - output: `[B, T, H]`
    pub fn forward(&self, batch: &SeqBatch) -> Tensor<3> {
        self.net.forward(batch)
    }

    /// `[N + 2, H]`; rows 0 (padding) and N + 1 (mask) are never scored.
    pub fn item_table(&self) -> Tensor<2> {
        self.net.items.weight.val()
    }
}
