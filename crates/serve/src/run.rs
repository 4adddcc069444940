//! A finished run folder loaded for serving: its resolved config and
//! report ([`hsuga_experiment::read_finished`]), the dataset it trained on
//! (prepared through the same cache, [`hsuga_data::prepare`]), the raw ↔
//! internal id maps, item titles and the best checkpoint
//! ([`hsuga_train::load_best_with`]), with the item table computed once.
//! Nothing here is read from disk again per request.
//!
//! Which runs are served: every backbone, with or without LLMInit rows or
//! self-distillation (LLM-ESR's and GAA's), since those change only how
//! the weights were trained. Runs whose model reads semantic inputs at
//! scoring time (LLM-ESR's dual view reads item text embeddings; HSU fusion
//! reads a user semantic embedding) are refused at load with a message
//! saying so: serving them needs the embedder and the HSU worker of
//! issue 17's later steps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hsuga_data::{DatasetConfig, Prepared};
use hsuga_experiment::RunReport;
use hsuga_model::{Batcher, Fusion, Model, Recommender, Tables};
use hsuga_text::Template;
use hsuga_train::{RunConfig, SemanticInputs};

use crate::error::ServeError;

/// Turns a run config's `dataset` entry (a name or a path) into the path of
/// a dataset config, as the command line resolves it.
pub type ResolveDataset = dyn Fn(&str) -> Result<PathBuf, String> + Send + Sync;

/// Where a run's dataset is found; kept by the service for reloads.
#[derive(Clone)]
pub struct RunSource {
    /// The cache of prepared datasets (`--cache-dir`).
    pub cache_dir: PathBuf,
    pub resolve_dataset: Arc<ResolveDataset>,
}

/// The model and what scoring it needs, behind one lock: burn's batcher
/// caches masks in a `RefCell`, and one forward at a time is what the
/// micro-batcher wants anyway.
struct Scoring {
    model: Recommender,
    tables: Tables,
    batcher: Batcher,
}

/// One loaded run. Requests hold an `Arc<Run>` from start to answer, so a
/// reload never changes the catalogue or model under a request.
pub struct Run {
    pub dir: PathBuf,
    pub config: RunConfig,
    pub report: RunReport,
    pub prepared: Prepared,
    /// The dataset's `[text]` template, for item descriptions.
    template: Option<Template>,
    items: HashMap<String, u32>,
    users: HashMap<String, usize>,
    scoring: Mutex<Scoring>,
}

impl Run {
    /// Loads and checks a run folder; every refusal names the folder and
    /// the piece that is missing or incompatible.
    pub fn load(dir: &Path, source: &RunSource) -> Result<Self, ServeError> {
        let (config, report) =
            hsuga_experiment::read_finished(dir).map_err(|e| ServeError::Run(e.to_string()))?;
        refuse_semantic_methods(dir, &config)?;
        if report.build.as_deref() != Some(hsuga_experiment::BUILD) {
            // Info, not a warning: every commit is another build, and the
            // checkpoint loader refuses formats it cannot read anyway.
            tracing::info!(
                run = %dir.display(),
                trained_by = report.build.as_deref().unwrap_or("an unrecorded build"),
                this = hsuga_experiment::BUILD,
                "serving a run trained by another build (its checkpoint format is checked on load)"
            );
        }
        let path = (source.resolve_dataset)(&config.dataset)
            .map_err(|e| ServeError::run(dir, format!("dataset = {:?}: {e}", config.dataset)))?;
        let dcfg = DatasetConfig::load(&path).map_err(|e| {
            ServeError::run(
                dir,
                format!("dataset = {:?} ({}): {e}", config.dataset, path.display()),
            )
        })?;
        let prepared = hsuga_data::prepare(&dcfg, &source.cache_dir)
            .map_err(|e| ServeError::run(dir, format!("preparing dataset {}: {e}", dcfg.name)))?;
        let template = hsuga_text::template_for(&dcfg).ok();
        let best = dir.join("best.bpk");
        if !best.is_file() {
            return Err(ServeError::run(
                dir,
                "has no best.bpk (the best checkpoint); retrain the run",
            ));
        }
        let device = hsuga_model::cpu();
        let num_items = prepared.dataset.num_items;
        let model = hsuga_train::load_best_with(
            &config.model,
            &config.method,
            &SemanticInputs::default(),
            num_items,
            dir,
            &device,
        )
        .map_err(|e| ServeError::run(dir, e))?;
        let tables = model.tables();
        let batcher = Batcher::new(&config.model, num_items, &device);
        let items = (1..=num_items)
            .map(|i| (prepared.dataset.item_ids[i as usize - 1].clone(), i))
            .collect();
        let users = prepared
            .dataset
            .user_ids
            .iter()
            .enumerate()
            .map(|(u, id)| (id.clone(), u))
            .collect();
        let run = Self {
            dir: dir.to_path_buf(),
            config,
            report,
            prepared,
            template,
            items,
            users,
            scoring: Mutex::new(Scoring {
                model,
                tables,
                batcher,
            }),
        };
        // One forward now: a model that cannot score fails at load, not on
        // the first request (which would also pay for the lazy set-up).
        run.score(&[&[1][..]]);
        Ok(run)
    }

    pub fn num_items(&self) -> u32 {
        self.prepared.dataset.num_items
    }

    pub fn num_users(&self) -> usize {
        self.prepared.dataset.num_users()
    }

    /// Longest history the model reads; earlier items only count as seen.
    pub fn max_len(&self) -> usize {
        self.config.model.max_len
    }

    /// The internal id of a raw item id.
    pub fn item(&self, raw: &str) -> Option<u32> {
        self.items.get(raw).copied()
    }

    /// The raw id of an internal item id (`1..=N`).
    pub fn raw_item(&self, item: u32) -> &str {
        &self.prepared.dataset.item_ids[item as usize - 1]
    }

    /// The item's title, when the dataset has one.
    pub fn title(&self, item: u32) -> Option<&str> {
        self.prepared.dataset.attrs(item)?.title.as_deref()
    }

    /// The item as the dataset's text template renders it (what the
    /// embedder and the HSU prompts read), when the dataset has a template.
    pub fn text(&self, item: u32) -> Option<String> {
        let t = self.template.as_ref()?;
        Some(hsuga_text::item_text(&self.prepared.dataset, item, t))
    }

    /// The dataset's time-ordered sequence of a raw user id, if known.
    pub fn dataset_history(&self, raw_user: &str) -> Option<&[u32]> {
        let u = *self.users.get(raw_user)?;
        Some(&self.prepared.dataset.sequences[u])
    }

    /// A raw user id of the dataset, for examples (the web page's default).
    pub fn example_user(&self) -> Option<&str> {
        self.prepared.dataset.user_ids.first().map(String::as_str)
    }

    /// Scores every item for each history through the model contract's
    /// all-item scoring: row-major `histories.len() × N`, column `j` is
    /// item `j + 1`. Histories must be non-empty.
    pub fn score(&self, histories: &[&[u32]]) -> Vec<f32> {
        let s = self.scoring.lock().unwrap_or_else(|p| p.into_inner());
        let batch = s.batcher.eval_batch(histories);
        let reps = s.model.represent_last(&s.tables, &batch);
        hsuga_model::to_f32(s.model.score_all_reps(&s.tables, reps))
    }
}

/// Refuses runs whose model reads semantic inputs when it scores.
fn refuse_semantic_methods(dir: &Path, cfg: &RunConfig) -> Result<(), ServeError> {
    let reads = if cfg.method.dual_view {
        Some("LLM-ESR's dual view (method.dual_view = true) reads item text embeddings")
    } else if cfg.method.fusion != Fusion::None {
        Some("HSU fusion (method.fusion) reads a user semantic embedding")
    } else {
        None
    };
    match reads {
        Some(what) => Err(ServeError::run(
            dir,
            format!(
                "its model scores with semantic inputs: {what}, which this service does \
                 not load yet; serve a run without method.dual_view and method.fusion \
                 (any backbone, LLMInit or self-distillation)"
            ),
        )),
        None => Ok(()),
    }
}
