//! The embedding store: one folder per (dataset, kind, model) holding
//! `embeddings.safetensors` (one f32 tensor `embeddings`, `rows × dim`) and
//! `manifest.json`.
//!
//! The manifest is the commit marker. It is written last, atomically (temp
//! file + rename), and it records the sha256 of the tensor file, so a store
//! whose write was interrupted — no manifest, or a tensor file that does not
//! match it — is never taken for a complete one. The [`StoreKey`] (model id,
//! dimension, template hash, dataset hash, texts hash, row count) decides
//! whether a stored matrix is still valid; anything else recomputes.
//!
//! Row layout for items: item `i` (1-based) is row `i - 1`; there is no
//! padding row.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::embedder::{Embeddings, TextEmbedder, embed_all};
use crate::error::{Result, TextError};
use crate::template::hex;

const TENSOR: &str = "embeddings";
const DATA_FILE: &str = "embeddings.safetensors";
const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;

/// Everything a stored matrix depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreKey {
    /// [`TextEmbedder::model_id`].
    pub model_id: String,
    pub dim: usize,
    /// [`crate::Template::hash`] (empty for texts not made by a template).
    pub template_hash: String,
    /// Hash of the dataset's item ids and attributes (see [`dataset_hash`]).
    pub dataset_hash: String,
    /// Hash of the exact texts embedded (see [`texts_hash`]).
    pub texts_hash: String,
    pub rows: usize,
}

/// What `manifest.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub key: StoreKey,
    /// sha256 of `embeddings.safetensors`.
    pub data_sha256: String,
    /// Seconds since the Unix epoch when the store was completed.
    pub created_unix: u64,
    /// Free-form notes (e.g. how many items got fallback text).
    #[serde(default)]
    pub notes: HashMap<String, String>,
}

/// Hash of a list of texts (order matters).
pub fn texts_hash(texts: &[String]) -> String {
    let mut h = Sha256::new();
    for t in texts {
        h.update((t.len() as u64).to_le_bytes());
        h.update(t.as_bytes());
    }
    hex(&h.finalize())
}

/// Hash of a dataset's item ids and attributes (what item texts derive from).
pub fn dataset_hash(dataset: &hsuga_data::Dataset) -> String {
    let mut h = Sha256::new();
    h.update(dataset.name.as_bytes());
    h.update(dataset.num_items.to_le_bytes());
    for id in &dataset.item_ids {
        h.update((id.len() as u64).to_le_bytes());
        h.update(id.as_bytes());
    }
    let attrs = serde_json::to_vec(&dataset.item_attrs).unwrap_or_default();
    h.update(&attrs);
    hex(&h.finalize())
}

/// One store folder.
#[derive(Debug, Clone)]
pub struct EmbeddingStore {
    dir: PathBuf,
}

/// What [`EmbeddingStore::load_or_compute`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A valid stored matrix was loaded.
    Loaded,
    /// Nothing (complete) was stored; computed and saved.
    Computed,
    /// A stored matrix was stale or damaged; recomputed and saved.
    Recomputed,
}

impl EmbeddingStore {
    /// The store at `dir` (created on save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The conventional folder: `<cache>/embeddings/<dataset>/<kind>/<model>`.
    pub fn for_dataset(cache_dir: &Path, dataset: &str, kind: &str, model_id: &str) -> Self {
        let slug: String = model_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self::new(
            cache_dir
                .join("embeddings")
                .join(dataset)
                .join(kind)
                .join(slug),
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn err(&self, msg: impl Into<String>) -> TextError {
        TextError::Store {
            path: self.dir.clone(),
            msg: msg.into(),
        }
    }

    /// Reads the manifest; `None` when the store is absent or incomplete.
    pub fn manifest(&self) -> Result<Option<Manifest>> {
        let path = self.dir.join(MANIFEST);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TextError::io(&path, e)),
        };
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| self.err(format!("manifest.json is unreadable: {e}")))?;
        if m.format != FORMAT {
            return Err(self.err(format!(
                "manifest format {} (this build reads {FORMAT})",
                m.format
            )));
        }
        Ok(Some(m))
    }

    /// Opens a complete store, checking the tensor file against the manifest.
    /// Errors when absent, incomplete or damaged.
    pub fn open(&self) -> Result<(Manifest, Embeddings)> {
        let m = self.manifest()?.ok_or_else(|| {
            self.err("no complete store here (no manifest.json): run `hsuga embed items`")
        })?;
        let path = self.dir.join(DATA_FILE);
        let bytes = fs::read(&path).map_err(|e| TextError::io(&path, e))?;
        let sha = hex(&Sha256::digest(&bytes));
        if sha != m.data_sha256 {
            return Err(self.err(format!(
                "{DATA_FILE} does not match its manifest (sha256 {sha}, manifest says {}); \
                 the store is damaged or was partly rewritten",
                m.data_sha256
            )));
        }
        let e = decode_matrix(&bytes, Some(TENSOR))
            .map_err(|e| self.err(format!("{DATA_FILE}: {e}")))?;
        if [e.rows, e.dim] != [m.key.rows, m.key.dim] {
            return Err(self.err(format!(
                "tensor shape [{}, {}] but manifest says [{}, {}]",
                e.rows, e.dim, m.key.rows, m.key.dim
            )));
        }
        Ok((m, e))
    }

    /// Opens a complete store whose vectors must have dimension `dim` (e.g. the
    /// model config's text dimension): a mismatch is a clear error.
    pub fn open_expecting(&self, dim: usize) -> Result<(Manifest, Embeddings)> {
        let (m, e) = self.open()?;
        if e.dim != dim {
            return Err(TextError::DimensionMismatch {
                context: format!(
                    "embedding store {} (model {})",
                    self.dir.display(),
                    m.key.model_id
                ),
                expected: dim,
                found: e.dim,
            });
        }
        Ok((m, e))
    }

    /// Loads the stored matrix when it is complete and its key equals `key`.
    /// `Ok(None)` when absent, incomplete, stale or damaged (logged).
    pub fn load(&self, key: &StoreKey) -> Result<Option<Embeddings>> {
        match self.manifest() {
            Ok(None) => return Ok(None),
            Ok(Some(m)) if &m.key != key => {
                tracing::info!(store = %self.dir.display(), "stored embeddings are stale");
                return Ok(None);
            }
            Ok(Some(_)) => {}
            Err(e) => {
                tracing::warn!("{e}; recomputing");
                return Ok(None);
            }
        }
        match self.open() {
            Ok((_, e)) => Ok(Some(e)),
            Err(e) => {
                tracing::warn!("{e}; recomputing");
                Ok(None)
            }
        }
    }

    /// Writes a complete store: removes the old manifest, writes the tensor
    /// file, then the manifest (each via temp file + rename).
    pub fn save(
        &self,
        key: &StoreKey,
        e: &Embeddings,
        notes: HashMap<String, String>,
    ) -> Result<()> {
        if e.rows != key.rows || e.dim != key.dim || e.data.len() != e.rows * e.dim {
            return Err(self.err(format!(
                "matrix {}×{} ({} values) does not fit key {}×{}",
                e.rows,
                e.dim,
                e.data.len(),
                key.rows,
                key.dim
            )));
        }
        fs::create_dir_all(&self.dir).map_err(|err| TextError::io(&self.dir, err))?;
        let manifest_path = self.dir.join(MANIFEST);
        match fs::remove_file(&manifest_path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(TextError::io(&manifest_path, err)),
        }
        let bytes: Vec<u8> = e.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            vec![e.rows, e.dim],
            &bytes,
        )
        .map_err(|err| self.err(err.to_string()))?;
        let meta = HashMap::from([
            ("model_id".to_string(), key.model_id.clone()),
            ("template_hash".to_string(), key.template_hash.clone()),
            ("dataset_hash".to_string(), key.dataset_hash.clone()),
        ]);
        let file = safetensors::serialize([(TENSOR, view)], Some(meta))
            .map_err(|err| self.err(err.to_string()))?;
        self.write_atomic(DATA_FILE, &file)?;
        let manifest = Manifest {
            format: FORMAT,
            key: key.clone(),
            data_sha256: hex(&Sha256::digest(&file)),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            notes,
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|err| self.err(err.to_string()))?;
        self.write_atomic(MANIFEST, &json)
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(|err| TextError::io(&self.dir, err))?;
        tmp.write_all(bytes)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|err| TextError::io(tmp.path(), err))?;
        let path = self.dir.join(name);
        tmp.persist(&path)
            .map_err(|err| TextError::io(&path, err.error))?;
        Ok(())
    }

    /// Returns the stored matrix for `texts` when valid, else embeds them in
    /// chunks (calling `progress(done)`), saves and returns the result.
    pub fn load_or_compute(
        &self,
        key: &StoreKey,
        texts: &[String],
        embedder: &dyn TextEmbedder,
        chunk: usize,
        notes: HashMap<String, String>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Embeddings, Outcome)> {
        if key.rows != texts.len()
            || key.dim != embedder.dim()
            || key.model_id != embedder.model_id()
        {
            return Err(self.err("store key does not describe these texts and this embedder"));
        }
        let had_manifest = self.manifest().ok().flatten().is_some();
        if let Some(e) = self.load(key)? {
            progress(texts.len());
            return Ok((e, Outcome::Loaded));
        }
        let _span =
            tracing::info_span!("embed", store = %self.dir.display(), rows = texts.len()).entered();
        let e = embed_all(embedder, texts, chunk, progress)?;
        self.save(key, &e, notes)?;
        Ok((
            e,
            if had_manifest {
                Outcome::Recomputed
            } else {
                Outcome::Computed
            },
        ))
    }
}

/// A row-major f32 matrix from safetensors bytes: the tensor `name`, or the
/// only tensor in the file when `name` is `None`.
fn decode_matrix(bytes: &[u8], name: Option<&str>) -> std::result::Result<Embeddings, String> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let name = match name {
        Some(n) => n.to_string(),
        None => match st.names().as_slice() {
            [only] => only.to_string(),
            names => {
                return Err(format!(
                    "expected exactly one tensor, found {}",
                    names.len()
                ));
            }
        },
    };
    let t = st.tensor(&name).map_err(|e| e.to_string())?;
    if t.dtype() != safetensors::Dtype::F32 {
        return Err(format!(
            "tensor `{name}` has dtype {:?}, expected F32",
            t.dtype()
        ));
    }
    let &[rows, dim] = t.shape() else {
        return Err(format!(
            "tensor `{name}` has shape {:?}, expected [rows, dim]",
            t.shape()
        ));
    };
    let data = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Embeddings { rows, dim, data })
}

/// Embeddings a user supplies as a safetensors file holding one 2-D f32
/// tensor (e.g. written by `safetensors.numpy.save_file`), for datasets that
/// ship no item text.
pub fn read_matrix(path: &Path) -> Result<Embeddings> {
    let bytes = fs::read(path).map_err(|e| TextError::io(path, e))?;
    decode_matrix(&bytes, None).map_err(|msg| TextError::Store {
        path: path.to_path_buf(),
        msg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        calls: AtomicUsize,
        dim: usize,
    }
    impl TextEmbedder for Counting {
        fn model_id(&self) -> &str {
            "counting"
        }
        fn dim(&self) -> usize {
            self.dim
        }
        fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
            self.calls.fetch_add(texts.len(), Ordering::SeqCst);
            Ok(texts
                .iter()
                .map(|t| (0..self.dim).map(|j| (t.len() * (j + 1)) as f32).collect())
                .collect())
        }
    }

    fn key(texts: &[String], e: &Counting, template: &str) -> StoreKey {
        StoreKey {
            model_id: e.model_id().into(),
            dim: e.dim,
            template_hash: template.into(),
            dataset_hash: "d".into(),
            texts_hash: texts_hash(texts),
            rows: texts.len(),
        }
    }

    fn texts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn computes_once_then_loads_and_recomputes_on_change() {
        let tmp = tempfile::tempdir().unwrap();
        let store = EmbeddingStore::new(tmp.path().join("s"));
        let emb = Counting {
            calls: AtomicUsize::new(0),
            dim: 3,
        };
        let t = texts(&["a", "bb", "ccc"]);
        let k = key(&t, &emb, "t1");
        let run = |k: &StoreKey, t: &[String]| {
            store
                .load_or_compute(k, t, &emb, 2, HashMap::new(), &mut |_| {})
                .unwrap()
        };
        let (e1, o1) = run(&k, &t);
        assert_eq!(o1, Outcome::Computed);
        assert_eq!(emb.calls.load(Ordering::SeqCst), 3);
        let (e2, o2) = run(&k, &t);
        assert_eq!(o2, Outcome::Loaded);
        assert_eq!(e1, e2);
        assert_eq!(
            emb.calls.load(Ordering::SeqCst),
            3,
            "no recompute when unchanged"
        );

        // A changed template recomputes.
        let k2 = key(&t, &emb, "t2");
        assert_eq!(run(&k2, &t).1, Outcome::Recomputed);
        assert_eq!(emb.calls.load(Ordering::SeqCst), 6);
        // Changed texts recompute.
        let t3 = texts(&["a", "bb", "cccc"]);
        let k3 = key(&t3, &emb, "t2");
        assert_eq!(run(&k3, &t3).1, Outcome::Recomputed);
        assert_eq!(run(&k3, &t3).1, Outcome::Loaded);
    }

    #[test]
    fn partial_or_damaged_store_is_never_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let store = EmbeddingStore::new(tmp.path().join("s"));
        let emb = Counting {
            calls: AtomicUsize::new(0),
            dim: 2,
        };
        let t = texts(&["x", "yy"]);
        let k = key(&t, &emb, "t");
        store
            .load_or_compute(&k, &t, &emb, 8, HashMap::new(), &mut |_| {})
            .unwrap();

        // Interrupted rewrite: the tensor file changed, the manifest did not.
        let data = store.dir().join(DATA_FILE);
        let mut bytes = fs::read(&data).unwrap();
        let n = bytes.len();
        bytes.truncate(n - 4);
        fs::write(&data, &bytes).unwrap();
        let err = store.open().unwrap_err().to_string();
        assert!(err.contains("does not match its manifest"), "{err}");
        assert!(store.load(&k).unwrap().is_none());
        let (_, o) = store
            .load_or_compute(&k, &t, &emb, 8, HashMap::new(), &mut |_| {})
            .unwrap();
        assert_eq!(o, Outcome::Recomputed);

        // Crash before the manifest was written: no manifest, not complete.
        fs::remove_file(store.dir().join(MANIFEST)).unwrap();
        let err = store.open().unwrap_err().to_string();
        assert!(err.contains("no complete store"), "{err}");
        assert!(store.load(&k).unwrap().is_none());
    }

    #[test]
    fn dimension_mismatch_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let store = EmbeddingStore::new(tmp.path().join("s"));
        let emb = Counting {
            calls: AtomicUsize::new(0),
            dim: 4,
        };
        let t = texts(&["x"]);
        let k = key(&t, &emb, "t");
        store
            .load_or_compute(&k, &t, &emb, 8, HashMap::new(), &mut |_| {})
            .unwrap();
        store.open_expecting(4).unwrap();
        let err = store.open_expecting(384).unwrap_err();
        assert!(
            matches!(
                err,
                TextError::DimensionMismatch {
                    expected: 384,
                    found: 4,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("counting"), "{err}");
    }

    #[test]
    fn bad_embedder_answer_is_not_stored() {
        struct Short;
        impl TextEmbedder for Short {
            fn model_id(&self) -> &str {
                "short"
            }
            fn dim(&self) -> usize {
                3
            }
            fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
                Ok(texts.iter().map(|_| vec![1.0, 2.0]).collect())
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        let store = EmbeddingStore::new(tmp.path().join("s"));
        let t = texts(&["x"]);
        let k = StoreKey {
            model_id: "short".into(),
            dim: 3,
            template_hash: String::new(),
            dataset_hash: String::new(),
            texts_hash: texts_hash(&t),
            rows: 1,
        };
        let err = store
            .load_or_compute(&k, &t, &Short, 8, HashMap::new(), &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, TextError::DimensionMismatch { .. }), "{err}");
        assert!(store.manifest().unwrap().is_none());
    }
}
