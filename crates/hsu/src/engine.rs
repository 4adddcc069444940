//! The stage engine (paper §3.3, appendix A.2).
//!
//! Each user's training history (the last two items are already held out by
//! the split) is cut into fixed-length stages. Stage 1: interest reasoning.
//! Each later stage: drift selection (one of the four operations), then the
//! edit prompt for that operation as the next turn of the same conversation.
//! Unusable answers are retried (bounded); after the last attempt the stage
//! keeps the previous interests and is stored with a failure status — a
//! failure, not final interests: the next run computes it again (and every
//! stage after it), until `engine.max_stage_runs` runs have failed it, or at
//! once with `retry_failed`. So a store filled while a server answered
//! gibberish heals when the server is fixed. A call that fails outright
//! (server down after the client's own retries) leaves the user pending for
//! the next run and stores nothing for that stage.
//!
//! Users are sorted by number of stages and handed to a bounded pool of
//! workers, so users of similar length run side by side and a server sees
//! full batches. A stored stage is reused when its items and the run config
//! match; the first mismatch and everything after it are recomputed — which
//! is both how a killed run resumes and how new interactions are processed
//! incrementally (one new stage = one selection + one execution call).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hsuga_data::{Dataset, ItemAttrs, Split};
use hsuga_llm::{ChatBackend, ChatRequest, ChatResponse, LlmError, Message, Op, TaskHint};
use sha2::{Digest, Sha256};

use crate::config::{Mode, Resolved};
use crate::error::{HsuError, Result};
use crate::parse::{
    ParseError, interests_schema, parse_instruction, parse_interests, selection_schema,
};
use crate::prompts::{ExampleFor, ItemTemplate, interest_list, render};
use crate::store::{FailureRecord, StageRecord, Status, Store};

/// One item of a history, rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct HistItem {
    /// Raw item id.
    pub id: String,
    /// Text from the dataset's item template.
    pub text: String,
    pub attrs: ItemAttrs,
}

/// A user's training history (never the validation or test items).
#[derive(Debug, Clone, PartialEq)]
pub struct UserHistory {
    /// Raw user id (stable across re-preparation).
    pub user: String,
    pub items: Vec<HistItem>,
}

/// The HSU inputs of a prepared dataset: `split.train[u]` for every user.
pub fn histories(dataset: &Dataset, split: &Split, template: &ItemTemplate) -> Vec<UserHistory> {
    split
        .train
        .iter()
        .enumerate()
        .map(|(u, seq)| UserHistory {
            user: dataset
                .user_ids
                .get(u)
                .cloned()
                .unwrap_or_else(|| u.to_string()),
            items: seq
                .iter()
                .map(|&i| {
                    let id = dataset
                        .item_ids
                        .get(i as usize - 1)
                        .cloned()
                        .unwrap_or_else(|| i.to_string());
                    let attrs = dataset.attrs(i).cloned().unwrap_or_default();
                    HistItem {
                        text: template.render(dataset, i),
                        id,
                        attrs,
                    }
                })
                .collect(),
        })
        .collect()
}

/// `--shard i/n`: this process handles the users whose id hashes to `i` mod `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn parse(s: &str) -> Result<Self> {
        let bad = || HsuError::Invalid(format!("shard {s:?}: expected i/n with 0 ≤ i < n"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    pub fn contains(&self, user: &str) -> bool {
        if self.count == 1 {
            return true;
        }
        let h = Sha256::digest(user.as_bytes());
        let v = u64::from_le_bytes(h[..8].try_into().unwrap_or([0; 8]));
        v % u64::from(self.count) == u64::from(self.index)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    pub users: usize,
    pub users_empty: usize,
    /// Every stage stored with usable answers (users without training items
    /// included).
    pub users_done: usize,
    /// Every stage stored, but at least one kept the previous interests after
    /// unusable answers (now, or in an earlier run that exhausted
    /// `max_stage_runs`).
    pub users_failed: usize,
    /// Stages left for the next run: a call failed outright, or the run was
    /// stopped before the user was finished.
    pub users_pending: usize,
    pub stages_run: usize,
    pub stages_reused: usize,
    pub stages_failed: usize,
    pub calls: usize,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub seconds: f64,
    pub interrupted: bool,
    /// The first few outright call failures, for the log.
    pub errors: Vec<String>,
}

/// Progress callback: (users finished, users in this run).
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

pub struct Engine<'a> {
    pub cfg: &'a Resolved,
    pub backend: &'a dyn ChatBackend,
    pub store: &'a Store,
    pub stage_length: usize,
    /// Set to stop after the stages in flight (Ctrl-C, tests).
    pub stop: Arc<AtomicBool>,
    /// Ask the back-end for hidden-state means (in-process models).
    pub want_hidden: bool,
    /// Recompute every failed stage, however many runs have failed it.
    pub retry_failed: bool,
}

impl std::fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("variant", &self.cfg.cfg.variant)
            .field("backend", &self.backend.id())
            .field("stage_length", &self.stage_length)
            .finish()
    }
}

/// Totals of one stage's calls.
#[derive(Default)]
struct Cost {
    calls: u32,
    tokens_in: u64,
    tokens_out: u64,
    latency: Duration,
}

impl Cost {
    fn add(&mut self, r: &ChatResponse) {
        self.calls += 1;
        self.tokens_in += u64::from(r.usage.prompt_tokens);
        self.tokens_out += u64::from(r.usage.completion_tokens);
        self.latency += r.latency;
    }
}

fn sha(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    format!("{:x}", h.finalize())[..16].to_string()
}

fn items_hash(items: &[HistItem]) -> String {
    let parts: Vec<&str> = items
        .iter()
        .flat_map(|i| [i.id.as_str(), i.text.as_str()])
        .collect();
    sha(&parts)
}

impl<'a> Engine<'a> {
    pub fn new(
        cfg: &'a Resolved,
        backend: &'a dyn ChatBackend,
        store: &'a Store,
        stage_length: usize,
    ) -> Self {
        Self {
            cfg,
            backend,
            store,
            stage_length: stage_length.max(1),
            stop: Arc::new(AtomicBool::new(false)),
            want_hidden: false,
            retry_failed: false,
        }
    }

    fn variant(&self) -> &str {
        &self.cfg.cfg.variant
    }

    /// The stages of a history under this run's mode.
    pub fn stages<'h>(&self, items: &'h [HistItem]) -> Vec<&'h [HistItem]> {
        if items.is_empty() {
            return Vec::new();
        }
        match self.cfg.cfg.ablation.mode {
            Mode::Cot => vec![items],
            _ => items.chunks(self.stage_length).collect(),
        }
    }

    /// Runs (or resumes, or updates) every user in `shard`.
    pub fn run(
        &self,
        users: &[UserHistory],
        shard: Shard,
        progress: Option<Progress<'_>>,
    ) -> Result<RunReport> {
        let started = Instant::now();
        let config_hash = self.cfg.config_hash(self.stage_length);
        let mut todo: Vec<&UserHistory> =
            users.iter().filter(|u| shard.contains(&u.user)).collect();
        // Group by number of stages (longest first) so similar users run together.
        todo.sort_by_key(|u| std::cmp::Reverse(u.items.len().div_ceil(self.stage_length)));
        let report = Mutex::new(RunReport {
            users: todo.len(),
            ..Default::default()
        });
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let fatal: Mutex<Option<HsuError>> = Mutex::new(None);
        let workers = self.cfg.concurrency().min(todo.len()).max(1);
        let _span =
            tracing::info_span!("hsu", variant = self.variant(), users = todo.len(), workers)
                .entered();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        if self.stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(user) = todo.get(i) else { break };
                        let outcome = self.process_user(user, &config_hash);
                        let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                        match outcome {
                            Ok(o) => {
                                r.stages_run += o.run;
                                r.stages_reused += o.reused;
                                r.stages_failed += o.failed;
                                r.calls += o.calls;
                                r.tokens_in += o.tokens_in;
                                r.tokens_out += o.tokens_out;
                                if o.empty {
                                    r.users_empty += 1;
                                }
                                if o.interrupted {
                                    r.interrupted = true;
                                }
                                if let Some(e) = &o.error
                                    && r.errors.len() < 10
                                {
                                    r.errors.push(format!("user {}: {e}", user.user));
                                }
                                if o.error.is_some() || o.interrupted {
                                    r.users_pending += 1;
                                } else if o.has_failed_stage {
                                    r.users_failed += 1;
                                } else {
                                    r.users_done += 1;
                                }
                            }
                            Err(e) => {
                                // Store errors end the run: nothing more can be saved.
                                self.stop.store(true, Ordering::SeqCst);
                                fatal
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .get_or_insert(e);
                                break;
                            }
                        }
                        drop(r);
                        let d = done.fetch_add(1, Ordering::SeqCst) + 1;
                        if let Some(p) = progress {
                            p(d, todo.len());
                        }
                    }
                });
            }
        });
        if let Some(e) = fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let mut r = report.into_inner().unwrap_or_else(|p| p.into_inner());
        let finished = done.load(Ordering::SeqCst);
        if self.stop.load(Ordering::SeqCst) && finished < todo.len() {
            r.interrupted = true;
            // Users no worker picked up before the stop.
            r.users_pending += todo.len() - finished;
        }
        r.seconds = started.elapsed().as_secs_f64();
        let described = toml::to_string(&self.cfg.cfg).unwrap_or_default();
        self.store.put_run(
            self.variant(),
            &described,
            &shard.to_string(),
            r.users,
            r.stages_run,
            r.stages_reused,
            r.calls,
            r.seconds,
        )?;
        Ok(r)
    }

    fn process_user(&self, h: &UserHistory, config_hash: &str) -> Result<UserOutcome> {
        let mut out = UserOutcome::default();
        let stages = self.stages(&h.items);
        let stored = self.store.user_stages(self.variant(), &h.user)?;
        if stages.is_empty() {
            out.empty = true;
            if !stored.is_empty() {
                self.store.truncate_user(self.variant(), &h.user, 0)?;
            }
            return Ok(out);
        }
        let same = |k: usize, rec: &StageRecord, items: &[HistItem]| {
            rec.stage as usize == k
                && rec.config_hash == config_hash
                && rec.items_hash == items_hash(items)
        };
        let max_runs = self.cfg.cfg.engine.max_stage_runs;
        let reusable = stored
            .iter()
            .zip(&stages)
            .enumerate()
            .take_while(|(k, (rec, items))| {
                same(*k, rec, items)
                    && (rec.status == Status::Ok || (!self.retry_failed && rec.tries >= max_runs))
            })
            .count();
        out.has_failed_stage = stored[..reusable].iter().any(|r| r.status != Status::Ok);
        out.reused = reusable;
        if reusable == stages.len() && stored.len() > reusable {
            self.store
                .truncate_user(self.variant(), &h.user, reusable as u32)?;
        }
        let mut interests: Vec<String> = if reusable > 0 {
            stored[reusable - 1].interests.clone()
        } else {
            Vec::new()
        };
        for (k, items) in stages.iter().enumerate().skip(reusable) {
            if self.stop.load(Ordering::SeqCst) {
                out.interrupted = true;
                break;
            }
            match self.run_stage(&h.user, k as u32, items, &interests, config_hash) {
                Ok(mut rec) => {
                    out.run += 1;
                    out.calls += rec.calls as usize;
                    out.tokens_in += rec.tokens_in;
                    out.tokens_out += rec.tokens_out;
                    // The same stage computed again (a retried failure) counts
                    // on from the stored one; new items or config start over.
                    rec.tries = match stored.get(k) {
                        Some(old) if same(k, old, items) => old.tries.saturating_add(1),
                        _ => 1,
                    };
                    if rec.status != Status::Ok {
                        out.failed += 1;
                        out.has_failed_stage = true;
                    }
                    self.store.put_stage(self.variant(), &rec)?;
                    interests = rec.interests;
                }
                Err(StageError::Store(e)) => return Err(e),
                Err(StageError::Call(LlmError::Interrupted)) => {
                    self.stop.store(true, Ordering::SeqCst);
                    out.interrupted = true;
                    break;
                }
                Err(StageError::Call(e)) => {
                    self.store.put_failure(
                        self.variant(),
                        &FailureRecord {
                            user: h.user.clone(),
                            stage: k as u32,
                            kind: "call_error".into(),
                            message: e.to_string(),
                            answer: String::new(),
                        },
                    )?;
                    out.error = Some(e.to_string());
                    break;
                }
            }
        }
        Ok(out)
    }

    fn request(&self, messages: Vec<Message>, hint: TaskHint, attempt: u32) -> ChatRequest {
        let g = &self.cfg.cfg.generation;
        let mut req = ChatRequest::new(messages);
        req.max_tokens = g.max_tokens;
        // A retry of a greedy call would repeat the same answer: sample instead.
        req.temperature = if attempt > 0 && g.temperature == 0.0 {
            0.7
        } else {
            g.temperature
        };
        req.seed = Some(g.seed + u64::from(attempt));
        req.want_hidden = self.want_hidden;
        // The answer's JSON shape, for servers that constrain output to one.
        req.schema = Some(match &hint {
            TaskHint::Select { allowed, .. } => selection_schema(allowed),
            _ => interests_schema(self.cfg.cfg.engine.max_interests),
        });
        req.hint = Some(hint);
        req
    }

    /// Calls until `parse` accepts the answer or the attempts run out.
    /// `Ok(None)`: every answer was unusable (each recorded as a failure).
    fn call_until<T>(
        &self,
        user: &str,
        stage: u32,
        messages: &[Message],
        hint: &TaskHint,
        cost: &mut Cost,
        parse: impl Fn(&ChatResponse) -> std::result::Result<T, ParseError>,
    ) -> std::result::Result<Option<(T, ChatResponse)>, StageError> {
        let mut last: Option<ParseError> = None;
        for attempt in 0..self.cfg.cfg.engine.max_attempts {
            let req = self.request(messages.to_vec(), hint.clone(), attempt);
            let resp = self.backend.chat(&req).map_err(StageError::Call)?;
            cost.add(&resp);
            match parse(&resp) {
                Ok(v) => return Ok(Some((v, resp))),
                Err(e) => {
                    self.store
                        .put_failure(
                            self.variant(),
                            &FailureRecord {
                                user: user.to_string(),
                                stage,
                                kind: e.kind().into(),
                                message: e.to_string(),
                                answer: resp.text.clone(),
                            },
                        )
                        .map_err(StageError::Store)?;
                    last = Some(e);
                }
            }
        }
        tracing::debug!(user, stage, error = ?last, "answers unusable; keeping previous interests");
        Ok(None)
    }

    fn run_stage(
        &self,
        user: &str,
        stage: u32,
        items: &[HistItem],
        previous: &[String],
        config_hash: &str,
    ) -> std::result::Result<StageRecord, StageError> {
        let p = &self.cfg.prompts;
        let texts: Vec<String> = items.iter().map(|i| i.text.clone()).collect();
        let attrs: Vec<ItemAttrs> = items.iter().map(|i| i.attrs.clone()).collect();
        let history = p.history(&texts);
        let prev_text = interest_list(previous);
        let system = Message::system(p.system.trim());
        let max_int = self.cfg.cfg.engine.max_interests;
        let example = &p.example_interests;
        let parse_list = |r: &ChatResponse| parse_interests(&r.text, r.finish, max_int, example);
        let mut cost = Cost::default();
        let mode = self.cfg.cfg.ablation.mode;

        let mut rec = StageRecord {
            user: user.to_string(),
            stage,
            items: items.iter().map(|i| i.id.clone()).collect(),
            items_hash: items_hash(items),
            config_hash: config_hash.to_string(),
            op: None,
            requested_op: None,
            explanation: String::new(),
            interests: previous.to_vec(),
            prompt_hash: String::new(),
            backend: self.backend.id().backend,
            model: self.backend.id().model,
            calls: 0,
            tokens_in: 0,
            tokens_out: 0,
            latency_ms: 0.0,
            status: Status::Ok,
            error: None,
            hidden: None,
            tries: 1,
        };

        // One-call prompts: reasoning (stage 1), CoT, recursive summary.
        let single = match (mode, stage) {
            (Mode::Cot, _) => Some((
                render(&p.cot, &[("history", &history)]),
                TaskHint::Reason {
                    items: attrs.clone(),
                },
            )),
            (_, 0) => Some((
                render(&p.reason, &[("history", &history)]),
                TaskHint::Reason {
                    items: attrs.clone(),
                },
            )),
            (Mode::Recursive, _) => Some((
                render(
                    &p.recursive,
                    &[("history", &history), ("previous_interests", &prev_text)],
                ),
                TaskHint::Summarise {
                    items: attrs.clone(),
                    previous: previous.to_vec(),
                },
            )),
            (Mode::Hsu, _) => None,
        };
        if let Some((prompt, hint)) = single {
            let (kind, template) = match (mode, stage) {
                (Mode::Cot, _) => (ExampleFor::Cot, &p.cot),
                (_, 0) => (ExampleFor::Reason, &p.reason),
                _ => (ExampleFor::Recursive, &p.recursive),
            };
            let mut msgs = vec![system];
            for (u, a) in p.example_turns(kind, template) {
                msgs.push(Message::user(u));
                msgs.push(Message::assistant(a));
            }
            msgs.push(Message::user(prompt.trim()));
            rec.prompt_hash = sha(&msgs.iter().map(|m| m.content.as_str()).collect::<Vec<_>>());
            match self.call_until(user, stage, &msgs, &hint, &mut cost, parse_list)? {
                Some((parsed, resp)) => {
                    rec.explanation = parsed.explanation;
                    rec.interests = parsed.interests;
                    rec.hidden = resp.hidden_mean;
                }
                None => {
                    rec.status = Status::EditFailed;
                    rec.error = Some("no usable answer; previous interests kept".into());
                }
            }
            finish(&mut rec, &cost);
            return Ok(rec);
        }

        // Selection, then execution as the next turn of the same conversation.
        let select = render(
            &p.select,
            &[("history", &history), ("previous_interests", &prev_text)],
        );
        let mut msgs = vec![system];
        for (u, a) in p.example_turns(ExampleFor::Select, &p.select) {
            msgs.push(Message::user(u));
            msgs.push(Message::assistant(a));
        }
        msgs.push(Message::user(select.trim()));
        let allowed = self.cfg.allowed_ops();
        let sel_hint = TaskHint::Select {
            items: attrs.clone(),
            previous: previous.to_vec(),
            allowed: allowed.clone(),
        };
        let selected = self.call_until(user, stage, &msgs, &sel_hint, &mut cost, |r| {
            parse_instruction(&r.text)
        })?;
        let Some(((mut op, explanation), sel_resp)) = selected else {
            rec.prompt_hash = sha(&msgs.iter().map(|m| m.content.as_str()).collect::<Vec<_>>());
            rec.status = Status::SelectFailed;
            rec.error = Some("no usable operation; previous interests kept".into());
            finish(&mut rec, &cost);
            return Ok(rec);
        };
        if !allowed.contains(&op) {
            rec.requested_op = Some(op);
            op = [Op::Retain, Op::Update, Op::Add, Op::Delete]
                .into_iter()
                .find(|o| allowed.contains(o))
                .unwrap_or(op);
        }
        rec.op = Some(op);
        rec.explanation = explanation;
        if op == Op::Retain && !self.cfg.cfg.engine.execute_retain {
            rec.prompt_hash = sha(&msgs.iter().map(|m| m.content.as_str()).collect::<Vec<_>>());
            rec.hidden = sel_resp.hidden_mean;
            finish(&mut rec, &cost);
            return Ok(rec);
        }
        let edit = match op {
            Op::Add => &p.add,
            Op::Delete => &p.delete,
            Op::Update => &p.update,
            Op::Retain => &p.retain,
        };
        msgs.push(Message::assistant(sel_resp.text.trim()));
        msgs.push(Message::user(
            render(edit, &[("previous_interests", &prev_text)]).trim(),
        ));
        rec.prompt_hash = sha(&msgs.iter().map(|m| m.content.as_str()).collect::<Vec<_>>());
        let exec_hint = TaskHint::Execute {
            op,
            items: attrs,
            previous: previous.to_vec(),
        };
        match self.call_until(user, stage, &msgs, &exec_hint, &mut cost, parse_list)? {
            Some((parsed, resp)) => {
                if !parsed.explanation.is_empty() {
                    rec.explanation = format!("{} | {}", rec.explanation, parsed.explanation);
                }
                rec.interests = parsed.interests;
                rec.hidden = resp.hidden_mean;
            }
            None => {
                rec.status = Status::EditFailed;
                rec.error = Some(format!("no usable {op} answer; previous interests kept"));
            }
        }
        finish(&mut rec, &cost);
        Ok(rec)
    }
}

fn finish(rec: &mut StageRecord, cost: &Cost) {
    rec.calls = cost.calls;
    rec.tokens_in = cost.tokens_in;
    rec.tokens_out = cost.tokens_out;
    rec.latency_ms = cost.latency.as_secs_f64() * 1000.0;
}

enum StageError {
    Call(LlmError),
    Store(HsuError),
}

impl From<HsuError> for StageError {
    fn from(e: HsuError) -> Self {
        StageError::Store(e)
    }
}

#[derive(Default)]
struct UserOutcome {
    run: usize,
    reused: usize,
    failed: usize,
    calls: usize,
    tokens_in: u64,
    tokens_out: u64,
    empty: bool,
    interrupted: bool,
    error: Option<String>,
    /// A stage of this user (run now or reused) kept the previous interests.
    has_failed_stage: bool,
}

/// A user's latest interests and hidden-state mean (if stored).
pub type FinalInterests = (Vec<String>, Option<Vec<f32>>);

/// Each user's latest interests (and hidden-state mean, if stored): those of
/// the user's last stage with usable answers. A failed stage is a failure,
/// not interests: it only carries the previous ones forward, and has no
/// hidden states of its own. A user whose every stage failed has none.
pub fn final_interests(store: &Store, variant: &str) -> Result<HashMap<String, FinalInterests>> {
    let mut out = HashMap::new();
    for rec in store.all_stages(variant)? {
        // Rows come ordered by (user, stage): the last usable one wins.
        if rec.status == Status::Ok {
            out.insert(rec.user.clone(), (rec.interests, rec.hidden));
        }
    }
    Ok(out)
}
