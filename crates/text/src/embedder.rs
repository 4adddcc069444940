//! The [`TextEmbedder`] trait shared by the local and remote back-ends, the
//! [`Embeddings`] matrix, and input checks every back-end applies.

use crate::error::{Result, TextError};

/// Turns texts into fixed-size vectors.
///
/// Contract for every implementation:
/// - one output vector per input, in input order, each of length [`dim`](Self::dim);
/// - an empty or whitespace-only text is an error ([`TextError::EmptyText`]),
///   never a silently dropped row;
/// - texts longer than the model's limit are truncated (documented per back-end);
/// - the call is blocking; async callers use the back-end's own async method
///   (e.g. [`crate::OpenAiEmbedder::embed_async`]) or `spawn_blocking`.
pub trait TextEmbedder: Send + Sync {
    /// A stable id naming the model and everything that changes its vectors
    /// (part of the embedding store's key).
    fn model_id(&self) -> &str;
    /// Length of every output vector.
    fn dim(&self) -> usize;
    /// Embeds a batch of texts.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;
}

impl<T: TextEmbedder + ?Sized> TextEmbedder for Box<T> {
    fn model_id(&self) -> &str {
        (**self).model_id()
    }
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        (**self).embed(texts)
    }
}

impl<T: TextEmbedder + ?Sized> TextEmbedder for std::sync::Arc<T> {
    fn model_id(&self) -> &str {
        (**self).model_id()
    }
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        (**self).embed(texts)
    }
}

/// Fails on the first empty or whitespace-only text.
pub fn check_texts(texts: &[String]) -> Result<()> {
    match texts.iter().position(|t| t.trim().is_empty()) {
        Some(index) => Err(TextError::EmptyText { index }),
        None => Ok(()),
    }
}

/// A dense row-major `rows × dim` matrix of f32 (one embedding per row).
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    /// Builds from rows, checking that each has length `dim`.
    pub fn from_rows(rows: Vec<Vec<f32>>, dim: usize) -> Result<Self> {
        let n = rows.len();
        let mut data = Vec::with_capacity(n * dim);
        for (i, r) in rows.into_iter().enumerate() {
            if r.len() != dim {
                return Err(TextError::DimensionMismatch {
                    context: format!("embedding {i}"),
                    expected: dim,
                    found: r.len(),
                });
            }
            data.extend_from_slice(&r);
        }
        Ok(Self { rows: n, dim, data })
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Iterates over rows.
    pub fn iter_rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }
}

/// Embeds `texts` in chunks of `chunk`, calling `progress(done)` after each,
/// and checks the embedder's answer (count and dimension) for every chunk.
pub fn embed_all(
    embedder: &dyn TextEmbedder,
    texts: &[String],
    chunk: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Embeddings> {
    check_texts(texts)?;
    let dim = embedder.dim();
    let mut data = Vec::with_capacity(texts.len() * dim);
    let mut done = 0;
    for part in texts.chunks(chunk.max(1)) {
        let vecs = embedder.embed(part)?;
        if vecs.len() != part.len() {
            return Err(TextError::DimensionMismatch {
                context: format!("{} answer for texts {done}..", embedder.model_id()),
                expected: part.len(),
                found: vecs.len(),
            });
        }
        for (i, v) in vecs.iter().enumerate() {
            if v.len() != dim {
                return Err(TextError::DimensionMismatch {
                    context: format!("{} vector for text {}", embedder.model_id(), done + i),
                    expected: dim,
                    found: v.len(),
                });
            }
            data.extend_from_slice(v);
        }
        done += part.len();
        progress(done);
    }
    Ok(Embeddings {
        rows: texts.len(),
        dim,
        data,
    })
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += (*x as f64) * (*y as f64);
        aa += (*x as f64) * (*x as f64);
        bb += (*y as f64) * (*y as f64);
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        (ab / (aa.sqrt() * bb.sqrt())) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic toy embedder: letter counts.
    struct Letters;
    impl TextEmbedder for Letters {
        fn model_id(&self) -> &str {
            "letters"
        }
        fn dim(&self) -> usize {
            3
        }
        fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
            Ok(texts
                .iter()
                .map(|t| {
                    vec![
                        t.matches('a').count() as f32,
                        t.matches('b').count() as f32,
                        t.len() as f32,
                    ]
                })
                .collect())
        }
    }

    #[test]
    fn embed_all_chunks_and_reports_progress() {
        let texts: Vec<String> = ["a", "ab", "bbb", "aaaa", "b"].map(String::from).to_vec();
        let mut seen = vec![];
        let e = embed_all(&Letters, &texts, 2, &mut |d| seen.push(d)).unwrap();
        assert_eq!(seen, vec![2, 4, 5]);
        assert_eq!((e.rows, e.dim), (5, 3));
        assert_eq!(e.row(3), &[4.0, 0.0, 4.0]);
    }

    #[test]
    fn empty_texts_are_errors() {
        let texts: Vec<String> = ["a", "  \t", "b"].map(String::from).to_vec();
        let err = embed_all(&Letters, &texts, 2, &mut |_| {}).unwrap_err();
        assert!(matches!(err, TextError::EmptyText { index: 1 }), "{err}");
    }

    #[test]
    fn cosine_basics() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }
}
