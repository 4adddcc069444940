//! `inputs.user_semantic = { hsu-hidden = "<config>" }` through the grid's
//! producer ([`semantic_inputs`]), which runs HSU through the same entry point
//! as `hsuga hsu` (`hsuga_hsu::run_dataset`).
//!
//! Issue 15: only the command asked the in-process LLM for hidden states, so
//! a grid run stored none and `hsu-hidden` could not be served.

use std::path::{Path, PathBuf};

use hsuga_data::{Dataset, DatasetConfig, Groups, ItemAttrs, PrepReport, Prepared, Split};
use hsuga_experiment::{InputDirs, semantic_inputs};
use hsuga_train::{InputsConfig, UserSemantic};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Three users of ML-100K titles; with stage length 2, alice and bob have
/// two stages (reasoning, then selection + edit), carol one.
fn tiny() -> (DatasetConfig, Prepared) {
    let dcfg = DatasetConfig::load(&repo().join("configs/datasets/ml-100k.toml")).unwrap();
    let movies: [(&str, &str, &[&str]); 6] = [
        ("Toy Story", "1995", &["Animation", "Children's", "Comedy"]),
        ("GoldenEye", "1995", &["Action", "Adventure", "Thriller"]),
        ("Heat", "1995", &["Action", "Crime", "Thriller"]),
        ("Babe", "1995", &["Children's", "Comedy", "Drama"]),
        ("Braveheart", "1995", &["Action", "Drama", "War"]),
        ("Apollo 13", "1995", &["Action", "Drama", "Thriller"]),
    ];
    let item_attrs = movies
        .iter()
        .map(|(t, y, g)| ItemAttrs {
            title: Some((*t).into()),
            year: Some((*y).into()),
            genres: g.iter().map(|s| (*s).into()).collect(),
            ..Default::default()
        })
        .collect();
    let train = vec![vec![1, 4, 2], vec![2, 3, 5, 6], vec![5]];
    let prepared = Prepared {
        dataset: Dataset {
            name: "tiny".into(),
            num_items: 6,
            sequences: train.clone(),
            user_ids: vec!["alice".into(), "bob".into(), "carol".into()],
            item_ids: (1..=6).map(|i| i.to_string()).collect(),
            item_attrs,
            report: PrepReport::default(),
        },
        split: Split {
            num_items: 6,
            train,
            valid: vec![3, 1, 2],
            test: vec![5, 4, 6],
        },
        groups: Groups {
            rule: String::new(),
            head_users: vec![false; 3],
            head_items: vec![false; 6],
        },
        key: "tiny".into(),
        dir: PathBuf::new(),
    };
    (dcfg, prepared)
}

fn hsu_hidden(name: &str) -> InputsConfig {
    InputsConfig {
        item_text: None,
        user_semantic: Some(UserSemantic::HsuHidden(name.into())),
    }
}

#[test]
fn hsu_hidden_with_a_back_end_without_hidden_states_fails_before_any_work() {
    let cache = tempfile::tempdir().unwrap();
    let (dcfg, prepared) = tiny();
    let dirs = InputDirs {
        cache_dir: cache.path(),
        models_dir: cache.path(),
        hsu_configs: &repo().join("configs/hsu"),
    };
    let Err(e) = semantic_inputs(&hsu_hidden("rules"), &dcfg, &prepared, &dirs) else {
        panic!("rules has no hidden states, yet hsu-hidden succeeded");
    };
    let e = e.to_string();
    assert!(
        e.contains("hsu `rules`") && e.contains("rules.toml") && e.contains("kind = \"local\""),
        "{e}"
    );
    // Nothing ran: no store was created.
    let store = hsuga_hsu::store::default_path(cache.path(), &dcfg.name);
    assert!(!store.exists(), "{}", store.display());
}

/// The real in-process SmolLM2 (fetched on first use, as the llm crate's
/// tests do), so the grid's hidden-state path runs end to end: the engine is
/// asked for hidden states, stores them, and the producer returns one
/// d = 576 row per user.
#[test]
fn hsu_hidden_on_the_in_process_llm_gives_one_hidden_state_row_per_user() {
    let cache = tempfile::tempdir().unwrap();
    let configs = tempfile::tempdir().unwrap();
    // The shipped local-small with retries, so that one unusable greedy
    // answer (which would keep the previous interests and store no hidden
    // state for that stage) does not decide the test.
    let shipped = std::fs::read_to_string(repo().join("configs/hsu/local-small.toml")).unwrap();
    let prompts = repo().join("configs/prompts/small.toml");
    let text = shipped
        .replace(
            "prompts = \"../prompts/small.toml\"",
            &format!("prompts = {:?}", prompts.display().to_string()),
        )
        .replace("max_attempts = 1", "max_attempts = 3")
        .replace("length = 10", "length = 2");
    assert!(
        text.contains("max_attempts = 3") && text.contains("length = 2"),
        "{text}"
    );
    std::fs::write(configs.path().join("local-test.toml"), text).unwrap();
    let (dcfg, prepared) = tiny();
    let dirs = InputDirs {
        cache_dir: cache.path(),
        models_dir: cache.path(),
        hsu_configs: configs.path(),
    };
    let got = semantic_inputs(&hsu_hidden("local-test"), &dcfg, &prepared, &dirs).unwrap();
    let users = got.user_semantic.expect("user embeddings");
    assert_eq!((users.rows, users.dim), (3, 576));
    for u in 0..3 {
        let row = users.row(u);
        assert!(row.iter().all(|v| v.is_finite()), "user {u}");
        assert!(row.iter().any(|&v| v != 0.0), "user {u}: zero row");
    }
    let store =
        hsuga_hsu::Store::open(&hsuga_hsu::store::default_path(cache.path(), &dcfg.name)).unwrap();
    let s = hsuga_hsu::stats(&store, "local-small").unwrap();
    assert_eq!(s.users_with_hidden_states, 3);
}
