//! CITIES end to end on ML-100K through a grid: a tiny SASRec row trains
//! first, the CITIES row (`pretrained = { row = "SASRec" }`) starts from
//! its run and writes a normal run folder (config, report, ranks, best
//! checkpoint, `cities.json`) that reads back like any run. Bad input
//! fails before anything trains, naming the row and the key: a CITIES row
//! whose `[model]` differs from its source row's, a pretrained run that is
//! missing, and one from another dataset.

use std::path::{Path, PathBuf};

use hsuga_eval::{Column, Metric};
use hsuga_experiment::{ExperimentConfig, InputDirs, RunOptions, run, train_one};
use hsuga_train::{Pretrained, RunConfig};

fn resolve(entry: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(entry);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("no dataset {entry}"))
    }
}

/// A grid of a SASRec row and a CITIES row reading it; `cities_model` is
/// the CITIES row's `[model]`.
fn grid(dataset: &Path, out: &Path, cities_model: &str) -> String {
    format!(
        "name = \"t\"\ndatasets = [\"{}\"]\nseeds = [42]\nout_dir = \"{}\"\n\
         [train]\nepochs = 2\nprogress = false\n\
         [[methods]]\nname = \"SASRec\"\nmodel = {{ max_len = 10 }}\n\
         [[methods]]\nname = \"CITIES\"\nmodel = {cities_model}\n\
         method = {{ cities = {{ half_window = 4, max_shots = 3, batch_size = 64, lr = 1e-3, \
         warmup_steps = 10, epochs = 2 }}, pretrained = {{ row = \"SASRec\" }} }}\n",
        dataset.display(),
        out.display(),
    )
}

fn single(stored: &RunConfig, name: &str, tmp: &Path) -> RunConfig {
    let mut c = stored.clone();
    c.name = name.into();
    c.out_dir = tmp.join("single").display().to_string();
    c
}

#[test]
fn cities_row_runs_after_its_backbone_row_and_refuses_bad_sources() {
    let t0 = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let dataset = configs.join("datasets/ml-100k.toml");
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("runs");

    // Another [model] than its source row's: refused when the grid is read.
    let bad = ExperimentConfig::parse(&grid(&dataset, &out, "{ max_len = 20 }"))
        .unwrap()
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("method `CITIES`")
            && bad.contains("method.pretrained")
            && bad.contains("model.max_len: 10 → 20"),
        "{bad}"
    );

    let cfg = ExperimentConfig::parse(&grid(&dataset, &out, "{ max_len = 10 }")).unwrap();
    let opts = RunOptions {
        cache_dir: &cache,
        models_dir: tmp.path(),
        hsu_configs: &configs.join("hsu"),
        resolve_dataset: &resolve,
        progress: false,
        jobs: 2,
        only: &[],
        reuse_from: &[],
    };
    let tables = run(&cfg, &opts).unwrap();
    let runs = out.join("t/ml-100k");
    let source = runs.join("SASRec/seed-42");
    let reader = runs.join("CITIES/seed-42");
    let (stored, report) = hsuga_experiment::read_finished(&reader).unwrap();
    assert_eq!(
        stored.method.pretrained,
        Some(Pretrained::Run(source.display().to_string()))
    );
    for f in [
        "best.bpk",
        "ranks.csv",
        "result.json",
        "cities.json",
        "log.csv",
    ] {
        assert!(reader.join(f).is_file(), "{f} missing");
    }
    let (_, base) = hsuga_experiment::read_finished(&source).unwrap();
    let tail = |r: &hsuga_experiment::RunReport| {
        r.groups[0].1.get(Column::TailItem, Metric::Hr(10)).unwrap()
    };
    eprintln!(
        "grid on ML-100K, seed 42 (SASRec max_len 10, 2 epochs; CITIES f 2 epochs, 4 items a \
         side): test HR@10 SASRec {:.4}, CITIES {:.4}; tail-item HR@10 {:.4} → {:.4} ({} \
         table(s), {:.1} s)",
        base.test[0].get(Metric::Hr(10)),
        report.test[0].get(Metric::Hr(10)),
        tail(&base),
        tail(&report),
        tables.len(),
        t0.elapsed().as_secs_f64()
    );

    let dirs = InputDirs {
        cache_dir: &cache,
        models_dir: tmp.path(),
        hsu_configs: &configs.join("hsu"),
    };
    // A pretrained folder without a run.
    let mut missing = single(&stored, "missing", tmp.path());
    let nowhere = runs.join("nowhere/seed-42");
    missing.method.pretrained = Some(Pretrained::Run(nowhere.display().to_string()));
    let e = train_one(&missing, &dirs, &resolve, Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("method `missing`")
            && e.contains("method.pretrained")
            && e.contains(&nowhere.display().to_string()),
        "{e}"
    );
    assert!(
        !hsuga_experiment::run_dir(&missing)
            .join("best.bpk")
            .exists()
    );

    // The same data under another dataset name: another dataset.
    let text = std::fs::read_to_string(&dataset).unwrap().replace(
        "name = \"ml-100k\"\ndata_dir = \"../../../shared/data/ml-100k\"",
        &format!(
            "name = \"ml-100k-copy\"\ndata_dir = \"{}\"",
            configs.join("../../shared/data/ml-100k").display()
        ),
    );
    assert!(text.contains("ml-100k-copy"));
    let other = tmp.path().join("ml-100k-copy.toml");
    std::fs::write(&other, text).unwrap();
    let mut elsewhere = single(&stored, "elsewhere", tmp.path());
    elsewhere.dataset = other.display().to_string();
    let e = train_one(&elsewhere, &dirs, &resolve, Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("method `elsewhere`")
            && e.contains("method.pretrained")
            && e.contains("this run is on `ml-100k-copy`"),
        "{e}"
    );
    assert!(
        !hsuga_experiment::run_dir(&elsewhere)
            .join("best.bpk")
            .exists()
    );
}
