//! The shared OpenAI-compatible transport against a scripted axum server on
//! loopback: the server records when each request arrives, so the waits
//! between attempts are measured where they happen.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hsuga_text::transport::{FailureKind, Reject, Transport, TransportConfig};

/// What the server answers to request `n` (0-based), given the headers.
type Script = dyn Fn(usize, &HeaderMap) -> Response + Send + Sync;

/// Arrival times of the requests, and the most in flight at once.
#[derive(Default)]
struct Log {
    arrivals: Vec<Instant>,
    in_flight: usize,
    max_in_flight: usize,
}

/// Serves `script` at `/v1/x` on 127.0.0.1:0 in its own runtime thread.
fn serve(script: Box<Script>, hold: Duration) -> (String, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let (l, script) = (log.clone(), Arc::new(script));
    let app = Router::new().route(
        "/v1/x",
        post(move |headers: HeaderMap| {
            let (l, script) = (l.clone(), script.clone());
            async move {
                let n = {
                    let mut g = l.lock().unwrap();
                    g.arrivals.push(Instant::now());
                    g.in_flight += 1;
                    g.max_in_flight = g.max_in_flight.max(g.in_flight);
                    g.arrivals.len() - 1
                };
                tokio::time::sleep(hold).await;
                l.lock().unwrap().in_flight -= 1;
                script(n, &headers)
            }
        }),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{}/v1", rx.recv().unwrap()), log)
}

/// Settings for the server at `base_url` (the transport posts to `/x` under it).
fn settings(base_url: &str, backoff_s: f64) -> TransportConfig {
    TransportConfig {
        api_key_env: "HSUGA_TEST_NO_SUCH_KEY".into(),
        concurrency: 4,
        timeout_s: 10.0,
        max_retries: 4,
        backoff_s,
        max_backoff_s: 5.0,
        ..TransportConfig::new(base_url)
    }
}

fn text(bytes: &[u8]) -> Result<String, Reject> {
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn send(t: &Transport) -> Result<String, hsuga_text::transport::Failure> {
    t.block_on(t.post(&serde_json::json!({"q": 1}), text))
        .unwrap()
}

/// The waits between consecutive arrivals, in seconds.
fn gaps(log: &Mutex<Log>) -> Vec<f64> {
    let a = &log.lock().unwrap().arrivals;
    a.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect()
}

#[test]
fn retry_after_is_honoured_over_a_shorter_backoff() {
    let (url, log) = serve(
        Box::new(|n, _| {
            if n == 0 {
                let mut h = HeaderMap::new();
                h.insert("retry-after", "1".parse().unwrap());
                (StatusCode::TOO_MANY_REQUESTS, h, "slow down").into_response()
            } else {
                "ok".into_response()
            }
        }),
        Duration::ZERO,
    );
    let t = Transport::new(settings(&url, 0.01), "x").unwrap();
    assert_eq!(send(&t).unwrap(), "ok");
    let g = gaps(&log);
    assert_eq!(g.len(), 1);
    // The back-off alone would wait 0.01 s; the server asked for 1 s.
    assert!(
        g[0] >= 0.95,
        "retried after {:.3} s, Retry-After said 1 s",
        g[0]
    );
    assert!(g[0] < 3.0, "{:.3} s", g[0]);
}

#[test]
fn server_errors_back_off_exponentially_then_succeed() {
    let (url, log) = serve(
        Box::new(|n, _| {
            if n < 3 {
                (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()
            } else {
                "ok".into_response()
            }
        }),
        Duration::ZERO,
    );
    let t = Transport::new(settings(&url, 0.2), "x").unwrap();
    assert_eq!(send(&t).unwrap(), "ok");
    let g = gaps(&log);
    assert_eq!(g.len(), 3, "3 failures, then the answer");
    for (i, gap) in g.iter().enumerate() {
        let want = 0.2 * 2f64.powi(i as i32);
        assert!(*gap >= want * 0.95, "wait {i}: {gap:.3} s < {want} s");
        // Loose: the machine may be busy, but not by a whole further step.
        assert!(*gap < want + 1.0, "wait {i}: {gap:.3} s");
    }
}

#[test]
fn gives_up_after_the_retry_budget_and_does_not_retry_client_errors() {
    let (url, log) = serve(
        Box::new(|_, _| (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()),
        Duration::ZERO,
    );
    let mut s = settings(&url, 0.01);
    s.max_retries = 2;
    let f = send(&Transport::new(s.clone(), "x").unwrap()).unwrap_err();
    assert_eq!(log.lock().unwrap().arrivals.len(), 3);
    assert_eq!(f.attempts, 3);
    assert!(
        matches!(f.kind, FailureKind::Http { status: 500, .. }),
        "{f}"
    );
    assert!(f.to_string().contains("gave up after 3 attempts"), "{f}");

    let (url, log) = serve(
        Box::new(|_, _| (StatusCode::UNAUTHORIZED, "no key").into_response()),
        Duration::ZERO,
    );
    s.base_url = url;
    let f = send(&Transport::new(s, "x").unwrap()).unwrap_err();
    assert_eq!(log.lock().unwrap().arrivals.len(), 1);
    assert!(f.to_string().starts_with("HTTP 401"), "{f}");
}

#[test]
fn timeouts_are_retried_and_named() {
    let (url, log) = serve(
        Box::new(|_, _| "late".into_response()),
        Duration::from_secs(3),
    );
    let mut s = settings(&url, 0.01);
    s.timeout_s = 0.2;
    s.max_retries = 1;
    let t0 = Instant::now();
    let f = send(&Transport::new(s, "x").unwrap()).unwrap_err();
    assert_eq!(f.kind, FailureKind::Timeout);
    assert!(f.to_string().contains("timed out after 0.2 s"), "{f}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(log.lock().unwrap().arrivals.len(), 2);
}

#[test]
fn concurrency_is_bounded_across_callers() {
    let (url, log) = serve(
        Box::new(|_, _| "ok".into_response()),
        Duration::from_millis(80),
    );
    let mut s = settings(&url, 0.01);
    s.concurrency = 2;
    let t = Arc::new(Transport::new(s, "x").unwrap());
    std::thread::scope(|sc| {
        for _ in 0..6 {
            let t = t.clone();
            sc.spawn(move || assert_eq!(send(&t).unwrap(), "ok"));
        }
    });
    let g = log.lock().unwrap();
    assert_eq!(g.arrivals.len(), 6);
    assert!(g.max_in_flight <= 2, "{} in flight", g.max_in_flight);
}

#[test]
fn the_api_key_comes_from_the_named_environment_variable() {
    // PATH is set in any test environment; the key's value is checked as sent.
    let want = std::env::var("PATH").unwrap();
    let (url, _log) = serve(
        Box::new(|_, h| {
            let auth = h
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            auth.into_response()
        }),
        Duration::ZERO,
    );
    let mut s = settings(&url, 0.01);
    s.api_key_env = "PATH".into();
    let t = Transport::new(s, "x").unwrap();
    assert!(t.has_key());
    assert_eq!(send(&t).unwrap(), format!("Bearer {want}"));
    // No variable, no header.
    let t = Transport::new(settings(&url, 0.01), "x").unwrap();
    assert_eq!(send(&t).unwrap(), "");
}
