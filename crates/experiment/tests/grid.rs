//! A small real grid on ML-100K: runs, tables, and skipping finished runs.

use std::path::{Path, PathBuf};

use hsuga_experiment::{ExperimentConfig, RunOptions, report, run};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn grid_runs_once_then_skips_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let text = format!(
        r#"
name = "mini"
datasets = ["ml-100k"]
seeds = [1, 2]
base = "GRU4Rec"
out_dir = "{}"
[train]
epochs = 2
patience = 5
[[methods]]
name = "GRU4Rec"
model = {{ backbone = "gru4rec", max_len = 20 }}
[[methods]]
name = "SASRec"
model = {{ backbone = "sasrec", max_len = 20 }}
[[methods]]
name = "SASRec-wide"
model = {{ backbone = "sasrec", max_len = 20, hidden = 32 }}
[[plots]]
name = "width"
x_label = "hidden size"
points = {{ "SASRec" = 64, "SASRec-wide" = 32 }}
"#,
        out.display()
    );
    let cfg: ExperimentConfig = toml::from_str(&text).unwrap();
    let datasets = repo().join("configs/datasets");
    let resolve = |name: &str| Ok(datasets.join(format!("{name}.toml")));
    let opts = RunOptions {
        cache_dir: &tmp.path().join("cache"),
        models_dir: &tmp.path().join("models"),
        hsu_configs: &repo().join("configs/hsu"),
        resolve_dataset: &resolve,
        progress: false,
    };
    let tables = run(&cfg, &opts).unwrap();
    assert_eq!(tables.len(), 1);
    let t = &tables[0].table;
    assert_eq!(t.rows.len(), 3);
    assert_eq!(t.rows[1].seeds, vec![1, 2]);
    let exp = out.join("mini");
    for f in [
        "results.md",
        "ml-100k/table.md",
        "ml-100k/table.csv",
        "ml-100k/table.json",
    ] {
        assert!(exp.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(exp.join("results.md")).unwrap();
    assert!(md.contains("| SASRec |"), "{md}");
    assert!(md.contains("](ml-100k/plots/width.svg)"), "{md}");

    // Everything finished: a second run trains nothing (the checkpoints are
    // untouched) and reports the same table.
    let ckpt = exp.join("ml-100k/SASRec/seed-1/last.safetensors");
    let before = std::fs::metadata(&ckpt).unwrap().modified().unwrap();
    let again = run(&cfg, &opts).unwrap();
    assert_eq!(
        std::fs::metadata(&ckpt).unwrap().modified().unwrap(),
        before
    );
    assert_eq!(again[0].table, tables[0].table);
    assert_eq!(
        report(&exp, &tmp.path().join("cache")).unwrap()[0].table,
        tables[0].table
    );
}
