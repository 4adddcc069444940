//! Resolving a dataset argument: a path to a TOML file, or a name looked up
//! as `<datasets_dir>/<name>.toml`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hsuga_data::{DatasetConfig, Prepared};

use crate::Globals;

pub fn config_path(arg: &str, datasets_dir: &Path) -> Result<PathBuf> {
    let as_path = PathBuf::from(arg);
    if as_path.extension().is_some_and(|e| e == "toml") || as_path.is_file() {
        return Ok(as_path);
    }
    let named = datasets_dir.join(format!("{arg}.toml"));
    if named.is_file() {
        return Ok(named);
    }
    let known: Vec<String> = std::fs::read_dir(datasets_dir)
        .map(|rd| {
            let mut v: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.path()
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                })
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    if known.is_empty() {
        bail!(
            "unknown dataset {arg:?}: no config at {} (pass a .toml path or --datasets-dir)",
            named.display()
        );
    }
    bail!(
        "unknown dataset {arg:?}; known in {}: {}",
        datasets_dir.display(),
        known.join(", ")
    )
}

/// Loads the config for `arg` and prepares (or loads from cache) the dataset.
pub fn load(arg: &str, g: &Globals) -> Result<Prepared> {
    Ok(load_with_config(arg, g)?.1)
}

/// [`load`], also returning the dataset's config (the semantic inputs read
/// its item-text columns).
pub fn load_with_config(arg: &str, g: &Globals) -> Result<(DatasetConfig, Prepared)> {
    let path = config_path(arg, &g.datasets_dir)?;
    let cfg = DatasetConfig::load(&path)?;
    let prepared = hsuga_data::prepare(&cfg, &g.cache_dir)
        .with_context(|| format!("preparing dataset {}", cfg.name))?;
    Ok((cfg, prepared))
}
