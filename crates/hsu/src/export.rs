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
