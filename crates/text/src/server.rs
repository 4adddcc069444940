//! An OpenAI-compatible `/v1/embeddings` server for any [`TextEmbedder`]
//! (behind `hsuga serve-embeddings`; the remote client's integration tests
//! run against it on loopback).
//!
//! Routes: `POST /v1/embeddings` (`input`: a string or a list of strings),
//! `GET /v1/models`, `GET /health`. Bad requests (malformed or non-UTF-8
//! JSON, empty texts, too many inputs) get `400` with an OpenAI-style
//! `{"error": {"message", "type"}}` body. The model runs on blocking threads,
//! one request at a time (a forward already uses every core).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::embedder::TextEmbedder;
use crate::error::TextError;

/// Most inputs accepted in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

struct AppState {
    embedder: Arc<dyn TextEmbedder>,
    model: String,
    gate: tokio::sync::Semaphore,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    input: Input,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
}

/// The router; `model` is the name reported in answers and `/v1/models`.
pub fn router(embedder: Arc<dyn TextEmbedder>, model: impl Into<String>) -> Router {
    let state = Arc::new(AppState {
        embedder,
        model: model.into(),
        gate: tokio::sync::Semaphore::new(1),
    });
    Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/health", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves `router` on a bound listener until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

fn error(status: StatusCode, kind: &str, msg: impl Into<String>) -> Response {
    let body = json!({"error": {"message": msg.into(), "type": kind}});
    (status, axum::Json(body)).into_response()
}

async fn models(State(s): State<Arc<AppState>>) -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": s.model, "object": "model", "owned_by": "hsuga",
                  "dimension": s.embedder.dim()}],
    }))
    .into_response()
}

async fn embeddings(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    let bad = |m: String| error(StatusCode::BAD_REQUEST, "invalid_request_error", m);
    let req: EmbeddingsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("body is not a valid embeddings request: {e}")),
    };
    if let Some(m) = &req.model
        && m != &s.model
    {
        return error(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "model '{m}' is not served here (this server has '{}')",
                s.model
            ),
        );
    }
    if let Some(f) = &req.encoding_format
        && f != "float"
    {
        return bad(format!(
            "encoding_format '{f}' is not supported; use 'float'"
        ));
    }
    let texts = match req.input {
        Input::One(t) => vec![t],
        Input::Many(v) => v,
    };
    if texts.is_empty() {
        return bad("input is empty".into());
    }
    if texts.len() > MAX_INPUTS {
        return bad(format!(
            "{} inputs; at most {MAX_INPUTS} per request",
            texts.len()
        ));
    }
    let _permit = s.gate.acquire().await.expect("gate open");
    let embedder = s.embedder.clone();
    let n_chars: usize = texts.iter().map(|t| t.len()).sum();
    let joined = tokio::task::spawn_blocking(move || embedder.embed(&texts)).await;
    let vecs = match joined {
        Ok(Ok(v)) => v,
        Ok(Err(e @ TextError::EmptyText { .. })) => return bad(e.to_string()),
        Ok(Err(e)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            );
        }
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                format!("embedding task failed: {e}"),
            );
        }
    };
    let data: Vec<_> = vecs
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
        .collect();
    // Token counts are approximate (bytes / 4); the local tokenizer is not exposed here.
    let tokens = n_chars.div_ceil(4);
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": s.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}
