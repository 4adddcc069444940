//! HSU online: when a served user's interactions complete a new HSU stage,
//! one background worker runs that stage ([`hsuga_hsu::online::Online`],
//! the engine `hsuga hsu` uses, with the run's configured back-end), stores
//! it in the dataset's HSU store, re-embeds the user's interests with the
//! run's embedder and swaps the user's semantic embedding in.
//!
//! Why this shape:
//! - **One queue, bounded, one task per user.** A user is queued at most
//!   once (a second trigger while queued is the same work), so the queue
//!   holds distinct users, up to a bound; past it the user is not queued
//!   and the worker sweeps every user of the interaction store once the
//!   queue drains, so nothing is lost to a full queue.
//! - **Durable by construction.** The worker reads only committed state:
//!   the interactions (committed before their 2xx) and the HSU store (each
//!   stage committed as it completes). A crash or kill loses at most the
//!   stage in flight, and at start the service queues every user whose
//!   complete stages go past what the run was trained with; the engine's
//!   prefix rule reuses what is stored, so a restart or a replayed event
//!   runs no stage twice.
//! - **Shutdown drains the stage in flight** ([`HsuQueue::stop`] plus the
//!   engine's stop flag): queued users wait for the next start.
//! - **Embeddings are per run.** The swapped-in embeddings live in the run
//!   ([`RunHsu`]), so a reload starts from the new run's own (and re-queues
//!   the served users to rebuild them).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use hsuga_hsu::online::Online;
use hsuga_text::TextEmbedder;

/// How a user's semantic embedding is made from their interests.
pub enum Embed {
    /// The interests joined by "; " and embedded by the run's text embedder
    /// (`inputs.user_semantic = { hsu = … }`), as training embedded them.
    Text(Box<dyn TextEmbedder>),
    /// The hidden-state mean stored with the stage (`{ hsu-hidden = … }`).
    Hidden,
}

/// A run's HSU: the online updater and the embeddings swapped in so far.
pub struct RunHsu {
    pub online: Online,
    /// The HSU config the run names (`configs/hsu/<name>.toml`).
    pub config: String,
    /// `None` when the run's model does not read user embeddings when it
    /// scores (dual view, distillation): stages are still run and stored.
    pub embed: Option<Embed>,
    /// Raw user id → embedding of their latest online interests.
    swapped: RwLock<HashMap<String, Arc<[f32]>>>,
    /// Raw user id → complete stages the worker has brought them up to
    /// under this run, so a sweep skips users already done.
    updated: Mutex<HashMap<String, usize>>,
}

impl RunHsu {
    pub fn new(online: Online, config: String, embed: Option<Embed>) -> Self {
        Self {
            online,
            config,
            embed,
            swapped: RwLock::new(HashMap::new()),
            updated: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a user with `complete` stages needs the worker: they are past
    /// the `trained` stages and not yet brought up to `complete`.
    pub fn is_due(&self, user: &str, complete: usize, trained: usize) -> bool {
        if complete <= trained {
            return false;
        }
        let done = self.updated.lock().unwrap_or_else(|p| p.into_inner());
        done.get(user).is_none_or(|&n| n < complete)
    }

    /// Records that a user's stages are up to date with `complete`.
    pub fn mark_updated(&self, user: &str, complete: usize) {
        let mut done = self.updated.lock().unwrap_or_else(|p| p.into_inner());
        done.insert(user.to_string(), complete);
    }

    /// The embedding swapped in for a user, if any.
    pub fn swapped(&self, user: &str) -> Option<Arc<[f32]>> {
        let map = self.swapped.read().unwrap_or_else(|p| p.into_inner());
        map.get(user).cloned()
    }

    /// Embeds the user's latest online interests and swaps them in; `false`
    /// when there is nothing to embed (no usable stage, no hidden states).
    pub fn refresh(&self, user: &str) -> Result<bool, String> {
        let Some(embed) = &self.embed else {
            return Ok(false);
        };
        let Some((interests, hidden)) = self
            .online
            .final_interests(user)
            .map_err(|e| e.to_string())?
        else {
            return Ok(false);
        };
        let vector: Vec<f32> = match embed {
            Embed::Hidden => match hidden {
                Some(h) => h,
                None => return Ok(false),
            },
            Embed::Text(embedder) => {
                let mut text = interests.join("; ");
                if text.trim().is_empty() {
                    text = hsuga_hsu::export::NO_INTERESTS.to_string();
                }
                embedder
                    .embed(&[text])
                    .map_err(|e| format!("embedding the interests of user {user}: {e}"))?
                    .pop()
                    .ok_or_else(|| format!("the embedder returned nothing for user {user}"))?
            }
        };
        let mut map = self.swapped.write().unwrap_or_else(|p| p.into_inner());
        map.insert(user.to_string(), vector.into());
        Ok(true)
    }
}

/// What the worker does next.
pub enum Task {
    User(String),
    /// Check every user of the interaction store (after an overflow).
    Sweep,
}

#[derive(Default)]
struct QueueState {
    order: VecDeque<String>,
    queued: HashSet<String>,
    running: Option<String>,
    overflowed: bool,
    stopping: bool,
}

/// The bounded queue of users whose HSU stages are due.
pub struct HsuQueue {
    state: Mutex<QueueState>,
    wake: Condvar,
    capacity: usize,
    depth: prometheus::IntGauge,
}

impl HsuQueue {
    pub fn new(capacity: usize, depth: prometheus::IntGauge) -> Self {
        Self {
            state: Mutex::new(QueueState::default()),
            wake: Condvar::new(),
            capacity: capacity.max(1),
            depth,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a user (once); past the bound, marks a sweep instead.
    pub fn push(&self, user: &str) {
        let mut s = self.lock();
        if s.stopping || s.queued.contains(user) {
            return;
        }
        if s.order.len() >= self.capacity {
            s.overflowed = true;
        } else {
            s.order.push_back(user.to_string());
            s.queued.insert(user.to_string());
            self.depth.set(s.order.len() as i64);
        }
        self.wake.notify_one();
    }

    /// Whether the user is queued or being updated.
    pub fn pending(&self, user: &str) -> bool {
        let s = self.lock();
        s.queued.contains(user) || s.running.as_deref() == Some(user)
    }

    /// Whether nothing is queued, running or due for a sweep.
    pub fn idle(&self) -> bool {
        let s = self.lock();
        s.order.is_empty() && s.running.is_none() && !s.overflowed
    }

    /// The next task, waiting for one; `None` once stopped.
    pub fn next(&self) -> Option<Task> {
        let mut s = self.lock();
        loop {
            if s.stopping {
                return None;
            }
            if let Some(user) = s.order.pop_front() {
                s.queued.remove(&user);
                s.running = Some(user.clone());
                self.depth.set(s.order.len() as i64);
                return Some(Task::User(user));
            }
            if s.overflowed {
                s.overflowed = false;
                return Some(Task::Sweep);
            }
            s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The running task is done.
    pub fn finish(&self) {
        self.lock().running = None;
    }

    /// Stops handing out tasks; queued users wait for the next start.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.wake.notify_all();
    }
}
