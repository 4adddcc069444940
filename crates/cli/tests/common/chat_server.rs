//! A minimal OpenAI-compatible `/v1/chat/completions` on loopback whose
//! behaviour a test changes between runs: every request gets the same
//! answer, gibberish or usable as `good` says, or, while `status` is not
//! 200, that status with an OpenAI-style error naming the requested model
//! (404: "The model `m` does not exist.", as OpenAI and vLLM answer).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};

pub struct ChatServer {
    pub port: u16,
    pub good: Arc<AtomicBool>,
    pub status: Arc<AtomicU16>,
    pub requests: Arc<AtomicUsize>,
}

impl ChatServer {
    /// Answers gibberish until `good` is set.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = Self {
            port,
            good: Arc::new(AtomicBool::new(false)),
            status: Arc::new(AtomicU16::new(200)),
            requests: Arc::new(AtomicUsize::new(0)),
        };
        let (g, s, n) = (
            server.good.clone(),
            server.status.clone(),
            server.requests.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (g, s, n) = (g.clone(), s.clone(), n.clone());
                std::thread::spawn(move || answer(stream, &g, &s, &n));
            }
        });
        server
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

fn answer(stream: TcpStream, good: &AtomicBool, status: &AtomicU16, requests: &AtomicUsize) {
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
    let status = status.load(Ordering::SeqCst);
    let json = if status != 200 {
        let model = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["model"].as_str().map(str::to_string))
            .unwrap_or_default();
        serde_json::json!({"error": {
            "message": format!("The model `{model}` does not exist."),
            "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})
    } else {
        let text = if good.load(Ordering::SeqCst) {
            "Explanation: the history.\nInstruction: 1\nFinal interests:\n1. Drama\n2. Comedy"
        } else {
            "zxqv wubba lubba"
        };
        serde_json::json!({
            "id": "x",
            "object": "chat.completion",
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        })
    }
    .to_string();
    let reason = if status == 200 { "OK" } else { "Error" };
    let mut s = stream;
    let _ = write!(
        s,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{json}",
        json.len()
    );
}
