//! [`Service`]: the state behind every route (the current run, the
//! interaction store, the scoring thread, limits, the token, metrics) and
//! one method per thing a route does. Handlers only parse, call one of
//! these and serialise.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use crate::batch::{BatchConfig, MicroBatcher};
use crate::error::ServeError;
use crate::hsu::{HsuQueue, Task};
use crate::metrics::Metrics;
use crate::run::{Run, RunSource};
use crate::store::{NewInteraction, Store};
use crate::types::{
    InteractionIn, InteractionsAccepted, InterestStage, ItemInfo, Recommendations, RunInfo,
    ScoredItem, UserInfo, UserInterests,
};

/// Bounds on what one request may ask.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most items per answer.
    pub max_k: usize,
    /// Most items in an anonymous history.
    pub max_history: usize,
    /// Most interactions per request.
    pub max_interactions: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Longest user, item or event id, in bytes.
    pub max_id_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_k: 1000,
            max_history: 10_000,
            max_interactions: 1000,
            max_body_bytes: 1 << 20,
            max_id_bytes: 256,
        }
    }
}

/// How the service runs, beyond the run it serves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The interaction store (SQLite).
    pub state: PathBuf,
    /// The bearer token of write and admin routes; `None` disables them.
    pub token: Option<String>,
    pub limits: Limits,
    pub batch: BatchConfig,
    /// Most users waiting for the HSU worker; past it, the worker sweeps
    /// every served user once the queue drains.
    pub hsu_queue: usize,
}

/// The default bound of the HSU queue.
pub const DEFAULT_HSU_QUEUE: usize = 1024;

/// The default store of a run folder: `<run>/interactions.sqlite`.
pub fn default_state(run: &Path) -> PathBuf {
    run.join("interactions.sqlite")
}

const DEFAULT_K: i64 = 10;

pub struct Service {
    run: RwLock<Arc<Run>>,
    source: RunSource,
    store: Store,
    scorer: MicroBatcher,
    token: Option<String>,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    /// One reload at a time (loading takes seconds; requests go on).
    reloading: tokio::sync::Mutex<()>,
    /// Users whose HSU stages are due ([`crate::hsu`]).
    hsu_queue: Arc<HsuQueue>,
    /// Set at shutdown: the stage in flight finishes, no other starts.
    hsu_stop: Arc<AtomicBool>,
    hsu_worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        // Lets the worker thread end (it holds only a weak handle).
        self.hsu_stop.store(true, Ordering::SeqCst);
        self.hsu_queue.stop();
    }
}

impl Service {
    pub fn new(run: Run, source: RunSource, opts: Options) -> Result<Arc<Self>, ServeError> {
        let metrics =
            Arc::new(Metrics::new().map_err(|e| ServeError::Internal(format!("metrics: {e}")))?);
        let store = Store::open(&opts.state)?;
        warn_unknown_appended(&run, &store);
        let scorer = MicroBatcher::start(opts.batch, metrics.clone())?;
        let hsu_queue = Arc::new(HsuQueue::new(
            opts.hsu_queue,
            metrics.hsu_queue_depth.clone(),
        ));
        let svc = Arc::new(Self {
            run: RwLock::new(Arc::new(run)),
            source,
            store,
            scorer,
            token: opts.token,
            limits: opts.limits,
            metrics,
            reloading: tokio::sync::Mutex::new(()),
            hsu_queue: hsu_queue.clone(),
            hsu_stop: Arc::new(AtomicBool::new(false)),
            hsu_worker: Mutex::new(None),
        });
        let weak = Arc::downgrade(&svc);
        let worker = std::thread::Builder::new()
            .name("hsuga-hsu".into())
            .spawn(move || hsu_worker(&hsu_queue, &weak))
            .map_err(|e| ServeError::Internal(format!("starting the HSU worker: {e}")))?;
        *svc.hsu_worker.lock().unwrap_or_else(|p| p.into_inner()) = Some(worker);
        svc.queue_due_users();
        Ok(svc)
    }

    /// The run requests start on now.
    pub fn current(&self) -> Arc<Run> {
        self.run.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn store_path(&self) -> &Path {
        self.store.path()
    }

    /// Checks an `Authorization` header against the token.
    pub fn authorize(&self, header: Option<&[u8]>) -> Result<(), ServeError> {
        let Some(token) = &self.token else {
            return Err(ServeError::Forbidden(
                "write and admin routes are disabled: the service was started without \
                 --token-env"
                    .into(),
            ));
        };
        let given = header
            .and_then(|h| h.strip_prefix(b"Bearer "))
            .ok_or_else(|| {
                ServeError::Unauthorized(
                    "this route needs an `Authorization: Bearer <token>` header".into(),
                )
            })?;
        if constant_time_eq(given, token.as_bytes()) {
            Ok(())
        } else {
            Err(ServeError::Unauthorized(
                "the bearer token is not valid".into(),
            ))
        }
    }

    pub fn info(&self) -> RunInfo {
        let run = self.current();
        RunInfo {
            run: run.dir.display().to_string(),
            name: run.config.name.clone(),
            dataset: run.prepared.dataset.name.clone(),
            backbone: run.config.model.kind().name().to_string(),
            items: run.num_items(),
            users: run.num_users(),
            build: run.report.build.clone(),
            example_user: run.example_user().map(str::to_string),
        }
    }

    /// `k` checked against its bounds (default 10).
    fn k(&self, k: Option<i64>) -> Result<usize, ServeError> {
        let k = k.unwrap_or(DEFAULT_K);
        if k < 1 || k > self.limits.max_k as i64 {
            return Err(ServeError::BadRequest(format!(
                "k must be between 1 and {}, got {k}",
                self.limits.max_k
            )));
        }
        Ok(k as usize)
    }

    fn check_id(&self, what: &str, id: &str) -> Result<(), ServeError> {
        if id.is_empty() {
            return Err(ServeError::BadRequest(format!("{what} must not be empty")));
        }
        if id.len() > self.limits.max_id_bytes {
            return Err(ServeError::BadRequest(format!(
                "{what} is {} bytes long; at most {} are allowed",
                id.len(),
                self.limits.max_id_bytes
            )));
        }
        Ok(())
    }

    /// A user's history under `run` (internal ids): the dataset's sequence,
    /// then the appended items the run's catalogue knows; `None` for a user
    /// neither knows. Also how many came from the dataset.
    fn history(&self, run: &Run, user: &str) -> Option<(Vec<u32>, usize)> {
        let base = run.dataset_history(user);
        if base.is_none() && !self.store.knows(user) {
            return None;
        }
        let mut h = base.map(<[u32]>::to_vec).unwrap_or_default();
        let from_dataset = h.len();
        h.extend(
            self.store
                .appended(user)
                .iter()
                .filter_map(|raw| run.item(raw)),
        );
        Some((h, from_dataset))
    }

    /// Top-K for a known user, their seen items excluded unless
    /// `include_seen`. An unknown user is a 404 (no cold-start fallback:
    /// a client that wants one asks `POST /v1/recommendations`).
    pub async fn recommend_user(
        &self,
        user: &str,
        k: Option<i64>,
        include_seen: bool,
    ) -> Result<Recommendations, ServeError> {
        self.check_id("user", user)?;
        let k = self.k(k)?;
        let run = self.current();
        let (history, _) = self
            .history(&run, user)
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| ServeError::NotFound(format!("unknown user `{user}`")))?;
        self.recommend(run, Some(user.to_string()), history, k, include_seen)
            .await
    }

    /// Top-K for an anonymous history of raw item ids.
    pub async fn recommend_history(
        &self,
        history: &[String],
        k: Option<i64>,
        include_seen: bool,
    ) -> Result<Recommendations, ServeError> {
        self.recommend_history_on(self.current(), history, k, include_seen)
            .await
    }

    /// [`Self::recommend_history`] on a run the caller holds: a request
    /// that started before a reload is answered by the run it started on.
    pub async fn recommend_history_on(
        &self,
        run: Arc<Run>,
        history: &[String],
        k: Option<i64>,
        include_seen: bool,
    ) -> Result<Recommendations, ServeError> {
        let k = self.k(k)?;
        if history.is_empty() {
            return Err(ServeError::BadRequest(
                "history must hold at least one item".into(),
            ));
        }
        if history.len() > self.limits.max_history {
            return Err(ServeError::BadRequest(format!(
                "history holds {} items; at most {} are allowed",
                history.len(),
                self.limits.max_history
            )));
        }
        let ids = resolve_items(&run, history.iter().map(String::as_str))?;
        self.recommend(run, None, ids, k, include_seen).await
    }

    async fn recommend(
        &self,
        run: Arc<Run>,
        user: Option<String>,
        history: Vec<u32>,
        k: usize,
        include_seen: bool,
    ) -> Result<Recommendations, ServeError> {
        let exclude = if include_seen {
            Vec::new()
        } else {
            let mut seen = history.clone();
            seen.sort_unstable();
            seen.dedup();
            seen
        };
        let recent = history[history.len().saturating_sub(run.max_len())..].to_vec();
        let semantic = run
            .melt_tail_flag(history.len())
            .or_else(|| run.semantic_for(user.as_deref()).map(|(v, _)| v));
        let top = self
            .scorer
            .top_k(run.clone(), recent, exclude, semantic, k)
            .await?;
        let items = top
            .into_iter()
            .map(|(i, score)| ScoredItem {
                item: run.raw_item(i).to_string(),
                score,
                title: run.title(i).map(str::to_string),
            })
            .collect();
        Ok(Recommendations { user, items })
    }

    /// Appends a user's interactions durably (answered after the commit).
    /// Every item must be in the catalogue; otherwise nothing is written and
    /// the error names the unknown ones.
    pub async fn interact(
        self: &Arc<Self>,
        user: &str,
        items: Vec<InteractionIn>,
    ) -> Result<InteractionsAccepted, ServeError> {
        self.check_id("user", user)?;
        if items.is_empty() {
            return Err(ServeError::BadRequest(
                "items must hold at least one interaction".into(),
            ));
        }
        if items.len() > self.limits.max_interactions {
            return Err(ServeError::BadRequest(format!(
                "items holds {} interactions; at most {} are allowed per request",
                items.len(),
                self.limits.max_interactions
            )));
        }
        for it in &items {
            if let Some(e) = &it.event_id {
                self.check_id("event_id", e)?;
            }
        }
        let run = self.current();
        resolve_items(&run, items.iter().map(|i| i.item.as_str()))?;
        let new: Vec<NewInteraction> = items
            .into_iter()
            .map(|i| NewInteraction {
                item: i.item,
                timestamp: i.timestamp,
                event_id: i.event_id,
            })
            .collect();
        let me = self.clone();
        let user = user.to_string();
        let who = user.clone();
        let written = tokio::task::spawn_blocking(move || me.store.append(&who, &new))
            .await
            .map_err(|e| ServeError::Internal(format!("store task: {e}")))??;
        self.metrics
            .interactions
            .with_label_values(&["accepted"])
            .inc_by(written.accepted as u64);
        self.metrics
            .interactions
            .with_label_values(&["duplicate"])
            .inc_by(written.duplicates as u64);
        if written.accepted > 0 {
            self.queue_if_due(&run, &user);
        }
        Ok(InteractionsAccepted {
            accepted: written.accepted,
            duplicates: written.duplicates,
        })
    }

    pub fn item(&self, raw: &str) -> Result<ItemInfo, ServeError> {
        self.check_id("item", raw)?;
        let run = self.current();
        let i = run
            .item(raw)
            .ok_or_else(|| ServeError::NotFound(format!("unknown item `{raw}`")))?;
        Ok(item_info(&run, i))
    }

    pub fn user(&self, user: &str) -> Result<UserInfo, ServeError> {
        self.check_id("user", user)?;
        let run = self.current();
        let (history, from_dataset) = self
            .history(&run, user)
            .ok_or_else(|| ServeError::NotFound(format!("unknown user `{user}`")))?;
        Ok(UserInfo {
            user: user.to_string(),
            history: history.iter().map(|&i| item_info(&run, i)).collect(),
            from_dataset,
        })
    }

    /// Loads another run folder and swaps it in; requests that started on
    /// the old run finish on it. A folder that cannot be served is refused
    /// and the current run stays.
    pub async fn reload(self: &Arc<Self>, dir: &str) -> Result<RunInfo, ServeError> {
        let _one = self.reloading.lock().await;
        let me = self.clone();
        let path = PathBuf::from(dir);
        let loaded = tokio::task::spawn_blocking(move || Run::load(&path, &me.source))
            .await
            .map_err(|e| ServeError::Internal(format!("reload task: {e}")));
        let run = match loaded.and_then(|r| r) {
            Ok(run) => run,
            Err(e) => {
                self.metrics.reloads.with_label_values(&["refused"]).inc();
                return Err(e);
            }
        };
        warn_unknown_appended(&run, &self.store);
        *self.run.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(run);
        self.metrics.reloads.with_label_values(&["ok"]).inc();
        // The new run has its own HSU embeddings: rebuild the served users'.
        self.queue_due_users();
        let info = self.info();
        tracing::info!(run = %info.run, "reloaded");
        Ok(info)
    }

    /// Reloads the folder of the run served now (SIGHUP): the run last
    /// loaded, at start or by a reload.
    pub async fn reload_current(self: &Arc<Self>) -> Result<RunInfo, ServeError> {
        let dir = self.current().dir.display().to_string();
        self.reload(&dir).await
    }

    /// A user's HSU interests: the latest, the stage trail, whether an
    /// update is pending and which semantic embedding scoring reads.
    pub fn interests(&self, user: &str) -> Result<UserInterests, ServeError> {
        self.check_id("user", user)?;
        let run = self.current();
        let (history, _) = self
            .history(&run, user)
            .ok_or_else(|| ServeError::NotFound(format!("unknown user `{user}`")))?;
        let h = run.hsu.as_ref().ok_or_else(|| {
            ServeError::NotFound(format!(
                "run {} has no HSU interests (its inputs.user_semantic names no HSU config)",
                run.dir.display()
            ))
        })?;
        let (trail, online) = h.online.trail(user).map_err(|e| ServeError::Store {
            path: h.online.store().path().display().to_string(),
            message: e.to_string(),
        })?;
        let interests = trail
            .iter()
            .rev()
            .find(|r| r.status == hsuga_hsu::Status::Ok)
            .map(|r| r.interests.clone())
            .unwrap_or_default();
        let stages = trail
            .into_iter()
            .map(|r| InterestStage {
                stage: r.stage,
                operation: match (r.op, r.stage) {
                    (Some(op), _) => Some(op.name().to_string()),
                    (None, 0) => Some("reason".into()),
                    (None, _) => None,
                },
                explanation: r.explanation,
                items: r.items,
                interests: r.interests,
                status: r.status.as_str().to_string(),
            })
            .collect();
        Ok(UserInterests {
            user: user.to_string(),
            config: h.config.clone(),
            variant: if online {
                h.online.variant().to_string()
            } else {
                h.online.offline_variant().to_string()
            },
            stage_length: h.online.stage_length(),
            history_length: history.len(),
            complete_stages: h.online.complete_stages(history.len()),
            interests,
            stages,
            pending: self.hsu_queue.pending(user),
            embedding: run
                .semantic_for(Some(user))
                .map(|(_, src)| src.name().to_string()),
        })
    }

    /// Whether the HSU worker has nothing queued or running.
    pub fn hsu_idle(&self) -> bool {
        self.hsu_queue.idle()
    }

    /// Queues a user whose interactions completed an HSU stage past the
    /// ones the run was trained with and not yet run.
    fn queue_if_due(&self, run: &Run, user: &str) {
        let Some(h) = &run.hsu else { return };
        let Some((history, _)) = self.history(run, user) else {
            return;
        };
        let complete = h.online.complete_stages(history.len());
        if h.is_due(
            user,
            complete,
            run.trained_stages(user, h.online.stage_length()),
        ) {
            self.hsu_queue.push(user);
        }
    }

    /// Queues every user of the interaction store who is due (at start,
    /// after a reload, after the queue overflowed): the worker runs what is
    /// not stored and swaps their embeddings in.
    fn queue_due_users(&self) {
        let run = self.current();
        for user in self.store.users() {
            self.queue_if_due(&run, &user);
        }
    }

    /// One worker task: brings a user's HSU stages up to their history and
    /// swaps their embedding in. Failures are logged and counted; the
    /// interactions are committed, so the next trigger or start retries.
    fn hsu_update(&self, user: &str) {
        let run = self.current();
        let Some(h) = &run.hsu else { return };
        let Some((history, _)) = self.history(&run, user) else {
            return;
        };
        let _span = tracing::info_span!("hsu_online", user, stages = history.len()).entered();
        let update =
            match h
                .online
                .update_user(user, &history, &run.prepared.dataset, &self.hsu_stop)
            {
                Ok(u) => u,
                Err(e) => {
                    self.metrics.hsu_stages.with_label_values(&["error"]).inc();
                    tracing::error!(user, "HSU update failed: {e}");
                    return;
                }
            };
        let stages = &self.metrics.hsu_stages;
        stages
            .with_label_values(&["ok"])
            .inc_by((update.stages_run - update.stages_failed) as u64);
        stages
            .with_label_values(&["failed"])
            .inc_by(update.stages_failed as u64);
        if let Some(e) = &update.error {
            stages.with_label_values(&["error"]).inc();
            tracing::warn!(user, "HSU stage left for the next update: {e}");
        }
        if update.complete_stages > run.trained_stages(user, h.online.stage_length()) {
            match h.refresh(user) {
                Ok(_) if update.error.is_none() && !update.interrupted => {
                    h.mark_updated(user, update.complete_stages);
                }
                Ok(_) => {}
                Err(e) => tracing::error!(user, "HSU embedding not swapped in: {e}"),
            }
        }
        tracing::debug!(
            user,
            run = update.stages_run,
            seeded = update.stages_seeded,
            "HSU update"
        );
    }

    /// Stops the HSU worker after the stage in flight (graceful shutdown);
    /// queued users are queued again at the next start.
    pub async fn drain_hsu(&self) {
        self.hsu_stop.store(true, Ordering::SeqCst);
        self.hsu_queue.stop();
        let handle = self
            .hsu_worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let joined = tokio::task::spawn_blocking(move || h.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the HSU worker ended with a panic");
            }
        }
    }
}

/// The HSU worker thread: one task at a time, on a weak handle so that
/// dropping the service ends it.
fn hsu_worker(queue: &HsuQueue, service: &Weak<Service>) {
    while let Some(task) = queue.next() {
        let Some(svc) = service.upgrade() else { break };
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &task {
            Task::User(user) => svc.hsu_update(user),
            Task::Sweep => svc.queue_due_users(),
        }));
        if done.is_err() {
            svc.metrics.hsu_stages.with_label_values(&["error"]).inc();
            tracing::error!("the HSU update panicked; the worker goes on");
        }
        queue.finish();
    }
}

fn item_info(run: &Run, i: u32) -> ItemInfo {
    ItemInfo {
        item: run.raw_item(i).to_string(),
        title: run.title(i).map(str::to_string),
        text: run.text(i),
    }
}

/// Raw item ids to internal ones; the error names the unknown ones (the
/// first ten, and how many in all).
fn resolve_items<'a>(
    run: &Run,
    raw: impl Iterator<Item = &'a str>,
) -> Result<Vec<u32>, ServeError> {
    let mut ids = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for r in raw {
        match run.item(r) {
            Some(i) => ids.push(i),
            None => unknown.push(r),
        }
    }
    if unknown.is_empty() {
        return Ok(ids);
    }
    let shown: Vec<String> = unknown.iter().take(10).map(|u| format!("`{u}`")).collect();
    let more = if unknown.len() > 10 {
        format!(" and {} more", unknown.len() - 10)
    } else {
        String::new()
    };
    Err(ServeError::Unprocessable(format!(
        "unknown item{} {}{more} (not in the catalogue of dataset {})",
        if unknown.len() == 1 { "" } else { "s" },
        shown.join(", "),
        run.prepared.dataset.name
    )))
}

/// Appended items the run's catalogue lacks are left out of histories;
/// said once, at load.
fn warn_unknown_appended(run: &Run, store: &Store) {
    let unknown = store
        .all_items()
        .iter()
        .filter(|i| run.item(i).is_none())
        .count();
    if unknown > 0 {
        tracing::warn!(
            unknown,
            store = %store.path().display(),
            "appended interactions name items this run does not know; they are left out"
        );
    }
}

/// Compares without an early exit, so timing says nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
