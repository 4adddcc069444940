//! SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM
//! 2018), written after SASRec.pytorch and the LLM-ESR code.
//!
//! Deviations: padded keys are masked out of attention (the references let
//! queries attend to padding, which makes a user's output depend on how far
//! the batch is padded); the causal mask is on by default where the LLM-ESR
//! code comments it out (`causal = false` restores that).

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::batch::SeqBatch;
use crate::config::ModelConfig;
use crate::transformer::Transformer;

#[derive(Module, Debug)]
pub struct Sasrec {
    pub net: Transformer,
}

impl Sasrec {
    pub fn new(cfg: &ModelConfig, num_items: u32, device: &Device) -> Self {
        Self {
            net: Transformer::new(cfg, num_items as usize + 1, device),
        }
    }

    /// # Shapes
    /// - output: `[B, T, H]`, one representation per position
    pub fn forward(&self, batch: &SeqBatch) -> Tensor<3> {
        self.net.forward(batch)
    }

    /// `[N + 1, H]`: row `i` scores item `i` (row 0 is padding).
    pub fn item_table(&self) -> Tensor<2> {
        self.net.items.weight.val()
    }
}
