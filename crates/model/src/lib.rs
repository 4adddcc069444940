//! Sequential recommender backbones on burn 0.22: [`Sasrec`], [`Bert4rec`]
//! and [`Gru4rec`], one file each (settings, [`Reading`], encoder), named
//! in one [`registry`]. A [`Recommender`] wraps any of them with the loss
//! ([`Loss`]: BCE, BPR, CE), optionally LLM-ESR's dual view ([`dual`]), HSU
//! fusion ([`fusion`]), LLMInit item rows ([`Extras`]) or an item table from
//! frozen text ([`llm2rec`], [`llmemb`]), and offers the
//! [`Model`] contract that training, evaluation and serving use.
//!
//! The crate knows nothing about files: the `train` crate feeds it batches
//! built by [`Batcher`] and stores its weights. Build a model on
//! `Device::flex().autodiff()` to train; `model.valid()` gives a plain copy
//! for evaluation.

pub mod batch;
pub mod bert4rec;
pub mod cities;
pub mod config;
pub mod contract;
pub mod dropout;
pub mod dual;
pub mod error;
pub mod fusion;
pub mod gru4rec;
pub mod icsrec;
pub mod llm2rec;
pub mod llmemb;
pub mod melt;
pub mod rcl;
pub mod recommender;
pub mod registry;
pub mod rlmrec;
pub mod sasrec;
pub mod transformer;

pub use batch::{Batcher, Examples, Reading, SeqBatch, TrainBatch};
pub use bert4rec::{Bert4rec, Bert4recConfig};
pub use burn;
pub use cities::{Cities, CitiesConfig, CitiesHead, Contexts};
pub use config::{Loss, ModelConfig, drop_foreign_keys};
pub use contract::Model;
pub use dropout::seed_dropout;
pub use dual::DualViewSpec;
pub use error::ModelError;
pub use fusion::Fusion;
pub use gru4rec::{Gru4rec, Gru4recConfig};
pub use icsrec::IcsrecConfig;
pub use llm2rec::{Llm2rec, Llm2recConfig, Llm2recSpec};
pub use llmemb::{Llmemb, LlmembConfig, LlmembSpec, contrastive_loss2};
pub use melt::{Melt, MeltConfig, MeltItems};
pub use rcl::RclConfig;
pub use recommender::{Extras, Recommender, SequenceEncoder, Tables, TextItems, TextItemsSpec};
pub use registry::{Backbone, BackboneConfig, Encoder};
pub use rlmrec::{Rlmrec, RlmrecConfig, RlmrecSpec, UserDenominator};
pub use sasrec::{Sasrec, SasrecConfig};

/// The CPU device everything runs on by default (burn's Flex backend, with
/// rayon and SIMD kernels enabled by this crate's features).
pub fn cpu() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}

/// Reads a float tensor back to the host as `f32`s (row-major).
pub fn to_f32<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("float tensor converts to f32")
}
