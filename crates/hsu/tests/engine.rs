//! The stage engine end to end on small synthetic histories: resume after an
//! interruption (in-process and by killing a child process), incremental
//! updates with a call-counting back-end, shards, ablations and bad input.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hsuga_data::ItemAttrs;
use hsuga_hsu::{
    Engine, HistItem, HsuConfig, Mode, PromptSet, Resolved, Shard, StageRecord, Status, Store,
    UserHistory, stats,
};
use hsuga_llm::rules::RulesEditor;
use hsuga_llm::scripted::Scripted;
use hsuga_llm::{ChatBackend, LlmError, Op, TaskHint};

const GENRES: &[&str] = &["Drama", "Comedy", "Action", "Horror", "Romance", "War"];

fn item(i: usize) -> HistItem {
    let g1 = GENRES[i % GENRES.len()];
    let g2 = GENRES[(i / 3) % GENRES.len()];
    HistItem {
        id: format!("i{i}"),
        text: format!("Title: Movie {i}, genres: {g1}, {g2}"),
        attrs: ItemAttrs {
            title: Some(format!("Movie {i}")),
            genres: vec![g1.to_string(), g2.to_string()],
            ..Default::default()
        },
    }
}

fn users(n: usize) -> Vec<UserHistory> {
    (0..n)
        .map(|u| UserHistory {
            user: format!("u{u}"),
            items: (0..(3 + (u * 7) % 17)).map(|k| item(u * 5 + k)).collect(),
        })
        .collect()
}

fn config(extra: &str) -> Resolved {
    let text =
        format!("variant = \"t\"\n[backend]\nkind = \"rules\"\n[stages]\nlength = 4\n{extra}");
    HsuConfig::parse(&text, Path::new("t.toml"))
        .unwrap()
        .resolve(PromptSet::builtin_paper(), "t.toml".into())
        .unwrap()
}

/// Answers like the rules editor, counting calls.
fn counting() -> Scripted {
    let rules = RulesEditor::default();
    Scripted::new(move |req, _| rules.chat(req).map(|r| r.text))
}

/// A stored stage without its timing.
type Row = (String, u32, Vec<String>, Option<Op>, Vec<String>, Status);

/// Everything but timing, for comparing stores.
fn snapshot(store: &Store) -> Vec<Row> {
    let mut v: Vec<_> = store
        .all_stages("t")
        .unwrap()
        .into_iter()
        .map(|r: StageRecord| (r.user, r.stage, r.items, r.op, r.interests, r.status))
        .collect();
    v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    v
}

fn run(
    cfg: &Resolved,
    backend: &dyn ChatBackend,
    store: &Store,
    us: &[UserHistory],
) -> hsuga_hsu::RunReport {
    Engine::new(cfg, backend, store, 4)
        .run(us, Shard::ALL, None)
        .unwrap()
}

#[test]
fn full_run_then_rerun_costs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config("");
    let us = users(20);
    let b = counting();
    let r = run(&cfg, &b, &store, &us);
    let expected: usize = us.iter().map(|u| u.items.len().div_ceil(4)).sum();
    assert_eq!(r.stages_run, expected);
    assert_eq!(r.stages_failed, 0);
    assert_eq!(store.all_stages("t").unwrap().len(), expected);
    let calls = b.calls();
    assert!(calls >= expected, "{calls}");
    // The rerun reuses every stage.
    let r2 = run(&cfg, &b, &store, &us);
    assert_eq!(r2.stages_run, 0);
    assert_eq!(r2.stages_reused, expected);
    assert_eq!(b.calls(), calls);
    let s = stats(&store, "t").unwrap();
    assert_eq!(s.users, 20);
    assert_eq!(s.ops["reason"], 20);
    assert!(s.tokens_in_per_stage > 0.0);
}

#[test]
fn incremental_update_costs_one_selection_and_one_execution() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config("");
    // A user with exactly two full stages.
    let mut u = UserHistory {
        user: "alice".into(),
        items: (0..8).map(item).collect(),
    };
    let b = Scripted::new(|req, _| {
        Ok(match &req.hint {
            Some(TaskHint::Select { .. }) => "Explanation: new genres.\nInstruction: 3".into(),
            _ => "Explanation: e\nFinal interests:\n1. Drama\n2. Comedy".into(),
        })
    });
    run(&cfg, &b, &store, std::slice::from_ref(&u));
    assert_eq!(b.calls(), 1 + 2);
    b.reset();
    // One new stage of interactions arrives.
    u.items.extend((100..104).map(item));
    let r = run(&cfg, &b, &store, std::slice::from_ref(&u));
    assert_eq!(b.calls(), 2, "selection + execution only");
    assert_eq!((r.stages_run, r.stages_reused), (1, 2));
    let reqs = b.requests();
    assert!(matches!(reqs[0].hint, Some(TaskHint::Select { .. })));
    assert!(matches!(
        reqs[1].hint,
        Some(TaskHint::Execute { op: Op::Add, .. })
    ));
    // The execution continues the selection conversation (shared prefix).
    let n = reqs[0].messages.len();
    assert_eq!(reqs[1].messages[..n], reqs[0].messages[..]);
    assert_eq!(store.user_stages("t", "alice").unwrap().len(), 3);
    // A partial last stage that grows is recomputed, nothing before it.
    b.reset();
    u.items.push(item(200));
    let r = run(&cfg, &b, &store, std::slice::from_ref(&u));
    assert_eq!((r.stages_run, r.stages_reused), (1, 3));
    assert_eq!(b.calls(), 2);
}

#[test]
fn interrupted_run_resumes_to_the_same_store() {
    let us = users(12);
    let cfg = config("[engine]\nconcurrency = 3\n");
    // Uninterrupted reference.
    let dir = tempfile::tempdir().unwrap();
    let reference = Store::open(&dir.path().join("ref.sqlite")).unwrap();
    run(&cfg, &counting(), &reference, &us);
    // Interrupted after 17 calls, then resumed.
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let rules = RulesEditor::default();
    let flaky = Scripted::new(move |req, n| {
        if n >= 17 {
            Err(LlmError::Interrupted)
        } else {
            rules.chat(req).map(|r| r.text)
        }
    });
    let r = run(&cfg, &flaky, &store, &us);
    assert!(r.interrupted);
    let partial = snapshot(&store);
    assert!(!partial.is_empty() && partial.len() < snapshot(&reference).len());
    let b = counting();
    let r2 = run(&cfg, &b, &store, &us);
    assert!(!r2.interrupted);
    assert_eq!(r2.stages_reused, partial.len());
    assert_eq!(snapshot(&store), snapshot(&reference));
}

/// The child half of `killed_process_resumes`: runs slowly until killed.
#[test]
#[ignore = "run by killed_process_resumes as a child process"]
fn child_slow_run() {
    let Ok(db) = std::env::var("HSU_TEST_CHILD_DB") else {
        return;
    };
    let store = Store::open(Path::new(&db)).unwrap();
    let b = counting().with_delay(Duration::from_millis(60));
    run(
        &config("[engine]\nconcurrency = 2\n"),
        &b,
        &store,
        &users(12),
    );
}

#[test]
fn killed_process_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.sqlite");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_slow_run", "--exact", "--ignored", "--nocapture"])
        .env("HSU_TEST_CHILD_DB", &db)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some stages are stored.
    let started = std::time::Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(40));
        let n = Store::open(&db)
            .ok()
            .and_then(|s| s.all_stages("t").ok())
            .map_or(0, |v| v.len());
        if n >= 10 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let store = Store::open(&db).unwrap();
    let partial = snapshot(&store).len();
    let us = users(12);
    let total: usize = us.iter().map(|u| u.items.len().div_ceil(4)).sum();
    assert!(partial >= 10 && partial < total, "{partial} of {total}");
    let cfg = config("[engine]\nconcurrency = 2\n");
    let r = run(&cfg, &counting(), &store, &us);
    assert_eq!(r.stages_reused + r.stages_run, total);
    let reference = Store::open(&dir.path().join("ref.sqlite")).unwrap();
    run(&cfg, &counting(), &reference, &us);
    assert_eq!(snapshot(&store), snapshot(&reference));
}

#[test]
fn shards_merge_into_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.sqlite");
    let cfg = config("");
    let us = users(15);
    std::thread::scope(|s| {
        for i in 0..3 {
            let (db, cfg, us) = (&db, &cfg, &us);
            s.spawn(move || {
                let store = Store::open(db).unwrap();
                let shard = Shard::parse(&format!("{i}/3")).unwrap();
                Engine::new(cfg, &counting(), &store, 4)
                    .run(us, shard, None)
                    .unwrap();
            });
        }
    });
    let merged = Store::open(&db).unwrap();
    let single = Store::open(&dir.path().join("one.sqlite")).unwrap();
    run(&cfg, &counting(), &single, &us);
    assert_eq!(snapshot(&merged), snapshot(&single));
    assert!(Shard::parse("3/3").is_err() && Shard::parse("x").is_err());
}

#[test]
fn ablations_are_switches() {
    let us = users(6);
    let dir = tempfile::tempdir().unwrap();
    // w/o add: an "add" selection is replaced and recorded.
    let store = Store::open(&dir.path().join("a.sqlite")).unwrap();
    let always_add = Scripted::new(|req, _| {
        Ok(match &req.hint {
            Some(TaskHint::Select { .. }) => "Explanation: x\nInstruction: 3".into(),
            _ => "Final interests:\n1. Drama".into(),
        })
    });
    run(
        &config("[ablation]\ndisabled_ops = [\"add\"]\n"),
        &always_add,
        &store,
        &us,
    );
    let rows = store.all_stages("t").unwrap();
    let later: Vec<_> = rows.iter().filter(|r| r.stage > 0).collect();
    assert!(!later.is_empty());
    assert!(
        later
            .iter()
            .all(|r| r.requested_op == Some(Op::Add) && r.op == Some(Op::Retain))
    );
    // Recursive: one call per stage, no selection.
    let store = Store::open(&dir.path().join("r.sqlite")).unwrap();
    let b = counting();
    let cfg = config("[ablation]\nmode = \"recursive\"\n");
    assert_eq!(cfg.cfg.ablation.mode, Mode::Recursive);
    let r = run(&cfg, &b, &store, &us);
    assert_eq!(b.calls(), r.stages_run);
    assert!(
        b.requests()
            .iter()
            .all(|q| !matches!(q.hint, Some(TaskHint::Select { .. })))
    );
    // CoT: one call per user over the whole history.
    let store = Store::open(&dir.path().join("c.sqlite")).unwrap();
    let b = counting();
    run(&config("[ablation]\nmode = \"cot\"\n"), &b, &store, &us);
    assert_eq!(b.calls(), us.len());
    assert_eq!(store.all_stages("t").unwrap().len(), us.len());
}

#[test]
fn bad_input_and_bad_answers_never_corrupt_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config("[engine]\nmax_attempts = 2\n");
    let mut us = users(4);
    us.push(UserHistory {
        user: "empty".into(),
        items: vec![],
    });
    us.push(UserHistory {
        user: "short".into(),
        items: vec![item(1)],
    });
    us.push(UserHistory {
        user: "no-text".into(),
        items: (0..6)
            .map(|i| HistItem {
                id: format!("x{i}"),
                text: format!("item x{i} (no description)"),
                attrs: ItemAttrs::default(),
            })
            .collect(),
    });
    let huge = "Final interests:\n".to_string() + &"1. spam spam\n".repeat(50_000);
    let b = Scripted::new(move |req, n| {
        Ok(match (n % 6, &req.hint) {
            (0, _) => String::new(),
            (1, Some(TaskHint::Select { .. })) => "I would add thrillers.".into(),
            (2, _) => "Explanation:\n Final interests: Interest 1: Interest 2: Interest 3:".into(),
            (3, _) => huge.clone(),
            (4, Some(TaskHint::Select { .. })) => "Instruction: 9".into(),
            (_, Some(TaskHint::Select { .. })) => "Instruction: 2".into(),
            _ => "Final interests:\n1. Drama".into(),
        })
    });
    let r = run(&cfg, &b, &store, &us);
    assert_eq!(r.users_empty, 1);
    assert!(r.stages_failed > 0);
    let s = stats(&store, "t").unwrap();
    assert!(s.failures.contains_key("empty"));
    assert!(s.failures.contains_key("degenerate"));
    assert!(s.parse_failure_rate > 0.0);
    for rec in store.all_stages("t").unwrap() {
        assert!(rec.interests.len() <= 10);
        if rec.status != Status::Ok {
            assert!(rec.error.is_some());
        }
    }
    assert_eq!(store.user_stages("t", "short").unwrap().len(), 1);
    // A back-end that fails outright: users are left for the next run, counted.
    let down = Scripted::new(|_, _| {
        Err(LlmError::Timeout {
            url: "http://127.0.0.1:1".into(),
            secs: 1.0,
        })
    });
    let store2 = Store::open(&dir.path().join("d.sqlite")).unwrap();
    let r = run(&cfg, &down, &store2, &users(3));
    assert_eq!((r.users_pending, r.users_done, r.users_failed), (3, 0, 0));
    assert!(store2.all_stages("t").unwrap().is_empty());
    assert_eq!(stats(&store2, "t").unwrap().failures["call_error"], 3);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let e = Engine {
        stop: stop.clone(),
        ..Engine::new(&cfg, &down, &store2, 4)
    };
    assert!(e.run(&users(3), Shard::ALL, None).unwrap().interrupted);
    assert!(stop.load(Ordering::SeqCst));
}

/// Issue 20, case 6: a store filled while the server answered gibberish
/// must heal once the server is fixed, not keep `[]` interests as final.
#[test]
fn failed_stages_are_retried_by_later_runs_until_they_heal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config("");
    let us = users(4);
    let expected: usize = us.iter().map(|u| u.items.len().div_ceil(4)).sum();
    let gibberish = Scripted::new(|_, _| Ok("zxqv wubba".into()));
    let r = run(&cfg, &gibberish, &store, &us);
    assert_eq!((r.users_done, r.users_failed, r.users_pending), (0, 4, 0));
    assert_eq!(r.stages_failed, expected);
    // A failed stage is not final interests.
    assert!(hsuga_hsu::final_interests(&store, "t").unwrap().is_empty());
    // The server is fixed: the next run recomputes every failed stage.
    let good = counting();
    let r = run(&cfg, &good, &store, &us);
    assert_eq!((r.users_done, r.users_failed, r.users_pending), (4, 0, 0));
    assert_eq!((r.stages_run, r.stages_reused), (expected, 0));
    let reference = Store::open(&dir.path().join("ref.sqlite")).unwrap();
    run(&cfg, &counting(), &reference, &us);
    assert_eq!(snapshot(&store), snapshot(&reference));
    // A healed stage records that two runs computed it.
    assert!(store.all_stages("t").unwrap().iter().all(|s| s.tries == 2));
    assert!(
        reference
            .all_stages("t")
            .unwrap()
            .iter()
            .all(|s| s.tries == 1)
    );
}

#[test]
fn failed_stages_are_retried_a_bounded_number_of_runs_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config("[engine]\nmax_stage_runs = 2\nmax_attempts = 1\n");
    // One user, two stages: the reasoning stage works, every selection is gibberish.
    let u = vec![UserHistory {
        user: "alice".into(),
        items: (0..8).map(item).collect(),
    }];
    let select_broken = Scripted::new(|req, _| {
        Ok(match &req.hint {
            Some(TaskHint::Select { .. }) => "no idea".into(),
            _ => "Explanation: e\nFinal interests:\n1. Drama".into(),
        })
    });
    let r = run(&cfg, &select_broken, &store, &u);
    assert_eq!((r.users_failed, r.stages_run, r.stages_failed), (1, 2, 1));
    let tries = |s: &Store| -> Vec<(Status, u32)> {
        s.user_stages("t", "alice")
            .unwrap()
            .iter()
            .map(|r| (r.status, r.tries))
            .collect()
    };
    assert_eq!(tries(&store), [(Status::Ok, 1), (Status::SelectFailed, 1)]);
    // Second run: the failed stage (only) is computed again, and fails again.
    select_broken.reset();
    let r = run(&cfg, &select_broken, &store, &u);
    assert_eq!((r.stages_run, r.stages_reused, r.users_failed), (1, 1, 1));
    assert_eq!(select_broken.calls(), 1);
    assert_eq!(tries(&store), [(Status::Ok, 1), (Status::SelectFailed, 2)]);
    // Two runs have failed it: the third keeps it, with no call, still reported.
    select_broken.reset();
    let r = run(&cfg, &select_broken, &store, &u);
    assert_eq!((r.stages_run, r.stages_reused, r.users_failed), (0, 2, 1));
    assert_eq!(select_broken.calls(), 0);
    // The final interests are the last usable stage's.
    let fin = hsuga_hsu::final_interests(&store, "t").unwrap();
    assert_eq!(fin["alice"].0, ["Drama"]);
    // Forced: recomputed although the bound is reached, and it heals.
    let good = counting();
    let forced = Engine {
        retry_failed: true,
        ..Engine::new(&cfg, &good, &store, 4)
    };
    let r = forced.run(&u, Shard::ALL, None).unwrap();
    assert_eq!((r.stages_run, r.users_done, r.users_failed), (1, 1, 0));
    assert_eq!(tries(&store), [(Status::Ok, 1), (Status::Ok, 3)]);
}
