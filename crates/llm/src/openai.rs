//! Client for any OpenAI-compatible `/v1/chat/completions` server.
//!
//! Requests go through hsuga-text's [`Transport`], the one HTTP layer of
//! the chat and embedding clients: however many worker threads call
//! [`ChatBackend::chat`] at once, at most `concurrency` requests are in
//! flight; each attempt has a timeout; 429 and 5xx answers, timeouts,
//! connection errors and unparseable bodies are retried with exponential
//! back-off (a `Retry-After` header in seconds is honoured).
//! Token usage comes from the response's `usage`; when a server omits it the
//! counts are estimated and marked so.

use std::time::Instant;

use hsuga_text::transport::{DEFAULT_KEY_ENV, Failure, FailureKind, Reject, Settings, Transport};
use serde::{Deserialize, Serialize};

use crate::{
    BackendId, ChatBackend, ChatRequest, ChatResponse, Finish, LlmError, Message, Usage,
    estimate_tokens,
};

/// `[backend]` settings for `kind = "openai"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// e.g. `http://localhost:8000/v1` (the client appends `/chat/completions`).
    pub base_url: String,
    pub model: String,
    /// Environment variable holding the API key; unset or empty = no key.
    #[serde(default = "default_key_env")]
    pub api_key_env: String,
    /// Requests in flight at once (ours: a server batches what it is sent).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per attempt, in seconds (`timeout_secs`, its old name, still loads).
    #[serde(default = "default_timeout", alias = "timeout_secs")]
    pub timeout_s: f64,
    /// Attempts after the first one.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First back-off in seconds; doubles each retry, capped at
    /// `max_backoff_s` (old names `backoff_secs`, `max_backoff_secs`).
    #[serde(default = "default_backoff", alias = "backoff_secs")]
    pub backoff_s: f64,
    #[serde(default = "default_max_backoff", alias = "max_backoff_secs")]
    pub max_backoff_s: f64,
}

fn default_key_env() -> String {
    DEFAULT_KEY_ENV.into()
}
fn default_concurrency() -> usize {
    16
}
fn default_timeout() -> f64 {
    120.0
}
fn default_retries() -> u32 {
    4
}
fn default_backoff() -> f64 {
    0.5
}
fn default_max_backoff() -> f64 {
    30.0
}

impl OpenAiConfig {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: default_key_env(),
            concurrency: default_concurrency(),
            timeout_s: default_timeout(),
            max_retries: default_retries(),
            backoff_s: default_backoff(),
            max_backoff_s: default_max_backoff(),
        }
    }

    /// The transport settings (the fields shared with the embedding client).
    pub fn settings(&self) -> Settings {
        Settings {
            api_key_env: self.api_key_env.clone(),
            concurrency: self.concurrency,
            timeout_s: self.timeout_s,
            max_retries: self.max_retries,
            backoff_s: self.backoff_s,
            max_backoff_s: self.max_backoff_s,
        }
    }
}

#[derive(Debug)]
pub struct OpenAiClient {
    cfg: OpenAiConfig,
    http: Transport,
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    max_tokens: u32,
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
}

#[derive(Deserialize)]
struct WireResponse {
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

impl OpenAiClient {
    pub fn new(cfg: OpenAiConfig) -> Result<Self, LlmError> {
        let url = format!("{}/chat/completions", cfg.base_url.trim_end_matches('/'));
        let http = Transport::new(url, cfg.settings())
            .map_err(|m| LlmError::Config(format!("openai: {m}")))?;
        Ok(Self { cfg, http })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    async fn chat_async(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let body = WireRequest {
            model: &self.cfg.model,
            messages: &req.messages,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            seed: req.seed,
        };
        let mut r = self
            .http
            .post(&body, |bytes| parse(bytes, req))
            .await
            .map_err(|f| self.error(f))?;
        r.latency = started.elapsed();
        Ok(r)
    }

    /// The transport's failure as this crate's error.
    fn error(&self, f: Failure) -> LlmError {
        let url = f.url;
        match f.kind {
            FailureKind::Http { status, body } => LlmError::Http { status, url, body },
            FailureKind::Timeout => LlmError::Timeout {
                url,
                secs: f.timeout_s,
            },
            FailureKind::Connect(message) => LlmError::Transport { url, message },
            FailureKind::Body(message) | FailureKind::Rejected(message) => {
                LlmError::Malformed { url, message }
            }
        }
    }
}

/// One answer as a [`ChatResponse`]; an unparseable one may be a server's
/// hiccup, so it is retried.
fn parse(bytes: &[u8], req: &ChatRequest) -> Result<ChatResponse, Reject> {
    let reject = |msg: String| Reject { msg, retry: true };
    let wire: WireResponse = serde_json::from_slice(bytes).map_err(|e| {
        reject(format!(
            "{e}; body starts {:?}",
            hsuga_text::transport::snippet(bytes, 120)
        ))
    })?;
    let Some(choice) = wire.choices.into_iter().next() else {
        return Err(reject("no choices in response".into()));
    };
    let text = choice.message.content.unwrap_or_default();
    let finish = match choice.finish_reason.as_deref() {
        Some("stop") | Some("eos") | None => Finish::Stop,
        Some("length") => Finish::Length,
        Some(_) => Finish::Other,
    };
    let usage = match wire.usage {
        Some(u) => Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            estimated: false,
        },
        None => Usage {
            prompt_tokens: req
                .messages
                .iter()
                .map(|m| estimate_tokens(&m.content))
                .sum(),
            completion_tokens: estimate_tokens(&text),
            estimated: true,
        },
    };
    Ok(ChatResponse {
        text,
        finish,
        usage,
        latency: std::time::Duration::ZERO,
        hidden_mean: None,
    })
}

impl ChatBackend for OpenAiClient {
    fn id(&self) -> BackendId {
        BackendId {
            backend: "openai".into(),
            model: self.cfg.model.clone(),
        }
    }

    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.http
            .block_on(self.chat_async(req))
            .map_err(LlmError::Config)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_config() {
        let mut c = OpenAiConfig::new("localhost:8000", "m");
        assert!(OpenAiClient::new(c.clone()).is_err());
        c.base_url = "http://localhost:8000/v1/".into();
        c.concurrency = 0;
        assert!(OpenAiClient::new(c.clone()).is_err());
        c.concurrency = 2;
        let client = OpenAiClient::new(c).unwrap();
        assert_eq!(
            client.http.url(),
            "http://localhost:8000/v1/chat/completions"
        );
    }

    /// Configs written before the transport was shared name the timeout and
    /// back-off `*_secs`; they still load, into the one field name.
    #[test]
    fn old_setting_names_still_load() {
        let c: OpenAiConfig = toml::from_str(
            "base_url = \"http://h/v1\"\nmodel = \"m\"\ntimeout_secs = 7.5\nbackoff_secs = 0.25\nmax_backoff_secs = 4.0\n",
        )
        .unwrap();
        assert_eq!(
            (c.timeout_s, c.backoff_s, c.max_backoff_s),
            (7.5, 0.25, 4.0)
        );
        let c: OpenAiConfig =
            toml::from_str("base_url = \"http://h/v1\"\nmodel = \"m\"\ntimeout_s = 3.0\n").unwrap();
        assert_eq!(c.timeout_s, 3.0);
    }

    #[test]
    fn transient_errors() {
        let http = |status| LlmError::Http {
            status,
            url: String::new(),
            body: String::new(),
        };
        assert!(http(429).is_transient());
        assert!(http(503).is_transient());
        assert!(!http(400).is_transient());
        assert!(!http(401).is_transient());
    }
}
