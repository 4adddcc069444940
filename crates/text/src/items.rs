//! Item embeddings of a prepared dataset, end to end: render every item with
//! the dataset's template, embed, keep in the [`EmbeddingStore`] (recomputed
//! only when the model, template, dataset or texts change).

use std::collections::HashMap;
use std::path::Path;

use hsuga_data::Dataset;

use crate::embedder::{Embeddings, TextEmbedder};
use crate::error::Result;
use crate::store::{EmbeddingStore, Outcome, StoreKey, dataset_hash, texts_hash};
use crate::template::{Template, render_items};

/// Texts per [`TextEmbedder::embed`] call (and per progress update).
pub const CHUNK: usize = 256;

/// What [`item_embeddings`] produced.
#[derive(Debug, Clone)]
pub struct ItemEmbeddings {
    /// Item `i` (1-based) is row `i - 1`.
    pub embeddings: Embeddings,
    pub outcome: Outcome,
    pub store: EmbeddingStore,
    /// Items with no template field, embedded from `"item <raw id>"`.
    pub fallback_items: Vec<u32>,
}

/// The store folder for a dataset's item embeddings under a cache root.
pub fn item_store(cache_dir: &Path, dataset: &str, embedder: &dyn TextEmbedder) -> EmbeddingStore {
    EmbeddingStore::for_dataset(cache_dir, dataset, "items", embedder.model_id())
}

/// Loads or computes the item embeddings of `dataset` rendered with
/// `template`; `force` recomputes even when the store is valid.
/// `progress(done, total)` is called as texts are embedded.
pub fn item_embeddings(
    dataset: &Dataset,
    template: &Template,
    embedder: &dyn TextEmbedder,
    cache_dir: &Path,
    force: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ItemEmbeddings> {
    let rendered = render_items(dataset, template)?;
    let texts = rendered.texts;
    let key = StoreKey {
        model_id: embedder.model_id().to_string(),
        dim: embedder.dim(),
        template_hash: template.hash(),
        dataset_hash: dataset_hash(dataset),
        texts_hash: texts_hash(&texts),
        rows: texts.len(),
    };
    let store = item_store(cache_dir, &dataset.name, embedder);
    if force && let Ok(Some(_)) = store.manifest() {
        // Invalidate first so an interrupted forced run is not mistaken for complete.
        let _ = std::fs::remove_file(store.dir().join("manifest.json"));
    }
    let notes = HashMap::from([
        ("dataset".to_string(), dataset.name.clone()),
        ("template".to_string(), template.source().to_string()),
        (
            "fallback_items".to_string(),
            rendered.fallback_items.len().to_string(),
        ),
    ]);
    let total = texts.len();
    let (embeddings, outcome) =
        store.load_or_compute(&key, &texts, embedder, CHUNK, notes, &mut |d| {
            progress(d, total)
        })?;
    Ok(ItemEmbeddings {
        embeddings,
        outcome,
        store,
        fallback_items: rendered.fallback_items,
    })
}
