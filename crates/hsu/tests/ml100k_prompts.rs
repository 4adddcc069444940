//! What the LLM is shown, on real data: HSU prompts built through the crate's
//! entry point (`histories` from a prepared split, then [`Engine::run`]) on
//! ML-100K (`../shared/data/ml-100k`, prepared by hsuga-data), with the
//! shipped `configs/hsu/rules.toml` answered by the rules editor behind a
//! back-end that records every request.
//!
//! Issue 15: no test checked that a user's validation and test items stay
//! out of the prompts (the engine tests build histories by hand), and the
//! item text in prompts came from a second renderer that treated missing
//! fields otherwise than the embedder's.

use std::path::{Path, PathBuf};

use hsuga_data::{
    Dataset, DatasetConfig, ItemAttrs, PrepReport, Prepared, Split, TextConfig, prepare,
};
use hsuga_hsu::{Engine, HsuConfig, ItemTemplate, Shard, Store, UserHistory, histories};
use hsuga_llm::rules::RulesEditor;
use hsuga_llm::scripted::Scripted;
use hsuga_llm::{ChatBackend, ChatRequest};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The rules editor, recording every request it is sent.
fn recording() -> Scripted {
    let rules = RulesEditor::default();
    Scripted::new(move |req, _| rules.chat(req).map(|r| r.text))
}

/// The item texts of every history line in `requests` (the prompt sets'
/// `history_line` is `No.{order} {item}`), each line once per request.
fn shown_items(requests: &[ChatRequest]) -> Vec<String> {
    let mut out = Vec::new();
    for r in requests {
        for m in &r.messages {
            for line in m.content.lines() {
                let Some(rest) = line.trim().strip_prefix("No.") else {
                    continue;
                };
                let digits =
                    rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                if digits > 0 && rest[digits..].starts_with(' ') {
                    out.push(rest[digits + 1..].to_string());
                }
            }
        }
    }
    out
}

/// Runs HSU for one user on its own, so that every request recorded is theirs.
fn prompts_for(engine: &Engine<'_>, backend: &Scripted, user: &UserHistory) -> Vec<ChatRequest> {
    backend.reset();
    let report = engine
        .run(std::slice::from_ref(user), Shard::ALL, None)
        .unwrap();
    assert_eq!(report.stages_failed, 0, "{report:?}");
    backend.requests()
}

#[test]
fn hsu_prompts_on_ml100k_never_show_a_users_validation_or_test_item() {
    let cache = tempfile::tempdir().unwrap();
    let dcfg = DatasetConfig::load(&repo().join("configs/datasets/ml-100k.toml")).unwrap();
    let Prepared { dataset, split, .. } = prepare(&dcfg, cache.path()).unwrap();
    let template = ItemTemplate::for_dataset(&dcfg).unwrap();
    let users = histories(&dataset, &split, &template);
    let resolved = HsuConfig::load(&repo().join("configs/hsu/rules.toml")).unwrap();
    let lengths: Vec<usize> = split.train.iter().map(Vec::len).collect();
    let stage_length = resolved.cfg.stages.resolve(&lengths);
    let store = Store::open(&cache.path().join("hsu.sqlite")).unwrap();
    let backend = recording();
    let engine = Engine::new(&resolved, &backend, &store, stage_length);

    let text = |item: u32| template.render(&dataset, item);
    let mut checked = 0;
    for (u, user) in users.iter().enumerate() {
        if checked == 6 {
            break;
        }
        let train = &split.train[u];
        // Short histories keep the test fast; a held-out item whose text a
        // training item shares (a re-watch, or ML-100K's few duplicate
        // titles) may legitimately appear.
        let train_texts: Vec<String> = train.iter().map(|&i| text(i)).collect();
        let held_out: Vec<(&str, u32)> = [("validation", split.valid[u]), ("test", split.test[u])]
            .into_iter()
            .filter(|(_, i)| !train_texts.contains(&text(*i)))
            .collect();
        if train.len() > 60 || held_out.len() < 2 {
            continue;
        }
        let requests = prompts_for(&engine, &backend, user);
        assert!(!requests.is_empty());
        let shown = shown_items(&requests);
        for (what, item) in &held_out {
            let t = text(*item);
            assert!(
                !shown.contains(&t),
                "user {}: the {what} item {t:?} is in an HSU prompt",
                user.user
            );
            // Nor anywhere else in a prompt (not only as a history line).
            assert!(
                requests
                    .iter()
                    .flat_map(|r| &r.messages)
                    .all(|m| !m.content.contains(&t) || train_texts.iter().any(|x| x.contains(&t))),
                "user {}: the {what} item's text {t:?} is in a prompt",
                user.user
            );
        }
        // Non-vacuous: the line parsing finds every training item.
        for t in &train_texts {
            assert!(
                shown.contains(t),
                "user {}: training item {t:?} was never shown",
                user.user
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 6, "too few users qualified");
}

/// One tiny dataset: item 1 complete, item 2 without a year, item 3 with no
/// field the template uses.
fn dataset_with_missing_fields() -> Dataset {
    let attrs = |title: Option<&str>, year: Option<&str>, genres: &[&str]| ItemAttrs {
        title: title.map(str::to_string),
        year: year.map(str::to_string),
        genres: genres.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    };
    Dataset {
        name: "tiny".into(),
        num_items: 3,
        sequences: vec![vec![1, 2, 3, 1, 2]],
        user_ids: vec!["alice".into()],
        item_ids: vec!["m1".into(), "m2".into(), "m3".into()],
        item_attrs: vec![
            attrs(Some("Heat"), Some("1995"), &["Action", "Crime"]),
            attrs(Some("Fargo"), None, &["Crime"]),
            attrs(None, None, &[]),
        ],
        report: PrepReport::default(),
    }
}

#[test]
fn an_item_with_a_missing_field_reads_the_same_for_the_embedder_and_the_llm() {
    let source = "Title: {title} ({year}), genres: {genres}";
    let dataset = dataset_with_missing_fields();
    let mut dcfg = DatasetConfig::load(&repo().join("configs/datasets/ml-100k.toml")).unwrap();
    dcfg.text = Some(TextConfig {
        template: source.into(),
    });
    // What the embedder embeds.
    let embedded = hsuga_text::render_items(&dataset, &hsuga_text::template_for(&dcfg).unwrap())
        .unwrap()
        .texts;
    assert_eq!(embedded[1], "Title: Fargo, genres: Crime");
    assert_eq!(embedded[2], "item m3");
    // What HSU prompts show, through the engine.
    let split = Split {
        num_items: 3,
        train: vec![vec![1, 2, 3]],
        valid: vec![1],
        test: vec![2],
    };
    let users = histories(&dataset, &split, &ItemTemplate::for_dataset(&dcfg).unwrap());
    let texts: Vec<&str> = users[0].items.iter().map(|i| i.text.as_str()).collect();
    assert_eq!(
        texts,
        embedded.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let resolved = HsuConfig::load(&repo().join("configs/hsu/rules.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("hsu.sqlite")).unwrap();
    let backend = recording();
    let engine = Engine::new(&resolved, &backend, &store, 3);
    let shown = shown_items(&prompts_for(&engine, &backend, &users[0]));
    for t in &embedded {
        assert!(
            shown.contains(t),
            "{t:?} not shown as embedded; shown: {shown:?}"
        );
    }
}

/// The CoT baseline (issue 16; the paper's Table 5): `configs/hsu/rules-cot.toml`
/// sends one prompt per user, listing exactly that user's training items in
/// order, so neither the validation nor the test item can reach the LLM.
#[test]
fn cot_builds_one_prompt_per_user_from_the_training_items_only() {
    let cache = tempfile::tempdir().unwrap();
    let dcfg = DatasetConfig::load(&repo().join("configs/datasets/ml-100k.toml")).unwrap();
    let Prepared { dataset, split, .. } = prepare(&dcfg, cache.path()).unwrap();
    let template = ItemTemplate::for_dataset(&dcfg).unwrap();
    let users = histories(&dataset, &split, &template);
    let resolved = HsuConfig::load(&repo().join("configs/hsu/rules-cot.toml")).unwrap();
    let store = Store::open(&cache.path().join("hsu.sqlite")).unwrap();
    let backend = recording();
    // CoT ignores the stage length: the whole history is one "stage".
    let engine = Engine::new(&resolved, &backend, &store, 16);
    let text = |item: u32| template.render(&dataset, item);
    for u in [0usize, 1, 2, 100, 500, 942] {
        let requests = prompts_for(&engine, &backend, &users[u]);
        assert_eq!(requests.len(), 1, "user {}: one call", users[u].user);
        let want: Vec<String> = split.train[u].iter().map(|&i| text(i)).collect();
        assert_eq!(
            shown_items(&requests),
            want,
            "user {}: the prompt lists exactly the training items, in order",
            users[u].user
        );
        assert!(
            want.len() > 16,
            "user {}: longer than one stage",
            users[u].user
        );
    }
}
