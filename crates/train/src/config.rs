//! The run config (`hsuga train --config X.toml`): as written, with every
//! default filled in by serde, then validated. The resolved config is written
//! into the run folder before training starts.
//!
//! ```toml
//! name = "fashion-sasrec"
//! dataset = "configs/datasets/fashion.toml"
//! seed = 42
//!
//! [model]
//! backbone = "sasrec"
//! max_len = 50
//!
//! [train]
//! patience = 20
//! ```

use std::path::Path;

use hsuga_eval::EvalConfig;
use hsuga_model::{CitiesConfig, Fusion, Llm2recConfig, LlmembConfig, Loss, ModelConfig};
use hsuga_retrieval::RetrievalConfig;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

fn d_lr() -> f64 {
    1e-3 // LLM-ESR code
}
fn d_batch() -> usize {
    128 // LLM-ESR code
}
fn d_epochs() -> usize {
    200 // LLM-ESR code
}
fn d_patience() -> usize {
    20 // LLM-ESR code
}
fn d_one() -> usize {
    1
}
fn d_eval_batch() -> usize {
    512 // ours: evaluation holds no autodiff graph
}
fn d_true() -> bool {
    true
}

/// Optimisation and model-selection settings (`[train]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// Adam learning rate.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Adam L2 weight decay (0 = none).
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Upper bound on training epochs.
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    /// Stop after this many evaluations without a better validation
    /// `eval.select` (NDCG@10 by default).
    #[serde(default = "d_patience")]
    pub patience: usize,
    /// Evaluate on the validation targets every this many epochs.
    #[serde(default = "d_one")]
    pub eval_every: usize,
    #[serde(default = "d_eval_batch")]
    pub eval_batch_size: usize,
    /// Group training sequences of similar length into batches (shuffled
    /// batch order), so that batches pad little.
    #[serde(default = "d_true")]
    pub length_buckets: bool,
    /// Show a progress bar.
    #[serde(default = "d_true")]
    pub progress: bool,
}

impl Default for TrainSettings {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl TrainSettings {
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("train.lr must be a positive number");
        }
        if self.weight_decay < 0.0 {
            return bad("train.weight_decay must not be negative");
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("train.batch_size and train.eval_batch_size must be at least 1");
        }
        const MAX_BATCH: usize = 65_536;
        if self.batch_size > MAX_BATCH || self.eval_batch_size > MAX_BATCH {
            return Err(TrainError::Config(format!(
                "train.batch_size ({}) and train.eval_batch_size ({}) must be at most {MAX_BATCH}",
                self.batch_size, self.eval_batch_size
            )));
        }
        if self.epochs == 0 {
            return bad("train.epochs must be at least 1");
        }
        if self.eval_every == 0 {
            return bad("train.eval_every must be at least 1");
        }
        Ok(())
    }
}

fn d_seed() -> u64 {
    42
}
fn d_negatives() -> usize {
    100 // the paper: 100 sampled negatives per user
}
fn d_out() -> String {
    "runs".into()
}

/// One training run: which data, which model, how to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name: the run folder is `<out_dir>/<name>/seed-<seed>`.
    pub name: String,
    /// Path of a dataset config (`configs/datasets/*.toml`), relative to the
    /// working directory.
    pub dataset: String,
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Negatives per user for sampled ranking.
    #[serde(default = "d_negatives")]
    pub negatives: usize,
    #[serde(default = "d_out")]
    pub out_dir: String,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainSettings,
    /// Protocols (sampled, full or both), cut-offs and the selection metric.
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub method: MethodConfig,
    #[serde(default)]
    pub inputs: InputsConfig,
}

/// How the collaborative item rows start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemInit {
    /// The backbone's own Xavier-normal initialisation.
    #[default]
    Random,
    /// LLMInit: PCA of the item text embeddings to the hidden size.
    Pca,
}

/// Where the self-distillation teacher comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Teacher {
    /// Every user's representation, recomputed in eval mode (no gradient)
    /// every `refresh` steps, or from each epoch's validation pass (whose
    /// inputs are exactly the training sequences) when `refresh = 0`.
    #[default]
    Cache,
    /// The batch's neighbours encoded in the same step by an eval-mode copy
    /// of the current weights (no gradient).
    Online,
}

fn d_alpha() -> f64 {
    0.1 // LLM-ESR code and DESIGN §4
}
fn d_neighbours() -> usize {
    10 // LLM-ESR code
}
fn d_k_active() -> usize {
    6 // ours, after the paper's Figure 3a: active users peak with few neighbours
}
fn d_k_tail() -> usize {
    14 // ours, after Figure 3a: long-tail users gain from more neighbours
}
fn d_active_ratio() -> f64 {
    0.2 // paper §3.4
}
fn d_percentile() -> f64 {
    50.0 // ours: the middle of the paper's grid {25, 50, 75}
}

/// Retrieval-augmented self-distillation (`[method.distill]`):
/// `L = L_rank + alpha · MSE(f(u), mean over neighbours v of f(v))`, the
/// teacher detached. With `group_aware` it is GAA (HSUGA §3.4); without, it
/// is LLM-ESR's (the same `k` for everyone, no filter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// Weight of the self-distillation loss; paper grid {1, 0.5, 0.1, 0.05, 0.01}.
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    /// GAA's group-aware retrieval; `false` is the "w/o group-aware SD"
    /// ablation: `k` neighbours for everyone and no filter.
    #[serde(default = "d_true")]
    pub group_aware: bool,
    /// Neighbours per user without group awareness.
    #[serde(default = "d_neighbours")]
    pub k: usize,
    /// Neighbours per active user (before the filter); paper grid {2, 6, 10, 14, 18}.
    #[serde(default = "d_k_active")]
    pub k_active: usize,
    /// Neighbours per long-tail user.
    #[serde(default = "d_k_tail")]
    pub k_tail: usize,
    /// Share of users, by training length, that are active; paper grid {0.15, 0.2, 0.25}.
    #[serde(default = "d_active_ratio")]
    pub active_ratio: f64,
    /// The Pearson percentile filter on active users' neighbours; `false` is
    /// the "w/o active-user filter" ablation.
    #[serde(default = "d_true")]
    pub active_filter: bool,
    /// τ in [0, 100]; paper grid {25, 50, 75}.
    #[serde(default = "d_percentile")]
    pub percentile: f64,
    #[serde(default)]
    pub teacher: Teacher,
    /// Cache teacher: optimiser steps between refreshes; 0 = once per epoch.
    #[serde(default)]
    pub refresh: usize,
}

impl Default for DistillConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl DistillConfig {
    /// The neighbour retrieval these settings name.
    pub fn retrieval(&self) -> RetrievalConfig {
        if self.group_aware {
            RetrievalConfig::GroupAware {
                active_ratio: self.active_ratio,
                k_active: self.k_active,
                k_tail: self.k_tail,
                percentile: self.active_filter.then_some(self.percentile),
            }
        } else {
            RetrievalConfig::Uniform { k: self.k }
        }
    }

    fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            return bad(format!(
                "method.distill.alpha must be a number >= 0, got {}",
                self.alpha
            ));
        }
        if !(0.0..=100.0).contains(&self.percentile) {
            return bad(format!(
                "method.distill.percentile must be in [0, 100], got {}",
                self.percentile
            ));
        }
        if !(self.active_ratio > 0.0 && self.active_ratio < 1.0) {
            return bad(format!(
                "method.distill.active_ratio must be strictly between 0 and 1, got {}",
                self.active_ratio
            ));
        }
        if self.k == 0 || self.k_active == 0 || self.k_tail == 0 {
            return bad("method.distill.k, k_active and k_tail must be at least 1".into());
        }
        Ok(())
    }
}

/// What the model adds to its backbone (`[method]`). Every key has a
/// default, so a plain backbone needs no `[method]` table.
///
/// | paper row | keys |
/// |---|---|
/// | LLMInit | `item_init = "pca"` |
/// | LLM-ESR | `item_init = "pca"`, `dual_view = true`, `[method.distill] group_aware = false` |
/// | + GAA | `[method.distill]` (group-aware by default) |
/// | + HSU | `fusion = "gate"` (or `add`, `concat`) with `inputs.user_semantic = "hsu:…"` |
/// | HSUGA | LLM-ESR + GAA with `inputs.user_semantic = "hsu:…"` |
/// | LLM2Rec (w/o CSFT/IEM) | `llm2rec = {}` with `model.loss = "ce"` and `inputs.item_text` |
/// | LLMEmb (w/o SCFT) | `llmemb = {}`, `pretrained = { run = "<SASRec run folder>" }` (or `{ row = "SASRec" }` in a grid) and `inputs.item_text` |
/// | RLMRec (Con) | `rlmrec = {}` with `inputs.item_text` and `inputs.user_semantic` |
/// | RCL | `rcl = {}` |
/// | RCL + HSU | `rcl = {}`, `fusion = "gate"` with `inputs.user_semantic` |
/// | ICSRec | `icsrec = {}` with `model.loss = "ce"` |
/// | ICSRec + HSU | `icsrec = {}`, `fusion = "gate"` with `inputs.user_semantic` |
/// | CITIES | `cities = {}`, `pretrained = { run = "<backbone run folder>" }` (or `{ row = "SASRec" }`), same `[model]` as that run |
/// | MELT | `melt = {}`, `pretrained = { run = "<backbone run folder>" }` (or `{ row = "SASRec" }`), same `[model]` as that run |
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodConfig {
    #[serde(default)]
    pub item_init: ItemInit,
    /// LLM-ESR's semantic view beside the collaborative one.
    #[serde(default)]
    pub dual_view: bool,
    /// Cross-attention between the two views (needs `dual_view`; the LLM-ESR
    /// scripts turn it on, ours defaults to off).
    #[serde(default)]
    pub cross_attention: bool,
    /// HSU fusion of the user semantic embedding into the representation.
    #[serde(default)]
    pub fusion: Fusion,
    /// Self-distillation from semantic neighbours; absent = none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillConfig>,
    /// LLM2Rec's downstream stage: the item text through a linear adapter
    /// replaces the ID table ([`hsuga_model::llm2rec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm2rec: Option<Llm2recConfig>,
    /// LLMEmb's RAT stage: the item text through a two-layer adapter
    /// replaces the ID table, aligned to a trained SASRec's items
    /// ([`hsuga_model::llmemb`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llmemb: Option<LlmembConfig>,
    /// The trained run this method reads (LLMEmb: its item table is
    /// `E_srs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<Pretrained>,
    /// RLMRec-Con: InfoNCE between collaborative vectors and projected
    /// semantic ones ([`hsuga_model::rlmrec`], `crate::rlmrec_objective`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rlmrec: Option<hsuga_model::RlmrecConfig>,
    /// RCL: relative contrast with strong (same last item) and weak
    /// (similar history) positives ([`hsuga_model::rcl`],
    /// `crate::rcl_objective`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcl: Option<hsuga_model::RclConfig>,
    /// ICSRec: coarse (same-target) and fine (k-means intent) contrast
    /// with false-negative masking beside the full-softmax CE
    /// ([`hsuga_model::icsrec`], `crate::icsrec_objective`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icsrec: Option<hsuga_model::IcsrecConfig>,
    /// CITIES: the tail items' rows of the trained backbone named by
    /// `pretrained` are inferred from their training contexts by a network
    /// trained on head items; the backbone is not retrained
    /// ([`hsuga_model::cities`], `crate::cities`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cities: Option<CitiesConfig>,
    /// MELT: the backbone of the trained run named by `pretrained` is
    /// trained on with a user branch and an item branch under curriculum
    /// weights, the tail items' rows refreshed each epoch and tail users
    /// transferred at inference ([`hsuga_model::melt`], `crate::melt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub melt: Option<hsuga_model::MeltConfig>,
}

/// Where a method's trained source run is (`method.pretrained`).
///
/// ```toml
/// pretrained = { run = "runs/ml-100k-sasrec/seed-42" }   # a run folder
/// pretrained = { row = "SASRec" }                         # experiments only
/// ```
///
/// In an experiment, `row` names another row of the same grid: each seed
/// reads that row's run of the same dataset and seed, which trains first.
/// The resolved run config records the folder (`run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Pretrained {
    /// A finished run's folder (`<out_dir>/<name>/seed-<seed>`).
    Run(String),
    /// A row of the same experiment grid.
    Row(String),
}

impl MethodConfig {
    /// Whether the method reads item text embeddings.
    pub fn needs_item_text(&self) -> bool {
        self.item_init == ItemInit::Pca
            || self.dual_view
            || self.text_items()
            || self.rlmrec.is_some()
    }

    /// Whether an item table from text replaces the ID table (LLM2Rec,
    /// LLMEmb).
    pub fn text_items(&self) -> bool {
        self.llm2rec.is_some() || self.llmemb.is_some()
    }

    /// Whether the method reads a trained run (`method.pretrained`).
    pub fn needs_pretrained(&self) -> bool {
        self.llmemb.is_some() || self.cities.is_some() || self.melt.is_some()
    }

    /// Whether the method starts from a whole trained plain backbone with
    /// this row's `[model]` (CITIES, MELT), not only its item table.
    pub fn reads_pretrained_backbone(&self) -> bool {
        self.cities.is_some() || self.melt.is_some()
    }

    /// Whether the method reads user semantic embeddings.
    pub fn needs_user_semantic(&self) -> bool {
        self.distill.is_some() || self.fusion != Fusion::None || self.rlmrec.is_some()
    }

    /// Appended to the checkpoint tag, so that weights never load into a
    /// model with other parts.
    pub fn tag(&self) -> String {
        let mut t = String::new();
        if self.item_init == ItemInit::Pca {
            t.push_str("/init=pca");
        }
        if self.dual_view {
            t.push_str(if self.cross_attention {
                "/dual+cross"
            } else {
                "/dual"
            });
        }
        if self.fusion != Fusion::None {
            t.push_str(&format!("/fusion={:?}", self.fusion).to_lowercase());
        }
        if self.llm2rec.is_some() {
            t.push_str("/llm2rec");
        }
        if self.llmemb.is_some() {
            t.push_str("/llmemb");
        }
        // RCL adds no weights: its checkpoints are the backbone's.
        if self.rlmrec.is_some() {
            t.push_str("/rlmrec");
        }
        if self.melt.is_some() {
            t.push_str("/melt");
        }
        t
    }

    /// Rejects combinations no model can run with.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.cross_attention && !self.dual_view {
            return bad("method.cross_attention needs method.dual_view = true");
        }
        if self.llm2rec.is_some() && self.llmemb.is_some() {
            return bad("method.llm2rec and method.llmemb each replace the item table: choose one");
        }
        if self.text_items() && (self.dual_view || self.item_init != ItemInit::Random) {
            return bad(
                "method.llm2rec and method.llmemb replace the ID item table with adapted item \
                 text: they take neither method.dual_view nor method.item_init = \"pca\"",
            );
        }
        // Every part but CITIES's own two keys at its default, whatever
        // parts are added later.
        let others = MethodConfig {
            cities: None,
            pretrained: None,
            ..self.clone()
        };
        if self.cities.is_some() && others != MethodConfig::default() {
            return bad(
                "method.cities overwrites the tail rows of a trained plain backbone and \
                 retrains nothing: it takes no other method part (item_init, dual_view, \
                 fusion, distill, or another system)",
            );
        }
        // MELT: likewise, but it trains the backbone on.
        let others = MethodConfig {
            melt: None,
            pretrained: None,
            ..self.clone()
        };
        if self.melt.is_some() && others != MethodConfig::default() {
            return bad(
                "method.melt trains a trained plain backbone on with its own two branches: it \
                 takes no other method part (item_init, dual_view, fusion, distill, or another \
                 system)",
            );
        }
        if let Some(m) = &self.melt {
            m.validate()?;
        }
        if let Some(e) = &self.llmemb {
            e.validate()?;
        }
        if let Some(r) = &self.rlmrec {
            if self.dual_view || self.text_items() {
                return bad("method.rlmrec aligns the backbone's ID item table and its \
                     representation with the semantic vectors: it takes neither \
                     method.dual_view nor method.llm2rec / method.llmemb");
            }
            r.validate()?;
        }
        if let Some(r) = &self.rcl {
            r.validate()?;
        }
        if let Some(c) = &self.icsrec {
            c.validate()?;
        }
        match (&self.pretrained, self.needs_pretrained()) {
            (None, true) => {
                return bad(
                    "method.llmemb, method.cities and method.melt read a trained backbone run: \
                     it needs method.pretrained = { run = \"<run folder>\" } (in an experiment, or \
                     { row = \"<row>\" })",
                );
            }
            (Some(_), false) => {
                return bad(
                    "method.pretrained is read only by method.llmemb, method.cities and \
                     method.melt; this \
                     method reads it \
                     nowhere (remove it or add the method part)",
                );
            }
            (Some(Pretrained::Run(dir) | Pretrained::Row(dir)), true) if dir.is_empty() => {
                return bad("method.pretrained names an empty folder or row");
            }
            _ => {}
        }
        match &self.distill {
            Some(d) => d.validate(),
            None => Ok(()),
        }
    }

    /// The checks that need the model settings too.
    fn validate_with(&self, model: &ModelConfig) -> Result<(), TrainError> {
        if self.llm2rec.is_some() && model.loss != Loss::Ce {
            return Err(TrainError::Config(format!(
                "method.llm2rec trains with full-softmax cross-entropy (the official \
                 downstream stage): set model.loss = \"ce\" (got \"{}\")",
                format!("{:?}", model.loss).to_lowercase()
            )));
        }
        if let Some(c) = &self.cities {
            c.validate(model.hidden)?;
        }
        if self.icsrec.is_some() && model.loss != Loss::Ce {
            return Err(TrainError::Config(format!(
                "method.icsrec trains with full-softmax cross-entropy (the official rec \
                 loss): set model.loss = \"ce\" (got \"{}\")",
                format!("{:?}", model.loss).to_lowercase()
            )));
        }
        Ok(())
    }
}

/// Where semantic inputs come from (`[inputs]`). The train crate only checks
/// that a method has what it needs; the caller loads the matrices
/// ([`crate::SemanticInputs`]).
///
/// ```toml
/// [inputs]
/// item_text = "all-minilm-l6-v2"            # or { file = "items.safetensors" }
/// user_semantic = { hsu = "rules" }         # or "item-mean", { hsu-hidden = "local-small" },
///                                           #    { file = "users.safetensors" }
/// ```
///
/// The older string forms (`"hsu:rules"`, `"file:items.safetensors"`) are
/// still read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputsConfig {
    /// Item text embeddings: an embedder id, or a matrix you supply (one row per item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_text: Option<ItemText>,
    /// User semantic embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_semantic: Option<UserSemantic>,
}

/// A parsed `inputs.item_text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemText {
    /// Embedded by this embedder (`all-minilm-l6-v2`).
    Embedder(String),
    /// A matrix the user supplies (safetensors, one row per item).
    File(String),
}

/// A parsed `inputs.user_semantic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSemantic {
    /// Mean of the user's training items' text embeddings.
    ItemMean,
    /// HSU's final interests under the named HSU config, embedded by the
    /// item text embedder.
    Hsu(String),
    /// The mean of the in-process LLM's last hidden states over the tokens it
    /// generated for the user's final interests (what the official HSUGA
    /// code uses), under the named HSU config.
    HsuHidden(String),
    /// A matrix the user supplies (safetensors, one row per user).
    File(String),
}

/// A `key = "value"` table of one entry, or a string, as an input is written.
fn one_entry(v: toml::Value, what: &str, keys: &str) -> Result<(String, String), String> {
    match v {
        toml::Value::String(s) => Ok((String::new(), s)),
        toml::Value::Table(t) if t.len() == 1 => {
            let (k, v) = t.into_iter().next().expect("one entry");
            match v {
                toml::Value::String(s) if !s.is_empty() => Ok((k, s)),
                _ => Err(format!("inputs.{what}.{k} must be a non-empty string")),
            }
        }
        _ => Err(format!(
            "inputs.{what} must be a string or a table with one of {keys}"
        )),
    }
}

impl ItemText {
    fn parse(v: toml::Value) -> Result<Self, String> {
        let (key, value) = one_entry(v, "item_text", "`file`, `embedder`")?;
        match key.as_str() {
            "" => match value.strip_prefix("file:") {
                Some(path) if !path.is_empty() => Ok(ItemText::File(path.into())),
                Some(_) => Err("inputs.item_text = \"file:\" names no file".into()),
                None if value.is_empty() => Err("inputs.item_text is empty".into()),
                None => Ok(ItemText::Embedder(value)),
            },
            "file" => Ok(ItemText::File(value)),
            "embedder" => Ok(ItemText::Embedder(value)),
            other => Err(format!(
                "inputs.item_text.{other}: unknown source (expected `file` or `embedder`)"
            )),
        }
    }
}

impl UserSemantic {
    fn parse(v: toml::Value) -> Result<Self, String> {
        let (key, value) = one_entry(v, "user_semantic", "`hsu`, `hsu-hidden`, `file`")?;
        let (key, value) = match key.as_str() {
            "" if value == "item-mean" => return Ok(UserSemantic::ItemMean),
            // The string forms: `hsu:<name>`, `hsu-hidden:<name>`, `file:<path>`.
            "" => match value.split_once(':') {
                Some((k, v)) if !v.is_empty() => (k.to_string(), v.to_string()),
                _ => {
                    return Err(format!(
                        "inputs.user_semantic = `{value}`: expected \"item-mean\", \
                         {{ hsu = \"<hsu config>\" }}, {{ hsu-hidden = \"<hsu config>\" }} \
                         or {{ file = \"<matrix.safetensors>\" }}"
                    ));
                }
            },
            _ => (key, value),
        };
        match key.as_str() {
            "hsu" => Ok(UserSemantic::Hsu(value)),
            "hsu-hidden" => Ok(UserSemantic::HsuHidden(value)),
            "file" => Ok(UserSemantic::File(value)),
            other => Err(format!(
                "inputs.user_semantic: unknown source `{other}` (expected item-mean, hsu, \
                 hsu-hidden or file)"
            )),
        }
    }

    /// The HSU config it runs, if any.
    pub fn hsu_config(&self) -> Option<&str> {
        match self {
            UserSemantic::Hsu(n) | UserSemantic::HsuHidden(n) => Some(n),
            _ => None,
        }
    }
}

impl Serialize for ItemText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            ItemText::Embedder(id) => s.serialize_str(id),
            ItemText::File(path) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("file", path)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for ItemText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ItemText::parse(toml::Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Serialize for UserSemantic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (key, value) = match self {
            UserSemantic::ItemMean => return s.serialize_str("item-mean"),
            UserSemantic::Hsu(n) => ("hsu", n),
            UserSemantic::HsuHidden(n) => ("hsu-hidden", n),
            UserSemantic::File(p) => ("file", p),
        };
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(key, value)?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for UserSemantic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        UserSemantic::parse(toml::Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl InputsConfig {
    /// Rejects a method that lacks an input it needs or names one it cannot
    /// use, so that a grid fails when its file is read, not hours in.
    pub fn validate(&self, method: &MethodConfig) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        let user = self.user_semantic.as_ref();
        let embedded = matches!(self.item_text, Some(ItemText::Embedder(_)));
        if method.rlmrec.is_some() && (self.item_text.is_none() || user.is_none()) {
            return bad(
                "method.rlmrec aligns items with their text and users with their semantic \
                 vectors: it needs both inputs.item_text and inputs.user_semantic (e.g. \
                 \"item-mean\" or { hsu = \"<hsu config>\" })",
            );
        }
        if method.needs_item_text() && self.item_text.is_none() {
            return bad(
                "method.item_init = \"pca\", method.dual_view, method.llm2rec and \
                 method.llmemb need inputs.item_text (the item text embedder id, e.g. \
                 \"all-minilm-l6-v2\", or { file = \"…\" })",
            );
        }
        if method.needs_user_semantic() && user.is_none() {
            return bad(
                "method.distill and method.fusion need inputs.user_semantic \
                 (\"item-mean\", { hsu = \"<hsu config>\" }, { hsu-hidden = \"<hsu config>\" } \
                 or { file = \"…\" })",
            );
        }
        if user.is_some() && !method.needs_user_semantic() {
            return bad(
                "inputs.user_semantic is read only by method.distill or method.fusion (or \
                 method.rlmrec); \
                 this method has neither (remove the input or add the method part)",
            );
        }
        match user {
            Some(UserSemantic::ItemMean) if self.item_text.is_none() => {
                return bad("inputs.user_semantic = \"item-mean\" needs inputs.item_text");
            }
            Some(UserSemantic::Hsu(_)) if !embedded => {
                return bad(
                    "inputs.user_semantic = { hsu = … } embeds the interests with the item \
                     text embedder: inputs.item_text must name one (not a file); supply \
                     user embeddings as { file = \"…\" } instead",
                );
            }
            _ => {}
        }
        let item_text_read = method.needs_item_text()
            || matches!(user, Some(UserSemantic::ItemMean | UserSemantic::Hsu(_)));
        if self.item_text.is_some() && !item_text_read {
            return bad(
                "inputs.item_text is read only by method.item_init = \"pca\", \
                 method.dual_view, method.llm2rec, method.llmemb, or a user_semantic of \
                 item-mean or hsu; this method reads it nowhere (remove the input or add the \
                 method part)",
            );
        }
        Ok(())
    }
}

/// The one check of a run's settings, wherever they come from: a run file
/// ([`RunConfig::validate`]), an experiment row (`hsuga_experiment`'s
/// resolve) or a [`crate::Job`] handed to [`crate::fit`] (no `inputs`: the
/// caller supplies the matrices, which `fit` checks against `method`).
pub fn check_settings(
    model: &ModelConfig,
    train: &TrainSettings,
    eval: &EvalConfig,
    method: &MethodConfig,
    inputs: Option<&InputsConfig>,
) -> Result<(), TrainError> {
    model.validate()?;
    train.validate()?;
    eval.validate()
        .map_err(|e| TrainError::Config(e.to_string()))?;
    method.validate()?;
    method.validate_with(model)?;
    match inputs {
        Some(i) => i.validate(method),
        None => Ok(()),
    }
}

impl RunConfig {
    pub fn from_toml(text: &str) -> Result<Self, TrainError> {
        let cfg: Self = toml::from_str(text).map_err(|e| TrainError::Toml(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// A resolved config that hsuga wrote into a run folder, possibly by an
    /// earlier build: model keys its backbone never read are dropped first
    /// ([`hsuga_model::drop_foreign_keys`]).
    pub fn from_stored_toml(text: &str) -> Result<Self, TrainError> {
        let mut doc: toml::Table =
            toml::from_str(text).map_err(|e| TrainError::Toml(e.to_string()))?;
        if let Some(toml::Value::Table(model)) = doc.get_mut("model") {
            hsuga_model::drop_foreign_keys(model);
        }
        let cfg: Self = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| TrainError::Toml(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// A config file, with its path in any error.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let what =
            |e: &dyn std::fmt::Display| TrainError::Config(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| what(&e))?;
        Self::from_toml(&text).map_err(|e| match e {
            // Already "invalid training config: …": say so once.
            TrainError::Config(msg) => what(&msg),
            e => what(&e),
        })
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return Err(TrainError::Config(format!(
                "name `{}` must be a plain folder name",
                self.name
            )));
        }
        if self.negatives == 0 {
            return Err(TrainError::Config("negatives must be at least 1".into()));
        }
        if let Some(Pretrained::Row(row)) = &self.method.pretrained {
            return Err(TrainError::Config(format!(
                "method.pretrained = {{ row = \"{row}\" }} names a row of an experiment grid; \
                 a run config names the run folder: {{ run = \"<out_dir>/<name>/seed-<seed>\" }}"
            )));
        }
        check_settings(
            &self.model,
            &self.train,
            &self.eval,
            &self.method,
            Some(&self.inputs),
        )
    }

    /// The resolved config, every default written out.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in() {
        let c = RunConfig::from_toml("name = \"x\"\ndataset = \"d.toml\"\n").unwrap();
        assert_eq!(c.seed, 42);
        assert_eq!(c.model.hidden, 64);
        assert_eq!(c.train.patience, 20);
        assert_eq!(RunConfig::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let e =
            RunConfig::from_toml("name=\"x\"\ndataset=\"d\"\n[model]\nbackbone=\"transformer\"")
                .unwrap_err()
                .to_string();
        assert!(e.contains("unknown variant") && e.contains("sasrec"), "{e}");
        let e = RunConfig::from_toml("name=\"x\"\ndataset=\"d\"\n[model]\nloss=\"mse\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant"), "{e}");
        let e = RunConfig::from_toml("name=\"x\"\ndataset=\"d\"\n[model]\nmax_len=0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_len"), "{e}");
        let e = RunConfig::from_toml("name=\"x\"\ndataset=\"d\"\n[train]\nlr=0.001\nbogus=1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    fn inputs(text: &str) -> Result<RunConfig, String> {
        RunConfig::from_toml(&format!("name=\"x\"\ndataset=\"d\"\n{text}"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn inputs_are_typed_and_the_string_forms_still_read() {
        let dual = "[method]\ndual_view = true\ndistill = {}\n[inputs]\n";
        let typed = inputs(&format!(
            "{dual}item_text = \"all-minilm-l6-v2\"\nuser_semantic = {{ hsu = \"rules\" }}"
        ))
        .unwrap();
        let old = inputs(&format!(
            "{dual}item_text = \"all-minilm-l6-v2\"\nuser_semantic = \"hsu:rules\""
        ))
        .unwrap();
        assert_eq!(typed, old);
        assert_eq!(
            typed.inputs.user_semantic,
            Some(UserSemantic::Hsu("rules".into()))
        );
        // The resolved config writes the typed form and reads back equal.
        assert!(
            typed.to_toml().contains("hsu = \"rules\""),
            "{}",
            typed.to_toml()
        );
        assert_eq!(RunConfig::from_toml(&typed.to_toml()).unwrap(), typed);
        let files = inputs(&format!(
            "{dual}item_text = \"file:i.safetensors\"\nuser_semantic = {{ file = \"u.safetensors\" }}"
        ))
        .unwrap();
        assert_eq!(
            files.inputs.item_text,
            Some(ItemText::File("i.safetensors".into()))
        );
        assert_eq!(RunConfig::from_toml(&files.to_toml()).unwrap(), files);
        let hidden = inputs(
            "[method]\nfusion = \"gate\"\n[inputs]\nuser_semantic = { hsu-hidden = \"local-small\" }",
        )
        .unwrap();
        assert_eq!(
            hidden.inputs.user_semantic,
            Some(UserSemantic::HsuHidden("local-small".into()))
        );
        let e = inputs(&format!(
            "{dual}item_text = \"m\"\nuser_semantic = {{ llm = \"x\" }}"
        ))
        .unwrap_err();
        assert!(e.contains("unknown source `llm`"), "{e}");
        let e = inputs(&format!(
            "{dual}item_text = \"m\"\nuser_semantic = \"hsu:\""
        ))
        .unwrap_err();
        assert!(e.contains("expected \"item-mean\""), "{e}");
    }

    /// Regression (issue 15): a row whose method needs an input it does not
    /// name, or names one it cannot use, passed loading and failed only
    /// when its run started.
    #[test]
    fn method_and_inputs_mismatches_are_load_errors() {
        let cases = [
            ("[method]\ndual_view = true\n", "need inputs.item_text"),
            ("[method]\nitem_init = \"pca\"\n", "need inputs.item_text"),
            (
                "[method]\ndistill = {}\n[inputs]\nitem_text = \"m\"\n",
                "need inputs.user_semantic",
            ),
            (
                "[inputs]\nitem_text = \"m\"\nuser_semantic = \"item-mean\"\n",
                "read only by method.distill or method.fusion",
            ),
            ("[inputs]\nitem_text = \"m\"\n", "reads it nowhere"),
            (
                "[method]\nfusion = \"gate\"\n[inputs]\nuser_semantic = \"item-mean\"\n",
                "\"item-mean\" needs inputs.item_text",
            ),
            (
                "[method]\nfusion = \"add\"\n[inputs]\nitem_text = { file = \"i\" }\nuser_semantic = { hsu = \"rules\" }\n",
                "must name one (not a file)",
            ),
        ];
        for (text, want) in cases {
            let e = inputs(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        // What each needs, named, loads.
        for ok in [
            "[method]\nitem_init = \"pca\"\n[inputs]\nitem_text = \"m\"\n",
            "[method]\nfusion = \"gate\"\n[inputs]\nitem_text = \"m\"\nuser_semantic = { hsu = \"rules\" }\n",
            "[method]\ndistill = {}\n[inputs]\nuser_semantic = { file = \"u\" }\n",
        ] {
            inputs(ok).unwrap();
        }
    }

    /// LLM2Rec and LLMEmb: what each needs, and each wrong combination,
    /// fails at load naming the key; the checkpoint tag tells them apart.
    #[test]
    fn llm2rec_and_llmemb_are_checked_at_load() {
        let text = "[inputs]\nitem_text = \"m\"\n";
        let llm2rec = format!("[model]\nloss = \"ce\"\n[method]\nllm2rec = {{}}\n{text}");
        let llmemb =
            format!("[method]\nllmemb = {{}}\npretrained = {{ run = \"runs/s/seed-42\" }}\n{text}");
        let a = inputs(&llm2rec).unwrap();
        let b = inputs(&llmemb).unwrap();
        assert_eq!(RunConfig::from_toml(&a.to_toml()).unwrap(), a);
        assert_eq!(RunConfig::from_toml(&b.to_toml()).unwrap(), b);
        let e = b.method.llmemb.as_ref().unwrap();
        assert_eq!((e.alpha, e.tau, e.width), (0.01, 2.0, 768));
        let tags = [
            MethodConfig::default().tag(),
            a.method.tag(),
            b.method.tag(),
        ];
        assert!(
            tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
            "{tags:?}"
        );
        let cases = [
            (
                "[model]\nloss = \"ce\"\n[method]\nllm2rec = {}\n",
                "need inputs.item_text",
            ),
            (
                "[method]\nllmemb = {}\npretrained = { run = \"r\" }\n",
                "need inputs.item_text",
            ),
            (
                &format!("[method]\nllm2rec = {{}}\n{text}"),
                "set model.loss = \"ce\"",
            ),
            (
                &format!(
                    "[model]\nloss = \"ce\"\n[method]\nllm2rec = {{}}\ndual_view = true\n{text}"
                ),
                "neither method.dual_view",
            ),
            (
                &format!(
                    "[method]\nllmemb = {{}}\nitem_init = \"pca\"\npretrained = {{ run = \"r\" }}\n{text}"
                ),
                "neither method.dual_view",
            ),
            (
                &format!("[model]\nloss = \"ce\"\n[method]\nllm2rec = {{}}\nllmemb = {{}}\n{text}"),
                "choose one",
            ),
            (
                &format!("[method]\nllmemb = {{}}\n{text}"),
                "it needs method.pretrained",
            ),
            (
                &format!(
                    "[method]\nllmemb = {{ tau = 0 }}\npretrained = {{ run = \"r\" }}\n{text}"
                ),
                "method.llmemb.tau",
            ),
            (
                "[method]\npretrained = { run = \"r\" }\n",
                "method.pretrained is read only by method.llmemb",
            ),
            (
                &format!("[method]\nllmemb = {{}}\npretrained = {{ row = \"SASRec\" }}\n{text}"),
                "names a row of an experiment grid",
            ),
            (
                &format!(
                    "[method]\nllmemb = {{ alpah = 1 }}\npretrained = {{ run = \"r\" }}\n{text}"
                ),
                "alpah",
            ),
        ];
        for (text, want) in cases {
            let e = inputs(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    /// Regression (issue 15): BERT4Rec silently ignored `causal`, GRU4Rec
    /// `attend_padding` and `layers`.
    #[test]
    fn a_flag_the_backbone_does_not_have_is_an_error() {
        let run = |model: &str| {
            RunConfig::from_toml(&format!("name = \"x\"\ndataset = \"d\"\n[model]\n{model}"))
                .map_err(|e| e.to_string())
        };
        let e = run("backbone = \"bert4rec\"\ncausal = false").unwrap_err();
        assert!(
            e.contains("model.causal is a SASRec setting; BERT4Rec has none"),
            "{e}"
        );
        let e = run("backbone = \"gru4rec\"\nattend_padding = true").unwrap_err();
        assert!(
            e.contains("model.attend_padding is a SASRec and BERT4Rec setting"),
            "{e}"
        );
        assert!(run("backbone = \"gru4rec\"\nlayers = 3").is_err());
        assert!(run("mask_prob = 0.3").is_err(), "sasrec is the default");
        for ok in [
            "backbone = \"sasrec\"\ncausal = false\nlast_target_only = true",
            "backbone = \"bert4rec\"\nmask_prob = 0.6\nlayers = 2",
            "backbone = \"gru4rec\"\nheads = 2\ndropout = 0.1",
        ] {
            run(ok).unwrap();
        }
        // The resolved config of a run folder reads back as itself, and one an
        // earlier build wrote (every backbone's keys listed) still reads.
        let c =
            RunConfig::from_toml("name = \"x\"\ndataset = \"d\"\n[model]\nbackbone = \"gru4rec\"")
                .unwrap();
        assert_eq!(RunConfig::from_toml(&c.to_toml()).unwrap(), c);
        let old = c.to_toml().replace(
            "[model]\n",
            "[model]\nlayers = 2\ncausal = true\nmask_prob = 0.4\nattend_padding = false\n",
        );
        assert!(
            RunConfig::from_toml(&old).is_err(),
            "a person's file is strict"
        );
        assert_eq!(RunConfig::from_stored_toml(&old).unwrap(), c);
    }
}
