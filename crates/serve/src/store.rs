//! Interactions received by the service, in one SQLite file (WAL,
//! `synchronous = FULL`): one transaction per request is the one commit
//! point, and the answer goes out only after it, so an acknowledged
//! interaction survives a kill -9 or a power cut.
//!
//! Ids are the dataset's raw ids, so the store outlives any one run: a
//! reload to a retrained run of the same dataset keeps every user's
//! appended history. A client event id makes a write idempotent: event ids
//! are unique across the whole store (a replayed id is a duplicate, whoever
//! sends it).
//!
//! The store also keeps every user's appended items in memory, updated
//! after the commit and under the same lock, so readers see a request's
//! interactions all at once or not at all, in commit order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use rusqlite::{Connection, params};

use crate::error::ServeError;

/// One interaction as a client sends it (raw ids).
#[derive(Debug, Clone, PartialEq)]
pub struct NewInteraction {
    pub item: String,
    pub timestamp: Option<i64>,
    pub event_id: Option<String>,
}

/// How a write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    pub accepted: usize,
    /// Interactions whose event id the store already held.
    pub duplicates: usize,
}

pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Raw user id → appended raw item ids, in commit order.
    appended: RwLock<HashMap<String, Vec<String>>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS interactions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    item TEXT NOT NULL,
    timestamp INTEGER,
    event_id TEXT UNIQUE,
    received_ms INTEGER NOT NULL
);
";

impl Store {
    /// Opens (or creates) the store and reads every appended interaction
    /// into memory.
    pub fn open(path: &Path) -> Result<Self, ServeError> {
        let fail = |e: rusqlite::Error| ServeError::Store {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| ServeError::Store {
                path: path.display().to_string(),
                message: format!("creating {}: {e}", parent.display()),
            })?;
        }
        let conn = Connection::open(path).map_err(fail)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(fail)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(ServeError::Store {
                path: path.display().to_string(),
                message: format!("cannot use write-ahead logging here (journal mode {mode})"),
            });
        }
        // FULL: every commit syncs the WAL; an answered write is on disk.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        let mut appended: HashMap<String, Vec<String>> = HashMap::new();
        {
            let mut stmt = conn
                .prepare("SELECT user, item FROM interactions ORDER BY seq")
                .map_err(fail)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(fail)?;
            for row in rows {
                let (user, item) = row.map_err(fail)?;
                appended.entry(user).or_default().push(item);
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            appended: RwLock::new(appended),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a user's interactions in one transaction. Interactions whose
    /// event id is already stored (or repeated within `items`) are counted
    /// as duplicates and not applied. Blocking: call it off the async
    /// runtime.
    pub fn append(&self, user: &str, items: &[NewInteraction]) -> Result<Written, ServeError> {
        let fail = |e: rusqlite::Error| ServeError::Store {
            path: self.path.display().to_string(),
            message: e.to_string(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(fail)?;
        let mut written = Written::default();
        let mut applied = Vec::with_capacity(items.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO interactions (user, item, timestamp, event_id, received_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(fail)?;
            for it in items {
                let n = insert
                    .execute(params![user, it.item, it.timestamp, it.event_id, now])
                    .map_err(fail)?;
                if n == 1 {
                    written.accepted += 1;
                    applied.push(it.item.clone());
                } else {
                    written.duplicates += 1;
                }
            }
        }
        tx.commit().map_err(fail)?;
        // Still under the connection lock: memory follows commit order.
        if !applied.is_empty() {
            let mut map = self.appended.write().unwrap_or_else(|p| p.into_inner());
            map.entry(user.to_string()).or_default().extend(applied);
        }
        Ok(written)
    }

    /// The raw item ids appended for a user, in commit order.
    pub fn appended(&self, user: &str) -> Vec<String> {
        let map = self.appended.read().unwrap_or_else(|p| p.into_inner());
        map.get(user).cloned().unwrap_or_default()
    }

    /// Whether the store has seen the user.
    pub fn knows(&self, user: &str) -> bool {
        let map = self.appended.read().unwrap_or_else(|p| p.into_inner());
        map.contains_key(user)
    }

    /// Every user with appended interactions.
    pub fn users(&self) -> Vec<String> {
        let map = self.appended.read().unwrap_or_else(|p| p.into_inner());
        map.keys().cloned().collect()
    }

    /// Every user's appended items, for checking them against a new run.
    pub fn all_items(&self) -> Vec<String> {
        let map = self.appended.read().unwrap_or_else(|p| p.into_inner());
        map.values().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(item: &str, id: Option<&str>) -> NewInteraction {
        NewInteraction {
            item: item.into(),
            timestamp: None,
            event_id: id.map(Into::into),
        }
    }

    #[test]
    fn replayed_event_ids_are_duplicates_and_everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = Store::open(&path).unwrap();
        let w = store
            .append(
                "u1",
                &[
                    event("a", Some("e1")),
                    event("b", None),
                    event("c", Some("e1")),
                ],
            )
            .unwrap();
        assert_eq!(
            w,
            Written {
                accepted: 2,
                duplicates: 1
            }
        );
        // The same event id from another user is the same event.
        let w = store.append("u2", &[event("z", Some("e1"))]).unwrap();
        assert_eq!((w.accepted, w.duplicates), (0, 1));
        assert!(!store.knows("u2"));
        assert_eq!(store.appended("u1"), vec!["a", "b"]);
        drop(store);
        let again = Store::open(&path).unwrap();
        assert_eq!(again.appended("u1"), vec!["a", "b"]);
        let w = again.append("u1", &[event("a", Some("e1"))]).unwrap();
        assert_eq!((w.accepted, w.duplicates), (0, 1));
        assert_eq!(again.appended("u1"), vec!["a", "b"]);
    }

    #[test]
    fn the_store_is_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let conn = store.conn.lock().unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous = FULL");
    }
}
