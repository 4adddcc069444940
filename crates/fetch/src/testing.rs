//! A scripted HTTP/1.1 file server on 127.0.0.1, for tests of the download
//! path (this crate's, and of every crate that fetches): it serves the
//! files it is given, honours `Range`, and misbehaves on request.
//!
//! Paths: `/<name>` serves a file (404 when unknown); `/drop-first/<name>`
//! promises the whole file on a request without `Range`, sends a third and
//! hangs up; `/no-range/<name>` ignores `Range`; `/busy-once/<name>`
//! answers 503 to the server's first request; `/stall` never answers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every request's path and `Range` header, in order.
type RequestLog = Mutex<Vec<(String, Option<String>)>>;

pub struct Server {
    port: u16,
    log: Arc<RequestLog>,
}

impl Server {
    /// Serves `files` (name → bytes) until the process ends.
    pub fn start(files: HashMap<String, Vec<u8>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(AtomicUsize::new(0));
        let files = Arc::new(files);
        let l = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (l, seen, files) = (l.clone(), seen.clone(), files.clone());
                std::thread::spawn(move || serve(stream, &files, &l, &seen));
            }
        });
        Self { port, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far: path and `Range` header.
    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn serve(mut s: TcpStream, files: &HashMap<String, Vec<u8>>, log: &RequestLog, seen: &AtomicUsize) {
    let Ok(clone) = s.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
            range = Some(v.trim().to_string());
        }
    }
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((path.clone(), range.clone()));
    let n = seen.fetch_add(1, Ordering::SeqCst);
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    let (mode, name) = match path.trim_start_matches('/').split_once('/') {
        Some((m, rest)) if ["drop-first", "no-range", "busy-once"].contains(&m) => (m, rest),
        _ => ("", path.trim_start_matches('/')),
    };
    match (mode, files.get(name)) {
        _ if path == "/stall" => std::thread::sleep(Duration::from_secs(5)),
        ("busy-once", Some(_)) if n == 0 => {
            let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        }
        ("drop-first", Some(body)) if from.is_none() => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body[..body.len() / 3]);
        }
        ("no-range", Some(body)) => send(&mut s, body, None),
        (_, Some(body)) => send(&mut s, body, from),
        (_, None) => {
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    }
    let _ = s.flush();
    let mut rest = Vec::new();
    let _ = s.set_read_timeout(Some(Duration::from_millis(10)));
    let _ = s.read_to_end(&mut rest);
}

fn send(s: &mut TcpStream, body: &[u8], from: Option<usize>) {
    let head = match from {
        Some(f) if f < body.len() => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {f}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len() - 1,
            body.len(),
            body.len() - f
        ),
        Some(_) => {
            let _ = s.write_all(b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n");
            return;
        }
        None => format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
    };
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&body[from.unwrap_or(0)..]);
}
