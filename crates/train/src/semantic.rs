//! The semantic matrices a run reads, handed in by the caller (the train
//! crate never loads another crate's files): item text embeddings and user
//! semantic embeddings, checked against the split and the method before
//! training starts; LLMInit's PCA of the item text; and the item table of a
//! trained run that a method reads ([`pretrained_items`], LLMEmb's `E_srs`).

use std::path::Path;

use hsuga_data::Split;
use hsuga_model::{Backbone, SequenceEncoder};
use sha2::{Digest, Sha256};

use crate::config::{ItemInit, MethodConfig, RunConfig};
use crate::error::TrainError;

/// A row-major `rows × dim` matrix (the text crate's embedding type).
pub use hsuga_text::Embeddings as Matrix;

/// LLM-ESR's cheap user view (`inputs.user_semantic = "item-mean"`): the
/// L2-normalised mean of the text rows of each user's training items, so
/// validation and test items never enter. One row per user, split order.
pub fn item_mean(split: &Split, items: &Matrix) -> Matrix {
    let dim = items.dim;
    let mut data = Vec::with_capacity(split.num_users() * dim);
    for seq in &split.train {
        let mut row = vec![0f32; dim];
        for &i in seq {
            for (r, v) in row.iter_mut().zip(items.row(i as usize - 1)) {
                *r += v;
            }
        }
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
        data.extend(row);
    }
    Matrix {
        rows: split.num_users(),
        dim,
        data,
    }
}

/// Semantic inputs of one run. `SemanticInputs::default()` is "none", which
/// is all a plain backbone needs.
#[derive(Debug, Clone, Default)]
pub struct SemanticInputs {
    /// `num_items` rows; row `i - 1` is internal item id `i`.
    pub item_text: Option<Matrix>,
    /// One row per user, in the split's user order.
    pub user_semantic: Option<Matrix>,
    /// `num_items × hidden` item rows of the trained run named by
    /// `method.pretrained` (row `i - 1` = item `i`): LLMEmb's `E_srs`.
    pub pretrained_items: Option<Matrix>,
}

impl SemanticInputs {
    /// A digest of the matrices' exact values. A run folder records it when
    /// training starts and refuses to resume on other inputs: `hsu:<config>`
    /// or an embedder names where inputs come from, not what they hold, and
    /// a changed HSU or embedding setting would otherwise mix two inputs
    /// into one run without a trace.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (tag, m) in [
            ("item_text", &self.item_text),
            ("user_semantic", &self.user_semantic),
            ("pretrained_items", &self.pretrained_items),
        ] {
            let Some(m) = m else { continue };
            h.update(tag.as_bytes());
            h.update((m.rows as u64).to_le_bytes());
            h.update((m.dim as u64).to_le_bytes());
            for chunk in m.data.chunks(1 << 14) {
                let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
                h.update(&bytes);
            }
        }
        format!("{:x}", h.finalize())
    }
}

fn check_shape(m: &Matrix, what: &str, rows: usize, of: &str) -> Result<(), TrainError> {
    if m.dim == 0 || m.data.len() != m.rows * m.dim {
        return Err(TrainError::Inputs(format!(
            "{what}: {} values do not form {} rows of dimension {}",
            m.data.len(),
            m.rows,
            m.dim
        )));
    }
    if m.rows != rows {
        return Err(TrainError::Inputs(format!(
            "{what} has {} rows but the dataset has {rows} {of}",
            m.rows
        )));
    }
    if let Some(i) = m.data.iter().position(|v| !v.is_finite()) {
        return Err(TrainError::Inputs(format!(
            "{what}: value at row {}, column {} is not finite",
            i / m.dim,
            i % m.dim
        )));
    }
    Ok(())
}

impl SemanticInputs {
    /// Checks that the method has the matrices it needs, with the split's
    /// counts, and that its neighbour counts fit the number of users.
    pub fn check(
        &self,
        method: &MethodConfig,
        hidden: usize,
        split: &Split,
    ) -> Result<(), TrainError> {
        let items = split.num_items as usize;
        let users = split.num_users();
        if method.needs_item_text() {
            let m = self.item_text.as_ref().ok_or_else(|| {
                TrainError::Inputs(
                    "the method (item_init = \"pca\" or dual_view) needs item text embeddings, \
                     none were given"
                        .into(),
                )
            })?;
            check_shape(m, "item text embeddings", items, "items")?;
            if method.item_init == ItemInit::Pca && (m.dim < hidden || items < hidden) {
                return Err(TrainError::Inputs(format!(
                    "PCA to hidden size {hidden} needs at least {hidden} items and dimensions, \
                     item text is {items} × {}",
                    m.dim
                )));
            }
        }
        if method.needs_user_semantic() {
            let m = self.user_semantic.as_ref().ok_or_else(|| {
                TrainError::Inputs(
                    "the method (distill or fusion) needs user semantic embeddings, none were given"
                        .into(),
                )
            })?;
            check_shape(m, "user semantic embeddings", users, "users")?;
        }
        if method.needs_pretrained() {
            let m = self.pretrained_items.as_ref().ok_or_else(|| {
                TrainError::Inputs(
                    "the method (llmemb) reads the item table of the run named by \
                     method.pretrained; none was given"
                        .into(),
                )
            })?;
            check_shape(m, "pretrained item table", items, "items")?;
            if m.dim != hidden {
                return Err(TrainError::Inputs(format!(
                    "the pretrained item table has dimension {}, this model hidden size {hidden}",
                    m.dim
                )));
            }
        }
        if let Some(d) = &method.distill {
            d.retrieval()
                .validate(users)
                .map_err(|e| TrainError::Inputs(format!("method.distill: {e}")))?;
        }
        Ok(())
    }
}

/// LLMInit's collaborative rows: the item text projected on its top
/// `hidden` principal components, rescaled so that the table's standard
/// deviation equals the backbone's Xavier-normal one, `√(2 / (V + H))`.
///
/// The rescaling is ours: LLM-ESR copies the raw PCA coordinates, whose
/// scale follows the embedder (≈1 per coordinate for random Gaussian
/// vectors, ≈0.1 for MiniLM); rescaling keeps the PCA geometry and gives
/// every embedder the scale the backbone was tuned at.
pub fn pca_rows(text: &Matrix, hidden: usize, vocab: usize) -> Result<Vec<f32>, TrainError> {
    let (mut y, _) =
        hsuga_text::pca(text, hidden).map_err(|e| TrainError::Inputs(format!("LLMInit: {e}")))?;
    let n = y.data.len() as f64;
    let mean = y.data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = y
        .data
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let target = (2.0 / (vocab + hidden) as f64).sqrt();
    let scale = if var > 0.0 { target / var.sqrt() } else { 0.0 };
    y.data
        .iter_mut()
        .for_each(|v| *v = (*v as f64 * scale) as f32);
    Ok(y.data)
}

/// The item table (`num_items × hidden`, row `i - 1` = item `i`) of the
/// finished run in `dir`, whose resolved config is `stored`, read from its
/// best checkpoint with [`crate::load_best`]: LLMEmb's `E_srs`. The run
/// must be a SASRec with an ID item table and the caller's hidden size; the
/// catalogue size is checked by the checkpoint's tag. Whether it ran on the
/// same dataset is the caller's check (it knows how dataset entries
/// resolve). Every error names `method.pretrained` and the folder.
pub fn pretrained_items(
    stored: &RunConfig,
    dir: &Path,
    num_items: u32,
    hidden: usize,
) -> Result<Matrix, TrainError> {
    let fail = |msg: String| {
        TrainError::Inputs(format!(
            "method.pretrained = {{ run = \"{}\" }}: {msg}",
            dir.display()
        ))
    };
    if stored.model.kind() != Backbone::Sasrec || stored.method.text_items() {
        return Err(fail(format!(
            "is a {} run{}; LLMEmb aligns to the ID item table of a trained SASRec",
            stored.model.kind().name(),
            if stored.method.text_items() {
                " whose items come from text"
            } else {
                ""
            }
        )));
    }
    if stored.model.hidden != hidden {
        return Err(fail(format!(
            "has model.hidden = {}, this run {hidden}: they must match",
            stored.model.hidden
        )));
    }
    let model = crate::load_best(
        &stored.model,
        &stored.method,
        &SemanticInputs::default(),
        num_items,
        dir,
        &hsuga_model::cpu(),
    )
    .map_err(|e| fail(format!("its best checkpoint: {e}")))?;
    let n = num_items as usize;
    let rows = model.encoder.item_table().narrow(0, 1, n); // [N, H]
    Ok(Matrix {
        rows: n,
        dim: hidden,
        data: hsuga_model::to_f32(rows),
    })
}
