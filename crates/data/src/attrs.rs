//! Typed item attributes. Later stages render the paper's item templates from
//! these fields (Steam: title, genres, specs; Beauty: title, categories;
//! ML-100K: title, year, genres), so they are kept as fields rather than as a
//! string map that would fail only when a template is rendered.

use serde::{Deserialize, Serialize};

/// What is known about one item. Every field may be missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemAttrs {
    pub title: Option<String>,
    pub year: Option<String>,
    pub brand: Option<String>,
    pub genres: Vec<String>,
    pub categories: Vec<String>,
    pub specs: Vec<String>,
    pub tags: Vec<String>,
}

impl ItemAttrs {
    /// True when no field carries any text.
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.year.is_none()
            && self.brand.is_none()
            && self.genres.is_empty()
            && self.categories.is_empty()
            && self.specs.is_empty()
            && self.tags.is_empty()
    }
}

/// Trims a text field and turns blank strings into `None`.
pub(crate) fn non_blank(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}
