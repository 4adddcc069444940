//! Model configuration: the TOML `[model]` table as written (serde defaults
//! filled in) and its validation.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Which sequence encoder runs over the item history. A `match` on this enum
/// is the registry of backbones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backbone {
    /// Self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).
    #[default]
    Sasrec,
    /// Bidirectional transformer trained with masked items (Sun et al., CIKM 2019).
    Bert4rec,
    /// Session-based recommendation with a GRU (Hidasi et al., ICLR 2016).
    Gru4rec,
}

impl Backbone {
    pub fn name(self) -> &'static str {
        match self {
            Backbone::Sasrec => "SASRec",
            Backbone::Bert4rec => "BERT4Rec",
            Backbone::Gru4rec => "GRU4Rec",
        }
    }
}

/// The ranking loss over item scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Binary cross-entropy with one uniformly sampled negative per position
    /// (SASRec paper, LLM-ESR code).
    #[default]
    Bce,
    /// Pairwise `-log σ(s⁺ − s⁻)` with one sampled negative (HSUGA paper eq. 6).
    Bpr,
    /// Softmax cross-entropy over the whole catalogue.
    Ce,
}

fn d_hidden() -> usize {
    64 // LLM-ESR code and the HSUGA paper
}
fn d_layers() -> usize {
    2 // LLM-ESR code
}
fn d_heads() -> usize {
    1 // LLM-ESR code
}
fn d_max_len() -> usize {
    200 // LLM-ESR code
}
fn d_dropout() -> f64 {
    0.5 // SASRec.pytorch on sparse Amazon data; configure for other settings
}
fn d_true() -> bool {
    true
}
fn d_mask_prob() -> f64 {
    0.4 // ours: between BERT4Rec's 0.2 (ML-1M) and 0.6 (Beauty)
}
fn d_mask_last_prob() -> f64 {
    0.1 // ours: share of training sequences that only mask the last item
}
fn d_eps() -> f64 {
    1e-8 // SASRec.pytorch LayerNorm epsilon
}

/// Hyper-parameters of one recommender. Every field has a default, so a
/// config only names what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default)]
    pub backbone: Backbone,
    #[serde(default)]
    pub loss: Loss,
    /// Embedding and hidden size.
    #[serde(default = "d_hidden")]
    pub hidden: usize,
    /// Transformer blocks (SASRec, BERT4Rec); GRU4Rec always has one GRU layer.
    #[serde(default = "d_layers")]
    pub layers: usize,
    #[serde(default = "d_heads")]
    pub heads: usize,
    /// Longest history the model reads; longer histories keep their last items.
    #[serde(default = "d_max_len")]
    pub max_len: usize,
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    /// SASRec only: each position attends to itself and earlier positions.
    /// On by default; `false` reproduces the LLM-ESR code, whose mask is
    /// commented out so that training positions can see the item they predict.
    #[serde(default = "d_true")]
    pub causal: bool,
    /// BERT4Rec only: probability that a position is masked for training.
    #[serde(default = "d_mask_prob")]
    pub mask_prob: f64,
    /// BERT4Rec only: probability that a training sequence instead masks only
    /// its last item (the inference situation).
    #[serde(default = "d_mask_last_prob")]
    pub mask_last_prob: f64,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    /// Transformers only: pad every batch to `max_len` and let queries
    /// attend to the padding, as SASRec.pytorch and LLM-ESR do (padding then
    /// acts as a learned "attend to nothing" slot). Off by default: batches
    /// are padded only to their longest sequence and padding is masked.
    #[serde(default)]
    pub attend_padding: bool,
    /// SASRec and GRU4Rec only: supervise just the last item of each
    /// training sequence (one target per user and epoch) instead of every
    /// next item. The LLM-ESR code trains GRU4Rec this way (its `SeqDataset`
    /// without `--aug`); on for that parity row, off by default.
    #[serde(default)]
    pub last_target_only: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        toml_default()
    }
}

fn toml_default() -> ModelConfig {
    ModelConfig {
        backbone: Backbone::default(),
        loss: Loss::default(),
        hidden: d_hidden(),
        layers: d_layers(),
        heads: d_heads(),
        max_len: d_max_len(),
        dropout: d_dropout(),
        causal: true,
        mask_prob: d_mask_prob(),
        mask_last_prob: d_mask_last_prob(),
        layer_norm_eps: d_eps(),
        attend_padding: false,
        last_target_only: false,
    }
}

impl ModelConfig {
    /// Rejects settings no model can run with.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::Config(msg));
        if self.hidden == 0 {
            return bad("model.hidden must be at least 1".into());
        }
        if self.max_len == 0 {
            return bad("model.max_len must be at least 1".into());
        }
        if self.backbone == Backbone::Bert4rec && self.max_len < 2 {
            return bad(
                "model.max_len must be at least 2 for BERT4Rec (history + mask token)".into(),
            );
        }
        if self.backbone != Backbone::Gru4rec {
            if self.layers == 0 {
                return bad("model.layers must be at least 1".into());
            }
            if self.heads == 0 || !self.hidden.is_multiple_of(self.heads) {
                return bad(format!(
                    "model.heads ({}) must divide model.hidden ({})",
                    self.heads, self.hidden
                ));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!(
                "model.dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        if !(0.0..=1.0).contains(&self.mask_prob) || self.mask_prob == 0.0 {
            return bad(format!(
                "model.mask_prob must be in (0, 1], got {}",
                self.mask_prob
            ));
        }
        if self.last_target_only && self.backbone == Backbone::Bert4rec {
            return bad(
                "model.last_target_only applies to sasrec and gru4rec; bert4rec chooses its targets by masking".into(),
            );
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
