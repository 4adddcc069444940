//! The stage store: one embedded SQLite database (WAL) per dataset, one row
//! per (variant, user, stage).
//!
//! Every completed stage is committed in its own transaction the moment it is
//! done, so a crash or Ctrl-C loses at most the stage in flight. Rows are
//! keyed by the dataset's raw user id (stable when users gain interactions)
//! and carry a hash of the stage's items and of the run config: a rerun
//! reuses the longest matching prefix of a user's stages and recomputes the
//! rest (resume and incremental update are the same rule). Several processes
//! (`--shard i/n`) can write one database: WAL plus a busy timeout serialise
//! their short transactions, and they never write the same user.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use hsuga_llm::Op;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::{HsuError, Result};

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Answers parsed.
    Ok,
    /// The selection answer was unusable after every attempt: previous interests kept.
    SelectFailed,
    /// The reasoning/edit answer was unusable after every attempt: previous interests kept.
    EditFailed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::SelectFailed => "select_failed",
            Status::EditFailed => "edit_failed",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(Status::Ok),
            "select_failed" => Some(Status::SelectFailed),
            "edit_failed" => Some(Status::EditFailed),
            _ => None,
        }
    }
}

/// One stored stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRecord {
    pub user: String,
    /// 0-based (stage 0 is the paper's "stage 1").
    pub stage: u32,
    /// Raw item ids of the stage, in order.
    pub items: Vec<String>,
    pub items_hash: String,
    pub config_hash: String,
    /// The operation applied (`None` for stage 0, one-call CoT and recursive stages).
    pub op: Option<Op>,
    /// What the selection answered, when an ablation replaced it.
    pub requested_op: Option<Op>,
    pub explanation: String,
    pub interests: Vec<String>,
    pub prompt_hash: String,
    pub backend: String,
    pub model: String,
    pub calls: u32,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub latency_ms: f64,
    pub status: Status,
    pub error: Option<String>,
    /// Mean last hidden state over the generated tokens (in-process LLMs).
    pub hidden: Option<Vec<f32>>,
    /// How many runs have computed this stage of these items under this
    /// config: 1 when first stored; a failed stage that a later run retries
    /// and fails again counts up, so retries stay bounded
    /// (`engine.max_stage_runs`) and `hsu stats` can show them.
    pub tries: u32,
}

/// A recorded problem: an unusable answer (one per failed attempt) or a
/// call that failed outright (user left for the next run).
#[derive(Debug, Clone, PartialEq)]
pub struct FailureRecord {
    pub user: String,
    pub stage: u32,
    pub kind: String,
    pub message: String,
    pub answer: String,
}

/// Where a dataset's HSU store lives under a cache root, shared by
/// `hsuga hsu` and the experiment runner so that both resume the same runs.
pub fn default_path(cache_dir: &std::path::Path, dataset: &str) -> std::path::PathBuf {
    cache_dir.join("hsu").join(format!("{dataset}.sqlite"))
}

#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stages (
    variant TEXT NOT NULL,
    user TEXT NOT NULL,
    stage INTEGER NOT NULL,
    items TEXT NOT NULL,
    items_hash TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    op INTEGER,
    requested_op INTEGER,
    explanation TEXT NOT NULL,
    interests TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    calls INTEGER NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    hidden BLOB,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    tries INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (variant, user, stage)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    variant TEXT NOT NULL,
    user TEXT NOT NULL,
    stage INTEGER NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    answer TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX IF NOT EXISTS failures_variant ON failures(variant, kind);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    variant TEXT NOT NULL,
    config TEXT NOT NULL,
    shard TEXT NOT NULL,
    users INTEGER NOT NULL,
    stages_run INTEGER NOT NULL,
    stages_reused INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    seconds REAL NOT NULL,
    finished_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
";

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn hidden_blob(h: &Option<Vec<f32>>) -> Option<Vec<u8>> {
    h.as_ref()
        .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| HsuError::io(dir, e))?;
        }
        let conn = Connection::open(path).map_err(|e| Self::err(path, e))?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(|e| Self::err(path, e))?;
        let mode = Self::wal_mode(&conn).map_err(|e| Self::err(path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "SQLite refused WAL mode; continuing");
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL;")
            .map_err(|e| Self::err(path, e))?;
        conn.execute_batch(SCHEMA).map_err(|e| Self::err(path, e))?;
        Self::add_tries_column(&conn).map_err(|e| Self::err(path, e))?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// Switches to WAL. SQLite does not call the busy handler for this
    /// switch, so shards opening a new store at the same moment would get
    /// "database is locked": retry for as long as the busy timeout allows.
    fn wal_mode(conn: &Connection) -> rusqlite::Result<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// Stores written before failed stages were retried have no `tries`
    /// column; each of their stages was computed by one run.
    fn add_tries_column(conn: &Connection) -> rusqlite::Result<()> {
        let has: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('stages') WHERE name = 'tries'",
            [],
            |r| r.get(0),
        )?;
        if !has {
            // Another shard may add it between our check and this statement.
            match conn
                .execute_batch("ALTER TABLE stages ADD COLUMN tries INTEGER NOT NULL DEFAULT 1")
            {
                Err(rusqlite::Error::SqliteFailure(_, Some(m)))
                    if m.contains("duplicate column") => {}
                other => other?,
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(path: &Path, source: rusqlite::Error) -> HsuError {
        HsuError::Store {
            path: path.to_path_buf(),
            cause: source,
        }
    }

    fn e(&self, source: rusqlite::Error) -> HsuError {
        Self::err(&self.path, source)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-written row
        // (SQLite transactions are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores stage `rec.stage` of a user and drops that user's later stages
    /// (they were computed from a different past), in one transaction.
    pub fn put_stage(&self, variant: &str, rec: &StageRecord) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.e(e))?;
        tx.execute(
            "DELETE FROM stages WHERE variant = ?1 AND user = ?2 AND stage >= ?3",
            params![variant, rec.user, rec.stage],
        )
        .map_err(|e| self.e(e))?;
        tx.execute(
            "INSERT INTO stages (variant, user, stage, items, items_hash, config_hash, op,
                requested_op, explanation, interests, prompt_hash, backend, model, calls,
                tokens_in, tokens_out, latency_ms, status, error, hidden, tries)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                ?17, ?18, ?19, ?20, ?21)",
            params![
                variant,
                rec.user,
                rec.stage,
                json(&rec.items),
                rec.items_hash,
                rec.config_hash,
                rec.op.map(Op::number),
                rec.requested_op.map(Op::number),
                rec.explanation,
                json(&rec.interests),
                rec.prompt_hash,
                rec.backend,
                rec.model,
                rec.calls,
                rec.tokens_in as i64,
                rec.tokens_out as i64,
                rec.latency_ms,
                rec.status.as_str(),
                rec.error,
                hidden_blob(&rec.hidden),
                rec.tries,
            ],
        )
        .map_err(|e| self.e(e))?;
        tx.commit().map_err(|e| self.e(e))
    }

    /// Drops a user's stages from `from_stage` on (their history got shorter).
    pub fn truncate_user(&self, variant: &str, user: &str, from_stage: u32) -> Result<usize> {
        self.lock()
            .execute(
                "DELETE FROM stages WHERE variant = ?1 AND user = ?2 AND stage >= ?3",
                params![variant, user, from_stage],
            )
            .map_err(|e| self.e(e))
    }

    pub fn put_failure(&self, variant: &str, f: &FailureRecord) -> Result<()> {
        let answer: String = f.answer.chars().take(4000).collect();
        self.lock()
            .execute(
                "INSERT INTO failures (variant, user, stage, kind, message, answer)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![variant, f.user, f.stage, f.kind, f.message, answer],
            )
            .map(|_| ())
            .map_err(|e| self.e(e))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn put_run(
        &self,
        variant: &str,
        config: &str,
        shard: &str,
        users: usize,
        stages_run: usize,
        stages_reused: usize,
        calls: usize,
        seconds: f64,
    ) -> Result<()> {
        self.lock()
            .execute(
                "INSERT INTO runs (variant, config, shard, users, stages_run, stages_reused, calls, seconds)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    variant,
                    config,
                    shard,
                    users as i64,
                    stages_run as i64,
                    stages_reused as i64,
                    calls as i64,
                    seconds
                ],
            )
            .map(|_| ())
            .map_err(|e| self.e(e))
    }

    /// A user's stored stages in order.
    pub fn user_stages(&self, variant: &str, user: &str) -> Result<Vec<StageRecord>> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached(
                "SELECT user, stage, items, items_hash, config_hash, op, requested_op, explanation,
                    interests, prompt_hash, backend, model, calls, tokens_in, tokens_out,
                    latency_ms, status, error, hidden, tries
                 FROM stages WHERE variant = ?1 AND user = ?2 ORDER BY stage",
            )
            .map_err(|e| self.e(e))?;
        let rows = st
            .query_map(params![variant, user], row_to_record)
            .map_err(|e| self.e(e))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r.map_err(|e| self.e(e))?.map_err(|m| HsuError::Corrupt {
                path: self.path.clone(),
                message: m,
            })?);
        }
        Ok(out)
    }

    /// Every stored stage of a variant, ordered by user and stage.
    pub fn all_stages(&self, variant: &str) -> Result<Vec<StageRecord>> {
        let conn = self.lock();
        let mut st = conn
            .prepare(
                "SELECT user, stage, items, items_hash, config_hash, op, requested_op, explanation,
                    interests, prompt_hash, backend, model, calls, tokens_in, tokens_out,
                    latency_ms, status, error, hidden, tries
                 FROM stages WHERE variant = ?1 ORDER BY user, stage",
            )
            .map_err(|e| self.e(e))?;
        let rows = st
            .query_map(params![variant], row_to_record)
            .map_err(|e| self.e(e))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r.map_err(|e| self.e(e))?.map_err(|m| HsuError::Corrupt {
                path: self.path.clone(),
                message: m,
            })?);
        }
        Ok(out)
    }

    pub fn failures(&self, variant: &str) -> Result<Vec<FailureRecord>> {
        let conn = self.lock();
        let mut st = conn
            .prepare(
                "SELECT user, stage, kind, message, answer FROM failures WHERE variant = ?1 ORDER BY id",
            )
            .map_err(|e| self.e(e))?;
        let rows = st
            .query_map(params![variant], |r| {
                Ok(FailureRecord {
                    user: r.get(0)?,
                    stage: r.get(1)?,
                    kind: r.get(2)?,
                    message: r.get(3)?,
                    answer: r.get(4)?,
                })
            })
            .map_err(|e| self.e(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.e(e))
    }

    /// Variants with stored stages.
    pub fn variants(&self) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut st = conn
            .prepare("SELECT DISTINCT variant FROM stages ORDER BY variant")
            .map_err(|e| self.e(e))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(|e| self.e(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.e(e))
    }

    /// Last run's wall time and user count, per variant (for time per user).
    pub fn run_seconds(&self, variant: &str) -> Result<Option<(f64, i64, i64)>> {
        self.lock()
            .query_row(
                "SELECT SUM(seconds), SUM(stages_run), SUM(calls) FROM runs WHERE variant = ?1 HAVING COUNT(*) > 0",
                params![variant],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.e(e))
    }
}

type RowResult = std::result::Result<StageRecord, String>;

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let items: String = r.get(2)?;
    let interests: String = r.get(8)?;
    let status: String = r.get(16)?;
    let hidden: Option<Vec<u8>> = r.get(18)?;
    let op = |i: Option<i64>| i.and_then(Op::from_number);
    let build = || -> RowResult {
        Ok(StageRecord {
            user: r.get(0).map_err(|e| e.to_string())?,
            stage: r.get(1).map_err(|e| e.to_string())?,
            items: serde_json::from_str(&items).map_err(|e| format!("items: {e}"))?,
            items_hash: r.get(3).map_err(|e| e.to_string())?,
            config_hash: r.get(4).map_err(|e| e.to_string())?,
            op: op(r.get(5).map_err(|e| e.to_string())?),
            requested_op: op(r.get(6).map_err(|e| e.to_string())?),
            explanation: r.get(7).map_err(|e| e.to_string())?,
            interests: serde_json::from_str(&interests).map_err(|e| format!("interests: {e}"))?,
            prompt_hash: r.get(9).map_err(|e| e.to_string())?,
            backend: r.get(10).map_err(|e| e.to_string())?,
            model: r.get(11).map_err(|e| e.to_string())?,
            calls: r.get(12).map_err(|e| e.to_string())?,
            tokens_in: r.get::<_, i64>(13).map_err(|e| e.to_string())? as u64,
            tokens_out: r.get::<_, i64>(14).map_err(|e| e.to_string())? as u64,
            latency_ms: r.get(15).map_err(|e| e.to_string())?,
            status: Status::parse(&status).ok_or(format!("unknown status {status:?}"))?,
            error: r.get(17).map_err(|e| e.to_string())?,
            hidden: hidden.map(|b| {
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }),
            tries: r.get(19).map_err(|e| e.to_string())?,
        })
    };
    Ok(build())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rec(user: &str, stage: u32) -> StageRecord {
        StageRecord {
            user: user.into(),
            stage,
            items: vec!["1".into(), "2".into()],
            items_hash: "h".into(),
            config_hash: "c".into(),
            op: Some(Op::Add),
            requested_op: None,
            explanation: "e".into(),
            interests: vec!["Drama".into()],
            prompt_hash: "p".into(),
            backend: "rules".into(),
            model: "m".into(),
            calls: 2,
            tokens_in: 10,
            tokens_out: 5,
            latency_ms: 1.5,
            status: Status::Ok,
            error: None,
            hidden: Some(vec![0.5, -1.0]),
            tries: 1,
        }
    }

    #[test]
    fn round_trip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("x/hsu.sqlite")).unwrap();
        for k in 0..3 {
            s.put_stage("v", &rec("u1", k)).unwrap();
        }
        s.put_stage("w", &rec("u1", 0)).unwrap();
        assert_eq!(s.user_stages("v", "u1").unwrap().len(), 3);
        assert_eq!(s.user_stages("v", "u1").unwrap()[2], rec("u1", 2));
        // Rewriting stage 1 drops stage 2.
        s.put_stage("v", &rec("u1", 1)).unwrap();
        assert_eq!(s.user_stages("v", "u1").unwrap().len(), 2);
        assert_eq!(s.variants().unwrap(), vec!["v", "w"]);
        s.put_failure(
            "v",
            &FailureRecord {
                user: "u1".into(),
                stage: 1,
                kind: "degenerate".into(),
                message: "m".into(),
                answer: "a".into(),
            },
        )
        .unwrap();
        assert_eq!(s.failures("v").unwrap().len(), 1);
        // A second connection (another process) sees the same rows.
        let s2 = Store::open(s.path()).unwrap();
        assert_eq!(s2.all_stages("v").unwrap().len(), 2);
    }

    #[test]
    fn a_store_from_before_retries_gains_the_tries_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        // The schema as earlier builds wrote it: no `tries`.
        let old = SCHEMA.replace("    tries INTEGER NOT NULL DEFAULT 1,\n", "");
        assert!(!old.contains("tries"));
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&old).unwrap();
        conn.execute(
            "INSERT INTO stages (variant, user, stage, items, items_hash, config_hash,
                explanation, interests, prompt_hash, backend, model, calls, tokens_in,
                tokens_out, latency_ms, status)
             VALUES ('v', 'u1', 0, '[]', 'h', 'c', '', '[\"Drama\"]', 'p', 'rules', 'm',
                1, 1, 1, 0.0, 'edit_failed')",
            [],
        )
        .unwrap();
        drop(conn);
        let s = Store::open(&path).unwrap();
        let got = s.user_stages("v", "u1").unwrap();
        assert_eq!((got[0].status, got[0].tries), (Status::EditFailed, 1));
        // Opening again (the column is there now) is not an error.
        drop(s);
        Store::open(&path).unwrap();
    }
}
