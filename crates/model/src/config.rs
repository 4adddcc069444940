//! Model configuration: the TOML `[model]` table as written (serde defaults
//! filled in) and its validation. Each backbone's own settings are typed in
//! its model's file; this module composes them with the shared ones.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::registry::{Backbone, BackboneConfig};

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
fn d_heads() -> usize {
    1 // LLM-ESR code
}
fn d_max_len() -> usize {
    200 // LLM-ESR code
}
fn d_dropout() -> f64 {
    0.5 // SASRec.pytorch on sparse Amazon data; configure for other settings
}
fn d_eps() -> f64 {
    1e-8 // SASRec.pytorch LayerNorm epsilon
}

/// The settings every backbone shares, as written in `[model]` beside
/// `backbone` and that backbone's own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Shared {
    #[serde(default)]
    loss: Loss,
    #[serde(default = "d_hidden")]
    hidden: usize,
    #[serde(default = "d_heads")]
    heads: usize,
    #[serde(default = "d_max_len")]
    max_len: usize,
    #[serde(default = "d_dropout")]
    dropout: f64,
    #[serde(default = "d_eps")]
    layer_norm_eps: f64,
}

/// Hyper-parameters of one recommender: the shared settings and the chosen
/// backbone's own ([`BackboneConfig`]). Every field has a default, so a
/// config only names what it changes.
///
/// In TOML, `[model]` is one flat table: `backbone = "bert4rec"`, the
/// shared keys, and that backbone's keys (`mask_prob = 0.6`). A key that
/// belongs to another backbone (`causal` on BERT4Rec) is an error naming
/// the backbones that have it; so is any unknown key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "toml::Table", into = "toml::Table")]
pub struct ModelConfig {
    pub backbone: BackboneConfig,
    pub loss: Loss,
    /// Embedding and hidden size.
    pub hidden: usize,
    /// Attention heads wherever the model attends: the transformer blocks,
    /// and the dual view's cross-attention (with any backbone).
    pub heads: usize,
    /// Longest history the model reads; longer histories keep their last items.
    pub max_len: usize,
    pub dropout: f64,
    pub layer_norm_eps: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self::from(Backbone::default())
    }
}

/// A backbone with every setting at its default.
impl From<Backbone> for ModelConfig {
    fn from(kind: Backbone) -> Self {
        let shared: Shared = toml::Value::Table(toml::Table::new())
            .try_into()
            .expect("every shared setting has a default");
        Self::assemble(kind.into(), shared)
    }
}

impl ModelConfig {
    fn assemble(backbone: BackboneConfig, s: Shared) -> Self {
        Self {
            backbone,
            loss: s.loss,
            hidden: s.hidden,
            heads: s.heads,
            max_len: s.max_len,
            dropout: s.dropout,
            layer_norm_eps: s.layer_norm_eps,
        }
    }

    /// Which backbone this is.
    pub fn kind(&self) -> Backbone {
        self.backbone.kind()
    }

    /// Rejects settings no model can run with.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::Config(msg));
        if self.hidden == 0 {
            return bad("model.hidden must be at least 1".into());
        }
        if self.max_len == 0 {
            return bad("model.max_len must be at least 1".into());
        }
        // Far beyond any setting the paper or its peers use, and below what
        // would allocate tens of GB before the first step.
        for (key, value, max) in [
            ("hidden", self.hidden, MAX_HIDDEN),
            ("max_len", self.max_len, MAX_LEN),
            ("heads", self.heads, MAX_HEADS),
            ("layers", self.backbone.layers(), MAX_LAYERS),
        ] {
            if value > max {
                return bad(format!("model.{key} = {value} is above the limit of {max}"));
            }
        }
        if self.heads == 0 || !self.hidden.is_multiple_of(self.heads) {
            return bad(format!(
                "model.heads ({}) must divide model.hidden ({})",
                self.heads, self.hidden
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!(
                "model.dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        self.backbone.validate(self)
    }
}

/// Upper bounds on the shape settings (see [`ModelConfig::validate`]).
pub const MAX_HIDDEN: usize = 4096;
pub const MAX_LEN: usize = 2048;
pub const MAX_HEADS: usize = 64;
pub const MAX_LAYERS: usize = 48;

/// The keys a backbone's own settings have (from its serialised defaults,
/// so no second list can drift from the struct).
fn own_keys(kind: Backbone) -> Vec<String> {
    BackboneConfig::from(kind)
        .to_table()
        .keys()
        .cloned()
        .collect()
}

/// Drops the keys of a stored `[model]` table that its backbone does not
/// own. Run folders written before the backbones' settings were typed list
/// every backbone's keys (BERT4Rec's with `causal = true`); those never had
/// an effect on the run, so reading the file without them is exact. Only for
/// files hsuga wrote: in a file a person wrote, such a key is an error.
pub fn drop_foreign_keys(model: &mut toml::Table) {
    let kind = model
        .get("backbone")
        .and_then(|v| v.clone().try_into::<Backbone>().ok())
        .unwrap_or_default();
    let keys = KeyOwners::new();
    model.retain(|key, _| {
        let owners = keys.owners(key);
        owners.is_empty() || owners.contains(&kind)
    });
}

/// Every backbone's own keys, serialised once per table read rather than
/// once per key looked up.
struct KeyOwners(Vec<(Backbone, Vec<String>)>);

impl KeyOwners {
    fn new() -> Self {
        Self(Backbone::ALL.iter().map(|&b| (b, own_keys(b))).collect())
    }

    fn of(&self, kind: Backbone) -> &[String] {
        self.0
            .iter()
            .find(|(b, _)| *b == kind)
            .map_or(&[], |(_, k)| k.as_slice())
    }

    /// The backbones that have `key` as their own setting.
    fn owners(&self, key: &str) -> Vec<Backbone> {
        self.0
            .iter()
            .filter(|(_, keys)| keys.iter().any(|k| k == key))
            .map(|(b, _)| *b)
            .collect()
    }
}

impl TryFrom<toml::Table> for ModelConfig {
    type Error = String;

    fn try_from(mut t: toml::Table) -> Result<Self, String> {
        let kind: Backbone = match t.remove("backbone") {
            Some(v) => v.try_into().map_err(|e| format!("model.backbone: {e}"))?,
            None => Backbone::default(),
        };
        let keys = KeyOwners::new();
        let mine = keys.of(kind);
        let mut own = toml::Table::new();
        for key in t.keys().cloned().collect::<Vec<_>>() {
            if mine.contains(&key) {
                own.insert(key.clone(), t.remove(&key).expect("key listed"));
                continue;
            }
            let owners: Vec<&str> = keys.owners(&key).iter().map(|b| b.name()).collect();
            if !owners.is_empty() {
                return Err(format!(
                    "model.{key} is a {} setting; {} has none (its own: {}; remove it)",
                    owners.join(" and "),
                    kind.name(),
                    if mine.is_empty() {
                        "none".to_string()
                    } else {
                        mine.join(", ")
                    }
                ));
            }
        }
        let shared: Shared = toml::Value::Table(t)
            .try_into()
            .map_err(|e| format!("model: {e}"))?;
        let backbone = BackboneConfig::from_table(kind, own)
            .map_err(|e| format!("model ({}): {e}", kind.name()))?;
        Ok(Self::assemble(backbone, shared))
    }
}

impl From<ModelConfig> for toml::Table {
    fn from(c: ModelConfig) -> Self {
        let shared = Shared {
            loss: c.loss,
            hidden: c.hidden,
            heads: c.heads,
            max_len: c.max_len,
            dropout: c.dropout,
            layer_norm_eps: c.layer_norm_eps,
        };
        let mut t = toml::Table::new();
        t.insert(
            "backbone".into(),
            toml::Value::try_from(c.kind()).expect("backbone serialises"),
        );
        t.extend(toml::Table::try_from(&shared).expect("settings serialise"));
        t.extend(c.backbone.to_table());
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelConfig, String> {
        let t: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        ModelConfig::try_from(t)
    }

    #[test]
    fn a_flat_table_fills_the_shared_and_the_backbones_settings() {
        let c = parse("backbone = \"bert4rec\"\nhidden = 32\nmask_prob = 0.6").unwrap();
        assert_eq!(c.hidden, 32);
        assert_eq!(c.heads, 1);
        match &c.backbone {
            BackboneConfig::Bert4rec(b) => {
                assert_eq!(b.mask_prob, 0.6);
                assert_eq!(b.mask_last_prob, 0.1);
                assert_eq!(b.layers, 2);
            }
            other => panic!("parsed as {other:?}"),
        }
        let back = toml::Table::from(c.clone());
        assert_eq!(ModelConfig::try_from(back).unwrap(), c);
    }

    #[test]
    fn a_key_of_another_backbone_is_an_error_naming_its_owners() {
        let e = parse("backbone = \"bert4rec\"\ncausal = false").unwrap_err();
        assert!(
            e.contains("model.causal is a SASRec setting; BERT4Rec has none"),
            "{e}"
        );
        let e = parse("backbone = \"gru4rec\"\nlayers = 3").unwrap_err();
        assert!(
            e.contains("SASRec and BERT4Rec setting; GRU4Rec has none"),
            "{e}"
        );
        let e = parse("mask_prob = 0.2").unwrap_err();
        assert!(
            e.contains("model.mask_prob is a BERT4Rec setting; SASRec"),
            "{e}"
        );
    }

    #[test]
    fn a_key_no_backbone_has_is_an_error_naming_it() {
        let e = parse("hiden = 32").unwrap_err();
        assert!(e.contains("hiden"), "{e}");
        let e = parse("backbone = \"lstm\"").unwrap_err();
        assert!(e.contains("model.backbone"), "{e}");
    }

    #[test]
    fn a_stored_table_loses_only_the_keys_its_backbone_never_read() {
        let mut t: toml::Table = toml::from_str(
            "backbone = \"bert4rec\"\nhidden = 32\ncausal = true\nlast_target_only = false\n\
             mask_prob = 0.6\nlayers = 3\nattend_padding = true\nhiden = 1",
        )
        .unwrap();
        drop_foreign_keys(&mut t);
        let mut keys: Vec<&str> = t.keys().map(String::as_str).collect();
        keys.sort_unstable();
        // `hiden` is nobody's: kept, so the parse still rejects it.
        assert_eq!(
            keys,
            [
                "attend_padding",
                "backbone",
                "hidden",
                "hiden",
                "layers",
                "mask_prob"
            ]
        );
    }

    #[test]
    fn defaults_round_trip_through_toml_for_every_backbone() {
        for kind in Backbone::ALL {
            let c = ModelConfig::from(kind);
            c.validate().unwrap();
            let text = toml::to_string(&c).unwrap();
            let back: ModelConfig = toml::from_str(&text).unwrap();
            assert_eq!(back, c, "{text}");
        }
    }
}
