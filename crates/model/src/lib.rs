//! Sequential recommender backbones on burn 0.22: [`Sasrec`], [`Bert4rec`]
//! and [`Gru4rec`] behind one [`SequenceEncoder`] interface, wrapped in a
//! [`Recommender`] that adds the loss ([`Loss`]: BCE, BPR, CE) and scoring,
//! and optionally LLM-ESR's dual view ([`dual`]), HSU fusion ([`fusion`])
//! and LLMInit item rows ([`Extras`]).
//!
//! The crate knows nothing about files: the `train` crate feeds it batches
//! built by [`Batcher`] and stores its weights. Build a model on
//! `Device::flex().autodiff()` to train; `model.valid()` gives a plain copy
//! for evaluation.

pub mod batch;
pub mod bert4rec;
pub mod config;
pub mod dropout;
pub mod dual;
pub mod error;
pub mod fusion;
pub mod gru4rec;
pub mod recommender;
pub mod sasrec;
pub mod transformer;

pub use batch::{Batcher, SeqBatch, TrainBatch};
pub use bert4rec::Bert4rec;
pub use burn;
pub use config::{Backbone, Loss, ModelConfig};
pub use dropout::seed_dropout;
pub use dual::DualViewSpec;
pub use error::ModelError;
pub use fusion::Fusion;
pub use gru4rec::Gru4rec;
pub use recommender::{Encoder, Extras, Recommender, SequenceEncoder, Tables};
pub use sasrec::Sasrec;

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
