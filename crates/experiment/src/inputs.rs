//! Producing the semantic inputs a run names in its `[inputs]` table, so
//! that one command goes from raw data to results: the item text embedder is
//! fetched if missing, item texts are embedded, HSU runs (resuming its
//! store), and its final interests are embedded. Everything is cached by the
//! text and HSU stores, so a second run of the grid only reads files.

use std::path::{Path, PathBuf};

use hsuga_data::{DatasetConfig, Prepared};
use hsuga_hsu::{DatasetRun, HiddenStates, HsuConfig};
use hsuga_text::{Embeddings, MiniLm, TextEmbedder, fetch, item_embeddings, template_for};
use hsuga_train::{InputsConfig, ItemText, SemanticInputs, UserSemantic, item_mean};
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

/// Loads or computes everything `inputs` names for one dataset. The
/// combination was checked when the config was loaded
/// ([`InputsConfig::validate`]).
pub fn semantic_inputs(
    inputs: &InputsConfig,
    dcfg: &DatasetConfig,
    prepared: &Prepared,
    dirs: &InputDirs<'_>,
) -> Result<SemanticInputs, ExperimentError> {
    let (item_text, embedder) = match &inputs.item_text {
        None => (None, None),
        Some(ItemText::File(path)) => {
            let rows = Rows {
                want: prepared.dataset.num_items as usize,
                of: "items",
                dataset: &dcfg.name,
            };
            (Some(supplied(path, "item", rows)?), None)
        }
        Some(ItemText::Embedder(model)) => {
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
            (Some(items.embeddings), Some(embedder))
        }
    };
    let needs = |what: &str| {
        ExperimentError::Inputs(format!(
            "inputs.user_semantic = {what} needs inputs.item_text to name an embedder"
        ))
    };
    let user_semantic = match &inputs.user_semantic {
        None => None,
        Some(UserSemantic::ItemMean) => Some(item_mean(
            &prepared.split,
            item_text.as_ref().ok_or_else(|| needs("\"item-mean\""))?,
        )),
        Some(UserSemantic::File(path)) => {
            let rows = Rows {
                want: prepared.split.num_users(),
                of: "users",
                dataset: &dcfg.name,
            };
            Some(supplied(path, "user", rows)?)
        }
        Some(UserSemantic::Hsu(name)) => {
            let embedder = embedder.as_ref().ok_or_else(|| needs("{ hsu = … }"))?;
            Some(hsu_users(name, dcfg, prepared, Some(embedder), dirs)?)
        }
        Some(UserSemantic::HsuHidden(name)) => Some(hsu_users(name, dcfg, prepared, None, dirs)?),
    };
    Ok(SemanticInputs {
        item_text,
        user_semantic,
        // A trained run's items, added per run by the runner.
        pretrained_items: None,
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
/// the dataset's store) through the one entry point the `hsuga hsu` command
/// uses ([`hsuga_hsu::run_dataset`]), then embeds the final interests with
/// `embedder`, or, without one, reads the in-process LLM's hidden-state
/// means (asked for on every call, and an error before any work when the
/// config's back-end has none).
fn hsu_users(
    name: &str,
    dcfg: &DatasetConfig,
    prepared: &Prepared,
    embedder: Option<&dyn TextEmbedder>,
    dirs: &InputDirs<'_>,
) -> Result<Embeddings, ExperimentError> {
    let path: PathBuf = dirs.hsu_configs.join(format!("{name}.toml"));
    let resolved = HsuConfig::load(&path).map_err(|e| err(&path.display().to_string(), e))?;
    let db = hsuga_hsu::store::default_path(dirs.cache_dir, &dcfg.name);
    let b = bar(0, "users");
    let on_start = |p: &hsuga_hsu::Plan| {
        b.suspend(|| {
            eprintln!(
                "hsu `{name}` on {}: {} users, stage length {}, back-end {}",
                dcfg.name, p.users, p.stage_length, p.backend
            );
        });
        b.set_length(p.users as u64);
    };
    let progress = |done: usize, _total: usize| b.set_position(done as u64);
    let mut req = DatasetRun::new(&resolved, dcfg, prepared, &db);
    if embedder.is_none() {
        req.hidden = HiddenStates::Required;
    }
    req.on_start = Some(&on_start);
    req.progress = Some(&progress);
    let done = hsuga_hsu::run_dataset(&req).map_err(|e| err(&format!("hsu `{name}`"), e))?;
    b.finish_and_clear();
    let report = &done.run;
    if report.users_pending > 0 {
        return Err(ExperimentError::Inputs(format!(
            "hsu `{name}`: {} users have unfinished stages ({}); rerun to resume",
            report.users_pending,
            report.errors.join("; ")
        )));
    }
    if report.users_failed > 0 {
        // Retried up to `engine.max_stage_runs` runs: what is left is the
        // back-end's answer, kept (as the paper's code does) with the
        // previous interests, and said out loud rather than trained on unseen.
        eprintln!(
            "warning: hsu `{name}`: {} of {} users kept earlier interests after unusable \
             answers in some stage (`hsuga hsu stats` lists them; `hsuga hsu --retry-failed` \
             recomputes them)",
            report.users_failed, report.users
        );
    }
    let Some(embedder) = embedder else {
        let h = hsuga_hsu::hidden_user_embeddings(
            &done.store,
            &resolved.cfg.variant,
            &prepared.dataset.user_ids,
        )
        .map_err(|e| err(&format!("hsu `{name}` hidden states"), e))?;
        return Ok(Embeddings {
            rows: prepared.dataset.user_ids.len(),
            dim: h.dim,
            data: h.data,
        });
    };
    let users = hsuga_hsu::export::user_embeddings(
        &done.store,
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
    use hsuga_data::Phase;

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
        // Every user whose held-out items are not also training items: their
        // columns must be zero. (Checking one user could pass vacuously.)
        let mut checked = 0;
        for u in 0..p.split.num_users() {
            let row = users.row(u);
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "user {u} not normalised");
            let held_out = [Phase::Valid, Phase::Test].map(|ph| p.split.target(ph, u));
            for held in held_out.into_iter().flatten() {
                if !p.split.train[u].contains(&held) {
                    assert_eq!(row[held as usize - 1], 0.0, "user {u}: item {held} leaked");
                    checked += 1;
                }
            }
        }
        assert!(
            checked > p.split.num_users(),
            "only {checked} held-out items checked"
        );
        let u = 0;
        let row = users.row(u);
        let first = p.split.train[u][0] as usize;
        assert!(row[first - 1] > 0.0);
    }
}
