//! Any [`ChatBackend`] as an OpenAI-compatible `/v1/chat/completions` route,
//! for tests that talk real HTTP to the OpenAI client (test support, shared
//! by the test files with `#[path]`: nothing outside the tests served it, so
//! axum is only a dev-dependency of hsuga-llm). Only the fields HSU uses are
//! read; `usage` and `finish_reason` are returned as servers do.
#![allow(dead_code)]

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use hsuga_llm::{ChatBackend, ChatRequest, Finish, JsonSchema, Message};

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// `{"type": "json_schema", "json_schema": {"name", "schema", …}}`,
    /// handed to the back-end as the request's schema.
    #[serde(default)]
    pub response_format: Option<Value>,
}

/// The schema of an OpenAI `response_format`, if it is `json_schema`.
pub fn schema_of(format: &Value) -> Option<JsonSchema> {
    if format["type"] != "json_schema" {
        return None;
    }
    let s = &format["json_schema"];
    Some(JsonSchema {
        name: s["name"].as_str()?.to_string(),
        schema: s.get("schema")?.clone(),
    })
}

/// The router: `POST /v1/chat/completions`, `GET /v1/models`.
pub fn router(backend: Arc<dyn ChatBackend>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(complete))
        .route("/v1/models", get(models))
        .with_state(backend)
}

async fn models(State(backend): State<Arc<dyn ChatBackend>>) -> Json<Value> {
    let id = backend.id();
    Json(
        json!({"object": "list", "data": [{"id": id.model, "object": "model", "owned_by": id.backend}]}),
    )
}

/// Answers one completion; the blocking back-end runs on tokio's blocking pool.
pub async fn complete(
    State(backend): State<Arc<dyn ChatBackend>>,
    Json(body): Json<CompletionRequest>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let mut req = ChatRequest::new(body.messages);
    if let Some(m) = body.max_tokens {
        req.max_tokens = m;
    }
    if let Some(t) = body.temperature {
        req.temperature = t;
    }
    req.seed = body.seed;
    req.schema = body.response_format.as_ref().and_then(schema_of);
    let b = backend.clone();
    let result = tokio::task::spawn_blocking(move || b.chat(&req))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    let r = result.map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    let finish = match r.finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::Other => "other",
    };
    let model = body.model.unwrap_or_else(|| backend.id().model);
    Ok(Json(json!({
        "id": "chatcmpl-hsuga",
        "object": "chat.completion",
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": r.text},
            "finish_reason": finish,
        }],
        "usage": {
            "prompt_tokens": r.usage.prompt_tokens,
            "completion_tokens": r.usage.completion_tokens,
            "total_tokens": r.usage.prompt_tokens + r.usage.completion_tokens,
        }
    })))
}

fn error(status: StatusCode, msg: &str) -> (StatusCode, Json<Value>) {
    (
        status,
        Json(json!({"error": {"message": msg, "type": "server_error"}})),
    )
}
