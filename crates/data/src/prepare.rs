//! Prepared datasets, cached. Preparing reads the source files, preprocesses,
//! splits and groups; the result is stored in the cache directory under a key
//! that hashes the config and the bytes of every input file, so editing
//! either rebuilds it and nothing stale is ever loaded.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::candidates::Candidates;
use crate::config::DatasetConfig;
use crate::error::{DataError, Result};
use crate::formats;
use crate::groups::Groups;
use crate::preprocess::{Dataset, preprocess};
use crate::split::Split;

/// Bumped whenever the cached layout or the preprocessing changes meaning.
const FORMAT_VERSION: u32 = 1;

/// Environment variable for the cache root (default: the user's cache dir).
pub const CACHE_DIR_ENV: &str = "HSUGA_CACHE_DIR";

/// The cache root: `$HSUGA_CACHE_DIR`, else `<user cache dir>/hsuga`.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os(CACHE_DIR_ENV)
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("hsuga")))
        .unwrap_or_else(|| PathBuf::from(".hsuga-cache"))
}

/// A dataset ready for training and evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    pub dataset: Dataset,
    pub split: Split,
    pub groups: Groups,
    /// Content hash of config + inputs; names the cache folder.
    pub key: String,
    /// Where this dataset's cached files live.
    pub dir: PathBuf,
}

/// Loads the prepared dataset from the cache, or builds and stores it.
pub fn prepare(cfg: &DatasetConfig, cache_root: &Path) -> Result<Prepared> {
    let key = content_key(cfg)?;
    let dir = cache_root
        .join("datasets")
        .join(format!("{}-{}", cfg.name, &key[..16]));
    let file = dir.join("prepared.bin");
    if file.is_file() {
        let _span = tracing::info_span!("load_cached", dataset = %cfg.name).entered();
        let mut p: Prepared = read_bin(&file)?;
        p.dir = dir;
        return Ok(p);
    }
    let _span = tracing::info_span!("prepare", dataset = %cfg.name).entered();
    let prepared = build(cfg, key, dir)?;
    write_bin(&file, &prepared)?;
    Ok(prepared)
}

/// Builds without touching the cache.
pub fn build(cfg: &DatasetConfig, key: String, dir: PathBuf) -> Result<Prepared> {
    let log = formats::read_interactions(&cfg.interactions)?;
    let source = cfg.input_files()[0].to_path_buf();
    if log.interactions.is_empty() {
        return Err(DataError::empty(&source, "no interactions in file"));
    }
    let items = cfg.items.as_ref().map(formats::read_items).transpose()?;
    let dataset = preprocess(&cfg.name, log, items.as_ref(), &cfg.preprocess);
    if dataset.num_users() == 0 {
        return Err(DataError::empty(
            &source,
            format!(
                "no user has {} or more interactions; nothing is left after filtering",
                cfg.preprocess.min_user_interactions
            ),
        ));
    }
    let split = Split::leave_one_out(&dataset.sequences, dataset.num_items)?;
    let groups = Groups::compute(&split, cfg.groups);
    tracing::info!(
        users = dataset.num_users(),
        items = dataset.num_items,
        dropped_users = dataset.report.dropped_users,
        "prepared"
    );
    Ok(Prepared {
        dataset,
        split,
        groups,
        key,
        dir,
    })
}

/// The evaluation candidates for `seed`, drawn once and then read from the cache.
pub fn candidates(p: &Prepared, per_user: usize, seed: u64) -> Result<Candidates> {
    let file = p.dir.join(format!("candidates-{per_user}-seed{seed}.bin"));
    if file.is_file() {
        return read_bin(&file);
    }
    let c = Candidates::draw(&p.split, per_user, seed);
    write_bin(&file, &c)?;
    Ok(c)
}

fn content_key(cfg: &DatasetConfig) -> Result<String> {
    let mut h = Sha256::new();
    h.update(FORMAT_VERSION.to_le_bytes());
    // Paths do not matter, only what the files hold; everything else does.
    let mut settings = cfg.clone();
    settings.data_dir = PathBuf::new();
    settings.text = None;
    let described = toml::to_string(&settings).map_err(|e| DataError::Invalid(e.to_string()))?;
    let described: String = described
        .lines()
        .filter(|l| !l.contains("path") && !l.starts_with("id_map") && !l.starts_with("lookup"))
        .collect();
    h.update(described.as_bytes());
    for file in cfg.input_files() {
        let bytes = std::fs::read(file).map_err(|e| DataError::io(file, e))?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn read_bin<T: DeserializeOwned>(file: &Path) -> Result<T> {
    let f = std::fs::File::open(file).map_err(|e| DataError::io(file, e))?;
    bincode::deserialize_from(BufReader::with_capacity(1 << 20, f)).map_err(|e| DataError::Cache {
        path: file.to_path_buf(),
        message: e.to_string(),
    })
}

/// Writes to a temporary file and renames it, so a crash never leaves a
/// half-written cache entry that a later run would trust.
fn write_bin<T: Serialize>(file: &Path, value: &T) -> Result<()> {
    let dir = file.parent().expect("cache files live in a folder");
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
        bincode::serialize_into(&mut w, value).map_err(std::io::Error::other)?;
        w.flush()?;
        std::fs::rename(&tmp, file)
    };
    write().map_err(|e| DataError::io(file, e))
}
