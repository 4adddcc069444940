//! Datasets for sequential recommendation: reading every supported format,
//! preprocessing as LLM-ESR / SASRec do, leave-one-out splits, head/tail
//! groups and stored evaluation candidates.
//!
//! The principal types: [`DatasetConfig`] (a `configs/datasets/*.toml`
//! file), [`Dataset`] (remapped sequences + item attributes), [`Split`],
//! [`Groups`], [`Candidates`], and [`Prepared`] (all of it, cached on disk).

pub mod attrs;
pub mod candidates;
pub mod config;
pub mod error;
pub mod formats;
pub mod groups;
pub mod prepare;
pub mod preprocess;
pub mod raw;
pub mod source;
pub mod split;
pub mod stats;

pub use attrs::ItemAttrs;
pub use candidates::{Candidates, Phase};
pub use config::{DatasetConfig, InteractionSource, ItemSource, TextConfig};
pub use error::{DataError, Result};
pub use groups::{GroupRule, Groups};
pub use prepare::{Prepared, candidates, default_cache_dir, prepare};
pub use preprocess::{CoreFilter, Dataset, PrepReport, PreprocessConfig, preprocess};
pub use source::{
    DATA_DIR_ENV, FetchReport, HttpOptions, RECORDED, SourceConfig, UNPUBLISHED, default_data_root,
    fetch_missing,
};
pub use split::{Split, SplitConfig};
pub use stats::DatasetStats;
