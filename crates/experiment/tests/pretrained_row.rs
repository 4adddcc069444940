//! A grid row that reads another row's trained run (`method.pretrained = {
//! row = … }`, LLMEmb's `E_srs`): the source row trains first, even with
//! two runs at a time, the reader's resolved config records the source's
//! folder, and a single run naming a folder it cannot read fails before
//! training, naming the key and the folder.

use std::path::{Path, PathBuf};

use hsuga_experiment::{ExperimentConfig, InputDirs, RunOptions, run, train_one};

/// Random item "text" for ML-100K in a safetensors file (no model download).
fn item_text(dir: &Path, rows: usize, dim: usize) -> PathBuf {
    let values: Vec<u8> = (0..rows * dim)
        .flat_map(|i| (((i * 7919) % 997) as f32 / 997.0 - 0.5).to_le_bytes())
        .collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![rows, dim], &values)
            .unwrap();
    let path = dir.join("items.safetensors");
    safetensors::serialize_to_file([("items", view)], None, &path).unwrap();
    path
}

fn resolve(entry: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(entry);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("no dataset {entry}"))
    }
}

#[test]
fn a_row_reading_another_rows_run_trains_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let dataset = configs.join("datasets/ml-100k.toml");
    let dcfg = hsuga_data::DatasetConfig::load(&dataset).unwrap();
    let cache = tmp.path().join("cache");
    let p = hsuga_data::prepare(&dcfg, &cache).unwrap();
    let text = item_text(tmp.path(), p.dataset.num_items as usize, 16);
    let out = tmp.path().join("runs");
    let grid = format!(
        "name = \"t\"\ndatasets = [\"{}\"]\nseeds = [42]\nout_dir = \"{}\"\n\
         [train]\nepochs = 1\nprogress = false\n\
         [[methods]]\nname = \"LLMEmb\"\nmodel = {{ max_len = 10 }}\n\
         method = {{ llmemb = {{}}, pretrained = {{ row = \"SASRec\" }} }}\n\
         inputs = {{ item_text = {{ file = \"{}\" }} }}\n\
         [[methods]]\nname = \"SASRec\"\nmodel = {{ max_len = 10 }}\n",
        dataset.display(),
        out.display(),
        text.display()
    );
    let cfg = ExperimentConfig::parse(&grid).unwrap();
    let opts = RunOptions {
        cache_dir: &cache,
        models_dir: tmp.path(),
        hsu_configs: &configs.join("hsu"),
        resolve_dataset: &resolve,
        progress: false,
        // Both runs at once unless the reader waits for its source.
        jobs: 2,
        only: &[],
        reuse_from: &[],
    };
    run(&cfg, &opts).unwrap();
    let runs = out.join("t/ml-100k");
    let source = runs.join("SASRec/seed-42");
    let reader = runs.join("LLMEmb/seed-42");
    assert!(hsuga_experiment::is_finished(&source));
    let (stored, _) = hsuga_experiment::read_finished(&reader).unwrap();
    assert_eq!(
        stored.method.pretrained,
        Some(hsuga_train::Pretrained::Run(source.display().to_string()))
    );

    // A single run naming an unfinished folder: refused before training.
    let missing = runs.join("nowhere/seed-42");
    let mut single = stored.clone();
    single.name = "single".into();
    single.out_dir = tmp.path().join("single").display().to_string();
    single.method.pretrained = Some(hsuga_train::Pretrained::Run(missing.display().to_string()));
    let e = train_one(
        &single,
        &InputDirs {
            cache_dir: &cache,
            models_dir: tmp.path(),
            hsu_configs: &configs.join("hsu"),
        },
        &resolve,
        Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("method.pretrained") && e.contains(&missing.display().to_string()),
        "{e}"
    );
    let folder = hsuga_experiment::run_dir(&single);
    assert!(
        !folder.join("best.bpk").exists(),
        "nothing trained: {}",
        folder.display()
    );
    // The same with a run of another hidden size.
    let mut wide = stored;
    wide.name = "wide".into();
    wide.model.hidden = 32;
    wide.out_dir = tmp.path().join("single").display().to_string();
    let e = train_one(
        &wide,
        &InputDirs {
            cache_dir: &cache,
            models_dir: tmp.path(),
            hsu_configs: &configs.join("hsu"),
        },
        &resolve,
        Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("method.pretrained") && e.contains("model.hidden = 64"),
        "{e}"
    );
}
