//! A finished run folder loaded for serving: its resolved config and
//! report ([`hsuga_experiment::read_finished`]), the dataset it trained on
//! (prepared through the same cache, [`hsuga_data::prepare`]), the raw ↔
//! internal id maps, item titles and the best checkpoint
//! ([`hsuga_train::load_best`]), with the item table computed once.
//! Nothing here is read from disk again per request.
//!
//! Which runs are served: every backbone, with or without LLMInit rows or
//! self-distillation (LLM-ESR's and GAA's), LLM-ESR's dual view and HSU
//! fusion. Their semantic inputs are produced the way training produced
//! them ([`hsuga_experiment::semantic_inputs`], from the caches when they
//! are there) and must have the digest the run recorded in `inputs.sha256`,
//! so the served model reads what it was trained on.
//!
//! HSU fusion reads a user semantic embedding when it scores. The cold-start
//! rule: a dataset user reads their training row until their served history
//! completes an HSU stage past it, then the embedding of their online
//! interests ([`crate::hsu`]); a user new to the service, and an anonymous
//! history, read a zero vector until their first stage completes (the
//! fused layer then adds only its bias, the nearest thing to the plain
//! backbone the trained layer has).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hsuga_data::{DatasetConfig, Prepared};
use hsuga_experiment::RunReport;
use hsuga_hsu::online::Online;
use hsuga_model::burn::tensor::{Tensor, TensorData};
use hsuga_model::{Batcher, Fusion, Model, Recommender, Tables};
use hsuga_text::Template;
use hsuga_train::{ItemText, RunConfig, SemanticInputs, UserSemantic};

use crate::error::ServeError;
use crate::hsu::{Embed, RunHsu};

/// Turns a run config's `dataset` entry (a name or a path) into the path of
/// a dataset config, as the command line resolves it.
pub type ResolveDataset = dyn Fn(&str) -> Result<PathBuf, String> + Send + Sync;

/// Where a run's dataset is found; kept by the service for reloads.
#[derive(Clone)]
pub struct RunSource {
    /// The cache of prepared datasets and semantic inputs (`--cache-dir`).
    pub cache_dir: PathBuf,
    /// Local model weights, for a dual-view run's item text embedder.
    pub models_dir: PathBuf,
    /// HSU configs, for a run whose inputs name one.
    pub hsu_configs: PathBuf,
    pub resolve_dataset: Arc<ResolveDataset>,
}

/// The model and what scoring it needs, behind one lock: burn's batcher
/// caches masks in a `RefCell`, and one forward at a time is what the
/// micro-batcher wants anyway.
struct Scoring {
    model: Recommender,
    tables: Tables,
    batcher: Batcher,
    device: hsuga_model::burn::tensor::Device,
}

/// Where a user's semantic embedding came from (fusion runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingSource {
    /// Embedded from the user's online HSU interests.
    Online,
    /// The row the run was trained with.
    Training,
    /// The zero vector of the cold-start rule.
    ColdStart,
}

impl EmbeddingSource {
    pub fn name(self) -> &'static str {
        match self {
            EmbeddingSource::Online => "online",
            EmbeddingSource::Training => "training",
            EmbeddingSource::ColdStart => "cold_start",
        }
    }
}

/// The user semantic rows a fusion run was trained with, one per dataset
/// user, and the cold-start zero vector.
struct UserRows {
    rows: Vec<Arc<[f32]>>,
    zeros: Arc<[f32]>,
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
    /// Fusion runs only.
    user_rows: Option<UserRows>,
    /// MELT runs only: its τ_u. A user whose whole history is at most
    /// this long is a tail user, scored with MELT's transfer; the service
    /// decides it from the full history (the model sees only the last
    /// `max_len` items, which may all be shorter than τ_u).
    melt_tau_u: Option<f64>,
    /// Runs whose inputs name an HSU config.
    pub hsu: Option<RunHsu>,
}

impl Run {
    /// Loads and checks a run folder; every refusal names the folder and
    /// the piece that is missing or incompatible.
    pub fn load(dir: &Path, source: &RunSource) -> Result<Self, ServeError> {
        let (config, report) =
            hsuga_experiment::read_finished(dir).map_err(|e| ServeError::Run(e.to_string()))?;
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
        let fuses = config.method.fusion != Fusion::None;
        // What the model reads when it scores: the semantic view, the user
        // rows of fusion, or the frozen text an LLM2Rec / LLMEmb item table
        // is made from (LLMInit's rows are in its checkpoint); RLMRec's
        // projectors take their widths from the inputs, though scoring
        // never reads them.
        let semantic = if config.method.dual_view
            || fuses
            || config.method.text_items()
            || config.method.rlmrec.is_some()
        {
            semantic_inputs(dir, &config, &dcfg, &prepared, source)?
        } else {
            SemanticInputs::default()
        };
        let user_rows = match (&semantic.user_semantic, fuses) {
            (Some(m), true) => Some(UserRows {
                rows: (0..m.rows).map(|u| Arc::from(m.row(u))).collect(),
                zeros: vec![0.0; m.dim].into(),
            }),
            (None, true) => {
                return Err(ServeError::run(
                    dir,
                    "its model fuses user semantic embeddings (method.fusion), but its \
                     inputs name none (inputs.user_semantic)",
                ));
            }
            _ => None,
        };
        let hsu = hsu_online(dir, &config, &dcfg, &prepared, source, fuses)?;
        let model = hsuga_train::load_best(
            &config.model,
            &config.method,
            &semantic,
            num_items,
            dir,
            &device,
        )
        .map_err(|e| ServeError::run(dir, e))?;
        let tables = model.tables();
        let melt_tau_u = model.melt.as_ref().map(|m| m.tau_u());
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
                device,
            }),
            user_rows,
            melt_tau_u,
            hsu,
        };
        // One forward now: a model that cannot score fails at load, not on
        // the first request (which would also pay for the lazy set-up).
        run.score(&[&[1][..]], &[]);
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

    /// Whether the model reads a user semantic embedding when it scores.
    pub fn fuses(&self) -> bool {
        self.user_rows.is_some()
    }

    /// How many HSU stages the run's training row of a user reflects: the
    /// offline run cut the user's training history into
    /// `ceil(len / stage length)` stages (the last maybe partial); a user
    /// new to the service has none.
    pub fn trained_stages(&self, raw_user: &str, stage_length: usize) -> usize {
        self.users
            .get(raw_user)
            .map_or(0, |&u| self.prepared.split.train[u].len())
            .div_ceil(stage_length.max(1))
    }

    /// The semantic embedding a fusion run scores `user` with (see the
    /// module's cold-start rule); `None` for runs that do not fuse.
    pub fn semantic_for(&self, user: Option<&str>) -> Option<(Arc<[f32]>, EmbeddingSource)> {
        let rows = self.user_rows.as_ref()?;
        let Some(user) = user else {
            return Some((rows.zeros.clone(), EmbeddingSource::ColdStart));
        };
        if let Some(v) = self.hsu.as_ref().and_then(|h| h.swapped(user)) {
            return Some((v, EmbeddingSource::Online));
        }
        match self.users.get(user).and_then(|&u| rows.rows.get(u)) {
            Some(v) => Some((v.clone(), EmbeddingSource::Training)),
            None => Some((rows.zeros.clone(), EmbeddingSource::ColdStart)),
        }
    }

    /// A MELT run's per-row input for a user whose whole history has
    /// `history_len` items: `[1.0]` for a tail user (at most τ_u items),
    /// `[0.0]` otherwise; `None` for other runs.
    pub fn melt_tail_flag(&self, history_len: usize) -> Option<Arc<[f32]>> {
        let tau_u = self.melt_tau_u?;
        let tail = history_len as f64 <= tau_u;
        Some(vec![if tail { 1.0 } else { 0.0 }].into())
    }

    /// Scores every item for each history through the model contract's
    /// all-item scoring: row-major `histories.len() × N`, column `j` is
    /// item `j + 1`. Histories must be non-empty. `semantic` holds each
    /// row's user embedding for fusion runs (empty: the cold-start zero
    /// vector for every row), or each row's [`Self::melt_tail_flag`] for
    /// MELT runs (empty: the model's rule on the histories given); other
    /// runs ignore it.
    pub fn score(&self, histories: &[&[u32]], semantic: &[&[f32]]) -> Vec<f32> {
        let s = self.scoring.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = s.batcher.eval_batch(histories);
        if self.melt_tau_u.is_some() && semantic.len() == histories.len() {
            let flags: Vec<f32> = semantic
                .iter()
                .map(|v| v.first().copied().unwrap_or(0.0))
                .collect();
            let b = flags.len();
            batch.user_semantic =
                Some(Tensor::from_data(TensorData::new(flags, [b, 1]), &s.device));
        }
        if let Some(rows) = &self.user_rows {
            let dim = rows.zeros.len();
            let b = histories.len();
            let mut data = Vec::with_capacity(b * dim);
            for r in 0..b {
                match semantic.get(r) {
                    Some(v) if v.len() == dim => data.extend_from_slice(v),
                    _ => data.extend_from_slice(&rows.zeros),
                }
            }
            batch.user_semantic = Some(Tensor::from_data(
                TensorData::new(data, [b, dim]),
                &s.device,
            ));
        }
        let reps = s.model.represent_last(&s.tables, &batch);
        hsuga_model::to_f32(s.model.score_all_reps(&s.tables, reps))
    }
}

impl Drop for Run {
    /// An HSU back-end may own a tokio runtime (the OpenAI client's
    /// transport keeps one for blocking callers), and tokio panics when a
    /// runtime is dropped inside an async context, which is where the last
    /// handle on a run is usually let go: a reload swapping runs in its
    /// handler, a request finishing on the old run, the end of `hsuga
    /// serve`'s `block_on` (found by the llama-server test: exit status
    /// 101 after SIGTERM). There the back-end is dropped on a thread of its
    /// own.
    fn drop(&mut self) {
        if let Some(hsu) = self.hsu.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let dropped = std::thread::Builder::new()
                .name("hsuga-drop-hsu".into())
                .spawn(move || drop(hsu));
            if let Err(e) = dropped {
                tracing::error!("cannot drop the HSU back-end off the async runtime: {e}");
            }
        }
    }
}

/// The HSU online updater of a run whose inputs name an HSU config, bound
/// to the store, stage length, item texts and embedder its training used.
fn hsu_online(
    dir: &Path,
    config: &RunConfig,
    dcfg: &DatasetConfig,
    prepared: &Prepared,
    source: &RunSource,
    fuses: bool,
) -> Result<Option<RunHsu>, ServeError> {
    let (name, hidden) = match &config.inputs.user_semantic {
        Some(UserSemantic::Hsu(n)) => (n, false),
        Some(UserSemantic::HsuHidden(n)) => (n, true),
        _ => return Ok(None),
    };
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        ServeError::run(dir, format!("HSU config `{name}`: {what}: {e}"))
    };
    let path = source.hsu_configs.join(format!("{name}.toml"));
    let resolved = hsuga_hsu::HsuConfig::load(&path).map_err(|e| fail("loading", &e))?;
    // As the offline run cut them: over every user's training length.
    let lengths: Vec<usize> = prepared.split.train.iter().map(Vec::len).collect();
    let stage_length = resolved.cfg.stages.resolve(&lengths);
    let template =
        hsuga_hsu::ItemTemplate::for_dataset(dcfg).map_err(|e| fail("item template", &e))?;
    let backend =
        hsuga_hsu::build_backend(&resolved.cfg.backend).map_err(|e| fail("back-end", &e))?;
    let store = hsuga_hsu::store::default_path(&source.cache_dir, &dcfg.name);
    let online = Online::new(&resolved, stage_length, template, &store, backend, hidden)
        .map_err(|e| fail("online updates", &e))?;
    let embed = match (fuses, hidden, &config.inputs.item_text) {
        (false, _, _) => None,
        (true, true, _) => Some(Embed::Hidden),
        (true, false, Some(ItemText::Embedder(model))) => {
            if model != hsuga_text::fetch::MINILM_L6_V2.name {
                return Err(fail(
                    "embedding interests",
                    &format!(
                        "the service embeds with `{}`, the run names `{model}`",
                        hsuga_text::fetch::MINILM_L6_V2.name
                    ),
                ));
            }
            let m = hsuga_text::MiniLm::load(&source.models_dir)
                .map_err(|e| fail("loading the interest embedder", &e))?;
            Some(Embed::Text(Box::new(m)))
        }
        (true, false, _) => {
            return Err(fail(
                "embedding interests",
                &"inputs.item_text names no embedder",
            ));
        }
    };
    Ok(Some(RunHsu::new(online, name.clone(), embed)))
}

/// A dual-view run's semantic inputs, produced as its training produced
/// them and checked against the digest it recorded.
fn semantic_inputs(
    dir: &Path,
    config: &RunConfig,
    dcfg: &DatasetConfig,
    prepared: &Prepared,
    source: &RunSource,
) -> Result<SemanticInputs, ServeError> {
    let dirs = hsuga_experiment::InputDirs {
        cache_dir: &source.cache_dir,
        models_dir: &source.models_dir,
        hsu_configs: &source.hsu_configs,
    };
    let mut semantic = hsuga_experiment::semantic_inputs(&config.inputs, dcfg, prepared, &dirs)
        .map_err(|e| ServeError::run(dir, format!("its semantic inputs: {e}")))?;
    // LLMEmb's pretrained item table is part of the recorded digest.
    if let Some(s) = hsuga_experiment::with_pretrained(
        &semantic,
        config,
        &dcfg.name,
        &prepared.split,
        &*source.resolve_dataset,
    )
    .map_err(|e| ServeError::run(dir, format!("its pretrained run: {e}")))?
    {
        semantic = s;
    }
    let recorded = dir.join(hsuga_experiment::INPUTS_DIGEST);
    match std::fs::read_to_string(&recorded) {
        Ok(d) if d.trim() != semantic.digest() => Err(ServeError::run(
            dir,
            format!(
                "its semantic inputs differ from those it was trained on ({} holds {}, \
                 they are now {}): the item texts, the embedder or the HSU interests \
                 changed; retrain the run",
                recorded.display(),
                d.trim(),
                semantic.digest()
            ),
        )),
        Ok(_) => Ok(semantic),
        Err(e) => Err(ServeError::run(
            dir,
            format!(
                "{}: {e} (the digest of the semantic inputs it was trained on)",
                recorded.display()
            ),
        )),
    }
}
