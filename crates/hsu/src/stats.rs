//! What a stored HSU run looks like: operation frequencies, failures, tokens
//! and time per stage and per user (`hsuga hsu stats`), and one user's
//! stage-by-stage trail (`hsuga interests`, like the paper's Tables 6 and 9).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::error::Result;
use crate::store::{StageRecord, Status, Store};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub variant: String,
    pub backends: Vec<String>,
    pub users: usize,
    pub stages: usize,
    /// Stage-1 reasoning / CoT / recursive stages are counted as "reason" / "summary".
    pub ops: BTreeMap<String, usize>,
    pub ops_replaced_by_ablation: usize,
    pub status: BTreeMap<String, usize>,
    /// Users with a stage stored as failed (previous interests kept).
    pub users_failed: usize,
    /// Stages computed by more than one run (failures retried).
    pub stages_retried: usize,
    /// Recorded problems by kind (each unusable answer, each failed call).
    pub failures: BTreeMap<String, usize>,
    pub calls: usize,
    /// Unusable answers / calls.
    pub parse_failure_rate: f64,
    pub tokens_in_per_stage: f64,
    pub tokens_out_per_stage: f64,
    pub tokens_in_per_user: f64,
    pub tokens_out_per_user: f64,
    pub calls_per_stage: f64,
    pub seconds_per_stage: f64,
    pub seconds_per_user: f64,
    pub stages_per_user: f64,
    /// Wall time of the recorded runs / users with stages (concurrency included).
    pub wall_seconds_per_user: Option<f64>,
    pub users_with_hidden_states: usize,
}

pub fn stats(store: &Store, variant: &str) -> Result<Stats> {
    let rows = store.all_stages(variant)?;
    let failures = store.failures(variant)?;
    let mut s = Stats {
        variant: variant.to_string(),
        ..Default::default()
    };
    let mut users = BTreeSet::new();
    let mut backends = BTreeSet::new();
    let mut hidden_users = BTreeSet::new();
    let mut failed_users = BTreeSet::new();
    let (mut tin, mut tout, mut lat) = (0u64, 0u64, 0f64);
    for r in &rows {
        users.insert(r.user.as_str());
        backends.insert(format!("{}:{}", r.backend, r.model));
        let op = match r.op {
            Some(op) => op.name().to_string(),
            None if r.stage == 0 => "reason".into(),
            None if r.status == Status::SelectFailed => "none (selection failed)".into(),
            None => "summary".into(),
        };
        *s.ops.entry(op).or_default() += 1;
        if r.requested_op.is_some() {
            s.ops_replaced_by_ablation += 1;
        }
        *s.status.entry(r.status.as_str().to_string()).or_default() += 1;
        if r.status != Status::Ok {
            failed_users.insert(r.user.as_str());
        }
        if r.tries > 1 {
            s.stages_retried += 1;
        }
        s.calls += r.calls as usize;
        tin += r.tokens_in;
        tout += r.tokens_out;
        lat += r.latency_ms / 1000.0;
        if r.hidden.is_some() {
            hidden_users.insert(r.user.as_str());
        }
    }
    let mut parse_failures = 0usize;
    for f in &failures {
        *s.failures.entry(f.kind.clone()).or_default() += 1;
        if f.kind != "call_error" {
            parse_failures += 1;
        }
    }
    s.backends = backends.into_iter().collect();
    s.users = users.len();
    s.stages = rows.len();
    s.users_with_hidden_states = hidden_users.len();
    s.users_failed = failed_users.len();
    let div = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
    s.parse_failure_rate = div(parse_failures as f64, s.calls);
    s.tokens_in_per_stage = div(tin as f64, s.stages);
    s.tokens_out_per_stage = div(tout as f64, s.stages);
    s.tokens_in_per_user = div(tin as f64, s.users);
    s.tokens_out_per_user = div(tout as f64, s.users);
    s.calls_per_stage = div(s.calls as f64, s.stages);
    s.seconds_per_stage = div(lat, s.stages);
    s.seconds_per_user = div(lat, s.users);
    s.stages_per_user = div(s.stages as f64, s.users);
    if let Some((secs, _, _)) = store.run_seconds(variant)?
        && s.users > 0
    {
        s.wall_seconds_per_user = Some(secs / s.users as f64);
    }
    Ok(s)
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "variant        {}", self.variant)?;
        writeln!(f, "back-end       {}", self.backends.join(", "))?;
        if self.backends.iter().any(|b| b.starts_with("rules:")) {
            writeln!(
                f,
                "               (rules = an LLM-free approximation of HSU, not the paper's method)"
            )?;
        }
        writeln!(
            f,
            "users          {}  stages {}  ({:.2} per user)",
            self.users, self.stages, self.stages_per_user
        )?;
        let total_ops: usize = self.ops.values().sum();
        write!(f, "operations    ")?;
        for (k, v) in &self.ops {
            write!(
                f,
                " {k} {v} ({:.1}%)",
                100.0 * *v as f64 / total_ops.max(1) as f64
            )?;
        }
        writeln!(f)?;
        if self.ops_replaced_by_ablation > 0 {
            writeln!(
                f,
                "               {} selections replaced by an ablation fall-back",
                self.ops_replaced_by_ablation
            )?;
        }
        write!(f, "status        ")?;
        for (k, v) in &self.status {
            write!(f, " {k} {v}")?;
        }
        writeln!(
            f,
            "  ({} users with a failed stage, {} stages retried by a later run)",
            self.users_failed, self.stages_retried
        )?;
        write!(f, "failures      ")?;
        if self.failures.is_empty() {
            write!(f, " none")?;
        }
        for (k, v) in &self.failures {
            write!(f, " {k} {v}")?;
        }
        writeln!(
            f,
            "\nparse failures {:.1}% of {} calls ({:.2} calls per stage)",
            100.0 * self.parse_failure_rate,
            self.calls,
            self.calls_per_stage
        )?;
        writeln!(
            f,
            "tokens/stage   in {:.1}  out {:.1}",
            self.tokens_in_per_stage, self.tokens_out_per_stage
        )?;
        writeln!(
            f,
            "tokens/user    in {:.1}  out {:.1}",
            self.tokens_in_per_user, self.tokens_out_per_user
        )?;
        write!(
            f,
            "time           {:.3} s/stage  {:.3} s/user (sum of call latencies)",
            self.seconds_per_stage, self.seconds_per_user
        )?;
        if let Some(w) = self.wall_seconds_per_user {
            write!(f, "; {w:.4} s/user wall")?;
        }
        writeln!(f)?;
        if self.users_with_hidden_states > 0 {
            writeln!(
                f,
                "hidden states  stored for {} users",
                self.users_with_hidden_states
            )?;
        }
        Ok(())
    }
}

/// One stage of a user's trail, with what changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrailStage {
    pub stage: u32,
    pub items: Vec<String>,
    pub op: String,
    pub explanation: String,
    pub interests: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub status: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

/// A user's stored stages with added/removed interests per stage.
pub fn trail(rows: &[StageRecord]) -> Vec<TrailStage> {
    let mut prev: Vec<String> = Vec::new();
    rows.iter()
        .map(|r| {
            let lower =
                |v: &[String]| -> BTreeSet<String> { v.iter().map(|x| x.to_lowercase()).collect() };
            let (p, c) = (lower(&prev), lower(&r.interests));
            let added = r
                .interests
                .iter()
                .filter(|x| !p.contains(&x.to_lowercase()))
                .cloned()
                .collect();
            let removed = prev
                .iter()
                .filter(|x| !c.contains(&x.to_lowercase()))
                .cloned()
                .collect();
            let op = match (r.op, r.requested_op) {
                (Some(o), Some(req)) => format!("{o} (selected {req}, disabled)"),
                (Some(o), None) => o.name().to_string(),
                (None, _) if r.stage == 0 => "reason".into(),
                (None, _) => "-".into(),
            };
            prev = r.interests.clone();
            TrailStage {
                stage: r.stage,
                items: r.items.clone(),
                op,
                explanation: r.explanation.clone(),
                interests: r.interests.clone(),
                added,
                removed,
                status: r.status.as_str().to_string(),
                tokens_in: r.tokens_in,
                tokens_out: r.tokens_out,
            }
        })
        .collect()
}
