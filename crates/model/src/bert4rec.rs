//! BERT4Rec: bidirectional transformer trained by masked-item prediction
//! (Sun et al., CIKM 2019), with the SASRec-style blocks of the LLM-ESR code:
//! its settings, its masking and its encoder.
//!
//! Training masks items (80% mask token / 10% random / 10% unchanged) and,
//! for a share of sequences, only the last item (as LLM-ESR does); inference
//! appends the mask token and reads its representation. Scores use the
//! shared item table (no separate output bias), as in the LLM-ESR code.

use burn::module::Module;
use burn::tensor::Device;
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use crate::batch::{Examples, Reading, tail};
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::transformer::Transformer;

fn d_layers() -> usize {
    2 // LLM-ESR code
}
fn d_mask_prob() -> f64 {
    0.4 // ours: between BERT4Rec's 0.2 (ML-1M) and 0.6 (Beauty)
}
fn d_mask_last_prob() -> f64 {
    0.1 // ours: share of training sequences that only mask the last item
}

/// BERT4Rec's own `[model]` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bert4recConfig {
    /// Transformer blocks.
    #[serde(default = "d_layers")]
    pub layers: usize,
    /// Probability that a position is masked for training.
    #[serde(default = "d_mask_prob")]
    pub mask_prob: f64,
    /// Probability that a training sequence instead masks only its last
    /// item (the inference situation).
    #[serde(default = "d_mask_last_prob")]
    pub mask_last_prob: f64,
    /// Pad every batch to `max_len` and let queries attend to the padding
    /// (as the LLM-ESR code does); off by default.
    #[serde(default)]
    pub attend_padding: bool,
}

impl Default for Bert4recConfig {
    fn default() -> Self {
        Self {
            layers: d_layers(),
            mask_prob: d_mask_prob(),
            mask_last_prob: d_mask_last_prob(),
            attend_padding: false,
        }
    }
}

impl Bert4recConfig {
    pub fn validate(&self, shared: &ModelConfig) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::Config(msg));
        if self.layers == 0 {
            return bad("model.layers must be at least 1".into());
        }
        if shared.max_len < 2 {
            return bad(
                "model.max_len must be at least 2 for BERT4Rec (history + mask token)".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.mask_prob) || self.mask_prob == 0.0 {
            return bad(format!(
                "model.mask_prob must be in (0, 1], got {}",
                self.mask_prob
            ));
        }
        if !(0.0..=1.0).contains(&self.mask_last_prob) {
            return bad(format!(
                "model.mask_last_prob must be in [0, 1], got {}",
                self.mask_last_prob
            ));
        }
        Ok(())
    }
}

/// The id of the mask token: one past the last item.
pub fn mask_token(num_items: u32) -> u32 {
    num_items + 1
}

impl Reading for Bert4recConfig {
    fn causal(&self) -> bool {
        false
    }
    fn attend_padding(&self) -> bool {
        self.attend_padding
    }
    fn extra_tokens(&self) -> usize {
        1
    }
    fn min_train_len(&self) -> usize {
        1
    }

    /// The last `max_len − 1` items and the mask token, whose
    /// representation predicts the next item.
    fn eval_row(&self, history: &[u32], max_len: usize, num_items: u32) -> Vec<u32> {
        let h = tail(history, max_len - 1);
        let mut r = Vec::with_capacity(h.len() + 1);
        r.extend_from_slice(h);
        r.push(mask_token(num_items));
        r
    }

    /// Input = the sequence with items masked (80% mask token / 10% random
    /// item / 10% unchanged), or, with probability `mask_last_prob`, only
    /// the last item masked; targets = the original items at masked
    /// positions, at least one per non-empty row.
    fn examples(
        &self,
        seqs: &[&[u32]],
        max_len: usize,
        num_items: u32,
        rng: &mut dyn RngCore,
    ) -> Examples {
        let mask = mask_token(num_items);
        let mut ex = Examples::default();
        for (r, s) in seqs.iter().enumerate() {
            let s = tail(s, max_len);
            let mut input = s.to_vec();
            if s.is_empty() {
                ex.inputs.push(input);
                continue;
            }
            let before = ex.supervised.len();
            if rng.random::<f64>() < self.mask_last_prob {
                let k = s.len() - 1;
                input[k] = mask;
                ex.supervised.push((r, k, s[k]));
            } else {
                for (k, &item) in s.iter().enumerate() {
                    if rng.random::<f64>() < self.mask_prob {
                        let u: f64 = rng.random();
                        input[k] = if u < 0.8 {
                            mask
                        } else if u < 0.9 {
                            rng.random_range(1..=num_items)
                        } else {
                            item
                        };
                        ex.supervised.push((r, k, item));
                    }
                }
                if ex.supervised.len() == before {
                    // Always supervise at least one position per row.
                    let k = s.len() - 1;
                    input[k] = mask;
                    ex.supervised.push((r, k, s[k]));
                }
            }
            ex.inputs.push(input);
        }
        ex
    }
}

#[derive(Module, Debug)]
pub struct Bert4rec {
    pub net: Transformer,
}

impl Bert4rec {
    pub fn new(cfg: &ModelConfig, own: &Bert4recConfig, num_items: u32, device: &Device) -> Self {
        // ids: 0 padding, 1..=N items, N + 1 mask token.
        Self {
            net: Transformer::new(cfg, own.layers, num_items as usize + 2, device),
        }
    }
}
