//! `hsuga hsu` against a real HTTP chat server whose behaviour changes
//! between runs (issue 20, case 6): refused connections leave every user
//! pending, gibberish leaves every user failed — both a non-zero exit with
//! the `n done, m failed, k pending` summary — and once the server answers
//! properly the next run recomputes the failed stages and exits 0.

mod common;

use std::net::TcpListener;
use std::process::Output;
use std::sync::atomic::Ordering;

use common::chat_server::ChatServer;
use common::{hsuga, output_text as text, repo};

fn config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("heal.toml");
    let prompts = repo().join("configs/prompts/paper.toml");
    std::fs::write(
        &path,
        format!(
            "variant = \"heal\"\nprompts = {prompts:?}\n[backend]\nkind = \"openai\"\n\
             base_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"m\"\nmax_retries = 0\n\
             timeout_s = 10.0\nconcurrency = 2\n[stages]\nlength = 40\n\
             [engine]\nmax_attempts = 1\n"
        ),
    )
    .unwrap();
    path
}

fn run(cache: &std::path::Path, cfg: &std::path::Path) -> Output {
    hsuga(
        cache,
        &[
            "hsu",
            "--dataset",
            "ml-100k",
            "--users",
            "3",
            "--config",
            cfg.to_str().unwrap(),
        ],
    )
}

#[test]
fn hsu_exits_non_zero_while_users_are_pending_or_failed_and_heals_when_the_server_does() {
    let cache = tempfile::tempdir().unwrap();
    // Nothing listens: every user is left pending.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let o = run(cache.path(), &config(cache.path(), port));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("0 done, 0 failed, 3 pending"),
        "{}",
        text(&o)
    );

    // A server that answers gibberish: every user failed, non-zero again.
    let server = ChatServer::start();
    let cfg = config(cache.path(), server.port);
    let o = run(cache.path(), &cfg);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("0 done, 3 failed, 0 pending"),
        "{}",
        text(&o)
    );
    let failed_calls = server.requests.load(Ordering::SeqCst);
    assert!(failed_calls > 0);

    // The server is fixed: the failed stages are computed again, and the
    // run succeeds (it would reuse them, "N reused", if failures were final).
    server.good.store(true, Ordering::SeqCst);
    let o = run(cache.path(), &cfg);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("3 done, 0 failed, 0 pending"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains(" 0 reused"), "{}", text(&o));
    assert!(server.requests.load(Ordering::SeqCst) > failed_calls);

    // Healed: a rerun calls nothing and succeeds.
    let before = server.requests.load(Ordering::SeqCst);
    let o = run(cache.path(), &cfg);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(server.requests.load(Ordering::SeqCst), before);
}
