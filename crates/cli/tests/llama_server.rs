//! `hsuga hsu` against a real inference engine: llama.cpp's `llama-server`
//! serving Qwen2.5-Coder-0.5B-Instruct (issue 18, item 3), through the
//! OpenAI-compatible back-end with the shipped
//! `configs/hsu/openai-llama-server.toml` (small-model prompts, answers
//! constrained to HSU's JSON schemas). The harness (fetching the server and
//! the model, starting and killing the server) is `common::llama_server`.
//!
//! In the default run (a few ML-100K users, about a minute or two on two
//! cores once the files are fetched): answers parse, the server's token
//! usage is recorded for every stage, the server decoded several requests at
//! once (its `-np` slots), an `hsuga hsu` killed with SIGKILL mid-run then
//! resumed ends with exactly the stages an LLM-free run cuts (none lost,
//! none twice), and a server killed mid-run is retried, then reported (exit
//! 1, `n done, m failed, k pending`) with nothing stored wrongly. The bad
//! inputs of issue 18 on the server side: a server that does not know the
//! model name (404) and one that is not running — a clear error, users left
//! pending, and the next run against a working server completes them.
//!
//! `#[ignore]`d, for measurements (see the README): parse-failure rate with
//! and without constrained output on the same ten users, tokens and seconds
//! per stage, and a rerun after the server comes back.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::chat_server::ChatServer;
use common::llama_server::{self, LlamaServer};
use common::{output_text as text, repo};
use hsuga_hsu::store::{Status, Store};

/// The shipped config's variant: the store's rows are under it.
const VARIANT: &str = "llama-server-small";
/// Slots of the server, and requests hsuga keeps in flight.
const SLOTS: usize = 4;

/// The shipped llama-server config pointed at `base_url`, answering in
/// `format` ("json_schema" or "text").
fn config(dir: &Path, base_url: &str, format: &str) -> PathBuf {
    let shipped =
        std::fs::read_to_string(repo().join("configs/hsu/openai-llama-server.toml")).unwrap();
    let prompts = repo().join("configs/prompts/small.toml");
    let mut text = shipped;
    for (from, to) in [
        (
            "base_url = \"http://127.0.0.1:8080/v1\"".to_string(),
            format!("base_url = \"{base_url}\""),
        ),
        (
            "prompts = \"../prompts/small.toml\"".to_string(),
            format!("prompts = {prompts:?}"),
        ),
        (
            "response_format = \"json_schema\"".to_string(),
            format!("response_format = \"{format}\""),
        ),
    ] {
        assert_eq!(
            text.matches(&from).count(),
            1,
            "{from:?} in the shipped config"
        );
        text = text.replace(&from, &to);
    }
    let name: String = base_url
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let path = dir.join(format!("{format}-{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `hsuga hsu` on the `users` ML-100K users with the shortest histories.
fn hsu(cache: &Path, cfg: &Path, db: &Path, users: usize, length: usize) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hsuga"));
    c.current_dir(repo())
        .arg("--cache-dir")
        .arg(cache)
        .args(["hsu", "--dataset", "ml-100k", "--shortest"])
        .args(["--users", &users.to_string()])
        .args(["--stage-length", &length.to_string()])
        .arg("--config")
        .arg(cfg)
        .arg("--db")
        .arg(db);
    c
}

/// (user, stage, items) of every stored stage, in store order.
type Cut = Vec<(String, u32, Vec<String>)>;

fn cut_of(db: &Path, variant: &str) -> Cut {
    Store::open(db)
        .unwrap()
        .all_stages(variant)
        .unwrap()
        .into_iter()
        .map(|r| (r.user, r.stage, r.items))
        .collect()
}

/// The stages an LLM-free run (`rules`) cuts for the same users: which
/// stages a finished LLM run must hold, each once.
fn expected_cut(cache: &Path, dir: &Path, users: usize, length: usize) -> Cut {
    let db = dir.join("oracle.sqlite");
    let o = hsu(
        cache,
        &repo().join("configs/hsu/rules.toml"),
        &db,
        users,
        length,
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let cut = cut_of(&db, "rules");
    assert!(cut.len() >= 2 * users, "{cut:?}");
    cut
}

fn stored(db: &Path) -> usize {
    if !db.exists() {
        return 0;
    }
    Store::open(db)
        .and_then(|s| s.all_stages(VARIANT))
        .map(|r| r.len())
        .unwrap_or(0)
}

/// `hsuga hsu stats --json` of the run's store.
fn stats(cache: &Path, db: &Path) -> serde_json::Value {
    let o = common::hsuga(
        cache,
        &[
            "hsu",
            "stats",
            "--dataset",
            "ml-100k",
            "--db",
            db.to_str().unwrap(),
            "--variant",
            VARIANT,
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // One variant: an object, or a list of one.
    match v {
        serde_json::Value::Array(mut a) if a.len() == 1 => a.remove(0),
        v => v,
    }
}

/// Every stored stage holds the server's token counts for its calls.
fn assert_usage_recorded(db: &Path) -> (u64, u64) {
    let rows = Store::open(db).unwrap().all_stages(VARIANT).unwrap();
    for r in &rows {
        assert!(
            r.calls > 0 && r.tokens_in > 0 && r.tokens_out > 0,
            "stage without usage: user {} stage {} calls {} tokens {}/{}",
            r.user,
            r.stage,
            r.calls,
            r.tokens_in,
            r.tokens_out
        );
    }
    (
        rows.iter().map(|r| r.tokens_in).sum(),
        rows.iter().map(|r| r.tokens_out).sum(),
    )
}

/// Waits for `child` to store at least `rows` stages (false: it ended first).
fn wait_for_rows(child: &mut std::process::Child, db: &Path, rows: usize) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(600) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if stored(db) >= rows {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no {rows} stages stored within 10 minutes");
}

/// The `n done, m failed, k pending` counts of a run's summary line.
fn summary(out: &str) -> (usize, usize, usize) {
    let line = out
        .lines()
        .find(|l| l.contains(" done, ") && l.contains(" pending"))
        .unwrap_or_else(|| panic!("no summary line in:\n{out}"));
    let num = |word: &str| -> usize {
        let head = &line[..line.find(word).unwrap()];
        head.split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"))
    };
    (num(" done"), num(" failed"), num(" pending"))
}

/// Users, stage length: 4 users of 18 training items → 2 stages each
/// (reasoning; selection, then an edit unless it retains).
const QUICK_USERS: usize = 4;
const QUICK_LENGTH: usize = 9;
/// Highest share of unusable answers tolerated with constrained output (a
/// constrained answer always parses; what remains is degenerate content,
/// e.g. the worked example copied).
const MAX_PARSE_FAILURES: f64 = 0.25;

#[test]
fn hsu_on_llama_server_parses_records_usage_batches_and_survives_kills() {
    let t0 = Instant::now();
    let model = llama_server::model();
    llama_server::binary();
    let fetched = t0.elapsed();
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let want = expected_cut(cache.path(), dir.path(), QUICK_USERS, QUICK_LENGTH);

    let mut server = LlamaServer::start(&model, SLOTS, dir.path());
    let started = t0.elapsed();
    let cfg = config(dir.path(), &server.base_url(), "json_schema");
    let db = dir.path().join("hsu.sqlite");
    let run = || hsu(cache.path(), &cfg, &db, QUICK_USERS, QUICK_LENGTH);

    // Killed with SIGKILL once the first stages are stored, then resumed.
    let mut first = run()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let killed = wait_for_rows(&mut first, &db, 1);
    let _ = first.kill();
    first.wait().unwrap();
    // Each user's leading usable stages: what the rerun must reuse.
    let rows = Store::open(&db).unwrap().all_stages(VARIANT).unwrap();
    let reusable = rows
        .iter()
        .filter(|r| {
            r.status == Status::Ok
                && rows
                    .iter()
                    .filter(|o| o.user == r.user && o.stage < r.stage)
                    .all(|o| o.status == Status::Ok)
        })
        .count();
    let o = run().output().unwrap();
    let out = text(&o);
    let (done, failed, pending) = summary(&out);
    assert_eq!(pending, 0, "{out}");
    assert_eq!(done + failed, QUICK_USERS, "{out}");
    assert!(
        out.contains(&format!(" {reusable} reused")),
        "the {reusable} usable stages stored before the kill (killed: {killed}) are reused: {out}"
    );
    // No stage lost, none twice, each on the items an LLM-free run gives it.
    assert_eq!(cut_of(&db, VARIANT), want, "{out}");

    // Usage: the server's counts, for every stage; never more than the
    // server saw (the killed run's calls in flight are not stored).
    let (tin, tout) = assert_usage_recorded(&db);
    let m = server.metrics();
    let served_in = m["prompt_tokens_total"] + m["prompt_tokens_cached_total"];
    assert!(
        (tin as f64) <= served_in && (tout as f64) <= m["tokens_predicted_total"],
        "stored {tin}/{tout} tokens, served {served_in}/{}",
        m["tokens_predicted_total"]
    );
    // Batching: on average more than one slot was busy per decode step
    // (hsuga sending one request at a time gives exactly 1).
    let busy = m["n_busy_slots_per_decode"];
    assert!(busy > 1.5, "busy slots per decode {busy}: {m:?}");

    let s = stats(cache.path(), &db);
    let rate = s["parse_failure_rate"].as_f64().unwrap();
    assert!(
        rate <= MAX_PARSE_FAILURES,
        "parse failures {rate}: {s:#}\n{out}"
    );
    let ran = t0.elapsed();
    eprintln!(
        "llama-server quick run: {} stages, parse failures {:.1}% of {} calls, tokens/stage \
         in {:.1} out {:.1}, {:.1} s/stage (summed latencies), busy slots per decode {busy:.2}, \
         killed after {reusable} usable stages: {killed}; fetch {:.1} s, server start {:.1} s, \
         HSU runs {:.1} s",
        s["stages"],
        100.0 * rate,
        s["calls"],
        s["tokens_in_per_stage"].as_f64().unwrap(),
        s["tokens_out_per_stage"].as_f64().unwrap(),
        s["seconds_per_stage"].as_f64().unwrap(),
        fetched.as_secs_f64(),
        (started - fetched).as_secs_f64(),
        (ran - started).as_secs_f64()
    );

    // The server killed while requests are in flight: hsuga retries, then
    // reports the users pending and exits 1; what it stored is a prefix of
    // the right stages, and every call that failed is recorded.
    let db2 = dir.path().join("server-killed.sqlite");
    let second = hsu(cache.path(), &cfg, &db2, QUICK_USERS, QUICK_LENGTH)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while server.metrics()["requests_processing"] < 1.0 {
        assert!(t.elapsed() < Duration::from_secs(120), "no request arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    let o = second.wait_with_output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let (_, _, pending) = summary(&out);
    assert!(pending >= 1, "{out}");
    assert!(
        out.contains("gave up after 3 attempts"),
        "retried (max_retries = 2) before giving up: {out}"
    );
    let got = cut_of(&db2, VARIANT);
    assert!(got.iter().all(|g| want.contains(g)), "{got:?}");
    let failures = Store::open(&db2).unwrap().failures(VARIANT).unwrap();
    let call_errors = failures.iter().filter(|f| f.kind == "call_error").count();
    assert_eq!(call_errors, pending, "{failures:?}");
    eprintln!("whole test {:.1} s", t0.elapsed().as_secs_f64());
}

/// A server that does not know the configured model answers 404 (OpenAI,
/// vLLM; llama-server answers any name): every user is left pending with
/// the server's words, nothing is stored as a stage, and a run against a
/// server that knows the model completes them all.
#[test]
fn a_model_name_the_server_does_not_know_is_a_clear_error_and_loses_no_stage() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = ChatServer::start();
    server.status.store(404, Ordering::SeqCst);
    let cfg = config(dir.path(), &server.base_url(), "json_schema");
    let db = dir.path().join("hsu.sqlite");
    let o = hsu(cache.path(), &cfg, &db, 3, 9).output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_eq!(summary(&out), (0, 0, 3), "{out}");
    assert!(
        out.contains("HTTP 404")
            && out.contains("The model `qwen2.5-coder-0.5b-instruct` does not exist"),
        "{out}"
    );
    // 404 is not transient: one request per user, no retries.
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
    let store = Store::open(&db).unwrap();
    assert!(store.all_stages(VARIANT).unwrap().is_empty());
    let failures = store.failures(VARIANT).unwrap();
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(
        failures
            .iter()
            .all(|f| f.kind == "call_error" && f.message.contains("404")),
        "{failures:?}"
    );

    server.status.store(200, Ordering::SeqCst);
    server.good.store(true, Ordering::SeqCst);
    let o = hsu(cache.path(), &cfg, &db, 3, 9).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(summary(&text(&o)), (3, 0, 0));
    assert_eq!(
        cut_of(&db, VARIANT),
        expected_cut(cache.path(), dir.path(), 3, 9)
    );
}

/// Nothing listens at the configured address: after the client's retries
/// every user is pending, the error names the address, each failed call is
/// recorded, and no stage is stored.
#[test]
fn a_server_that_is_not_running_leaves_every_user_pending_with_the_reason() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}/v1");
    let cfg = config(dir.path(), &base, "json_schema");
    let db = dir.path().join("hsu.sqlite");
    let o: Output = hsu(cache.path(), &cfg, &db, 3, 9).output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_eq!(summary(&out), (0, 0, 3), "{out}");
    assert!(
        out.contains(&format!("127.0.0.1:{port}")) && out.contains("gave up after 3 attempts"),
        "{out}"
    );
    let store = Store::open(&db).unwrap();
    assert!(store.all_stages(VARIANT).unwrap().is_empty());
    let kinds: BTreeMap<String, usize> =
        store
            .failures(VARIANT)
            .unwrap()
            .into_iter()
            .fold(BTreeMap::new(), |mut m, f| {
                *m.entry(f.kind).or_default() += 1;
                m
            });
    assert_eq!(kinds, BTreeMap::from([("call_error".to_string(), 3)]));
}

/// Ten users, stage length 6 (3 stages each), once with constrained output
/// and once without, on one server; then the server is killed mid-run and
/// restarted, and the interrupted run is finished. Prints what the README
/// reports. About 10 minutes on two cores.
#[test]
#[ignore = "slow: two full HSU runs of ten users on a 0.5B model (run with --ignored)"]
fn parse_failure_rate_with_and_without_constrained_output_on_ten_users() {
    const USERS: usize = 10;
    const LENGTH: usize = 6;
    let model = llama_server::model();
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let want = expected_cut(cache.path(), dir.path(), USERS, LENGTH);
    let mut server = LlamaServer::start(&model, SLOTS, dir.path());
    for format in ["json_schema", "text"] {
        let cfg = config(dir.path(), &server.base_url(), format);
        let db = dir.path().join(format!("{format}.sqlite"));
        let t = Instant::now();
        let o = hsu(cache.path(), &cfg, &db, USERS, LENGTH)
            .output()
            .unwrap();
        let wall = t.elapsed().as_secs_f64();
        let out = text(&o);
        assert_eq!(summary(&out).2, 0, "{out}");
        assert_eq!(cut_of(&db, VARIANT), want);
        assert_usage_recorded(&db);
        let s = stats(cache.path(), &db);
        eprintln!(
            "response_format = {format}: parse failures {:.1}% of {} calls {}, ops {}, tokens/stage \
             in {:.1} out {:.1}, {:.2} s/stage (summed latencies), {:.1} s wall for {} stages",
            100.0 * s["parse_failure_rate"].as_f64().unwrap(),
            s["calls"],
            s["failures"],
            s["ops"],
            s["tokens_in_per_stage"].as_f64().unwrap(),
            s["tokens_out_per_stage"].as_f64().unwrap(),
            s["seconds_per_stage"].as_f64().unwrap(),
            wall,
            s["stages"]
        );
        for r in Store::open(&db)
            .unwrap()
            .all_stages(VARIANT)
            .unwrap()
            .iter()
            .take(6)
        {
            eprintln!(
                "  {} stage {} {:?}: {:?}",
                r.user, r.stage, r.op, r.interests
            );
        }
        if format == "json_schema" {
            let rate = s["parse_failure_rate"].as_f64().unwrap();
            assert!(rate <= MAX_PARSE_FAILURES, "{s:#}");
        }
    }
    eprintln!("{:?}", server.metrics());

    // Killed server: retried, reported; restarted: the rerun finishes with
    // every stage once.
    let cfg = config(dir.path(), &server.base_url(), "json_schema");
    let db = dir.path().join("restart.sqlite");
    let run = hsu(cache.path(), &cfg, &db, USERS, LENGTH)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while stored(&db) < USERS {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill();
    let o = run.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(summary(&text(&o)).2 >= 1, "{}", text(&o));
    let server = LlamaServer::start(&model, SLOTS, dir.path());
    let cfg = config(dir.path(), &server.base_url(), "json_schema");
    let o = hsu(cache.path(), &cfg, &db, USERS, LENGTH)
        .output()
        .unwrap();
    assert_eq!(summary(&text(&o)).2, 0, "{}", text(&o));
    assert_eq!(cut_of(&db, VARIANT), want);
}
