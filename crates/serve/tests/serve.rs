//! The service end to end, in process: a real SASRec run trained here on
//! ML-100K (2 epochs, a few seconds, once per test binary), its router
//! driven through `tower::ServiceExt::oneshot`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use hsuga_serve::{BatchConfig, Limits, Options, Run, RunSource, Service, router};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "s3cret-token-for-tests";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn source(cache: &Path) -> RunSource {
    RunSource {
        cache_dir: cache.to_path_buf(),
        models_dir: cache.join("models"),
        hsu_configs: repo().join("configs/hsu"),
        resolve_dataset: Arc::new(|entry: &str| Ok(PathBuf::from(entry))),
    }
}

/// The trained run folder and the cache it was prepared in, shared by
/// every test of this binary (kept for the process's life).
fn trained() -> &'static (PathBuf, PathBuf) {
    static RUN: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let cache = root.join("cache");
        let dataset = repo().join("configs/datasets/ml-100k.toml");
        let cfg = hsuga_train::RunConfig::from_toml(&format!(
            "name = \"serve\"\ndataset = \"{}\"\nout_dir = \"{}\"\n\
             [model]\nhidden = 16\nmax_len = 20\n[train]\nepochs = 2\nprogress = false\n",
            dataset.display(),
            root.join("runs").display()
        ))
        .unwrap();
        let dirs = hsuga_experiment::InputDirs {
            cache_dir: &cache,
            models_dir: &root.join("models"),
            hsu_configs: &repo().join("configs/hsu"),
        };
        let resolve = |entry: &str| Ok(PathBuf::from(entry));
        let report =
            hsuga_experiment::train_one(&cfg, &dirs, &resolve, Default::default()).unwrap();
        (report.dir, cache)
    })
}

/// A fresh service (its own store) over the shared run.
fn service_with(token: Option<&str>, batch: BatchConfig) -> (Arc<Service>, tempfile::TempDir) {
    let (dir, cache) = trained();
    let state = tempfile::tempdir().unwrap();
    let run = Run::load(dir, &source(cache)).unwrap();
    let svc = Service::new(
        run,
        source(cache),
        Options {
            state: state.path().join("interactions.sqlite"),
            token: token.map(str::to_string),
            limits: Limits::default(),
            batch,
            hsu_queue: hsuga_serve::DEFAULT_HSU_QUEUE,
        },
    )
    .unwrap();
    (svc, state)
}

fn service() -> (Arc<Service>, tempfile::TempDir) {
    service_with(Some(TOKEN), BatchConfig::default())
}

struct Answer {
    status: StatusCode,
    body: Value,
    text: String,
}

async fn send(svc: &Arc<Service>, req: Request<Body>) -> Answer {
    let resp = router(svc.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer { status, body, text }
}

async fn get(svc: &Arc<Service>, uri: &str) -> Answer {
    send(svc, Request::get(uri).body(Body::empty()).unwrap()).await
}

fn post_req(uri: &str, token: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(body.into()).unwrap()
}

async fn post(svc: &Arc<Service>, uri: &str, body: Value) -> Answer {
    send(svc, post_req(uri, Some(TOKEN), body.to_string())).await
}

fn items_of(a: &Answer) -> Vec<String> {
    a.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {}", a.text))
        .iter()
        .map(|i| i["item"].as_str().unwrap().to_string())
        .collect()
}

fn scores_of(a: &Answer) -> Vec<f64> {
    a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["score"].as_f64().unwrap())
        .collect()
}

fn history_of(svc: &Service, user: &str) -> Vec<String> {
    svc.user(user)
        .unwrap()
        .history
        .into_iter()
        .map(|i| i.item)
        .collect()
}

#[tokio::test]
async fn recommendations_have_the_documented_shape_and_leave_out_seen_items() {
    let (svc, _state) = service();
    let a = get(&svc, "/v1/users/1/recommendations?k=10").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["user"], "1");
    let items = a.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 10);
    for it in items {
        let o = it.as_object().unwrap();
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["item", "score", "title"], "{it}");
        assert!(o["score"].is_f64(), "{it}");
        // Raw ids with titles from the dataset's item file.
        assert!(svc.item(o["item"].as_str().unwrap()).is_ok(), "{it}");
        assert!(!o["title"].as_str().unwrap().is_empty(), "{it}");
    }
    let scores = scores_of(&a);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let seen = history_of(&svc, "1");
    assert!(seen.len() > 20);
    assert!(items_of(&a).iter().all(|i| !seen.contains(i)));
    // With include_seen the best-scored items include seen ones (user 1's
    // 272 items fill a good part of a 1682-item catalogue's top 500).
    let all = get(&svc, "/v1/users/1/recommendations?k=500&include_seen=true").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert!(items_of(&all).iter().any(|i| seen.contains(i)));
    // The item route gives the same title and the template's text.
    let first = &items[0];
    let item = get(
        &svc,
        &format!("/v1/items/{}", first["item"].as_str().unwrap()),
    )
    .await;
    assert_eq!(item.status, StatusCode::OK);
    assert_eq!(item.body["title"], first["title"]);
    assert!(item.body["text"].as_str().unwrap().starts_with("Title: "));
}

#[tokio::test]
async fn an_interaction_is_excluded_next_time_and_changes_the_scores() {
    let (svc, _state) = service();
    let before = get(&svc, "/v1/users/5/recommendations?k=20").await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text);
    let top = items_of(&before)[0].clone();
    let body = json!({"items": [{"item": top, "timestamp": 881250949, "event_id": "e-5-1"}]});
    let a = post(&svc, "/v1/users/5/interactions", body.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body, json!({"accepted": 1, "duplicates": 0}));
    assert_eq!(history_of(&svc, "5").last(), Some(&top));
    let after = get(&svc, "/v1/users/5/recommendations?k=20").await;
    assert!(!items_of(&after).contains(&top), "{}", after.text);
    // The history itself changed the model's input, not only the filter:
    // an item in both answers has another score.
    let (b_items, b_scores) = (items_of(&before), scores_of(&before));
    let (a_items, a_scores) = (items_of(&after), scores_of(&after));
    let common = a_items
        .iter()
        .position(|i| b_items.contains(i))
        .expect("some item in both answers");
    let old = b_scores[b_items.iter().position(|i| *i == a_items[common]).unwrap()];
    assert!((a_scores[common] - old).abs() > 1e-6, "score unchanged");
    // Replaying the event is a duplicate and changes nothing.
    let again = post(&svc, "/v1/users/5/interactions", body).await;
    assert_eq!(again.body, json!({"accepted": 0, "duplicates": 1}));
    let len = history_of(&svc, "5").len();
    assert_eq!(
        history_of(&svc, "5").iter().filter(|i| **i == top).count(),
        history_of(&svc, "5")[..len - 1]
            .iter()
            .filter(|i| **i == top)
            .count()
            + 1
    );
}

#[tokio::test]
async fn a_new_user_appears_on_first_interaction_and_scores_like_the_same_anonymous_history() {
    let (svc, _state) = service();
    let unknown = get(&svc, "/v1/users/newcomer/recommendations").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.body["error"].as_str().unwrap().contains("newcomer"));
    let history = ["50", "181", "258"];
    let items: Vec<Value> = history.iter().map(|i| json!({"item": i})).collect();
    let a = post(
        &svc,
        "/v1/users/newcomer/interactions",
        json!({ "items": items }),
    )
    .await;
    assert_eq!(
        a.body,
        json!({"accepted": 3, "duplicates": 0}),
        "{}",
        a.text
    );
    let user = get(&svc, "/v1/users/newcomer/recommendations?k=15").await;
    assert_eq!(user.status, StatusCode::OK, "{}", user.text);
    let anon = post(
        &svc,
        "/v1/recommendations",
        json!({"history": history, "k": 15}),
    )
    .await;
    assert_eq!(anon.status, StatusCode::OK, "{}", anon.text);
    assert_eq!(anon.body["user"], Value::Null);
    assert_eq!(items_of(&user), items_of(&anon));
    assert_eq!(scores_of(&user), scores_of(&anon));
    assert!(
        items_of(&user)
            .iter()
            .all(|i| !history.contains(&i.as_str()))
    );
}

#[tokio::test]
async fn interactions_survive_a_restart_on_the_same_store() {
    let (dir, cache) = trained();
    let state = tempfile::tempdir().unwrap();
    let opts = || Options {
        state: state.path().join("s.sqlite"),
        token: Some(TOKEN.into()),
        limits: Limits::default(),
        batch: BatchConfig::default(),
        hsu_queue: hsuga_serve::DEFAULT_HSU_QUEUE,
    };
    let svc = Service::new(
        Run::load(dir, &source(cache)).unwrap(),
        source(cache),
        opts(),
    )
    .unwrap();
    let a = post(
        &svc,
        "/v1/users/7/interactions",
        json!({"items": [{"item": "1", "event_id": "r1"}]}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let before = history_of(&svc, "7");
    drop(svc);
    let svc = Service::new(
        Run::load(dir, &source(cache)).unwrap(),
        source(cache),
        opts(),
    )
    .unwrap();
    assert_eq!(history_of(&svc, "7"), before);
    let again = post(
        &svc,
        "/v1/users/7/interactions",
        json!({"items": [{"item": "1", "event_id": "r1"}]}),
    )
    .await;
    assert_eq!(again.body, json!({"accepted": 0, "duplicates": 1}));
}

#[tokio::test]
async fn writes_need_the_token_and_are_off_without_one() {
    let (svc, _state) = service();
    let body = json!({"items": [{"item": "1"}]}).to_string();
    for token in [None, Some("wrong")] {
        let a = send(
            &svc,
            post_req("/v1/users/9/interactions", token, body.clone()),
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);
        assert!(!a.text.contains(TOKEN));
        let r = send(
            &svc,
            post_req("/v1/admin/reload", token, json!({"run": "x"}).to_string()),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    assert!(svc.user("9").unwrap().from_dataset == svc.user("9").unwrap().history.len());
    let (open, _state) = service_with(None, BatchConfig::default());
    let a = send(
        &open,
        post_req("/v1/users/9/interactions", Some(TOKEN), body),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    assert!(a.body["error"].as_str().unwrap().contains("--token-env"));
    // Reads stay open.
    let r = get(&open, "/v1/users/9/recommendations").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_input_is_a_4xx_that_names_the_problem() {
    let (svc, _state) = service();
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            post_req("/v1/recommendations", None, "{\"history\": [\"1\""),
            StatusCode::BAD_REQUEST,
            "EOF",
        ),
        (
            post_req("/v1/recommendations", None, "{\"history\": \"1\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "history",
        ),
        (
            post_req(
                "/v1/recommendations",
                None,
                "{\"history\": [\"1\"], \"kk\": 3}",
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `kk`",
        ),
        (
            post_req(
                "/v1/recommendations",
                None,
                b"{\"history\": [\"\xff\xfe\"]}".to_vec(),
            ),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            post_req(
                "/v1/recommendations",
                None,
                json!({"history": []}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "at least one item",
        ),
        (
            post_req(
                "/v1/recommendations",
                None,
                json!({"history": ["1", "no-such-item"]}).to_string(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown item `no-such-item`",
        ),
        (
            post_req(
                "/v1/recommendations",
                None,
                json!({"history": ["1"], "k": 0}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "k must be between 1 and 1000, got 0",
        ),
        (
            post_req(
                "/v1/recommendations",
                None,
                json!({"history": ["1"], "k": 1e30}).to_string(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "k",
        ),
        (
            post_req(
                "/v1/recommendations",
                None,
                json!({"history": vec!["1"; 10_001]}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "at most 10000",
        ),
        (
            post_req("/v1/recommendations", None, vec![b' '; 2 << 20]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "length limit",
        ),
        (
            Request::post("/v1/recommendations")
                .body(Body::from(json!({"history": ["1"]}).to_string()))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            Request::get("/v1/users/1/recommendations?k=-5")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "k must be between 1 and 1000, got -5",
        ),
        (
            Request::get("/v1/users/1/recommendations?k=99999999999999999999999")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "k",
        ),
        (
            Request::get("/v1/users/1/recommendations?k=ten")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "k",
        ),
        (
            Request::get("/v1/users/1/recommendations?kk=3")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "unknown field `kk`",
        ),
        (
            Request::get("/v1/users/%FF%FE/recommendations")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "UTF-8",
        ),
        (
            Request::get("/v1/items/no-such-item")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
            "unknown item `no-such-item`",
        ),
        (
            Request::get(format!("/v1/users/{}/recommendations", "u".repeat(300)))
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "at most 256",
        ),
        (
            Request::get("/v1/nothing-here")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
            "no route GET /v1/nothing-here",
        ),
        (
            post_req(
                "/v1/users/1/interactions",
                Some(TOKEN),
                json!({"items": [{"item": "1"}, {"item": "nope"}, {"item": "nada"}]}).to_string(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown items `nope`, `nada`",
        ),
        (
            post_req(
                "/v1/users/1/interactions",
                Some(TOKEN),
                json!({"items": [{"item": "1", "when": 3}]}).to_string(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `when`",
        ),
        (
            post_req(
                "/v1/users/1/interactions",
                Some(TOKEN),
                json!({"items": [{"item": "1", "timestamp": "yesterday"}]}).to_string(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "timestamp",
        ),
        (
            post_req(
                "/v1/users/1/interactions",
                Some(TOKEN),
                json!({"items": []}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "at least one interaction",
        ),
        (
            post_req(
                "/v1/admin/reload",
                Some(TOKEN),
                json!({"run": "/no/such/run/folder"}).to_string(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "/no/such/run/folder",
        ),
    ];
    let history_before = history_of(&svc, "1");
    for (req, want, says) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let a = send(&svc, req).await;
        assert_eq!(a.status, want, "{what}: {}", a.text);
        let msg = a.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: not a JSON error: {}", a.text));
        assert!(msg.contains(says), "{what}: {msg}");
    }
    // Nothing was written by the refused interactions, and the service
    // still answers after all of it.
    assert_eq!(history_of(&svc, "1"), history_before);
    assert_eq!(
        get(&svc, "/v1/users/1/recommendations").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_that_answer() {
    let (svc, _state) = service();
    let doc = get(&svc, "/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc.body["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    documented.sort();
    let mut routes: Vec<(String, String)> = [
        ("GET", "/"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/v1/run"),
        ("GET", "/v1/users/{user}"),
        ("GET", "/v1/users/{user}/recommendations"),
        ("GET", "/v1/users/{user}/interests"),
        ("POST", "/v1/recommendations"),
        ("POST", "/v1/users/{user}/interactions"),
        ("GET", "/v1/items/{item}"),
        ("POST", "/v1/admin/reload"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    routes.sort();
    assert_eq!(documented, routes);
    // Every documented operation is routed: none falls through to the
    // fallback or gets 405.
    for (m, p) in &documented {
        let uri = p.replace("{user}", "1").replace("{item}", "1");
        let req = Request::builder()
            .method(Method::from_bytes(m.as_bytes()).unwrap())
            .uri(&uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let a = send(&svc, req).await;
        assert!(
            a.status != StatusCode::METHOD_NOT_ALLOWED && !a.text.contains("no route"),
            "{m} {uri}: {} {}",
            a.status,
            a.text
        );
    }
    // The bodies deny unknown fields in the schema too.
    let schema = &doc.body["components"]["schemas"]["InteractionIn"];
    assert_eq!(schema["additionalProperties"], false, "{schema}");
}

/// The bounds the document states are the ones the service enforces
/// (`Limits::default()`, what `hsuga serve` runs with): schemathesis
/// (`benches/serve_fuzz.sh`) generates requests from the document, and a
/// bound stated in only one place made it find schema-valid requests
/// refused with a 400 (`k=-9223372036854775808`, `"history": []`,
/// `"items": []`).
#[tokio::test]
async fn the_documented_bounds_are_the_enforced_ones() {
    let (svc, _state) = service();
    let limits = Limits::default();
    let doc = get(&svc, "/openapi.json").await.body;
    let schemas = &doc["components"]["schemas"];
    let k_param = doc["paths"]["/v1/users/{user}/recommendations"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "k")
        .unwrap()["schema"]
        .clone();
    let user_param = doc["paths"]["/v1/users/{user}"]["get"]["parameters"][0]["schema"].clone();
    let checks = [
        (&k_param["minimum"], 1),
        (&k_param["maximum"], limits.max_k),
        (&schemas["HistoryRequest"]["properties"]["k"]["minimum"], 1),
        (
            &schemas["HistoryRequest"]["properties"]["k"]["maximum"],
            limits.max_k,
        ),
        (
            &schemas["HistoryRequest"]["properties"]["history"]["minItems"],
            1,
        ),
        (
            &schemas["HistoryRequest"]["properties"]["history"]["maxItems"],
            limits.max_history,
        ),
        (
            &schemas["InteractionsRequest"]["properties"]["items"]["minItems"],
            1,
        ),
        (
            &schemas["InteractionsRequest"]["properties"]["items"]["maxItems"],
            limits.max_interactions,
        ),
        (
            &schemas["InteractionIn"]["properties"]["event_id"]["maxLength"],
            limits.max_id_bytes,
        ),
        (&user_param["minLength"], 1),
        (&user_param["maxLength"], limits.max_id_bytes),
    ];
    for (i, (got, want)) in checks.iter().enumerate() {
        assert_eq!(got.as_u64(), Some(*want as u64), "bound {i}: {doc}");
    }
    // And the service draws the line exactly there.
    let max_k = limits.max_k;
    for (k, status) in [
        (1, StatusCode::OK),
        (max_k, StatusCode::OK),
        (max_k + 1, StatusCode::BAD_REQUEST),
    ] {
        let a = get(&svc, &format!("/v1/users/1/recommendations?k={k}")).await;
        assert_eq!(a.status, status, "k={k}: {}", a.text);
    }
    let a = get(&svc, "/v1/users/1/recommendations?k=0").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    let long = "u".repeat(limits.max_id_bytes + 1);
    assert_eq!(
        get(&svc, &format!("/v1/users/{long}")).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn metrics_count_and_time_each_route_by_its_template() {
    let (svc, _state) = service();
    for _ in 0..3 {
        get(&svc, "/v1/users/2/recommendations").await;
    }
    get(&svc, "/v1/users/nobody/recommendations").await;
    let m = get(&svc, "/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    let line = |want: &str| {
        m.text
            .lines()
            .find(|l| l.starts_with(want))
            .unwrap_or_else(|| panic!("no `{want}` in\n{}", m.text))
            .to_string()
    };
    assert!(line("hsuga_http_requests_total{method=\"GET\",route=\"/v1/users/{user}/recommendations\",status=\"200\"}").ends_with(" 3"));
    assert!(line("hsuga_http_requests_total{method=\"GET\",route=\"/v1/users/{user}/recommendations\",status=\"404\"}").ends_with(" 1"));
    assert!(
        line(
            "hsuga_http_request_duration_seconds_count{route=\"/v1/users/{user}/recommendations\"}"
        )
        .ends_with(" 4")
    );
    assert!(!m.text.contains("nobody"), "ids must not become labels");
}

#[tokio::test]
async fn concurrent_requests_share_forward_passes_and_get_the_serial_answers() {
    let window = BatchConfig {
        window: Duration::from_millis(50),
        ..BatchConfig::default()
    };
    let (batched, _s1) = service_with(None, window);
    let (serial, _s2) = service();
    let users: Vec<String> = (1..=24).map(|u| u.to_string()).collect();
    let asks = users.iter().map(|u| {
        let (svc, uri) = (
            batched.clone(),
            format!("/v1/users/{u}/recommendations?k=10"),
        );
        async move { get(&svc, &uri).await }
    });
    let together = futures_join_all(asks.collect()).await;
    for (u, a) in users.iter().zip(&together) {
        let alone = get(&serial, &format!("/v1/users/{u}/recommendations?k=10")).await;
        assert_eq!(items_of(a), items_of(&alone), "user {u}");
        for (x, y) in scores_of(a).iter().zip(scores_of(&alone)) {
            assert!((x - y).abs() < 1e-4, "user {u}: {x} vs {y}");
        }
    }
    // Fewer forward passes than requests.
    let m = get(&batched, "/metrics").await.text;
    let value = |name: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let passes = value("hsuga_scoring_batch_rows_count");
    assert_eq!(value("hsuga_scoring_batch_rows_sum"), 24.0);
    assert!(passes < 24.0, "{passes} forward passes for 24 requests");
}

/// `join_all` without the futures crate: each on its own task.
async fn futures_join_all<F>(futs: Vec<F>) -> Vec<Answer>
where
    F: std::future::Future<Output = Answer> + Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn reload_swaps_runs_and_a_refused_folder_keeps_the_old_one() {
    let (svc, _state) = service();
    let (dir, _) = trained();
    let old = svc.current();
    let a = post(&svc, "/v1/admin/reload", json!({"run": dir})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["dataset"], "ml-100k");
    assert!(!Arc::ptr_eq(&old, &svc.current()), "not swapped");
    // A request holding the old run still scores on it.
    let top = svc
        .recommend_history_on(old.clone(), &["1".into()], Some(5), false)
        .await
        .unwrap();
    assert_eq!(top.items.len(), 5);
    let now = svc.current();
    let r = post(&svc, "/v1/admin/reload", json!({"run": "/no/such/folder"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        Arc::ptr_eq(&now, &svc.current()),
        "a refused reload swapped"
    );
    assert!(
        get(&svc, "/metrics")
            .await
            .text
            .contains("hsuga_reloads_total{outcome=\"refused\"} 1")
    );
}

/// A copy of the trained run folder to damage.
fn copy_run() -> (tempfile::TempDir, PathBuf) {
    let (dir, _) = trained();
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("run");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
    (tmp, to)
}

#[test]
fn unfinished_incomplete_and_unservable_folders_are_refused_by_name() {
    let (_, cache) = trained();
    let load = |d: &Path| Run::load(d, &source(cache)).err().unwrap().to_string();
    let e = load(Path::new("/no/such/run"));
    assert!(
        e.contains("/no/such/run") && e.contains("not a folder"),
        "{e}"
    );

    let (_t, run) = copy_run();
    std::fs::remove_file(run.join("best.bpk")).unwrap();
    let e = load(&run);
    assert!(e.contains("best.bpk"), "{e}");

    let (_t, run) = copy_run();
    std::fs::remove_file(run.join("report.json")).unwrap();
    let e = load(&run);
    assert!(e.contains("unfinished") && e.contains("report.json"), "{e}");

    let (_t, run) = copy_run();
    std::fs::write(run.join("best.bpk"), b"not a checkpoint at all").unwrap();
    let e = load(&run);
    assert!(
        e.contains("best.bpk") && e.contains("not a burnpack"),
        "{e}"
    );

    // A fusion model whose user semantic inputs cannot be produced (the
    // file it names is not there): fusion runs are served, but only with
    // the inputs they were trained on.
    let (_t, run) = copy_run();
    let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let edit = |table: &str, key: &str, value: toml::Value| {
        let mut doc: toml::Table = cfg.parse().unwrap();
        doc.entry(table)
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .unwrap()
            .insert(key.into(), value);
        doc
    };
    let mut doc = edit("method", "fusion", "gate".into());
    let mut file = toml::Table::new();
    file.insert("file".into(), "u.safetensors".into());
    doc.entry("inputs")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .unwrap()
        .insert("user_semantic".into(), toml::Value::Table(file));
    std::fs::write(run.join("config.toml"), doc.to_string()).unwrap();
    let e = load(&run);
    assert!(
        e.contains("semantic inputs") && e.contains("u.safetensors"),
        "{e}"
    );

    // A checkpoint of another model (here: another hidden size).
    let (_t, run) = copy_run();
    let doc = edit("model", "hidden", 32.into());
    std::fs::write(run.join("config.toml"), doc.to_string()).unwrap();
    let e = load(&run);
    assert!(e.contains("checkpoint is for model"), "{e}");
}

/// Writes a `rows × dim` f32 matrix as `{ file = … }` inputs read it.
fn write_matrix(path: &Path, rows: usize, dim: usize, salt: usize) {
    let data: Vec<u8> = (0..rows * dim)
        .flat_map(|i| ((((i + salt) * 7919) % 1000) as f32 / 1000.0 - 0.5).to_le_bytes())
        .collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![rows, dim], &data)
            .unwrap();
    safetensors::serialize_to_file([("m", view)], None, path).unwrap();
}

/// LLM-ESR's dual view scores through the item text embeddings: the run is
/// served with the inputs it was trained on, and refused by name once they
/// change (here: the supplied item-text file is rewritten).
#[test]
fn a_dual_view_run_is_served_with_its_inputs_and_refused_when_they_change() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let items = root.path().join("items.safetensors");
    write_matrix(&items, 1682, 24, 0);
    let dataset = repo().join("configs/datasets/ml-100k.toml");
    let cfg = hsuga_train::RunConfig::from_toml(&format!(
        "name = \"dual\"\ndataset = \"{}\"\nout_dir = \"{}\"\n\
         [model]\nhidden = 16\nmax_len = 20\n[train]\nepochs = 1\nprogress = false\n\
         [method]\nitem_init = \"pca\"\ndual_view = true\n[method.distill]\ngroup_aware = false\n\
         [inputs]\nitem_text = {{ file = \"{}\" }}\nuser_semantic = \"item-mean\"\n",
        dataset.display(),
        root.path().join("runs").display(),
        items.display()
    ))
    .unwrap();
    let dirs = hsuga_experiment::InputDirs {
        cache_dir: &cache,
        models_dir: &cache.join("models"),
        hsu_configs: &repo().join("configs/hsu"),
    };
    let resolve = |entry: &str| Ok(PathBuf::from(entry));
    let report = hsuga_experiment::train_one(&cfg, &dirs, &resolve, Default::default()).unwrap();
    let run = Run::load(&report.dir, &source(&cache)).unwrap();
    assert_eq!(run.num_items(), 1682);
    let scores = run.score(&[&[1, 2, 3][..]], &[]);
    assert_eq!(scores.len(), 1682);
    assert!(scores.iter().all(|s| s.is_finite()));
    // Other item texts: the model would read other inputs than it trained on.
    write_matrix(&items, 1682, 24, 1);
    let e = Run::load(&report.dir, &source(&cache))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("inputs.sha256") && e.contains("differ from those it was trained on"),
        "{e}"
    );
}

/// LLM2Rec and LLMEmb make their item table from frozen item text (and
/// LLMEmb aligns it to a pretrained SASRec's table, part of the recorded
/// digest): both load with those inputs (the run's digest matches) and
/// score every item.
#[test]
fn llm2rec_and_llmemb_runs_are_served_with_their_text_items() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let items = root.path().join("items.safetensors");
    write_matrix(&items, 1682, 24, 0);
    let dataset = repo().join("configs/datasets/ml-100k.toml");
    let dirs = hsuga_experiment::InputDirs {
        cache_dir: &cache,
        models_dir: &cache.join("models"),
        hsu_configs: &repo().join("configs/hsu"),
    };
    let resolve = |entry: &str| Ok(PathBuf::from(entry));
    let train = |name: &str, extra: &str| {
        let cfg = hsuga_train::RunConfig::from_toml(&format!(
            "name = \"{name}\"\ndataset = \"{}\"\nout_dir = \"{}\"\n{extra}\
             [train]\nepochs = 1\nprogress = false\n",
            dataset.display(),
            root.path().join("runs").display(),
        ))
        .unwrap();
        hsuga_experiment::train_one(&cfg, &dirs, &resolve, Default::default())
            .unwrap()
            .dir
    };
    let sasrec = train("sasrec", "[model]\nhidden = 16\nmax_len = 20\n");
    let text = format!(
        "[inputs]\nitem_text = {{ file = \"{}\" }}\n",
        items.display()
    );
    let llm2rec = train(
        "llm2rec",
        &format!(
            "[model]\nhidden = 16\nmax_len = 20\nloss = \"ce\"\n[method]\nllm2rec = {{}}\n{text}"
        ),
    );
    let llmemb = train(
        "llmemb",
        &format!(
            "[model]\nhidden = 16\nmax_len = 20\n[method]\nllmemb = {{}}\n\
             pretrained = {{ run = \"{}\" }}\n{text}",
            sasrec.display()
        ),
    );
    for dir in [&llm2rec, &llmemb] {
        let run = Run::load(dir, &source(&cache)).unwrap_or_else(|e| panic!("{e}"));
        let scores = run.score(&[&[1, 2, 3][..]], &[]);
        assert_eq!(scores.len(), 1682);
        assert!(scores.iter().all(|s| s.is_finite()), "{}", dir.display());
    }
}

/// The scorer's length-sorted sub-batches give every row the scores a
/// forward pass of that row alone gives, in the order asked, for histories
/// of very different lengths (so the batch is cut into several passes).
#[test]
fn scoring_by_length_keeps_each_rows_scores_and_order() {
    let (dir, cache) = trained();
    let run = Run::load(dir, &source(cache)).unwrap();
    let n = run.num_items() as usize;
    let histories: Vec<Vec<u32>> = [1usize, 20, 3, 12, 2, 20, 7, 1]
        .iter()
        .enumerate()
        .map(|(r, &len)| {
            (0..len)
                .map(|i| ((r * 37 + i * 11) % n) as u32 + 1)
                .collect()
        })
        .collect();
    let rows: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
    let got = hsuga_serve::batch::score_by_length(&run, &rows, &[]);
    assert_eq!(got.len(), rows.len());
    for (r, h) in rows.iter().enumerate() {
        let alone = run.score(&[h], &[]);
        assert_eq!(got[r].scores().len(), n);
        let max_diff = alone
            .iter()
            .zip(got[r].scores())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 1e-3, "row {r} (length {}): {max_diff}", h.len());
    }
}

/// A MELT run is served, and whether a user is scored with MELT's tail
/// transfer follows their whole history against the run's τ_u, not the
/// last `max_len` items the model reads: on ML-100K τ_u is about 170 and
/// this run reads 20, so by the window alone every user would be a tail
/// user.
#[tokio::test]
async fn a_melt_run_is_served_with_the_tail_rule_of_the_whole_history() {
    let (pretrained, cache) = trained();
    let root = tempfile::tempdir().unwrap();
    let cfg = hsuga_train::RunConfig::from_toml(&format!(
        "name = \"melt\"\ndataset = \"{}\"\nout_dir = \"{}\"\n\
         [model]\nhidden = 16\nmax_len = 20\n\
         [method]\nmelt = {{}}\npretrained = {{ run = \"{}\" }}\n\
         [train]\nepochs = 1\nprogress = false\n",
        repo().join("configs/datasets/ml-100k.toml").display(),
        root.path().join("runs").display(),
        pretrained.display(),
    ))
    .unwrap();
    let dirs = hsuga_experiment::InputDirs {
        cache_dir: cache,
        models_dir: &root.path().join("models"),
        hsu_configs: &repo().join("configs/hsu"),
    };
    let resolve = |entry: &str| Ok(PathBuf::from(entry));
    let dir = hsuga_experiment::train_one(&cfg, &dirs, &resolve, Default::default())
        .unwrap()
        .dir;
    let run = Run::load(&dir, &source(cache)).unwrap();
    assert_eq!(run.melt_tail_flag(20).as_deref(), Some(&[1.0f32][..]));
    assert_eq!(run.melt_tail_flag(10_000).as_deref(), Some(&[0.0f32][..]));
    // The user with the longest history: a head user.
    let (user, history) = run
        .prepared
        .dataset
        .user_ids
        .iter()
        .map(|u| (u.clone(), run.dataset_history(u).unwrap().to_vec()))
        .max_by_key(|(_, h)| h.len())
        .unwrap();
    assert_eq!(
        run.melt_tail_flag(history.len()).as_deref(),
        Some(&[0.0f32][..])
    );
    let recent = &history[history.len() - 20..];
    let as_head = run.score(&[recent], &[&[0.0]]);
    let as_tail = run.score(&[recent], &[&[1.0]]);
    let moved = as_head
        .iter()
        .zip(&as_tail)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(moved > 1e-3, "the transfer changes no score: {moved}");
    let mut seen = history.clone();
    seen.sort_unstable();
    seen.dedup();
    let want: Vec<f64> = hsuga_serve::batch::top_k(&as_head, &seen, 5)
        .iter()
        .map(|&(_, s)| f64::from(s))
        .collect();
    let state = tempfile::tempdir().unwrap();
    let svc = Service::new(
        run,
        source(cache),
        Options {
            state: state.path().join("interactions.sqlite"),
            token: None,
            limits: Limits::default(),
            batch: BatchConfig::default(),
            hsu_queue: hsuga_serve::DEFAULT_HSU_QUEUE,
        },
    )
    .unwrap();
    let a = get(&svc, &format!("/v1/users/{user}/recommendations?k=5")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let got = scores_of(&a);
    assert_eq!(got.len(), 5);
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() < 1e-4,
            "served {got:?}, head scoring {want:?}"
        );
    }
}
