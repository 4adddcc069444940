//! HSU online end to end, in process: a SASRec + HSU fusion (gate) run
//! trained here on ML-100K with the `rules` back-end and MiniLM interest
//! embeddings (2 epochs, once per test binary), served; interactions that
//! complete a stage lead to one stored stage, shown by the interests route
//! and read by the next recommendation; replays and restarts run nothing
//! again; SIGHUP reloads the run.
//!
//! Needs MiniLM in the models folder (`hsuga models fetch all-minilm-l6-v2`).
//! The embedding caches of `$HSUGA_CACHE_DIR` (or `~/.cache/hsuga`) are
//! copied in when present, to spare embedding the catalogue again: their
//! store keys include the texts, so a stale copy is recomputed, not read.

mod common;

use common::{models_dir, repo, source};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use hsuga_serve::{BatchConfig, Limits, Options, Run, Service, router};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "hsu-online-test-token";

fn copy_tree(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    std::fs::create_dir_all(to).unwrap();
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            let _ = std::fs::copy(&p, to.join(e.file_name()));
        }
    }
}

/// The trained fusion run and its cache, shared by the binary's tests.
fn trained() -> &'static (PathBuf, PathBuf) {
    static RUN: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let cache = root.join("cache");
        let user_cache = std::env::var_os("HSUGA_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hsuga")));
        if let Some(c) = user_cache {
            copy_tree(
                &c.join("embeddings/ml-100k"),
                &cache.join("embeddings/ml-100k"),
            );
        }
        let dataset = repo().join("configs/datasets/ml-100k.toml");
        let cfg = hsuga_train::RunConfig::from_toml(&format!(
            "name = \"hsu-online\"\ndataset = \"{}\"\nout_dir = \"{}\"\n\
             [model]\nhidden = 16\nmax_len = 20\n[train]\nepochs = 2\nprogress = false\n\
             [method]\nfusion = \"gate\"\n\
             [inputs]\nitem_text = \"all-minilm-l6-v2\"\nuser_semantic = {{ hsu = \"rules\" }}\n",
            dataset.display(),
            root.join("runs").display()
        ))
        .unwrap();
        let dirs = hsuga_experiment::InputDirs {
            cache_dir: &cache,
            models_dir: &models_dir(),
            hsu_configs: &repo().join("configs/hsu"),
        };
        let resolve = |entry: &str| Ok(PathBuf::from(entry));
        let report =
            hsuga_experiment::train_one(&cfg, &dirs, &resolve, Default::default()).unwrap();
        (report.dir, cache)
    })
}

fn start(state: &Path) -> Arc<Service> {
    let (dir, cache) = trained();
    Service::new(
        Run::load(dir, &source(cache)).unwrap(),
        source(cache),
        Options {
            state: state.join("interactions.sqlite"),
            token: Some(TOKEN.into()),
            limits: Limits::default(),
            batch: BatchConfig::default(),
            hsu_queue: 16,
        },
    )
    .unwrap()
}

async fn send(svc: &Arc<Service>, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router(svc.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, body)
}

async fn get(svc: &Arc<Service>, uri: &str) -> Value {
    let (status, body) = send(svc, Request::get(uri).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "GET {uri}: {body}");
    body
}

async fn post(svc: &Arc<Service>, uri: &str, body: Value) -> Value {
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, body) = send(svc, req).await;
    assert_eq!(status, StatusCode::OK, "POST {uri}: {body}");
    body
}

/// Posts raw items for a user, each with an event id `<user>-<item>`.
async fn interact(svc: &Arc<Service>, user: &str, items: &[String]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|i| json!({"item": i, "event_id": format!("{user}-{i}")}))
        .collect();
    post(
        svc,
        &format!("/v1/users/{user}/interactions"),
        json!({ "items": items }),
    )
    .await
}

/// Waits until the HSU worker has nothing queued or running.
async fn settle(svc: &Arc<Service>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !svc.hsu_idle() {
        assert!(Instant::now() < deadline, "the HSU worker did not settle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn metric(svc: &Service, line: &str) -> f64 {
    let text = svc.metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{line}` in\n{text}"))
}

fn stages_ok(svc: &Service) -> f64 {
    metric(svc, "hsuga_hsu_stages_total{outcome=\"ok\"}")
}

/// The stored online stages of a user: (stage, tries).
fn stored(user: &str) -> Vec<(u32, u32)> {
    let (_, cache) = trained();
    let store = hsuga_hsu::Store::open(&hsuga_hsu::store::default_path(cache, "ml-100k")).unwrap();
    store
        .user_stages("rules.online", user)
        .unwrap()
        .into_iter()
        .map(|r| (r.stage, r.tries))
        .collect()
}

/// `n` catalogue items (raw ids) starting at `from`.
fn items(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| i.to_string()).collect()
}

/// The scores of the user's recommendations and of the same history sent
/// anonymously (which reads the cold-start zero vector).
async fn user_and_anonymous_scores(
    svc: &Arc<Service>,
    user: &str,
    history: &[String],
) -> (Vec<f64>, Vec<f64>) {
    let scores = |v: &Value| -> Vec<f64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["score"].as_f64().unwrap())
            .collect()
    };
    let mine = get(
        svc,
        &format!("/v1/users/{user}/recommendations?k=50&include_seen=true"),
    )
    .await;
    let anon = post(
        svc,
        "/v1/recommendations",
        json!({"history": history, "k": 50, "include_seen": true}),
    )
    .await;
    (scores(&mine), scores(&anon))
}

#[tokio::test]
async fn a_completed_stage_is_run_stored_shown_and_read_by_the_next_recommendation() {
    let state = tempfile::tempdir().unwrap();
    let svc = start(state.path());
    let user = "online-new";
    // The first interaction creates the user; the route then says the
    // stage length.
    let first = items(1, 1);
    interact(&svc, user, &first).await;
    let before = get(&svc, &format!("/v1/users/{user}/interests")).await;
    let length = before["stage_length"].as_u64().unwrap() as usize;
    assert!(length > 1, "{before}");
    assert_eq!(before["stages"], json!([]), "{before}");
    assert_eq!(before["embedding"], "cold_start", "{before}");
    assert_eq!(before["variant"], "rules", "{before}");

    // One item short of a stage: no stage, and the user scores exactly as
    // an anonymous history does (both read the zero vector).
    let mut history = first.clone();
    let rest = items(2, length - 2);
    interact(&svc, user, &rest).await;
    history.extend(rest);
    settle(&svc).await;
    assert!(stored(user).is_empty());
    let (mine, anon) = user_and_anonymous_scores(&svc, user, &history).await;
    assert_eq!(mine, anon, "before any stage the user is a cold start");

    // The item that completes the stage.
    let last = items(length, 1);
    interact(&svc, user, &last).await;
    history.extend(last);
    settle(&svc).await;
    assert_eq!(stored(user), vec![(0, 1)]);
    assert_eq!(stages_ok(&svc), 1.0);
    let after = get(&svc, &format!("/v1/users/{user}/interests")).await;
    assert_eq!(after["variant"], "rules.online", "{after}");
    assert_eq!(after["complete_stages"], 1, "{after}");
    assert_eq!(after["pending"], false, "{after}");
    assert_eq!(after["embedding"], "online", "{after}");
    let stage = &after["stages"][0];
    assert_eq!(stage["operation"], "reason", "{after}");
    assert_eq!(stage["status"], "ok", "{after}");
    assert_eq!(stage["items"], json!(history), "{after}");
    assert!(
        !stage["explanation"].as_str().unwrap().is_empty(),
        "{after}"
    );
    assert!(
        !after["interests"].as_array().unwrap().is_empty(),
        "{after}"
    );
    assert_eq!(after["interests"], stage["interests"], "{after}");
    // The next recommendation reads the new embedding: same history, other
    // scores than the cold-start one.
    let (mine, anon) = user_and_anonymous_scores(&svc, user, &history).await;
    assert_ne!(mine, anon, "the swapped-in embedding changed nothing");
    assert!(metric(&svc, "hsuga_hsu_queue_depth") == 0.0);
}

#[tokio::test]
async fn a_dataset_user_runs_only_the_stages_past_the_stored_ones() {
    let state = tempfile::tempdir().unwrap();
    let svc = start(state.path());
    let user = "5";
    let before = get(&svc, &format!("/v1/users/{user}/interests")).await;
    assert_eq!(before["variant"], "rules", "{before}");
    assert_eq!(before["embedding"], "training", "{before}");
    let length = before["stage_length"].as_u64().unwrap() as usize;
    let offline = before["stages"].as_array().unwrap().len();
    let served = before["history_length"].as_u64().unwrap() as usize;
    assert!(offline > 0, "{before}");
    // Enough to complete one stage past the ones the run was trained with.
    let need = (offline + 1) * length - served;
    let extra: Vec<String> = (1..=1682)
        .map(|i| i.to_string())
        .filter(|i| !svc.user(user).unwrap().history.iter().any(|h| &h.item == i))
        .take(need)
        .collect();
    interact(&svc, user, &extra).await;
    settle(&svc).await;
    let after = get(&svc, &format!("/v1/users/{user}/interests")).await;
    assert_eq!(after["variant"], "rules.online", "{after}");
    assert_eq!(after["complete_stages"], offline + 1, "{after}");
    assert_eq!(
        after["stages"].as_array().unwrap().len(),
        offline + 1,
        "{after}"
    );
    assert_eq!(after["embedding"], "online", "{after}");
    // The complete offline stages were reused: at most the offline run's
    // partial last stage (now complete) and the new one were run.
    let ran = stages_ok(&svc);
    assert!((1.0..=2.0).contains(&ran), "{ran} stages run");
}

#[tokio::test]
async fn a_replayed_event_and_a_restart_run_no_stage_again() {
    let state = tempfile::tempdir().unwrap();
    let user = "online-replay";
    let svc = start(state.path());
    interact(&svc, user, &items(100, 1)).await;
    let length = get(&svc, &format!("/v1/users/{user}/interests")).await["stage_length"]
        .as_u64()
        .unwrap() as usize;
    let batch = items(101, length - 1);
    interact(&svc, user, &batch).await;
    settle(&svc).await;
    assert_eq!(stored(user), vec![(0, 1)]);
    assert_eq!(stages_ok(&svc), 1.0);

    // The same events again: duplicates, no stage.
    let again = interact(&svc, user, &batch).await;
    assert_eq!(again["accepted"], 0, "{again}");
    settle(&svc).await;
    assert_eq!(stages_ok(&svc), 1.0);
    assert_eq!(stored(user), vec![(0, 1)]);

    // A graceful stop, then a restart on the same stores: the user is
    // queued at start (to rebuild their embedding) and nothing runs.
    svc.drain_hsu().await;
    drop(svc);
    let svc = start(state.path());
    settle(&svc).await;
    assert_eq!(stages_ok(&svc), 0.0);
    assert_eq!(stored(user), vec![(0, 1)]);
    let after = get(&svc, &format!("/v1/users/{user}/interests")).await;
    assert_eq!(after["embedding"], "online", "{after}");
    assert_eq!(after["stages"].as_array().unwrap().len(), 1, "{after}");
}

#[tokio::test]
async fn sighup_reloads_the_run_and_keeps_the_online_interests() {
    let state = tempfile::tempdir().unwrap();
    let svc = start(state.path());
    let _hup = hsuga_serve::reload_on_sighup(&svc).unwrap();
    let user = "online-hup";
    interact(&svc, user, &items(200, 1)).await;
    let length = get(&svc, &format!("/v1/users/{user}/interests")).await["stage_length"]
        .as_u64()
        .unwrap() as usize;
    interact(&svc, user, &items(201, length - 1)).await;
    settle(&svc).await;
    assert_eq!(stages_ok(&svc), 1.0);
    let old = svc.current();

    let sent = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(120);
    while Arc::ptr_eq(&old, &svc.current()) {
        assert!(Instant::now() < deadline, "SIGHUP did not reload the run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&svc, "hsuga_reloads_total{outcome=\"ok\"}"), 1.0);
    assert_eq!(svc.current().dir, old.dir);
    // The new run rebuilds the served user's embedding from the store.
    settle(&svc).await;
    let after = get(&svc, &format!("/v1/users/{user}/interests")).await;
    assert_eq!(after["embedding"], "online", "{after}");
    assert_eq!(stages_ok(&svc), 1.0, "a stored stage ran again");
}
