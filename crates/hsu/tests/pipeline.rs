//! The one HSU entry point ([`run_dataset`]) on a tiny hand-built dataset,
//! with a back-end that answers like the rules editor and, when asked for
//! hidden states, returns a "hidden mean" computed from the stage's items, so
//! the stored embeddings can be checked by hand.
//!
//! Issue 15: HSU was orchestrated twice (`hsuga hsu` and the experiment
//! grid) and only the command asked for hidden states, so a grid run of the
//! in-process LLM stored none.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hsuga_data::{Dataset, DatasetConfig, Groups, ItemAttrs, PrepReport, Prepared, Split};
use hsuga_hsu::{
    DatasetRun, HiddenStates, HsuConfig, PromptSet, Resolved, UserSelection,
    hidden_user_embeddings, run_dataset,
};
use hsuga_llm::rules::RulesEditor;
use hsuga_llm::{BackendId, ChatBackend, ChatRequest, ChatResponse, LlmError, TaskHint};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const TITLES: [&str; 6] = ["Heat", "Fargo", "Alien", "Up", "Casablanca", "Jaws"];

/// Three users; with stage length 2 their last stages are
/// alice: [Alien] · bob: [Up, Casablanca] · carol: [Jaws].
fn tiny() -> (DatasetConfig, Prepared) {
    let dcfg = DatasetConfig::load(&repo().join("configs/datasets/ml-100k.toml")).unwrap();
    let item_attrs = TITLES
        .iter()
        .map(|t| ItemAttrs {
            title: Some((*t).to_string()),
            genres: vec!["Drama".into()],
            ..Default::default()
        })
        .collect();
    let train = vec![vec![1, 2, 3], vec![1, 2, 4, 5], vec![6]];
    let dataset = Dataset {
        name: "tiny".into(),
        num_items: 6,
        sequences: train.clone(),
        user_ids: vec!["alice".into(), "bob".into(), "carol".into()],
        item_ids: (1..=6).map(|i| format!("m{i}")).collect(),
        item_attrs,
        report: PrepReport::default(),
    };
    let split = Split {
        num_items: 6,
        train,
        valid: vec![4, 6, 1],
        test: vec![5, 3, 2],
    };
    let groups = Groups {
        rule: String::new(),
        head_users: vec![false; 3],
        head_items: vec![false; 6],
    };
    let prepared = Prepared {
        dataset,
        split,
        groups,
        key: "tiny".into(),
        dir: PathBuf::new(),
    };
    (dcfg, prepared)
}

fn config(backend: &str) -> Resolved {
    let text = format!("variant = \"t\"\n[backend]\nkind = \"{backend}\"\n[stages]\nlength = 2\n");
    HsuConfig::parse(&text, Path::new("t.toml"))
        .unwrap()
        .resolve(PromptSet::builtin_paper(), "t.toml".into())
        .unwrap()
}

/// Rules-editor answers; asked for hidden states, the "mean" is
/// `[items in the stage, characters in their titles]`. Records whether each
/// request asked. Fails outright on any stage that shows `fail_on`.
struct WithHidden {
    rules: RulesEditor,
    asked: Mutex<Vec<bool>>,
    fail_on: Option<&'static str>,
}

impl WithHidden {
    fn new() -> Self {
        Self {
            rules: RulesEditor::default(),
            asked: Mutex::new(Vec::new()),
            fail_on: None,
        }
    }

    fn asked(&self) -> Vec<bool> {
        self.asked.lock().unwrap().clone()
    }
}

impl ChatBackend for WithHidden {
    fn id(&self) -> BackendId {
        BackendId {
            backend: "with-hidden".into(),
            model: "test".into(),
        }
    }

    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.asked.lock().unwrap().push(req.want_hidden);
        let items = match &req.hint {
            Some(
                TaskHint::Reason { items }
                | TaskHint::Select { items, .. }
                | TaskHint::Execute { items, .. }
                | TaskHint::Summarise { items, .. },
            ) => items.clone(),
            None => Vec::new(),
        };
        let titles: Vec<&str> = items.iter().filter_map(|a| a.title.as_deref()).collect();
        if let Some(bad) = self.fail_on.filter(|b| titles.contains(b)) {
            return Err(LlmError::Transport {
                url: "test".into(),
                message: format!("down for {bad}"),
            });
        }
        let mut resp = self.rules.chat(req)?;
        if req.want_hidden {
            let chars: usize = titles.iter().map(|t| t.chars().count()).sum();
            resp.hidden_mean = Some(vec![items.len() as f32, chars as f32]);
        }
        Ok(resp)
    }
}

#[test]
fn required_hidden_states_are_stored_and_read_back_per_user_from_the_last_stage() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hsu.sqlite");
    let (dcfg, prepared) = tiny();
    let cfg = config("rules");
    let backend = WithHidden::new();
    let mut req = DatasetRun::new(&cfg, &dcfg, &prepared, &db);
    req.hidden = HiddenStates::Required;
    req.backend = Some(&backend);
    let started = Mutex::new(None);
    let on_start = |p: &hsuga_hsu::Plan| *started.lock().unwrap() = Some(p.clone());
    req.on_start = Some(&on_start);
    let done = run_dataset(&req).unwrap();
    assert_eq!(done.plan.users, 3);
    assert_eq!(done.plan.stage_length, 2);
    assert!(done.plan.want_hidden);
    assert_eq!(done.plan.backend.backend, "with-hidden");
    assert_eq!(started.lock().unwrap().as_ref(), Some(&done.plan));
    // alice 2 stages, bob 2, carol 1.
    assert_eq!((done.run.stages_run, done.run.users_pending), (5, 0));
    let asked = backend.asked();
    assert!(!asked.is_empty() && asked.iter().all(|&a| a), "{asked:?}");
    let h = hidden_user_embeddings(&done.store, "t", &prepared.dataset.user_ids).unwrap();
    assert_eq!((h.dim, h.missing), (2, 0));
    // By hand: alice [Alien] = (1, 5), bob [Up, Casablanca] = (2, 12),
    // carol [Jaws] = (1, 4).
    assert_eq!(h.data, vec![1.0, 5.0, 2.0, 12.0, 1.0, 4.0]);
}

#[test]
fn by_default_only_an_in_process_back_end_is_asked_for_hidden_states() {
    let (dcfg, prepared) = tiny();
    for (kind, want) in [("rules", false), ("local", true)] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hsu.sqlite");
        let cfg = config(kind);
        let backend = WithHidden::new();
        let mut req = DatasetRun::new(&cfg, &dcfg, &prepared, &db);
        // Answer in place of the configured back-end (no model is loaded).
        req.backend = Some(&backend);
        let done = run_dataset(&req).unwrap();
        assert_eq!(done.plan.want_hidden, want, "{kind}");
        let asked = backend.asked();
        assert!(
            !asked.is_empty() && asked.iter().all(|&a| a == want),
            "{kind}: {asked:?}"
        );
        let h = hidden_user_embeddings(&done.store, "t", &prepared.dataset.user_ids);
        assert_eq!(h.is_ok(), want, "{kind}");
    }
}

#[test]
fn stages_stored_without_hidden_states_give_a_clear_error_naming_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hsu.sqlite");
    let (dcfg, prepared) = tiny();
    let cfg = config("rules");
    let backend = WithHidden::new();
    // No hidden states at all: the plain path (rules back-end, default).
    let mut req = DatasetRun::new(&cfg, &dcfg, &prepared, &db);
    req.backend = Some(&backend);
    req.users = UserSelection::First(1);
    let done = run_dataset(&req).unwrap();
    let e = hidden_user_embeddings(&done.store, "t", &prepared.dataset.user_ids)
        .unwrap_err()
        .to_string();
    assert!(e.contains("variant t has no hidden states"), "{e}");
    drop(done);
    // Now every user with hidden states asked for: alice's stored stages are
    // reused as they are (without), bob's and carol's are new (with).
    req.users = UserSelection::All;
    req.hidden = HiddenStates::Required;
    let done = run_dataset(&req).unwrap();
    assert_eq!(done.run.stages_reused, 2);
    let e = hidden_user_embeddings(&done.store, "t", &prepared.dataset.user_ids)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1 of 3 users have no stored hidden states in variant `t`"),
        "{e}"
    );
}

#[test]
fn required_hidden_states_from_a_back_end_without_them_fail_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hsu.sqlite");
    let (dcfg, prepared) = tiny();
    let cfg = config("rules");
    let mut req = DatasetRun::new(&cfg, &dcfg, &prepared, &db);
    req.hidden = HiddenStates::Required;
    let e = run_dataset(&req).unwrap_err().to_string();
    assert!(
        e.contains("t.toml") && e.contains("kind = \"local\"") && e.contains("`rules`"),
        "{e}"
    );
    assert!(!db.exists(), "a store was opened before the check");
    req.stage_length = Some(0);
    req.hidden = HiddenStates::IfInProcess;
    let e = run_dataset(&req).unwrap_err().to_string();
    assert!(e.contains("stage length must be at least 1"), "{e}");
}

#[test]
fn users_whose_calls_fail_are_reported_and_left_for_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hsu.sqlite");
    let (dcfg, prepared) = tiny();
    let cfg = config("rules");
    let mut backend = WithHidden::new();
    backend.fail_on = Some("Jaws");
    let mut req = DatasetRun::new(&cfg, &dcfg, &prepared, &db);
    req.backend = Some(&backend);
    let done = run_dataset(&req).unwrap();
    assert_eq!(done.run.users_pending, 1);
    assert_eq!(done.run.errors.len(), 1);
    assert!(
        done.run.errors[0].starts_with("user carol: "),
        "{:?}",
        done.run.errors
    );
    drop(done);
    // The next run resumes: only carol's stage runs.
    let ok = WithHidden::new();
    req.backend = Some(&ok);
    let done = run_dataset(&req).unwrap();
    assert_eq!((done.run.stages_run, done.run.users_pending), (1, 0));
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The drift came from a second copy of the engine sequence; the command and
/// the grid must reach the engine only through [`run_dataset`].
#[test]
fn the_cli_and_the_grid_run_hsu_only_through_run_dataset() {
    let mut files = Vec::new();
    for d in ["crates/cli/src", "crates/experiment/src"] {
        sources(&repo().join(d), &mut files);
    }
    assert!(files.len() > 5, "{files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for twin in ["Engine::new(", "Engine {", ".want_hidden", "build_backend("] {
            assert!(
                !text.contains(twin),
                "{} calls `{twin}`: run HSU through hsuga_hsu::run_dataset",
                f.display()
            );
        }
    }
    for caller in [
        "crates/cli/src/cmd/hsu.rs",
        "crates/experiment/src/inputs.rs",
    ] {
        let text = std::fs::read_to_string(repo().join(caller)).unwrap();
        assert!(text.contains("run_dataset(&req)"), "{caller}");
    }
}
