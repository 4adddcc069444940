//! Every dataset config shipped under configs/datasets parses and passes
//! validation (without fetching anything), and every file it downloads
//! states its sha256, or says "unpublished" on purpose: a forgotten hash
//! fails here, not on a user's first download.

use std::path::Path;

use hsuga_data::{DatasetConfig, UNPUBLISHED};

#[test]
fn shipped_dataset_configs_parse_and_state_their_hashes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/datasets");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let cfg = DatasetConfig::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            path.file_stem().unwrap().to_string_lossy(),
            cfg.name,
            "{}: the file is named after the dataset",
            path.display()
        );
        let Some(src) = &cfg.source else {
            names.push(cfg.name);
            continue;
        };
        for f in &src.files {
            let downloaded = f.url.is_some() && f.member.is_none();
            assert!(
                !downloaded || f.sha256.is_some(),
                "{}: {} gives no sha256 (write sha256 = \"{UNPUBLISHED}\" if none is published)",
                path.display(),
                f.path.display()
            );
        }
        for a in &src.archives {
            assert!(
                a.sha256.is_some(),
                "{}: archive {} gives no sha256",
                path.display(),
                a.url
            );
        }
        names.push(cfg.name);
    }
    names.sort();
    for raw in [
        "ml-1m",
        "amazon2014-beauty",
        "amazon2018-fashion",
        "steam-reviews",
    ] {
        assert!(names.iter().any(|n| n == raw), "no {raw} in {names:?}");
    }
}
