//! SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM
//! 2018), written after SASRec.pytorch and the LLM-ESR code: its settings,
//! how it reads histories (next-item targets at every position) and its
//! encoder.
//!
//! Deviations: padded keys are masked out of attention (the references let
//! queries attend to padding, which makes a user's output depend on how far
//! the batch is padded; `attend_padding = true` restores that); the causal
//! mask is on by default where the LLM-ESR code comments it out
//! (`causal = false` restores that).

use burn::module::Module;
use burn::tensor::Device;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::batch::{Examples, Reading, next_item_examples};
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::transformer::Transformer;

fn d_layers() -> usize {
    2 // LLM-ESR code
}
fn d_true() -> bool {
    true
}

/// SASRec's own `[model]` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SasrecConfig {
    /// Transformer blocks.
    #[serde(default = "d_layers")]
    pub layers: usize,
    /// Each position attends to itself and earlier positions. On by
    /// default; `false` reproduces the LLM-ESR code, whose mask is commented
    /// out so that training positions can see the item they predict.
    #[serde(default = "d_true")]
    pub causal: bool,
    /// Pad every batch to `max_len` and let queries attend to the padding,
    /// as SASRec.pytorch and LLM-ESR do (padding then acts as a learned
    /// "attend to nothing" slot). Off by default: batches are padded only
    /// to their longest sequence and padding is masked.
    #[serde(default)]
    pub attend_padding: bool,
    /// Supervise just the last item of each training sequence (one target
    /// per user and epoch) instead of every next item: the LLM-ESR code's
    /// plain `SASRec` class.
    #[serde(default)]
    pub last_target_only: bool,
}

impl Default for SasrecConfig {
    fn default() -> Self {
        Self {
            layers: d_layers(),
            causal: true,
            attend_padding: false,
            last_target_only: false,
        }
    }
}

impl SasrecConfig {
    pub fn validate(&self, _shared: &ModelConfig) -> Result<(), ModelError> {
        if self.layers == 0 {
            return Err(ModelError::Config("model.layers must be at least 1".into()));
        }
        Ok(())
    }
}

impl Reading for SasrecConfig {
    fn causal(&self) -> bool {
        self.causal
    }
    fn attend_padding(&self) -> bool {
        self.attend_padding
    }
    fn examples(
        &self,
        seqs: &[&[u32]],
        max_len: usize,
        _num_items: u32,
        _rng: &mut dyn RngCore,
    ) -> Examples {
        next_item_examples(seqs, max_len, self.last_target_only)
    }
}

#[derive(Module, Debug)]
pub struct Sasrec {
    pub net: Transformer,
}

impl Sasrec {
    pub fn new(cfg: &ModelConfig, own: &SasrecConfig, num_items: u32, device: &Device) -> Self {
        Self {
            net: Transformer::new(cfg, own.layers, num_items as usize + 1, device),
        }
    }
}
