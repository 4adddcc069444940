//! `hsuga hsu` against a real HTTP chat server whose behaviour changes
//! between runs (issue 20, case 6): refused connections leave every user
//! pending, gibberish leaves every user failed — both a non-zero exit with
//! the `n done, m failed, k pending` summary — and once the server answers
//! properly the next run recomputes the failed stages and exits 0.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{hsuga, repo};

/// A minimal OpenAI-compatible `/v1/chat/completions`: every request gets
/// the same answer, gibberish or usable as `good` says.
struct ChatServer {
    port: u16,
    good: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
}

impl ChatServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let good = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (g, n) = (good.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (g, n) = (g.clone(), n.clone());
                std::thread::spawn(move || answer(stream, &g, &n));
            }
        });
        Self {
            port,
            good,
            requests,
        }
    }
}

fn answer(stream: TcpStream, good: &AtomicBool, requests: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let text = if good.load(Ordering::SeqCst) {
        "Explanation: the history.\nInstruction: 1\nFinal interests:\n1. Drama\n2. Comedy"
    } else {
        "zxqv wubba lubba"
    };
    let json = serde_json::json!({
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    })
    .to_string();
    let mut s = stream;
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{json}",
        json.len()
    );
}

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

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
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
