//! Helpers shared by the service tests that serve runs with real models.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hsuga_serve::RunSource;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The user's model cache (MiniLM and SmolLM2 are fetched once for every
/// test).
pub fn models_dir() -> PathBuf {
    hsuga_text::fetch::default_models_dir()
}

/// Where runs read their item text and LLM weights (the user's model
/// cache, so MiniLM and SmolLM2 are fetched once for every test).
pub fn source(cache: &Path) -> RunSource {
    RunSource {
        cache_dir: cache.to_path_buf(),
        models_dir: models_dir(),
        hsu_configs: repo().join("configs/hsu"),
        resolve_dataset: Arc::new(|entry: &str| Ok(PathBuf::from(entry))),
    }
}
