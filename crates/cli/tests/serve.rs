//! `hsuga serve` as a process: killed with SIGKILL in the middle of a write
//! load, then restarted on the same store, it has every interaction it
//! answered 2xx for exactly once, and a replayed event id is a duplicate;
//! SIGHUP reloads its run, and SIGTERM stops it cleanly.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN_ENV: &str = "HSUGA_SERVE_TEST_TOKEN";
const TOKEN: &str = "crash-test-token";

/// One HTTP/1.1 request on a fresh connection: status and body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {resp:?}")))?;
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// Starts `hsuga serve` on a free port; returns the child and its address.
fn start(run: &Path, state: &Path, cache: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hsuga"))
        .current_dir(common::repo())
        .env(TOKEN_ENV, TOKEN)
        .arg("--cache-dir")
        .arg(cache)
        .args(["serve", "--addr", "127.0.0.1:0", "--token-env", TOKEN_ENV])
        .arg("--run")
        .arg(run)
        .arg("--state")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("hsuga serve ended before serving")
            .unwrap();
        assert!(!line.contains(TOKEN), "the token was printed: {line}");
        if let Some(rest) = line.split_once(" on http://").map(|(_, r)| r) {
            break rest.split(';').next().unwrap().to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_interaction() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"served\"\ndataset = \"ml-100k\"\nout_dir = \"{}\"\n\
             [model]\nmax_len = 20\nhidden = 16\n[train]\nepochs = 1\n",
            dir.path().join("runs").display()
        ),
    )
    .unwrap();
    let out = common::hsuga(
        &cache,
        &["train", "--config", cfg.to_str().unwrap(), "--quiet"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("runs/served/seed-42");
    let state = dir.path().join("state/interactions.sqlite");

    let (mut server, addr) = start(&run, &state, &cache);
    // Four writers, one user each, one interaction per request; each item
    // is written once per user, so "exactly once" is countable by item.
    let acked: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, acked, stop) = (addr.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                for n in 1..1500 {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let body = format!(
                        "{{\"items\": [{{\"item\": \"{n}\", \"event_id\": \"w{w}-{n}\"}}]}}"
                    );
                    match http(
                        &addr,
                        "POST",
                        &format!("/v1/users/crash-{w}/interactions"),
                        &body,
                    ) {
                        Ok((200, _)) => acked.lock().unwrap().push((w, n)),
                        Ok((status, b)) => panic!("writer {w}: {status} {b}"),
                        // The kill: no answer, nothing acknowledged.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    while acked.lock().unwrap().len() < 200 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 200,
        "only {} writes acknowledged",
        acked.len()
    );

    let (mut server, addr) = start(&run, &state, &cache);
    for w in 0..4 {
        let (status, body) = http(&addr, "GET", &format!("/v1/users/crash-{w}"), "").unwrap();
        assert_eq!(status, 200, "{body}");
        let user: serde_json::Value = serde_json::from_str(&body).unwrap();
        let history: Vec<usize> = user["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["item"].as_str().unwrap().parse().unwrap())
            .collect();
        let mine: Vec<usize> = acked
            .iter()
            .filter(|(x, _)| *x == w)
            .map(|&(_, n)| n)
            .collect();
        for n in &mine {
            let times = history.iter().filter(|&&i| i == *n).count();
            assert_eq!(
                times, 1,
                "user crash-{w}: acknowledged item {n} is there {times} times"
            );
        }
        // At most the one request in flight at the kill got in unanswered.
        assert!(
            history.len() <= mine.len() + 1,
            "{} > {} + 1",
            history.len(),
            mine.len()
        );
    }
    // Replaying every acknowledged event adds nothing.
    let (w, n) = acked[acked.len() / 2];
    let body = format!("{{\"items\": [{{\"item\": \"{n}\", \"event_id\": \"w{w}-{n}\"}}]}}");
    let (status, answer) = http(
        &addr,
        "POST",
        &format!("/v1/users/crash-{w}/interactions"),
        &body,
    )
    .unwrap();
    assert_eq!(
        (status, answer.trim()),
        (200, "{\"accepted\":0,\"duplicates\":1}")
    );

    // SIGHUP reloads the run folder, as POST /v1/admin/reload does.
    let signal = |name: &str, pid: u32| {
        let sent = Command::new("kill")
            .args([name, &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {name} {pid}");
    };
    signal("-HUP", server.id());
    let reloaded = "hsuga_reloads_total{outcome=\"ok\"} 1";
    let t0 = Instant::now();
    loop {
        let (status, metrics) = http(&addr, "GET", "/metrics", "").unwrap();
        assert_eq!(status, 200, "{metrics}");
        if metrics.contains(reloaded) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no reload after SIGHUP:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = http(&addr, "GET", "/v1/users/crash-0", "").unwrap();
    assert_eq!(status, 200, "{body}");
    // SIGTERM: a graceful stop, exit status 0.
    signal("-TERM", server.id());
    let t0 = Instant::now();
    let exit = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}
