//! Producing the semantic inputs a run names in its `[inputs]` table, so
//! that one command goes from raw data to results: the item text embedder is
//! fetched if missing, item texts are embedded, HSU runs (resuming its
//! store), and its final interests are embedded. Everything is cached by the
//! text and HSU stores, so a second run of the grid only reads files.

use std::path::{Path, PathBuf};

use hsuga_data::{DatasetConfig, Prepared};
use hsuga_hsu::{Engine, HsuConfig, ItemTemplate, Shard, Store};
use hsuga_text::{Embeddings, MiniLm, TextEmbedder, fetch, item_embeddings, template_for};
use hsuga_train::{InputsConfig, SemanticInputs, UserSemantic, item_mean};
use indicatif::{ProgressBar, ProgressStyle};

use crate::ExperimentError;

/// Where the producers find their models and configs.
pub struct InputDirs<'a> {
    pub cache_dir: &'a Path,
    /// Local model weights (fetched here when missing).
    pub models_dir: &'a Path,
    /// `hsu:<name>` resolves to `<hsu_configs>/<name>.toml`.
    pub hsu_configs: &'a Path,
}

fn err(what: &str, e: impl std::fmt::Display) -> ExperimentError {
    ExperimentError::Inputs(format!("{what}: {e}"))
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(&format!(
        "{{elapsed_precise}} {{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}})"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len as u64).with_style(style)
}

/// The item text embedder named by `inputs.item_text`. Only the in-process
/// MiniLM is built here: a grid must not depend on a server being up.
fn embedder(id: &str, dirs: &InputDirs<'_>) -> Result<MiniLm, ExperimentError> {
    if id != fetch::MINILM_L6_V2.name {
        return Err(ExperimentError::Inputs(format!(
            "inputs.item_text = {id:?}: experiments embed with the in-process `{}`; \
             for another embedder, embed with `hsuga embed items --backend openai` and \
             train single runs",
            fetch::MINILM_L6_V2.name
        )));
    }
    fetch::ensure(&fetch::MINILM_L6_V2, dirs.models_dir).map_err(|e| err("fetching MiniLM", e))?;
    MiniLm::load(dirs.models_dir).map_err(|e| err("loading MiniLM", e))
}

/// Loads or computes everything `inputs` names for one dataset.
pub fn semantic_inputs(
    inputs: &InputsConfig,
    dcfg: &DatasetConfig,
    prepared: &Prepared,
    dirs: &InputDirs<'_>,
) -> Result<SemanticInputs, ExperimentError> {
    let user_source = inputs.user_semantic()?;
    let Some(model) = inputs.item_text.as_deref() else {
        if user_source.is_some() {
            return Err(ExperimentError::Inputs(
                "inputs.user_semantic needs inputs.item_text (the embedder of the user texts)"
                    .into(),
            ));
        }
        return Ok(SemanticInputs::default());
    };
    let (item_text, embedder) = match model.strip_prefix("file:") {
        Some(path) => {
            let rows = Rows {
                want: prepared.dataset.num_items as usize,
                of: "items",
                dataset: &dcfg.name,
            };
            (supplied(path, "item", rows)?, None)
        }
        None => {
            let embedder = embedder(model, dirs)?;
            let template = template_for(dcfg).map_err(|e| err(&dcfg.name, e))?;
            let b = bar(prepared.dataset.num_items as usize, "item texts");
            let items = item_embeddings(
                &prepared.dataset,
                &template,
                &embedder,
                dirs.cache_dir,
                false,
                &mut |done, _| b.set_position(done as u64),
            )
            .map_err(|e| err(&format!("{} item embeddings", dcfg.name), e))?;
            b.finish_and_clear();
            (items.embeddings, Some(embedder))
        }
    };
    let user_semantic = match user_source {
        None => None,
        Some(UserSemantic::ItemMean) => Some(item_mean(&prepared.split, &item_text)),
        Some(UserSemantic::File(path)) => {
            let rows = Rows {
                want: prepared.split.num_users(),
                of: "users",
                dataset: &dcfg.name,
            };
            Some(supplied(&path, "user", rows)?)
        }
        Some(UserSemantic::Hsu(name)) => {
            let Some(embedder) = &embedder else {
                return Err(ExperimentError::Inputs(format!(
                    "inputs.user_semantic = \"hsu:{name}\" embeds the interests with the item \
                     text embedder, but inputs.item_text is a file; supply user embeddings \
                     as well (`file:users.safetensors`)"
                )));
            };
            Some(hsu_users(&name, dcfg, prepared, embedder, dirs)?)
        }
    };
    Ok(SemanticInputs {
        item_text: Some(item_text),
        user_semantic,
    })
}

/// How many rows a supplied matrix must have: one per item or user of the
/// dataset.
struct Rows<'a> {
    want: usize,
    of: &'a str,
    dataset: &'a str,
}

/// A matrix the user supplied, with its height checked on reading: the
/// trainer checks shapes too, but `item-mean` indexes the item matrix before
/// the trainer ever sees it, and the error should name the file.
fn supplied(path: &str, what: &str, rows: Rows<'_>) -> Result<Embeddings, ExperimentError> {
    let m = hsuga_text::read_matrix(Path::new(path))
        .map_err(|e| err(&format!("{what} embeddings"), e))?;
    if m.rows != rows.want {
        return Err(err(
            &format!("{what} embeddings {path}"),
            format!(
                "{} rows, but {} has {} {}",
                m.rows, rows.dataset, rows.want, rows.of
            ),
        ));
    }
    Ok(m)
}

/// Runs HSU under `<hsu_configs>/<name>.toml` over every user (resuming
/// the dataset's store), then embeds the final interests.
fn hsu_users(
    name: &str,
    dcfg: &DatasetConfig,
    prepared: &Prepared,
    embedder: &dyn TextEmbedder,
    dirs: &InputDirs<'_>,
) -> Result<Embeddings, ExperimentError> {
    let path: PathBuf = dirs.hsu_configs.join(format!("{name}.toml"));
    let resolved = HsuConfig::load(&path).map_err(|e| err(&path.display().to_string(), e))?;
    let template = ItemTemplate::for_dataset(dcfg)
        .map_err(|e| err(&format!("{} item template", dcfg.name), e))?;
    let users = hsuga_hsu::histories(&prepared.dataset, &prepared.split, &template);
    let lengths: Vec<usize> = prepared.split.train.iter().map(Vec::len).collect();
    let stage_length = resolved.cfg.stages.resolve(&lengths);
    let db = hsuga_hsu::store::default_path(dirs.cache_dir, &dcfg.name);
    let store = Store::open(&db).map_err(|e| err(&db.display().to_string(), e))?;
    let backend = hsuga_hsu::build_backend(&resolved.cfg.backend).map_err(|e| err(name, e))?;
    let engine = Engine::new(&resolved, backend.as_ref(), &store, stage_length);
    eprintln!(
        "hsu `{name}` on {}: {} users, stage length {stage_length}, back-end {}",
        dcfg.name,
        users.len(),
        backend.id()
    );
    let b = bar(users.len(), "users");
    let progress = |done: usize, _total: usize| b.set_position(done as u64);
    let report = engine
        .run(&users, Shard::ALL, Some(&progress))
        .map_err(|e| err(&format!("hsu `{name}`"), e))?;
    b.finish_and_clear();
    if report.users_failed > 0 {
        return Err(ExperimentError::Inputs(format!(
            "hsu `{name}`: {} users have unfinished stages ({}); rerun to resume",
            report.users_failed,
            report.errors.join("; ")
        )));
    }
    let users = hsuga_hsu::export::user_embeddings(
        &store,
        &resolved.cfg.variant,
        &prepared.dataset,
        embedder,
        dirs.cache_dir,
        &mut |_| {},
    )
    .map_err(|e| err(&format!("hsu `{name}` user embeddings"), e))?;
    Ok(users.embeddings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supplied_matrix_is_read_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.safetensors");
        let values: Vec<u8> = [1f32, 2., 3., 4., 5., 6.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 2], &values)
                .unwrap();
        safetensors::serialize_to_file([("anything", view)], None, &path).unwrap();
        let rows = |want| Rows {
            want,
            of: "users",
            dataset: "toy",
        };
        let m = supplied(path.to_str().unwrap(), "user", rows(3)).unwrap();
        assert_eq!((m.rows, m.dim), (3, 2));
        assert_eq!(m.row(2), &[5., 6.]);
        let e = supplied(path.to_str().unwrap(), "user", rows(4))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("items.safetensors") && e.contains("3 rows, but toy has 4 users"),
            "{e}"
        );
        std::fs::write(&path, b"not a tensor file").unwrap();
        let e = supplied(path.to_str().unwrap(), "item", rows(3))
            .unwrap_err()
            .to_string();
        assert!(e.contains("items.safetensors"), "{e}");
    }

    #[test]
    fn item_mean_uses_training_items_only_and_normalises() {
        let dcfg = DatasetConfig::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/datasets/ml-100k.toml"),
        )
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let p = hsuga_data::prepare(&dcfg, tmp.path()).unwrap();
        let n = p.dataset.num_items as usize;
        // One-hot item "embeddings": the user row is then the normalised
        // histogram of their training items.
        let mut data = vec![0f32; n * n];
        (0..n).for_each(|i| data[i * n + i] = 1.0);
        let items = Embeddings {
            rows: n,
            dim: n,
            data,
        };
        let users = item_mean(&p.split, &items);
        assert_eq!(users.rows, p.split.train.len());
        let u = 0;
        let row = users.row(u);
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        let test_item = p.split.test[u] as usize;
        if !p.split.train[u].contains(&(test_item as u32)) {
            assert_eq!(
                row[test_item - 1],
                0.0,
                "the test item leaked into the user view"
            );
        }
        let first = p.split.train[u][0] as usize;
        assert!(row[first - 1] > 0.0);
    }
}
