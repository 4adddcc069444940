//! Prepared datasets, cached. Preparing reads the source files, preprocesses,
//! splits and groups; the result is stored in the cache directory under a key
//! that hashes the config and the bytes of every input file, so editing
//! either rebuilds it and nothing stale is ever loaded.

use std::io::{BufWriter, Write};
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
/// It is hashed into the cache key, so files of another version live under
/// another folder name and are never read: version 1 was bincode 1.x,
/// version 2 is postcard; version 3 lets a split leave users unevaluated
/// (targets 0, whole sequence in training); version 4 puts a header with
/// the payload's length and sha256 before it (see [`read_bin`]).
const FORMAT_VERSION: u32 = 4;

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
    let _span = tracing::info_span!("prepare", dataset = %cfg.name).entered();
    let mut p: Prepared = cached(&file, || build(cfg, key, dir.clone()))?;
    p.dir = dir;
    Ok(p)
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
    let split = Split::leave_one_out_with(&dataset.sequences, dataset.num_items, &cfg.split)?;
    if split.num_evaluated() == 0 {
        return Err(DataError::empty(
            &source,
            format!(
                "no user has split.min_eval_interactions = {} or more interactions; \
                 nobody would be evaluated",
                cfg.split.min_eval_interactions.unwrap_or(3)
            ),
        ));
    }
    let groups = Groups::compute(&split, cfg.groups);
    tracing::info!(
        users = dataset.num_users(),
        evaluated_users = split.num_evaluated(),
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
    let c: Candidates = cached(&file, || Ok(Candidates::draw(&p.split, per_user, seed)))?;
    // Intact but not for this split (a file copied between folders): refuse
    // before an out-of-range id reaches a model's gather.
    c.check(&p.split, per_user, seed)
        .map_err(|message| DataError::Cache {
            path: file.clone(),
            message,
        })?;
    Ok(c)
}

fn content_key(cfg: &DatasetConfig) -> Result<String> {
    content_key_at(cfg, FORMAT_VERSION)
}

fn content_key_at(cfg: &DatasetConfig, format_version: u32) -> Result<String> {
    let mut h = Sha256::new();
    h.update(format_version.to_le_bytes());
    // Paths do not matter, only what the files hold; everything else does.
    let mut settings = cfg.clone();
    settings.data_dir = PathBuf::new();
    settings.source = None;
    settings.text = None;
    let described = toml::to_string(&settings).map_err(|e| DataError::Invalid(e.to_string()))?;
    let described: String = described
        .lines()
        .filter(|l| !l.contains("path") && !l.starts_with("id_map") && !l.starts_with("lookup"))
        .collect();
    h.update(described.as_bytes());
    // Streamed: raw review dumps run to gigabytes. The bytes hashed are
    // those of reading each file whole (length, then contents), so keys do
    // not change.
    for file in cfg.input_files() {
        let mut f = std::fs::File::open(file).map_err(|e| DataError::io(file, e))?;
        let len = f.metadata().map_err(|e| DataError::io(file, e))?.len();
        h.update(len.to_le_bytes());
        let read = std::io::copy(&mut f, &mut h).map_err(|e| DataError::io(file, e))?;
        if read != len {
            return Err(DataError::io(
                file,
                std::io::Error::other(format!(
                    "changed while being read ({len} bytes, then {read})"
                )),
            ));
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Marks a cache file of this layout: magic, then the payload's length and
/// sha256, then the postcard payload.
const MAGIC: &[u8; 8] = b"HSUGAbin";
const HEADER: usize = 8 + 8 + 32;

/// Reads a cache file whole, checking its magic, length and sha256 before
/// decoding, so that a truncated, extended or altered file (one flipped
/// byte among user ids) is never taken for data; postcard then reads
/// exactly the bytes written, so no input can make it allocate more.
fn read_bin<T: DeserializeOwned>(file: &Path) -> Result<T> {
    let bytes = std::fs::read(file).map_err(|e| DataError::io(file, e))?;
    let cache_error = |message: String| DataError::Cache {
        path: file.to_path_buf(),
        message,
    };
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(cache_error(
            "not a cache file of this build (no hsuga header)".into(),
        ));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let payload = &bytes[HEADER..];
    if payload.len() != len {
        return Err(cache_error(format!(
            "{} payload bytes, the header says {len}",
            payload.len()
        )));
    }
    if Sha256::digest(payload).as_slice() != &bytes[16..HEADER] {
        return Err(cache_error(
            "checksum mismatch (the file was altered)".into(),
        ));
    }
    let (value, rest) =
        postcard::take_from_bytes(payload).map_err(|e| cache_error(e.to_string()))?;
    if !rest.is_empty() {
        return Err(cache_error(format!(
            "{} byte(s) left after the stored value",
            rest.len()
        )));
    }
    Ok(value)
}

/// A derived cache: read when intact, else built again (with a warning
/// naming the file and what was wrong) and stored.
fn cached<T: Serialize + DeserializeOwned>(
    file: &Path,
    build: impl FnOnce() -> Result<T>,
) -> Result<T> {
    if file.is_file() {
        match read_bin(file) {
            Ok(v) => return Ok(v),
            Err(e @ DataError::Cache { .. }) => {
                tracing::warn!("{e}; rebuilding it");
            }
            Err(e) => return Err(e),
        }
    }
    let value = build()?;
    write_bin(file, &value)?;
    Ok(value)
}

fn write_bin<T: Serialize>(file: &Path, value: &T) -> Result<()> {
    let dir = file.parent().expect("cache files live in a folder");
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let payload = postcard::to_stdvec(value).map_err(|e| DataError::Invalid(e.to_string()))?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
        w.write_all(MAGIC)?;
        w.write_all(&(payload.len() as u64).to_le_bytes())?;
        w.write_all(&Sha256::digest(&payload))?;
        w.write_all(&payload)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, file)
    };
    write().map_err(|e| DataError::io(file, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4-user dataset on disk and its loaded config.
    fn toy(dir: &Path) -> DatasetConfig {
        toy_with(dir, "")
    }

    /// [`toy`] with more TOML appended to its config; users 1 and 3 have 5 items.
    fn toy_with(dir: &Path, extra: &str) -> DatasetConfig {
        let mut inter = String::new();
        for (u, items) in [
            &[1, 2, 3, 4][..],
            &[2, 3, 4, 5, 1],
            &[5, 1, 2, 3],
            &[4, 4, 1, 2, 3],
        ]
        .iter()
        .enumerate()
        {
            for i in items.iter() {
                inter.push_str(&format!("{} {i}\n", u + 1));
            }
        }
        std::fs::write(dir.join("inter.txt"), inter).unwrap();
        let cfg = dir.join("toy.toml");
        std::fs::write(
            &cfg,
            format!(
                "name = \"toy\"\n[interactions]\nformat = \"user_item\"\npath = \"inter.txt\"\n{extra}"
            ),
        )
        .unwrap();
        DatasetConfig::load(&cfg).unwrap()
    }

    #[test]
    fn prepared_and_candidates_round_trip_through_the_cache() {
        let data = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let cfg = toy(data.path());
        let built = prepare(&cfg, cache.path()).unwrap();
        assert!(built.dir.join("prepared.bin").is_file());
        let loaded = prepare(&cfg, cache.path()).unwrap();
        assert_eq!(loaded, built);
        let drawn = candidates(&built, 1, 7).unwrap();
        assert!(built.dir.join("candidates-1-seed7.bin").is_file());
        assert_eq!(candidates(&loaded, 1, 7).unwrap(), drawn);
    }

    /// Each way a cache file can be damaged: `read_bin` says what is wrong,
    /// naming the file, and `prepare` / `candidates` rebuild the same value.
    #[test]
    fn a_damaged_cache_is_detected_and_rebuilt() {
        let data = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let cfg = toy(data.path());
        let built = prepare(&cfg, cache.path()).unwrap();
        let drawn = candidates(&built, 1, 7).unwrap();
        for name in ["prepared.bin", "candidates-1-seed7.bin"] {
            let file = built.dir.join(name);
            let good = std::fs::read(&file).unwrap();
            let mut flipped = good.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 0x01;
            let mut longer = good.clone();
            longer.extend([0u8; 3]);
            let damages: [(&str, Vec<u8>); 5] = [
                ("truncated", good[..good.len() / 2].to_vec()),
                ("extended", longer),
                ("one byte flipped", flipped),
                (
                    "random bytes",
                    (0..200u32).map(|i| (i * 37 % 251) as u8).collect(),
                ),
                ("empty", Vec::new()),
            ];
            for (what, bytes) in damages {
                std::fs::write(&file, &bytes).unwrap();
                let e = if name == "prepared.bin" {
                    read_bin::<Prepared>(&file).map(|_| ()).unwrap_err()
                } else {
                    read_bin::<Candidates>(&file).map(|_| ()).unwrap_err()
                };
                assert!(matches!(e, DataError::Cache { .. }), "{name} {what}: {e}");
                assert!(e.to_string().contains(name), "{name} {what}: {e}");
                assert_eq!(prepare(&cfg, cache.path()).unwrap(), built, "{name} {what}");
                assert_eq!(candidates(&built, 1, 7).unwrap(), drawn, "{name} {what}");
                assert_eq!(
                    std::fs::read(&file).unwrap(),
                    good,
                    "{name} {what}: rewritten"
                );
            }
        }
    }

    /// The evaluated-user setting changes what is cached, so it must change
    /// the key: otherwise a run with the filter would load the unfiltered split.
    #[test]
    fn min_eval_interactions_is_part_of_the_cache_key() {
        let data = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let all = prepare(&toy(data.path()), cache.path()).unwrap();
        let filtered_cfg = toy_with(data.path(), "[split]\nmin_eval_interactions = 5\n");
        let filtered = prepare(&filtered_cfg, cache.path()).unwrap();
        assert_ne!(all.dir, filtered.dir);
        assert_eq!(all.split.evaluated_users(), vec![0, 1, 2, 3]);
        assert_eq!(filtered.split.evaluated_users(), vec![1, 3]);
        assert_eq!(filtered.split.train[0], vec![1, 2, 3, 4]);
        // Reloaded from the cache, in either order.
        assert_eq!(prepare(&filtered_cfg, cache.path()).unwrap(), filtered);
        assert_eq!(prepare(&toy(data.path()), cache.path()).unwrap(), all);
    }

    #[test]
    fn nobody_evaluated_is_an_error_naming_the_file() {
        let data = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let cfg = toy_with(data.path(), "[split]\nmin_eval_interactions = 6\n");
        let err = prepare(&cfg, cache.path()).unwrap_err().to_string();
        assert!(
            err.contains("inter.txt") && err.contains("nobody would be evaluated"),
            "{err}"
        );
    }

    /// Regression: version-1 caches hold bincode 1.x, which postcard would
    /// misread; they must sit under another key, so a new build never opens them.
    #[test]
    fn bincode_era_cache_is_not_read() {
        let data = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let cfg = toy(data.path());
        let key = content_key_at(&cfg, 1).unwrap();
        let dir = cache
            .path()
            .join("datasets")
            .join(format!("toy-{}", &key[..16]));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("prepared.bin"), b"a bincode 1.x layout").unwrap();
        let p = prepare(&cfg, cache.path()).unwrap();
        assert_eq!(p.key, content_key_at(&cfg, FORMAT_VERSION).unwrap());
        assert_eq!(p.split.num_users(), 4);
    }
}
