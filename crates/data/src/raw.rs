//! The common shape every interaction format is read into before
//! preprocessing: raw string ids in file order, with optional time and rating.

use std::collections::HashMap;

use crate::attrs::ItemAttrs;

/// One interaction as it appears in the source file.
#[derive(Debug, Clone, PartialEq)]
pub struct RawInteraction {
    pub user: String,
    pub item: String,
    /// Ordering key; `None` means "file order is time order".
    pub time: Option<f64>,
    pub rating: Option<f32>,
}

/// All interactions of a dataset, in file order.
#[derive(Debug, Clone, Default)]
pub struct RawLog {
    pub interactions: Vec<RawInteraction>,
}

/// Item attributes keyed by the raw item id used in the interaction file.
pub type RawItemTable = HashMap<String, ItemAttrs>;
