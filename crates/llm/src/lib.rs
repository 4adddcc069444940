//! Chat back-ends for HSU, behind one trait.
//!
//! The principal types: [`ChatBackend`] (one blocking `chat` call, safe to
//! share between threads), [`ChatRequest`] / [`ChatResponse`], [`Op`] (the
//! paper's four edit operations, numbered as its drift-selection prompt
//! numbers them) and [`LlmError`].
//!
//! The back-ends:
//! - [`openai::OpenAiClient`]: any OpenAI-compatible `/v1/chat/completions`
//!   server (vLLM, SGLang, llama.cpp server, Ollama, hosted APIs), with bounded
//!   concurrency, timeouts, retries with back-off on 429/5xx, token usage, and
//!   output constrained to a request's [`JsonSchema`] where the server can.
//! - `local::LocalLlm`: SmolLM2-135M or Qwen2.5-Coder-Instruct (GGUF, llama or qwen2, ChatML) run
//!   in-process on candle; it also returns the mean of the last hidden states
//!   over the generated tokens (the official HSUGA code's user embedding).
//! - [`rules::RulesEditor`]: a deterministic, LLM-free editor over item
//!   attributes. It answers in the same text format as an LLM (so the whole
//!   parsing and storage path runs in CI in seconds) but it is an
//!   **approximation** of HSU, and every answer says so.
//! - [`scripted::Scripted`]: canned answers and call counts, for tests.
//!
//! The trait is blocking on purpose: HSU runs users on a bounded pool of
//! worker threads, and the HTTP client bounds its own in-flight requests, so
//! callers never need an async runtime.

pub mod local;
pub mod openai;
pub mod rules;
pub mod scripted;

use std::fmt;
use std::time::Duration;

use hsuga_data::ItemAttrs;
use serde::{Deserialize, Serialize};

/// A chat back-end. Implementations are shared between worker threads.
pub trait ChatBackend: Send + Sync {
    /// Which back-end and model answer (recorded with every stored stage).
    fn id(&self) -> BackendId;
    /// One chat completion. Transient failures are retried inside; an `Err`
    /// means the answer could not be had at all.
    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError>;
}

impl<T: ChatBackend + ?Sized> ChatBackend for std::sync::Arc<T> {
    fn id(&self) -> BackendId {
        (**self).id()
    }
    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        (**self).chat(req)
    }
}

impl<T: ChatBackend + ?Sized> ChatBackend for &T {
    fn id(&self) -> BackendId {
        (**self).id()
    }
    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        (**self).chat(req)
    }
}

/// Back-end kind and model name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendId {
    pub backend: String,
    pub model: String,
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.backend, self.model)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(s: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: s.into(),
        }
    }
    pub fn user(s: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: s.into(),
        }
    }
    pub fn assistant(s: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: s.into(),
        }
    }
}

/// The paper's four edit operations, numbered as the drift-selection prompt
/// numbers them (1 delete, 2 modify, 3 add, 4 retain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Delete = 1,
    Update = 2,
    Add = 3,
    Retain = 4,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Delete, Op::Update, Op::Add, Op::Retain];

    pub fn number(self) -> u8 {
        self as u8
    }

    pub fn from_number(n: i64) -> Option<Self> {
        match n {
            1 => Some(Op::Delete),
            2 => Some(Op::Update),
            3 => Some(Op::Add),
            4 => Some(Op::Retain),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Delete => "delete",
            Op::Update => "update",
            Op::Add => "add",
            Op::Retain => "retain",
        }
    }

    /// Parses `add`, `delete`, `update`/`modify`, `retain`/`keep` or a digit.
    pub fn parse_name(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "1" | "delete" | "deletion" | "remove" => Some(Op::Delete),
            "2" | "update" | "modify" | "modification" => Some(Op::Update),
            "3" | "add" | "addition" => Some(Op::Add),
            "4" | "retain" | "keep" | "no change" => Some(Op::Retain),
            _ => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the HSU engine is asking for, in structured form. LLM back-ends ignore
/// it (they read the messages); the LLM-free [`rules::RulesEditor`] reads only
/// this. Items are the current stage's, previous interests the last stage's.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskHint {
    /// Stage 1: infer interests from the stage's items.
    Reason { items: Vec<ItemAttrs> },
    /// Stage ≥ 2: choose one operation.
    Select {
        items: Vec<ItemAttrs>,
        previous: Vec<String>,
        allowed: Vec<Op>,
    },
    /// Stage ≥ 2: apply the chosen operation.
    Execute {
        op: Op,
        items: Vec<ItemAttrs>,
        previous: Vec<String>,
    },
    /// Recursive summarisation (the "w/o Interest Updater" ablation).
    Summarise {
        items: Vec<ItemAttrs>,
        previous: Vec<String>,
    },
}

/// One chat completion request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    /// 0 = greedy.
    pub temperature: f32,
    /// Seed for sampling (passed to servers that accept one).
    pub seed: Option<u64>,
    /// Ask an in-process model for the mean of its last hidden states over
    /// the generated tokens.
    pub want_hidden: bool,
    pub hint: Option<TaskHint>,
    /// The JSON shape the answer should take. Servers that constrain decoding
    /// to a schema are sent it (the OpenAI client's `response_format`); the
    /// others ignore it. Either way the caller parses the text, which then
    /// may be the schema's JSON or the prompt's text format.
    pub schema: Option<JsonSchema>,
}

/// A named JSON schema for constrained output (OpenAI's
/// `response_format: {"type": "json_schema", "json_schema": {name, schema}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchema {
    /// Letters, digits, `_` and `-` (OpenAI's rule for the name).
    pub name: String,
    pub schema: serde_json::Value,
}

impl ChatRequest {
    pub fn new(messages: Vec<Message>) -> Self {
        Self {
            messages,
            max_tokens: 512,
            temperature: 0.0,
            seed: None,
            want_hidden: false,
            hint: None,
            schema: None,
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// End of turn (or a stop sequence).
    Stop,
    /// `max_tokens` reached: the answer may be truncated.
    Length,
    Other,
}

/// Token accounting; `estimated` when the server did not report usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub estimated: bool,
}

#[derive(Debug, Clone)]
pub struct ChatResponse {
    pub text: String,
    pub finish: Finish,
    pub usage: Usage,
    /// Wall time of the call, retries included.
    pub latency: Duration,
    /// Mean of the last hidden states over the generated tokens (local only).
    pub hidden_mean: Option<Vec<f32>>,
}

/// Rough token estimate (≈ 4 characters per token) for back-ends and servers
/// that do not count.
pub fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.chars().count().div_ceil(4)).unwrap_or(u32::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("invalid back-end configuration: {0}")]
    Config(String),
    #[error("HTTP {status} from {url}: {body}")]
    Http {
        status: u16,
        url: String,
        body: String,
    },
    #[error("request to {url} timed out after {secs:.1}s")]
    Timeout { url: String, secs: f64 },
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    #[error("malformed response from {url}: {message}")]
    Malformed { url: String, message: String },
    #[error("model error: {0}")]
    Model(String),
    #[error("model files: {0}")]
    Fetch(String),
    #[error("the run was interrupted")]
    Interrupted,
}

impl LlmError {
    /// Whether trying the same request again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            LlmError::Http { status, .. } => *status == 429 || *status >= 500,
            LlmError::Timeout { .. } | LlmError::Transport { .. } | LlmError::Malformed { .. } => {
                true
            }
            _ => false,
        }
    }
}

impl From<candle_core::Error> for LlmError {
    fn from(e: candle_core::Error) -> Self {
        LlmError::Model(e.to_string())
    }
}
