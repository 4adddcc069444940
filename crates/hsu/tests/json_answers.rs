//! Constrained output end to end in the engine: every request carries the
//! JSON schema of its answer (the selection's naming only the allowed
//! operations), answers in those shapes make the same stages as text ones,
//! and valid JSON of the wrong shape is a recorded, retried failure that
//! keeps the previous interests — never a lost stage.

use std::path::Path;

use hsuga_data::ItemAttrs;
use hsuga_hsu::{
    Engine, HistItem, HsuConfig, PromptSet, Resolved, Shard, Status, Store, UserHistory,
};
use hsuga_llm::scripted::Scripted;
use hsuga_llm::{ChatRequest, TaskHint};
use serde_json::json;

fn users() -> Vec<UserHistory> {
    (0..3)
        .map(|u| UserHistory {
            user: format!("u{u}"),
            items: (0..8)
                .map(|k| HistItem {
                    id: format!("i{u}-{k}"),
                    text: format!("Title: Movie {k}, genres: Drama"),
                    attrs: ItemAttrs::default(),
                })
                .collect(),
        })
        .collect()
}

fn config(extra: &str) -> Resolved {
    let text = format!(
        "variant = \"t\"\n[backend]\nkind = \"rules\"\n[stages]\nlength = 4\n\
         [engine]\nmax_attempts = 2\n{extra}"
    );
    HsuConfig::parse(&text, Path::new("t.toml"))
        .unwrap()
        .resolve(PromptSet::builtin_small(), "t.toml".into())
        .unwrap()
}

fn is_select(r: &ChatRequest) -> bool {
    matches!(r.hint, Some(TaskHint::Select { .. }))
}

#[test]
fn json_answers_make_stages_and_every_request_carries_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config("[ablation]\ndisabled_ops = [\"delete\"]\n");
    let backend = Scripted::new(|r, _| {
        Ok(if is_select(r) {
            "{\"explanation\": \"new genre\", \"instruction\": 3}".into()
        } else {
            "{\"explanation\": \"dramas\", \"interests\": [\"Drama films\", \"Period pieces\"]}"
                .into()
        })
    });
    let report = Engine::new(&cfg, &backend, &store, 4)
        .run(&users(), Shard::ALL, None)
        .unwrap();
    assert_eq!((report.users_done, report.stages_failed), (3, 0));
    let rows = store.all_stages("t").unwrap();
    assert_eq!(rows.len(), 6);
    assert!(
        rows.iter()
            .all(|r| r.status == Status::Ok && r.interests == ["Drama films", "Period pieces"])
    );
    assert_eq!(rows[1].explanation, "new genre | dramas");

    let requests = backend.requests();
    assert_eq!(requests.len(), 9); // per user: reasoning, selection, add
    for r in &requests {
        let s = &r
            .schema
            .as_ref()
            .expect("every request has a schema")
            .schema;
        if is_select(r) {
            // "delete" (1) is disabled: the schema does not offer it.
            assert_eq!(s["properties"]["instruction"]["enum"], json!([2, 3, 4]));
        } else {
            assert_eq!(s["properties"]["interests"]["maxItems"], json!(10));
        }
    }
}

#[test]
fn json_of_the_wrong_shape_is_a_recorded_retried_failure_and_no_lost_stage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config("");
    // Stage 1 answers well; every later selection is JSON without an
    // instruction, every later list a string instead of an array.
    let backend = Scripted::new(|r, _| {
        Ok(match &r.hint {
            Some(TaskHint::Reason { .. }) => {
                "{\"explanation\": \"x\", \"interests\": [\"Drama\"]}".into()
            }
            Some(TaskHint::Select { .. }) => "{\"explanation\": \"x\", \"operation\": 3}".into(),
            _ => "{\"interests\": \"Drama, Comedy\"}".into(),
        })
    });
    let report = Engine::new(&cfg, &backend, &store, 4)
        .run(&users(), Shard::ALL, None)
        .unwrap();
    assert_eq!((report.users_failed, report.users_pending), (3, 0));
    let rows = store.all_stages("t").unwrap();
    assert_eq!(rows.len(), 6, "both stages of every user are stored");
    for r in rows.iter().filter(|r| r.stage == 1) {
        assert_eq!(r.status, Status::SelectFailed);
        assert_eq!(r.interests, ["Drama"], "the previous interests are kept");
    }
    // Two attempts per failed selection, each recorded with its answer.
    let failures = store.failures("t").unwrap();
    assert_eq!(failures.len(), 6);
    assert!(
        failures
            .iter()
            .all(|f| f.kind == "no_instruction" && f.answer.contains("operation")),
        "{failures:?}"
    );
}
