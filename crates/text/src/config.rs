//! Which embedder to use, as written in config files and built by [`EmbedderConfig::build`].

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::embedder::TextEmbedder;
use crate::error::Result;
use crate::fetch::default_models_dir;
use crate::local::MiniLm;
use crate::remote::{OpenAiConfig, OpenAiEmbedder};

/// An embedder back-end (`backend = "local"` or `backend = "openai"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum EmbedderConfig {
    /// all-MiniLM-L6-v2 in-process (see [`MiniLm`]).
    Local {
        /// Models directory; default [`default_models_dir`].
        #[serde(default)]
        models_dir: Option<PathBuf>,
        /// Texts per forward pass.
        #[serde(default = "default_local_batch")]
        batch_size: usize,
    },
    /// An OpenAI-compatible `/v1/embeddings` server.
    Openai(OpenAiConfig),
}

fn default_local_batch() -> usize {
    MiniLm::DEFAULT_BATCH
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        EmbedderConfig::Local {
            models_dir: None,
            batch_size: default_local_batch(),
        }
    }
}

impl EmbedderConfig {
    /// Loads the local model or connects to the server.
    pub fn build(&self) -> Result<Arc<dyn TextEmbedder>> {
        Ok(match self {
            EmbedderConfig::Local {
                models_dir,
                batch_size,
            } => {
                let dir = models_dir.clone().unwrap_or_else(default_models_dir);
                Arc::new(MiniLm::load(&dir)?.with_batch_size(*batch_size))
            }
            EmbedderConfig::Openai(cfg) => Arc::new(OpenAiEmbedder::new(cfg.clone())?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_backends() {
        let l: EmbedderConfig = toml::from_str("backend = \"local\"").unwrap();
        assert_eq!(l, EmbedderConfig::default());
        let o: EmbedderConfig = toml::from_str(
            "backend = \"openai\"\nbase_url = \"http://127.0.0.1:8080/v1\"\nmodel = \"m\"\nconcurrency = 2",
        )
        .unwrap();
        match o {
            EmbedderConfig::Openai(c) => {
                assert_eq!(c.concurrency, 2);
                assert_eq!(c.batch_size, 64);
                assert_eq!(c.api_key_env, "OPENAI_API_KEY");
            }
            other => panic!("{other:?}"),
        }
        assert!(toml::from_str::<EmbedderConfig>("backend = \"local\"\nbatch = 3").is_err());
    }
}
