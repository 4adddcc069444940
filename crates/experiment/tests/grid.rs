//! A small real grid on ML-100K: runs, tables, skipping finished runs, and
//! adopting them into another experiment.

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
[[methods]]
name = "GRU4Rec-tuned"
model = {{ backbone = "gru4rec", max_len = 20 }}
tune = {{ "train.lr" = [0.001, 0.01] }}
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
        // Side by side, one thread each: the path a 2-core machine takes.
        jobs: 2,
        only: &[],
        reuse_from: &[],
    };
    let tables = run(&cfg, &opts).unwrap();
    assert_eq!(tables.len(), 1);
    let t = &tables[0].table;
    assert_eq!(t.rows.len(), 4);
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
    // The tuned row reports the variant with the better validation mean.
    let valid_mean = |folder: &str| {
        [1, 2]
            .map(|seed| {
                let f = exp.join(format!("ml-100k/{folder}/seed-{seed}/report.json"));
                let r: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
                r["valid"]["values"]["NDCG@10"].as_f64().unwrap()
            })
            .iter()
            .sum::<f64>()
    };
    let (slow, fast) = (
        valid_mean("GRU4Rec-tuned@lr=0.001"),
        valid_mean("GRU4Rec-tuned@lr=0.01"),
    );
    let chosen = if fast > slow { "lr=0.01" } else { "lr=0.001" };
    let tuning = std::fs::read_to_string(exp.join("ml-100k/tuning.md")).unwrap();
    assert!(
        tuning.contains(&format!("| GRU4Rec-tuned | **{chosen}** |")),
        "{tuning}"
    );
    let md = std::fs::read_to_string(exp.join("results.md")).unwrap();
    assert!(md.contains("| SASRec |"), "{md}");
    assert!(md.contains("](ml-100k/plots/width.svg)"), "{md}");

    // Everything finished: a second run trains nothing (the checkpoints are
    // untouched) and reports the same table.
    let ckpt = exp.join("ml-100k/SASRec/seed-1/best.bpk");
    let before = std::fs::metadata(&ckpt).unwrap().modified().unwrap();
    let again = run(&cfg, &opts).unwrap();
    assert_eq!(
        std::fs::metadata(&ckpt).unwrap().modified().unwrap(),
        before
    );
    assert_eq!(again[0].table, tables[0].table);
    assert_eq!(report(&exp).unwrap()[0].table, tables[0].table);

    // Side-by-side runs stay reproducible: the same grid in a fresh folder
    // gives the same numbers, whichever run initialised first.
    let mut fresh = cfg.clone();
    fresh.out_dir = tmp.path().join("again").display().to_string();
    assert_eq!(run(&fresh, &opts).unwrap()[0].table, tables[0].table);

    // A row repeating a finished run of another experiment under another
    // name is copied, not trained, and reports the same numbers.
    let mut copy = cfg.clone();
    copy.name = "copy".into();
    copy.base = None;
    copy.plots.clear();
    copy.methods.retain(|m| m.name == "SASRec");
    copy.methods[0].name = "Transformer".into();
    let reuse = [out.clone()];
    let adopted = run(
        &copy,
        &RunOptions {
            reuse_from: &reuse,
            ..opts
        },
    )
    .unwrap();
    for seed in [1, 2] {
        let from = out.join(format!(
            "copy/ml-100k/Transformer/seed-{seed}/adopted-from.txt"
        ));
        let from = std::fs::read_to_string(from).unwrap();
        assert!(
            from.contains(&format!("mini/ml-100k/SASRec/seed-{seed}")),
            "{from}"
        );
    }
    let means = |row: &hsuga_eval::table::Row| row.cells.iter().map(|c| c.mean).collect::<Vec<_>>();
    let sasrec = tables[0]
        .table
        .rows
        .iter()
        .find(|r| r.method == "SASRec")
        .unwrap();
    assert_eq!(means(&adopted[0].table.rows[0]), means(sasrec));
}
