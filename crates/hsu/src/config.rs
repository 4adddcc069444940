//! HSU run configs (`configs/hsu/*.toml`).
//!
//! Two stages: [`HsuConfig`] is the TOML as written (unknown keys rejected,
//! defaults filled, each default saying where it comes from);
//! [`HsuConfig::load`] also reads the prompt set it names and rejects invalid
//! combinations, so a typo fails before any call is made.

use std::path::{Path, PathBuf};

use hsuga_llm::Op;
use hsuga_llm::openai::OpenAiConfig;
use hsuga_llm::rules::RulesConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{HsuError, Result};
use crate::prompts::PromptSet;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsuConfig {
    /// Name under which this run's stages are stored (one store holds many).
    pub variant: String,
    /// Prompt set file, relative to this config file.
    #[serde(default = "default_prompts")]
    pub prompts: PathBuf,
    pub backend: BackendConfig,
    #[serde(default)]
    pub stages: StageConfig,
    #[serde(default)]
    pub generation: GenerationConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub ablation: AblationConfig,
}

fn default_prompts() -> PathBuf {
    PathBuf::from("../prompts/paper.toml")
}

/// Which back-end answers (`[backend] kind = …`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// LLM-free approximation (labelled as such in every stored explanation).
    Rules(#[serde(default)] RulesConfig),
    /// Any OpenAI-compatible server.
    Openai(OpenAiConfig),
    /// An in-process GGUF chat model on candle (SmolLM2-135M by default, or
    /// Qwen2.5-Coder-Instruct 0.5B / 1.5B).
    Local(#[serde(default)] hsuga_llm::local::LocalConfig),
}

impl BackendConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Rules(_) => "rules",
            BackendConfig::Openai(_) => "openai",
            BackendConfig::Local(_) => "local",
        }
    }
}

/// How histories are cut into stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StageConfig {
    /// Items per stage. Unset: chosen from the data (see `percentile`).
    pub length: Option<usize>,
    /// With no `length`: the training-length percentile (ours: the median)…
    pub percentile: f64,
    /// …divided into this many stages (ours: 4, a history at the median
    /// length becomes four stages, as in the paper's case studies).
    pub stages_at_percentile: usize,
    /// …but never fewer items per stage than this (default 1: no floor).
    /// Short-history data gets one-item stages (Beauty: median 4 training
    /// items → length 1), where the rules editor deletes 73% of the time and
    /// the interests follow the latest item; 3 is the smallest stage of the
    /// paper's case study. Which works better is an open question: on Beauty
    /// (seed 42) HSUGA with one-item stages beat LLM-ESR on NDCG@10.
    pub min_length: usize,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self {
            length: None,
            percentile: 50.0,
            stages_at_percentile: 4,
            min_length: 1,
        }
    }
}

impl StageConfig {
    /// The stage length for these training sequence lengths.
    pub fn resolve(&self, lengths: &[usize]) -> usize {
        if let Some(l) = self.length {
            return l.max(1);
        }
        let mut v: Vec<usize> = lengths.iter().copied().filter(|&l| l > 0).collect();
        if v.is_empty() {
            return 1;
        }
        v.sort_unstable();
        let rank = (self.percentile / 100.0 * (v.len() - 1) as f64).round() as usize;
        v[rank.min(v.len() - 1)]
            .div_ceil(self.stages_at_percentile.max(1))
            .max(self.min_length)
            .max(1)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    /// Ours: long enough for an explanation and a ranked list.
    pub max_tokens: u32,
    /// 0 = greedy (ours: reproducible).
    pub temperature: f32,
    pub seed: u64,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_tokens: 384,
            temperature: 0.0,
            seed: 42,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Users processed at once (worker threads). Unset: 1 for `local` (one
    /// generation per core is fastest there), 2 for `rules`, the client's
    /// `concurrency` for `openai` so a server sees full batches.
    pub concurrency: Option<usize>,
    /// Tries per call before the stage keeps the previous interests.
    pub max_attempts: u32,
    /// Ask the back-end to "execute" retain too (the paper's prompt only
    /// repeats the previous interests; ours: skip the call).
    pub execute_retain: bool,
    /// Most interests kept from one answer (longer lists are cut).
    pub max_interests: usize,
    /// Runs that may compute a stage whose answers stayed unusable: a later
    /// run retries such a stage (a fixed server, a better prompt) until this
    /// many runs have failed it; after that it is kept as failed until
    /// `hsuga hsu --retry-failed`. Not part of the config hash: it decides
    /// whether a stage is recomputed, not what a computed stage holds.
    pub max_stage_runs: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            concurrency: None,
            max_attempts: 3,
            execute_retain: false,
            max_interests: 10,
            max_stage_runs: 3,
        }
    }
}

/// The paper's comparisons and ablations, as switches on one engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AblationConfig {
    pub mode: Mode,
    /// Operations the selection may not use ("w/o add" = `["add"]`).
    pub disabled_ops: Vec<Op>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Stage 1 reasoning, then selection → execution per stage (the paper).
    #[default]
    Hsu,
    /// Stage 1 reasoning, then one summarise-previous-plus-stage call per
    /// stage ("w/o Interest Updater").
    Recursive,
    /// The whole history in one chain-of-thought call (Table 7's baseline).
    Cot,
}

/// A loaded config with its prompt set.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub cfg: HsuConfig,
    pub prompts: PromptSet,
    pub source: PathBuf,
}

impl HsuConfig {
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start].matches('\n').count() + 1)
                .unwrap_or(0);
            HsuError::Config(format!(
                "{}: line {line}: {}",
                origin.display(),
                e.message()
            ))
        })
    }

    /// Reads, validates and resolves a config and its prompt set.
    pub fn load(path: &Path) -> Result<Resolved> {
        let text = std::fs::read_to_string(path).map_err(|e| HsuError::io(path, e))?;
        let cfg = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let prompts = PromptSet::load(&base.join(&cfg.prompts))?;
        cfg.resolve(prompts, path.to_path_buf())
    }

    /// Validates against a prompt set already in hand.
    pub fn resolve(self, prompts: PromptSet, source: PathBuf) -> Result<Resolved> {
        let bad = |m: String| Err(HsuError::Config(format!("{}: {m}", source.display())));
        if self.variant.trim().is_empty()
            || !self
                .variant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return bad(format!(
                "variant {:?} must be non-empty ASCII letters, digits, '-', '_' or '.'",
                self.variant
            ));
        }
        if self.stages.length == Some(0) {
            return bad("stages.length must be ≥ 1".into());
        }
        if !(0.0..=100.0).contains(&self.stages.percentile) {
            return bad("stages.percentile must be within 0..=100".into());
        }
        if self.engine.max_attempts == 0 {
            return bad("engine.max_attempts must be ≥ 1".into());
        }
        if self.engine.max_stage_runs == 0 {
            return bad("engine.max_stage_runs must be ≥ 1".into());
        }
        if self.engine.concurrency == Some(0) {
            return bad("engine.concurrency must be ≥ 1".into());
        }
        let allowed = Op::ALL
            .iter()
            .filter(|o| !self.ablation.disabled_ops.contains(o))
            .count();
        if allowed == 0 {
            return bad("ablation.disabled_ops disables every operation".into());
        }
        if self.ablation.mode != Mode::Hsu && !self.ablation.disabled_ops.is_empty() {
            return bad("ablation.disabled_ops only applies to mode = \"hsu\"".into());
        }
        if self.generation.max_tokens == 0 {
            return bad("generation.max_tokens must be ≥ 1".into());
        }
        Ok(Resolved {
            cfg: self,
            prompts,
            source,
        })
    }
}

impl Resolved {
    /// Operations the selection may return.
    pub fn allowed_ops(&self) -> Vec<Op> {
        Op::ALL
            .into_iter()
            .filter(|o| !self.cfg.ablation.disabled_ops.contains(o))
            .collect()
    }

    pub fn concurrency(&self) -> usize {
        self.cfg
            .engine
            .concurrency
            .unwrap_or(match &self.cfg.backend {
                BackendConfig::Rules(_) => 2,
                BackendConfig::Openai(o) => o.transport.concurrency,
                BackendConfig::Local(l) => l.workers.max(1),
            })
            .max(1)
    }

    /// Hash of everything that changes what a stage's answer means: prompts,
    /// back-end settings, generation settings, mode. A stored stage is reused
    /// only when this matches (and its items do).
    pub fn config_hash(&self, stage_length: usize) -> String {
        let mut h = Sha256::new();
        let mut backend = self.cfg.backend.clone();
        // Connection tuning does not change answers.
        if let BackendConfig::Openai(o) = &mut backend {
            o.transport.concurrency = 0;
            o.transport.timeout_s = 0.0;
            o.transport.max_retries = 0;
            o.transport.backoff_s = 0.0;
            o.transport.max_backoff_s = 0.0;
            o.transport.api_key_env.clear();
            o.transport.base_url.clear();
        }
        if let BackendConfig::Local(l) = &mut backend {
            l.workers = 0;
            // Batching changes speed, not answers (left out when default).
            l.batch = 1;
            l.batch_window_ms = hsuga_llm::local::DEFAULT_BATCH_WINDOW_MS;
        }
        let described = serde_json::json!({
            "backend": backend,
            "generation": self.cfg.generation,
            "ablation": self.cfg.ablation,
            "max_interests": self.cfg.engine.max_interests,
            "execute_retain": self.cfg.engine.execute_retain,
            "stage_length": stage_length,
            "prompts": self.prompts,
        });
        h.update(described.to_string().as_bytes());
        format!("{:x}", h.finalize())[..16].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_length_from_percentile() {
        let s = StageConfig::default();
        assert_eq!(s.resolve(&[4, 8, 16, 20, 100]), 4); // median 16 / 4
        assert_eq!(s.resolve(&[4, 5, 5, 6, 9]), 2); // median 5 / 4, rounded up
        assert_eq!(s.resolve(&[]), 1);
        let floor = StageConfig {
            min_length: 3,
            ..Default::default()
        };
        assert_eq!(floor.resolve(&[4, 5, 5, 6, 9]), 3);
        assert_eq!(floor.resolve(&[4, 8, 16, 20, 100]), 4);
        let fixed = StageConfig {
            length: Some(5),
            ..Default::default()
        };
        assert_eq!(fixed.resolve(&[100]), 5);
    }

    #[test]
    fn parses_and_rejects() {
        let p = Path::new("x.toml");
        let c = HsuConfig::parse("variant = \"r\"\n[backend]\nkind = \"rules\"\n", p).unwrap();
        assert_eq!(c.backend.kind(), "rules");
        let e = HsuConfig::parse("variant = \"r\"\n[backend]\nkind = \"gpt\"\n", p).unwrap_err();
        assert!(e.to_string().contains("gpt"), "{e}");
        let e = HsuConfig::parse(
            "variant = \"r\"\n[backend]\nkind = \"rules\"\n[engine]\nmax_atempts = 2\n",
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 5"), "{e}");
        let c = HsuConfig::parse(
            "variant = \"r\"\n[backend]\nkind = \"rules\"\n[ablation]\ndisabled_ops = [\"add\", \"delete\", \"update\", \"retain\"]\n",
            p,
        )
        .unwrap();
        let e = c.resolve(PromptSet::builtin_paper(), p.into()).unwrap_err();
        assert!(e.to_string().contains("every operation"), "{e}");
    }
}
