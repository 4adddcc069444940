//! HSU for a served user (issue 17): one user's history, grown by the
//! interactions a service receives, brought up to date stage by stage as
//! each new stage completes — the paper's incremental update (Table 7: a new
//! stage costs one selection and one edit call).
//!
//! [`Online`] holds what that needs (the resolved config, the back-end, the
//! stage length the offline run used, the item template and the store) and
//! [`Online::update_user`] runs what is missing through the same [`Engine`]
//! as `hsuga hsu`, so the prefix rule (a stored stage is reused when its
//! items and config match) is what makes a replay or a restart run nothing.
//!
//! Why a variant of its own (`<variant>.online`, [`online_variant`]): the
//! offline variant is what a run trained on, over each user's *training*
//! history; loading a run re-checks it (and its digest) over those
//! histories, which would recompute — and so drop — any stage computed over
//! a longer served history. The online variant is seeded, once per user,
//! with the offline stages that are complete chunks of the served history,
//! so a dataset user's first online stage costs only that stage.
//!
//! Only complete stages are run: a partial last stage would be recomputed
//! with every interaction, and its interests would move while the user is
//! mid-stage.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use hsuga_data::Dataset;
use hsuga_llm::ChatBackend;

use crate::config::{Mode, Resolved};
use crate::engine::{Engine, FinalInterests, HistItem, Shard, UserHistory};
use crate::error::{HsuError, Result};
use crate::prompts::ItemTemplate;
use crate::store::{StageRecord, Status, Store};

/// The store variant a served user's stages go to.
pub fn online_variant(offline: &str) -> String {
    format!("{offline}.online")
}

/// One HSU config bound to a dataset's store, for updating users one at a
/// time.
pub struct Online {
    /// The config with `variant` renamed to the online variant.
    cfg: Resolved,
    offline_variant: String,
    backend: Arc<dyn ChatBackend>,
    stage_length: usize,
    template: ItemTemplate,
    store: Store,
    want_hidden: bool,
}

impl std::fmt::Debug for Online {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Online")
            .field("variant", &self.cfg.cfg.variant)
            .field("stage_length", &self.stage_length)
            .field("store", &self.store.path())
            .finish_non_exhaustive()
    }
}

/// What one [`Online::update_user`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    /// Complete stages of the history given.
    pub complete_stages: usize,
    /// Stages computed now (reused ones not counted).
    pub stages_run: usize,
    /// Of those, stages whose answers stayed unusable (previous interests
    /// kept; stored as failed).
    pub stages_failed: usize,
    /// Offline stages copied in on the user's first update.
    pub stages_seeded: usize,
    /// A call that failed outright (after the client's own retries): the
    /// stage is not stored and the next update runs it.
    pub error: Option<String>,
    /// Stopped before every missing stage ran (shutdown).
    pub interrupted: bool,
}

impl Online {
    /// `stage_length` must be the one the offline run used (the config's
    /// `stages` resolved over the training lengths), so that offline stages
    /// are complete chunks of the served history.
    pub fn new(
        hsu: &Resolved,
        stage_length: usize,
        template: ItemTemplate,
        store_path: &Path,
        backend: Arc<dyn ChatBackend>,
        want_hidden: bool,
    ) -> Result<Self> {
        if hsu.cfg.ablation.mode == Mode::Cot {
            return Err(HsuError::Invalid(format!(
                "{}: mode = \"cot\" reads the whole history in one call, so it has no stage \
                 to add online",
                hsu.source.display()
            )));
        }
        let mut cfg = hsu.clone();
        cfg.cfg.variant = online_variant(&hsu.cfg.variant);
        Ok(Self {
            offline_variant: hsu.cfg.variant.clone(),
            cfg,
            backend,
            stage_length: stage_length.max(1),
            template,
            store: Store::open(store_path)?,
            want_hidden,
        })
    }

    pub fn variant(&self) -> &str {
        &self.cfg.cfg.variant
    }

    pub fn offline_variant(&self) -> &str {
        &self.offline_variant
    }

    pub fn stage_length(&self) -> usize {
        self.stage_length
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Complete stages in a history of `len` items.
    pub fn complete_stages(&self, len: usize) -> usize {
        len / self.stage_length
    }

    /// A user's stages: the online variant's when it has any, else the
    /// offline run's; and whether they are the online ones.
    pub fn trail(&self, user: &str) -> Result<(Vec<StageRecord>, bool)> {
        let online = self.store.user_stages(self.variant(), user)?;
        if !online.is_empty() {
            return Ok((online, true));
        }
        Ok((self.store.user_stages(&self.offline_variant, user)?, false))
    }

    /// The interests (and hidden-state mean) of a user's last usable online
    /// stage.
    pub fn final_interests(&self, user: &str) -> Result<Option<FinalInterests>> {
        Ok(self
            .store
            .user_stages(self.variant(), user)?
            .into_iter()
            .rev()
            .find(|r| r.status == Status::Ok)
            .map(|r| (r.interests, r.hidden)))
    }

    fn items(&self, dataset: &Dataset, history: &[u32]) -> Vec<HistItem> {
        history
            .iter()
            .map(|&i| HistItem {
                id: dataset
                    .item_ids
                    .get(i as usize - 1)
                    .cloned()
                    .unwrap_or_else(|| i.to_string()),
                text: self.template.render(dataset, i),
                attrs: dataset.attrs(i).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// Whether `stored` already covers the complete stages of `items` with
    /// stages the engine would reuse (same items, same config, usable or
    /// failed too often to retry), so that nothing needs the engine.
    fn covered(&self, stored: &[StageRecord], items: &[HistItem], config_hash: &str) -> bool {
        let chunks: Vec<&[HistItem]> = items.chunks(self.stage_length).collect();
        stored.len() >= chunks.len()
            && stored.iter().zip(&chunks).enumerate().all(|(k, (rec, c))| {
                rec.stage as usize == k
                    && rec.config_hash == config_hash
                    && rec
                        .items
                        .iter()
                        .map(String::as_str)
                        .eq(c.iter().map(|i| i.id.as_str()))
                    && (rec.status == Status::Ok || rec.tries >= self.cfg.cfg.engine.max_stage_runs)
            })
    }

    /// Brings `user`'s online stages up to the complete stages of `history`
    /// (internal item ids of `dataset`, oldest first): seeds them from the
    /// offline run on the first update, then runs only what is not stored.
    /// Each stage is committed as it completes; setting `stop` lets the
    /// stage in flight finish and leaves the rest for the next update.
    pub fn update_user(
        &self,
        user: &str,
        history: &[u32],
        dataset: &Dataset,
        stop: &Arc<AtomicBool>,
    ) -> Result<Update> {
        let complete = self.complete_stages(history.len());
        let mut out = Update {
            complete_stages: complete,
            ..Default::default()
        };
        if complete == 0 {
            return Ok(out);
        }
        let items = self.items(dataset, &history[..complete * self.stage_length]);
        let config_hash = self.cfg.config_hash(self.stage_length);
        let mut stored = self.store.user_stages(self.variant(), user)?;
        if stored.is_empty() {
            out.stages_seeded = self.seed(user, &items, &config_hash)?;
            if out.stages_seeded > 0 {
                stored = self.store.user_stages(self.variant(), user)?;
            }
        }
        if self.covered(&stored, &items, &config_hash) {
            return Ok(out);
        }
        let mut engine = Engine::new(
            &self.cfg,
            self.backend.as_ref(),
            &self.store,
            self.stage_length,
        );
        engine.stop = stop.clone();
        engine.want_hidden = self.want_hidden;
        let users = [UserHistory {
            user: user.to_string(),
            items,
        }];
        let r = engine.run(&users, Shard::ALL, None)?;
        out.stages_run = r.stages_run;
        out.stages_failed = r.stages_failed;
        out.error = r.errors.into_iter().next();
        out.interrupted = r.interrupted;
        Ok(out)
    }

    /// Copies the offline stages that are complete chunks of the served
    /// history (same items, same config), as a prefix, into the online
    /// variant.
    fn seed(&self, user: &str, items: &[HistItem], config_hash: &str) -> Result<usize> {
        let offline = self.store.user_stages(&self.offline_variant, user)?;
        let chunks: Vec<&[HistItem]> = items.chunks(self.stage_length).collect();
        let mut n = 0;
        for (k, (rec, c)) in offline.iter().zip(&chunks).enumerate() {
            let same = rec.stage as usize == k
                && rec.config_hash == config_hash
                && rec
                    .items
                    .iter()
                    .map(String::as_str)
                    .eq(c.iter().map(|i| i.id.as_str()));
            if !same {
                break;
            }
            self.store.put_stage(self.variant(), rec)?;
            n += 1;
        }
        Ok(n)
    }
}
