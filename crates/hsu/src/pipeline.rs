//! The one way HSU runs over a prepared dataset: `hsuga hsu` and an
//! experiment grid's `user_semantic = { hsu = … }` / `{ hsu-hidden = … }`
//! both call [`run_dataset`].
//!
//! Why one function: the sequence (histories through the dataset's item
//! template → stage length over every user's training length → store →
//! back-end → engine) was written out twice, and the copies drifted: only the
//! command asked an in-process LLM for hidden states, so a grid run stored
//! none and its stages could not serve hidden-state user embeddings later.
//! Callers now differ only in what they print and in how they treat users
//! left unfinished (the command reports them and the next run resumes; a
//! grid must not train on half-mined interests and stops).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use hsuga_data::{DatasetConfig, Prepared};
use hsuga_llm::{BackendId, ChatBackend};

use crate::config::{BackendConfig, Resolved};
use crate::engine::{Engine, Progress, RunReport, Shard, UserHistory, histories};
use crate::error::{HsuError, Result};
use crate::export::{HiddenEmbeddings, hidden_embeddings};
use crate::prompts::ItemTemplate;
use crate::store::Store;

/// Which users of the dataset to run (before the shard picks its part).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserSelection {
    #[default]
    All,
    /// The first `n` in dataset order.
    First(usize),
    /// The `n` with the shortest training histories (quick small-model
    /// runs); ties keep dataset order.
    Shortest(usize),
}

/// Whether the engine asks the back-end for hidden-state means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HiddenStates {
    /// Whenever the configured back-end runs in-process: they cost little
    /// there, and storing them lets the same stages serve both the
    /// interest-text and the hidden-state user embeddings.
    #[default]
    IfInProcess,
    /// Always; with a back-end built from the config, one that cannot return
    /// them (anything but `kind = "local"`) is an error before any call, so a
    /// grid does not mine a whole dataset through a server only to find no
    /// hidden states. An injected back-end ([`DatasetRun::backend`]) is
    /// trusted to return them.
    Required,
}

/// One HSU run over a prepared dataset. Build with [`DatasetRun::new`] and
/// set what differs from the defaults (every user, no shard, the config's
/// stage length, hidden states from in-process back-ends).
pub struct DatasetRun<'a> {
    pub hsu: &'a Resolved,
    /// The dataset's config: its `[text] template` renders the items.
    pub dataset: &'a DatasetConfig,
    pub prepared: &'a Prepared,
    /// The SQLite store (created if missing; resumed otherwise).
    pub store: &'a Path,
    pub shard: Shard,
    pub users: UserSelection,
    /// Overrides the config's stage length (≥ 1).
    pub stage_length: Option<usize>,
    pub hidden: HiddenStates,
    /// Recompute every stage stored as failed, however many runs failed it
    /// (`hsuga hsu --retry-failed`).
    pub retry_failed: bool,
    /// Answers instead of the back-end the config names (tests).
    pub backend: Option<&'a dyn ChatBackend>,
    /// Shared with the caller's Ctrl-C handler: set, the stages in flight
    /// finish and are stored, and the run returns `interrupted`.
    pub stop: Option<Arc<AtomicBool>>,
    /// Called once everything is resolved, before the first call (a header
    /// line for the log).
    pub on_start: Option<&'a dyn Fn(&Plan)>,
    pub progress: Option<Progress<'a>>,
}

impl std::fmt::Debug for DatasetRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetRun")
            .field("variant", &self.hsu.cfg.variant)
            .field("dataset", &self.dataset.name)
            .field("store", &self.store)
            .field("shard", &self.shard)
            .field("users", &self.users)
            .field("stage_length", &self.stage_length)
            .field("hidden", &self.hidden)
            .finish_non_exhaustive()
    }
}

impl<'a> DatasetRun<'a> {
    pub fn new(
        hsu: &'a Resolved,
        dataset: &'a DatasetConfig,
        prepared: &'a Prepared,
        store: &'a Path,
    ) -> Self {
        Self {
            hsu,
            dataset,
            prepared,
            store,
            shard: Shard::ALL,
            users: UserSelection::All,
            stage_length: None,
            hidden: HiddenStates::IfInProcess,
            retry_failed: false,
            backend: None,
            stop: None,
            on_start: None,
            progress: None,
        }
    }
}

/// What a run is about to do, as resolved from its request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Users selected (before the shard).
    pub users: usize,
    pub stage_length: usize,
    pub backend: BackendId,
    /// Whether hidden-state means are asked for.
    pub want_hidden: bool,
    pub store: PathBuf,
}

/// What a run did; `run.users_pending > 0` means stages were left for the
/// next run (listed in `run.errors`), `run.users_failed > 0` that some kept
/// their previous interests after unusable answers: the caller decides
/// whether either is an error.
#[derive(Debug)]
pub struct DatasetReport {
    pub plan: Plan,
    pub run: RunReport,
    /// The opened store, for reading the results.
    pub store: Store,
    /// The selected users' raw ids, in selection order (before the shard).
    pub users: Vec<String>,
}

/// Runs (resumes, updates) HSU over the selected users of a prepared dataset.
pub fn run_dataset(req: &DatasetRun<'_>) -> Result<DatasetReport> {
    let cfg = &req.hsu.cfg;
    if req.stage_length == Some(0) {
        return Err(HsuError::Invalid("stage length must be at least 1".into()));
    }
    if req.hidden == HiddenStates::Required
        && req.backend.is_none()
        && !returns_hidden_states(&cfg.backend)
    {
        return Err(HsuError::Invalid(format!(
            "{}: hidden-state user embeddings need the in-process LLM (`[backend] kind = \
             \"local\"`); back-end `{}` returns none",
            req.hsu.source.display(),
            backend_kind(&cfg.backend)
        )));
    }
    let template = ItemTemplate::for_dataset(req.dataset).map_err(|e| {
        HsuError::Invalid(format!("dataset {} item template: {e}", req.dataset.name))
    })?;
    let Prepared { dataset, split, .. } = req.prepared;
    let users = select(histories(dataset, split, &template), req.users);
    // Over every user, whatever the selection: a quick run on a few users
    // cuts stages like the full run, so its stored stages are reused there.
    let lengths: Vec<usize> = split.train.iter().map(Vec::len).collect();
    let stage_length = req
        .stage_length
        .unwrap_or_else(|| cfg.stages.resolve(&lengths));
    let store = Store::open(req.store)?;
    let built;
    let backend: &dyn ChatBackend = match req.backend {
        Some(b) => b,
        None => {
            built = crate::build_backend(&cfg.backend)?;
            built.as_ref()
        }
    };
    let want_hidden = match req.hidden {
        HiddenStates::IfInProcess => returns_hidden_states(&cfg.backend),
        HiddenStates::Required => true,
    };
    let plan = Plan {
        users: users.len(),
        stage_length,
        backend: backend.id(),
        want_hidden,
        store: req.store.to_path_buf(),
    };
    let mut engine = Engine::new(req.hsu, backend, &store, stage_length);
    engine.want_hidden = want_hidden;
    engine.retry_failed = req.retry_failed;
    if let Some(stop) = &req.stop {
        engine.stop = stop.clone();
    }
    if let Some(f) = req.on_start {
        f(&plan);
    }
    let run = engine.run(&users, req.shard, req.progress)?;
    let users = users.into_iter().map(|u| u.user).collect();
    Ok(DatasetReport {
        plan,
        run,
        store,
        users,
    })
}

/// Every user's hidden-state mean (of their last stage), in dataset user
/// order; a user without one is an error, since a zero row would silently
/// train as a real embedding.
pub fn hidden_user_embeddings(
    store: &Store,
    variant: &str,
    user_ids: &[String],
) -> Result<HiddenEmbeddings> {
    let h = hidden_embeddings(store, variant, user_ids)?;
    if h.missing > 0 {
        return Err(HsuError::Invalid(format!(
            "{} of {} users have no stored hidden states in variant `{variant}` (their \
             stages ran without them, or on a back-end that has none: hidden states come \
             only from the in-process LLM); run them under another `variant`",
            h.missing,
            user_ids.len()
        )));
    }
    Ok(h)
}

/// Only the in-process LLM exposes its hidden states.
pub fn returns_hidden_states(cfg: &BackendConfig) -> bool {
    matches!(cfg, BackendConfig::Local(_))
}

fn backend_kind(cfg: &BackendConfig) -> &'static str {
    match cfg {
        BackendConfig::Rules(_) => "rules",
        BackendConfig::Openai(_) => "openai",
        BackendConfig::Local(_) => "local",
    }
}

fn select(mut users: Vec<UserHistory>, which: UserSelection) -> Vec<UserHistory> {
    match which {
        UserSelection::All => {}
        UserSelection::First(n) => users.truncate(n),
        UserSelection::Shortest(n) => {
            // Stable: ties keep dataset order.
            users.sort_by_key(|u| u.items.len());
            users.truncate(n);
        }
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::HistItem;

    fn user(name: &str, len: usize) -> UserHistory {
        UserHistory {
            user: name.into(),
            items: (0..len)
                .map(|i| HistItem {
                    id: i.to_string(),
                    text: String::new(),
                    attrs: Default::default(),
                })
                .collect(),
        }
    }

    #[test]
    fn selection_first_and_shortest_keep_dataset_order_on_ties() {
        let us = || vec![user("a", 5), user("b", 2), user("c", 9), user("d", 2)];
        let names = |v: Vec<UserHistory>| v.into_iter().map(|u| u.user).collect::<Vec<_>>();
        assert_eq!(
            names(select(us(), UserSelection::All)),
            ["a", "b", "c", "d"]
        );
        assert_eq!(names(select(us(), UserSelection::First(2))), ["a", "b"]);
        assert_eq!(
            names(select(us(), UserSelection::Shortest(3))),
            ["b", "d", "a"]
        );
        assert_eq!(names(select(us(), UserSelection::First(10))).len(), 4);
    }
}
