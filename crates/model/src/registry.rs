//! The registry: every backbone is named here and nowhere else. Adding one
//! is its own file (settings, [`Reading`], module, [`SequenceEncoder`]) plus
//! an arm in each `match` below.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::batch::{Reading, SeqBatch};
use crate::bert4rec::{Bert4rec, Bert4recConfig};
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::gru4rec::{Gru4rec, Gru4recConfig};
use crate::recommender::SequenceEncoder;
use crate::sasrec::{Sasrec, SasrecConfig};

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
    pub const ALL: [Backbone; 3] = [Backbone::Sasrec, Backbone::Bert4rec, Backbone::Gru4rec];

    pub fn name(self) -> &'static str {
        match self {
            Backbone::Sasrec => "SASRec",
            Backbone::Bert4rec => "BERT4Rec",
            Backbone::Gru4rec => "GRU4Rec",
        }
    }
}

/// One backbone's own settings: the registry of backbones is the `match`
/// in each method of this enum (and of [`crate::Encoder`]). Each variant's
/// struct lives in its model's file and denies keys it does not have.
#[derive(Debug, Clone, PartialEq)]
pub enum BackboneConfig {
    Sasrec(SasrecConfig),
    Bert4rec(Bert4recConfig),
    Gru4rec(Gru4recConfig),
}

impl Default for BackboneConfig {
    fn default() -> Self {
        Backbone::default().into()
    }
}

/// A backbone with its default settings.
impl From<Backbone> for BackboneConfig {
    fn from(kind: Backbone) -> Self {
        match kind {
            Backbone::Sasrec => Self::Sasrec(SasrecConfig::default()),
            Backbone::Bert4rec => Self::Bert4rec(Bert4recConfig::default()),
            Backbone::Gru4rec => Self::Gru4rec(Gru4recConfig::default()),
        }
    }
}

impl BackboneConfig {
    pub fn kind(&self) -> Backbone {
        match self {
            Self::Sasrec(_) => Backbone::Sasrec,
            Self::Bert4rec(_) => Backbone::Bert4rec,
            Self::Gru4rec(_) => Backbone::Gru4rec,
        }
    }

    /// How this backbone reads histories (the data side of the contract).
    pub fn reading(&self) -> &dyn Reading {
        match self {
            Self::Sasrec(c) => c,
            Self::Bert4rec(c) => c,
            Self::Gru4rec(c) => c,
        }
    }

    /// Transformer blocks, for the log line; GRU4Rec has one GRU layer.
    pub fn layers(&self) -> usize {
        match self {
            Self::Sasrec(c) => c.layers,
            Self::Bert4rec(c) => c.layers,
            Self::Gru4rec(_) => 1,
        }
    }

    /// The backbone's own checks, beside the shared ones.
    pub(crate) fn validate(&self, shared: &ModelConfig) -> Result<(), ModelError> {
        match self {
            Self::Sasrec(c) => c.validate(shared),
            Self::Bert4rec(c) => c.validate(shared),
            Self::Gru4rec(c) => c.validate(shared),
        }
    }

    /// A fresh encoder for a catalogue of `num_items` items.
    pub(crate) fn encoder(&self, cfg: &ModelConfig, num_items: u32, device: &Device) -> Encoder {
        match self {
            Self::Sasrec(c) => Encoder::Sasrec(Sasrec::new(cfg, c, num_items, device)),
            Self::Bert4rec(c) => Encoder::Bert4rec(Bert4rec::new(cfg, c, num_items, device)),
            Self::Gru4rec(c) => Encoder::Gru4rec(Gru4rec::new(cfg, c, num_items, device)),
        }
    }

    pub(crate) fn to_table(&self) -> toml::Table {
        let t = match self {
            Self::Sasrec(c) => toml::Table::try_from(c),
            Self::Bert4rec(c) => toml::Table::try_from(c),
            Self::Gru4rec(c) => toml::Table::try_from(c),
        };
        t.expect("backbone settings serialise")
    }

    pub(crate) fn from_table(kind: Backbone, own: toml::Table) -> Result<Self, toml::de::Error> {
        let v = toml::Value::Table(own);
        Ok(match kind {
            Backbone::Sasrec => Self::Sasrec(v.try_into()?),
            Backbone::Bert4rec => Self::Bert4rec(v.try_into()?),
            Backbone::Gru4rec => Self::Gru4rec(v.try_into()?),
        })
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

impl Encoder {
    fn inner(&self) -> &dyn SequenceEncoder {
        match self {
            Encoder::Sasrec(m) => &m.net,
            Encoder::Bert4rec(m) => &m.net,
            Encoder::Gru4rec(m) => m,
        }
    }
}

impl SequenceEncoder for Encoder {
    fn encode(&self, batch: &SeqBatch) -> Tensor<3> {
        self.inner().encode(batch)
    }
    fn encode_embedded(&self, items: Tensor<3>, batch: &SeqBatch) -> Tensor<3> {
        self.inner().encode_embedded(items, batch)
    }
    fn item_table(&self) -> Tensor<2> {
        self.inner().item_table()
    }
    fn encode_last(&self, batch: &SeqBatch) -> Tensor<2> {
        self.inner().encode_last(batch)
    }
    fn encode_embedded_last(&self, items: Tensor<3>, batch: &SeqBatch) -> Tensor<2> {
        self.inner().encode_embedded_last(items, batch)
    }
    fn item_weight_mut(&mut self) -> &mut Param<Tensor<2>> {
        match self {
            Encoder::Sasrec(m) => m.net.item_weight_mut(),
            Encoder::Bert4rec(m) => m.net.item_weight_mut(),
            Encoder::Gru4rec(m) => m.item_weight_mut(),
        }
    }
}
