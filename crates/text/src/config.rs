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
    use crate::transport::TransportConfig;

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
                assert_eq!(c.model, "m");
                assert_eq!(c.batch_size, 64);
                assert_eq!(c.dim, None);
                assert_eq!(
                    c.transport,
                    TransportConfig {
                        concurrency: 2,
                        ..TransportConfig::new("http://127.0.0.1:8080/v1")
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(toml::from_str::<EmbedderConfig>("backend = \"local\"\nbatch = 3").is_err());
    }

    /// The transport keys sit flat beside the embedder's own; one the
    /// client and the transport both lack is still refused, by name — in
    /// the embedder's table and in the transport's share of it alike.
    #[test]
    fn openai_unknown_key_is_an_error_naming_it() {
        for (key, line) in [("timeout", "timeout = 5.0"), ("batch", "batch = 8")] {
            let text = format!(
                "backend = \"openai\"\nbase_url = \"http://h/v1\"\nmodel = \"m\"\n{line}\n"
            );
            let e = toml::from_str::<EmbedderConfig>(&text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("unknown field `{key}`")), "{e}");
            assert!(
                e.contains("`timeout_s`") && e.contains("`batch_size`"),
                "{e}"
            );
        }
        let e = toml::from_str::<EmbedderConfig>("backend = \"openai\"\nmodel = \"m\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("base_url"), "{e}");
    }

    /// Every field survives a write and a read (run folders keep the
    /// resolved config as written).
    #[test]
    fn openai_config_round_trips_through_toml() {
        let mut c = OpenAiConfig::new("http://h:1/v1", "m");
        c.dim = Some(384);
        c.transport.max_retries = 7;
        let cfg = EmbedderConfig::Openai(c);
        let text = toml::to_string(&cfg).unwrap();
        assert!(!text.contains("[transport]"), "written flat:\n{text}");
        assert_eq!(toml::from_str::<EmbedderConfig>(&text).unwrap(), cfg);
    }
}
