//! The OpenAI client against a real HTTP server on loopback that this test
//! starts: the crate's own OpenAI-compatible route in front of a back-end,
//! plus routes that inject faults (slow, 429, 500, malformed JSON, truncated
//! answers, missing usage, 400), and constrained output: the request body's
//! `response_format`, and the fallback when a server refuses it.

#[path = "support/chat_server.rs"]
mod chat_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hsuga_llm::openai::{OpenAiClient, OpenAiConfig, ResponseFormat};
use hsuga_llm::scripted::Scripted;
use hsuga_llm::{ChatBackend, ChatRequest, Finish, JsonSchema, LlmError, Message};
use serde_json::{Value, json};

#[derive(Default)]
struct Counters {
    flaky: AtomicUsize,
    busy: AtomicUsize,
    slow: AtomicUsize,
    malformed: AtomicUsize,
    bad: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

fn ok_body(content: &str, finish: &str, usage: bool) -> serde_json::Value {
    let mut v = json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}]
    });
    if usage {
        v["usage"] = json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18});
    }
    v
}

/// Starts the server on 127.0.0.1:0 in its own runtime thread; returns its base URL.
fn start(backend: Arc<dyn ChatBackend>, c: Arc<Counters>) -> String {
    let faults = {
        let c1 = c.clone();
        let c2 = c.clone();
        let c3 = c.clone();
        let c4 = c.clone();
        let c5 = c.clone();
        let c6 = c.clone();
        Router::new()
            .route(
                "/flaky/v1/chat/completions",
                post(move || {
                    let c = c1.clone();
                    async move {
                        if c.flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                            (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
                        } else {
                            axum::Json(ok_body("Final interests: 1. a", "stop", true))
                                .into_response()
                        }
                    }
                }),
            )
            .route(
                "/busy/v1/chat/completions",
                post(move || {
                    let c = c2.clone();
                    async move {
                        if c.busy.fetch_add(1, Ordering::SeqCst) < 1 {
                            let mut h = HeaderMap::new();
                            h.insert("retry-after", "0".parse().unwrap());
                            (StatusCode::TOO_MANY_REQUESTS, h, "slow down").into_response()
                        } else {
                            axum::Json(ok_body("ok", "stop", true)).into_response()
                        }
                    }
                }),
            )
            .route(
                "/slow/v1/chat/completions",
                post(move || {
                    let c = c3.clone();
                    async move {
                        c.slow.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        axum::Json(ok_body("late", "stop", true)).into_response()
                    }
                }),
            )
            .route(
                "/malformed/v1/chat/completions",
                post(move || {
                    let c = c4.clone();
                    async move {
                        c.malformed.fetch_add(1, Ordering::SeqCst);
                        Response::builder()
                            .status(200)
                            .header("content-type", "application/json")
                            .body(axum::body::Body::from("{\"choices\": [{\"mess"))
                            .unwrap()
                    }
                }),
            )
            .route(
                "/truncated/v1/chat/completions",
                post(|| async {
                    axum::Json(ok_body("Explanation: the user likes", "length", true))
                }),
            )
            .route(
                "/nousage/v1/chat/completions",
                post(|| async { axum::Json(ok_body("twelve chars", "stop", false)) }),
            )
            .route(
                "/bad/v1/chat/completions",
                post(move || {
                    let c = c5.clone();
                    async move {
                        c.bad.fetch_add(1, Ordering::SeqCst);
                        (StatusCode::BAD_REQUEST, "no such model").into_response()
                    }
                }),
            )
            .route(
                "/count/v1/chat/completions",
                post(move || {
                    let c = c6.clone();
                    async move {
                        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        c.max_in_flight.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(60)).await;
                        c.in_flight.fetch_sub(1, Ordering::SeqCst);
                        axum::Json(ok_body("ok", "stop", true)).into_response()
                    }
                }),
            )
    };
    serve(
        Router::new()
            .nest("/ok", chat_server::router(backend))
            .merge(faults),
    )
}

/// Serves `app` on 127.0.0.1:0 in its own runtime thread; returns its base URL.
fn serve(app: Router) -> String {
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
    let addr = rx.recv().unwrap();
    format!("http://{addr}")
}

fn client(base: &str, route: &str) -> OpenAiClient {
    let mut cfg = OpenAiConfig::new(format!("{base}/{route}/v1"), "test-model");
    cfg.transport.api_key_env = "HSUGA_TEST_NO_SUCH_KEY".into();
    cfg.transport.timeout_s = 0.4;
    cfg.transport.max_retries = 2;
    cfg.transport.backoff_s = 0.01;
    cfg.transport.max_backoff_s = 0.05;
    OpenAiClient::new(cfg).unwrap()
}

fn req() -> ChatRequest {
    ChatRequest::new(vec![
        Message::system("be brief"),
        Message::user("hello there"),
    ])
}

#[test]
fn openai_client_against_loopback_server_with_faults() {
    let echo = Arc::new(Scripted::new(|r, _| {
        Ok(format!("echo: {}", r.messages.last().unwrap().content))
    }));
    let counters = Arc::new(Counters::default());
    let base = start(echo.clone(), counters.clone());

    // Normal answer through the crate's own OpenAI-compatible route.
    let r = client(&base, "ok").chat(&req()).unwrap();
    assert_eq!(r.text, "echo: hello there");
    assert_eq!(r.finish, Finish::Stop);
    assert!(!r.usage.estimated);
    assert!(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);
    assert_eq!(echo.calls(), 1);

    // 500, 500, then OK: retried.
    let r = client(&base, "flaky").chat(&req()).unwrap();
    assert_eq!(r.text, "Final interests: 1. a");
    assert_eq!(counters.flaky.load(Ordering::SeqCst), 3);

    // 429 with Retry-After: retried.
    assert_eq!(client(&base, "busy").chat(&req()).unwrap().text, "ok");
    assert_eq!(counters.busy.load(Ordering::SeqCst), 2);

    // Slow server: every attempt times out; 1 + 2 retries, then a Timeout error.
    let t = Instant::now();
    let e = client(&base, "slow").chat(&req()).unwrap_err();
    assert!(matches!(e, LlmError::Timeout { .. }), "{e}");
    assert_eq!(counters.slow.load(Ordering::SeqCst), 3);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // Malformed JSON: retried, then reported as such.
    let e = client(&base, "malformed").chat(&req()).unwrap_err();
    assert!(matches!(e, LlmError::Malformed { .. }), "{e}");
    assert_eq!(counters.malformed.load(Ordering::SeqCst), 3);

    // Truncated answer: returned, marked as cut by length.
    let r = client(&base, "truncated").chat(&req()).unwrap();
    assert_eq!(r.finish, Finish::Length);

    // No usage in the response: estimated and marked.
    let r = client(&base, "nousage").chat(&req()).unwrap();
    assert!(r.usage.estimated);
    assert_eq!(r.usage.completion_tokens, 3);

    // 400 is not transient: one attempt only.
    let e = client(&base, "bad").chat(&req()).unwrap_err();
    assert!(matches!(e, LlmError::Http { status: 400, .. }), "{e}");
    assert_eq!(counters.bad.load(Ordering::SeqCst), 1);

    // Nothing listening: a transport error, not a panic.
    let mut cfg = OpenAiConfig::new("http://127.0.0.1:9/v1", "m");
    cfg.transport.max_retries = 0;
    let e = OpenAiClient::new(cfg).unwrap().chat(&req()).unwrap_err();
    assert!(
        matches!(e, LlmError::Transport { .. } | LlmError::Timeout { .. }),
        "{e}"
    );

    // Bounded concurrency: 6 threads, at most 2 requests in flight.
    let mut cfg = OpenAiConfig::new(format!("{base}/count/v1"), "m");
    cfg.transport.concurrency = 2;
    let c = OpenAiClient::new(cfg).unwrap();
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| c.chat(&req()).unwrap());
        }
    });
    let max = counters.max_in_flight.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max), "max in flight {max}");
}

fn schema() -> JsonSchema {
    JsonSchema {
        name: "hsu_selection".into(),
        schema: json!({"type": "object", "properties": {"instruction": {"type": "integer"}},
                       "required": ["instruction"]}),
    }
}

fn with_schema() -> ChatRequest {
    let mut r = req();
    r.schema = Some(schema());
    r
}

/// Routes that keep every request body: `/take` answers each; `/refuse`
/// answers 400 to any body with a `response_format`, as a server without
/// constrained output does; `/reject` answers 400 to everything.
fn recording_server(bodies: Arc<std::sync::Mutex<Vec<(String, Value)>>>) -> String {
    let route = |name: &'static str| {
        let bodies = bodies.clone();
        post(move |axum::Json(body): axum::Json<Value>| {
            let bodies = bodies.clone();
            async move {
                let refuse = match name {
                    "refuse" => body.get("response_format").is_some(),
                    "reject" => true,
                    _ => false,
                };
                bodies.lock().unwrap().push((name.to_string(), body));
                if refuse {
                    let e = json!({"error": {"code": 400, "type": "invalid_request_error",
                                   "message": "response_format is not supported"}});
                    (StatusCode::BAD_REQUEST, axum::Json(e)).into_response()
                } else {
                    let answer = "{\"instruction\": 3}";
                    axum::Json(ok_body(answer, "stop", true)).into_response()
                }
            }
        })
    };
    serve(
        Router::new()
            .route("/take/v1/chat/completions", route("take"))
            .route("/refuse/v1/chat/completions", route("refuse"))
            .route("/reject/v1/chat/completions", route("reject")),
    )
}

#[test]
fn a_request_schema_goes_out_as_response_format_json_schema() {
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let base = recording_server(bodies.clone());
    let c = client(&base, "take");
    c.chat(&with_schema()).unwrap();
    c.chat(&req()).unwrap();
    let mut cfg = client(&base, "take").config().clone();
    cfg.response_format = ResponseFormat::Text;
    OpenAiClient::new(cfg)
        .unwrap()
        .chat(&with_schema())
        .unwrap();
    let got = std::mem::take(&mut *bodies.lock().unwrap());
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[0].1["response_format"],
        json!({"type": "json_schema", "json_schema": {
            "name": "hsu_selection", "strict": true, "schema": schema().schema}})
    );
    // The rest of the body is as before.
    assert_eq!(got[0].1["model"], "test-model");
    assert_eq!(got[0].1["messages"][1]["content"], "hello there");
    // No schema, or `response_format = "text"`: no field at all.
    assert!(got[1].1.get("response_format").is_none(), "{}", got[1].1);
    assert!(got[2].1.get("response_format").is_none(), "{}", got[2].1);

    // Through the crate's OpenAI-compatible route, the back-end behind it
    // receives the same schema.
    let echo = Arc::new(Scripted::new(|_, _| Ok("ok".into())));
    let ok = start(echo.clone(), Arc::new(Counters::default()));
    client(&ok, "ok").chat(&with_schema()).unwrap();
    assert_eq!(echo.requests()[0].schema, Some(schema()));
}

#[test]
fn a_server_that_refuses_response_format_is_asked_again_without_it_for_the_session() {
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let base = recording_server(bodies.clone());
    let c = client(&base, "refuse");
    assert!(!c.schema_refused());
    let r = c.chat(&with_schema()).unwrap();
    assert_eq!(r.text, "{\"instruction\": 3}");
    assert!(c.schema_refused());
    // Remembered: the next call goes out without it at once.
    c.chat(&with_schema()).unwrap();
    let got = std::mem::take(&mut *bodies.lock().unwrap());
    let sent: Vec<bool> = got
        .iter()
        .map(|(_, b)| b.get("response_format").is_some())
        .collect();
    assert_eq!(sent, [true, false, false]);

    // A 400 that is not about the schema (the request fails without it
    // too) is the caller's error, and the schema is not given up.
    let c = client(&base, "reject");
    let e = c.chat(&with_schema()).unwrap_err();
    assert!(matches!(e, LlmError::Http { status: 400, .. }), "{e}");
    assert!(e.to_string().contains("not supported"), "{e}");
    assert!(!c.schema_refused());
    let got = std::mem::take(&mut *bodies.lock().unwrap());
    assert_eq!(got.len(), 2);
    // A request without a schema is sent once.
    c.chat(&req()).unwrap_err();
    assert_eq!(bodies.lock().unwrap().len(), 1);
}
