//! User semantic inputs from a stored run, in dataset user order: the final
//! interest text of every user (to embed with the text embedder) and, where
//! the LLM ran in-process, the mean of its last hidden states over the
//! generated tokens of the user's last stage (the official HSUGA embedding).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{HsuError, Result};
use crate::store::Store;

/// One text per user: "interest 1; interest 2; …" (empty if none stored).
pub fn interest_texts(store: &Store, variant: &str, users: &[String]) -> Result<Vec<String>> {
    let last = crate::engine::final_interests(store, variant)?;
    Ok(users
        .iter()
        .map(|u| last.get(u).map(|(i, _)| i.join("; ")).unwrap_or_default())
        .collect())
}

/// Row-major `(users, dim)` matrix of hidden-state means; users without one
/// get a zero row and are counted in `missing`.
#[derive(Debug, Clone, PartialEq)]
pub struct HiddenEmbeddings {
    pub dim: usize,
    pub data: Vec<f32>,
    pub missing: usize,
}

pub fn hidden_embeddings(
    store: &Store,
    variant: &str,
    users: &[String],
) -> Result<HiddenEmbeddings> {
    let last: HashMap<String, crate::engine::FinalInterests> =
        crate::engine::final_interests(store, variant)?;
    let dim = last
        .values()
        .find_map(|(_, h)| h.as_ref().map(Vec::len))
        .ok_or_else(|| {
            HsuError::Invalid(format!(
                "variant {variant} has no hidden states (only in-process LLM runs store them)"
            ))
        })?;
    let mut data = Vec::with_capacity(users.len() * dim);
    let mut missing = 0;
    for u in users {
        match last
            .get(u)
            .and_then(|(_, h)| h.as_ref())
            .filter(|h| h.len() == dim)
        {
            Some(h) => data.extend_from_slice(h),
            None => {
                missing += 1;
                data.extend(std::iter::repeat_n(0.0, dim));
            }
        }
    }
    Ok(HiddenEmbeddings { dim, data, missing })
}

#[derive(Debug, Serialize)]
struct Manifest<'a> {
    kind: &'a str,
    variant: &'a str,
    users: usize,
    dim: usize,
    missing: usize,
    dtype: &'a str,
    layout: &'a str,
    store: String,
}

/// Writes `<dir>/user_hidden.f32` (little-endian, row-major) and
/// `<dir>/user_hidden.json` (manifest), plus `<dir>/user_interests.jsonl`.
pub fn write_exports(
    dir: &Path,
    store: &Store,
    variant: &str,
    users: &[String],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| HsuError::io(dir, e))?;
    let mut written = Vec::new();
    let texts = interest_texts(store, variant, users)?;
    let p = dir.join("user_interests.jsonl");
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(&p).map_err(|e| HsuError::io(&p, e))?);
    for (u, t) in users.iter().zip(&texts) {
        let line = serde_json::json!({"user": u, "interests": t});
        writeln!(f, "{line}").map_err(|e| HsuError::io(&p, e))?;
    }
    f.flush().map_err(|e| HsuError::io(&p, e))?;
    written.push(p);
    if let Ok(h) = hidden_embeddings(store, variant, users) {
        let p = dir.join("user_hidden.f32");
        let bytes: Vec<u8> = h.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(&p, bytes).map_err(|e| HsuError::io(&p, e))?;
        written.push(p);
        let m = Manifest {
            kind: "hsu-hidden-mean",
            variant,
            users: users.len(),
            dim: h.dim,
            missing: h.missing,
            dtype: "f32-le",
            layout: "row-major (users, dim), dataset user order",
            store: store.path().display().to_string(),
        };
        let p = dir.join("user_hidden.json");
        let text =
            serde_json::to_string_pretty(&m).map_err(|e| HsuError::Invalid(e.to_string()))?;
        std::fs::write(&p, text).map_err(|e| HsuError::io(&p, e))?;
        written.push(p);
    }
    Ok(written)
}

/// What [`user_embeddings`] produced.
#[derive(Debug, Clone)]
pub struct UserEmbeddings {
    /// User `u` (0-based dataset index) is row `u`.
    pub embeddings: hsuga_text::Embeddings,
    pub store: hsuga_text::EmbeddingStore,
    pub outcome: hsuga_text::Outcome,
    /// Users with no stored interests, embedded from a fixed placeholder.
    pub without_interests: usize,
}

/// Text standing in for a user without interests (the embedder rejects empty text).
pub const NO_INTERESTS: &str = "no known interests";

/// The user semantic embeddings of a stored run: each user's final interests
/// embedded by the text embedder, kept in the text crate's embedding store
/// (`<cache>/embeddings/<dataset>/users-hsu-<variant>/<model>`, with its
/// manifest) and recomputed only when the interests or the model change.
pub fn user_embeddings(
    store: &Store,
    variant: &str,
    dataset: &hsuga_data::Dataset,
    embedder: &dyn hsuga_text::TextEmbedder,
    cache_dir: &Path,
    progress: &mut dyn FnMut(usize),
) -> Result<UserEmbeddings> {
    let mut texts = interest_texts(store, variant, &dataset.user_ids)?;
    let mut without = 0;
    for t in &mut texts {
        if t.trim().is_empty() {
            *t = NO_INTERESTS.to_string();
            without += 1;
        }
    }
    let key = hsuga_text::StoreKey {
        model_id: embedder.model_id().to_string(),
        dim: embedder.dim(),
        template_hash: format!("hsu-interests:{variant}"),
        dataset_hash: hsuga_text::dataset_hash(dataset),
        texts_hash: hsuga_text::texts_hash(&texts),
        rows: texts.len(),
    };
    let emb_store = hsuga_text::EmbeddingStore::for_dataset(
        cache_dir,
        &dataset.name,
        &format!("users-hsu-{variant}"),
        embedder.model_id(),
    );
    let notes = HashMap::from([
        ("source".to_string(), "hsu final interests".to_string()),
        ("variant".to_string(), variant.to_string()),
        ("users_without_interests".to_string(), without.to_string()),
        ("hsu_store".to_string(), store.path().display().to_string()),
    ]);
    let (embeddings, outcome) = emb_store
        .load_or_compute(&key, &texts, embedder, 256, notes, progress)
        .map_err(|e| HsuError::Invalid(format!("user embeddings: {e}")))?;
    Ok(UserEmbeddings {
        embeddings,
        store: emb_store,
        outcome,
        without_interests: without,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StageRecord, Status};

    /// Bag-of-letters embedder: enough to check plumbing.
    struct Letters;
    impl hsuga_text::TextEmbedder for Letters {
        fn model_id(&self) -> &str {
            "letters-v1"
        }
        fn dim(&self) -> usize {
            26
        }
        fn embed(&self, texts: &[String]) -> hsuga_text::Result<Vec<Vec<f32>>> {
            hsuga_text::check_texts(texts)?;
            Ok(texts
                .iter()
                .map(|t| {
                    let mut v = vec![0.0; 26];
                    for c in t
                        .to_ascii_lowercase()
                        .bytes()
                        .filter(u8::is_ascii_lowercase)
                    {
                        v[usize::from(c - b'a')] += 1.0;
                    }
                    v
                })
                .collect())
        }
    }

    #[test]
    fn user_embeddings_and_hidden_exports() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let rec = |user: &str, interests: &[&str], hidden: Option<Vec<f32>>| StageRecord {
            user: user.into(),
            stage: 0,
            items: vec![],
            items_hash: String::new(),
            config_hash: String::new(),
            op: None,
            requested_op: None,
            explanation: String::new(),
            interests: interests.iter().map(|s| s.to_string()).collect(),
            prompt_hash: String::new(),
            backend: "b".into(),
            model: "m".into(),
            calls: 1,
            tokens_in: 1,
            tokens_out: 1,
            latency_ms: 0.0,
            status: Status::Ok,
            error: None,
            hidden,
            tries: 1,
        };
        store
            .put_stage("v", &rec("a", &["Drama"], Some(vec![1.0, 2.0])))
            .unwrap();
        store
            .put_stage("v", &rec("b", &["Comedy", "War"], None))
            .unwrap();
        let ds = hsuga_data::Dataset {
            name: "toy".into(),
            num_items: 0,
            sequences: vec![vec![], vec![], vec![]],
            user_ids: vec!["a".into(), "b".into(), "c".into()],
            item_ids: vec![],
            item_attrs: vec![],
            report: Default::default(),
        };
        let u = user_embeddings(&store, "v", &ds, &Letters, dir.path(), &mut |_| {}).unwrap();
        assert_eq!((u.embeddings.rows, u.embeddings.dim), (3, 26));
        assert_eq!(u.without_interests, 1);
        assert_eq!(u.outcome, hsuga_text::Outcome::Computed);
        let again = user_embeddings(&store, "v", &ds, &Letters, dir.path(), &mut |_| {}).unwrap();
        assert_eq!(again.outcome, hsuga_text::Outcome::Loaded);
        let h = hidden_embeddings(&store, "v", &ds.user_ids).unwrap();
        assert_eq!((h.dim, h.missing), (2, 2));
        assert_eq!(&h.data[..2], &[1.0, 2.0]);
        let files = write_exports(&dir.path().join("out"), &store, "v", &ds.user_ids).unwrap();
        assert_eq!(files.len(), 3);
    }
}
