//! Client for any OpenAI-compatible `/v1/chat/completions` server.
//!
//! One [`OpenAiClient`] owns a small tokio runtime and a semaphore: however
//! many worker threads call [`ChatBackend::chat`] at once, at most
//! `concurrency` requests are in flight. Each attempt has a timeout; 429 and
//! 5xx answers, timeouts, connection errors and unparseable bodies are retried
//! with exponential back-off (a `Retry-After` header in seconds is honoured).
//! Token usage comes from the response's `usage`; when a server omits it the
//! counts are estimated and marked so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

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
    /// Per attempt.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Attempts after the first one.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First back-off; doubles each retry, capped at `max_backoff_secs`.
    #[serde(default = "default_backoff")]
    pub backoff_secs: f64,
    #[serde(default = "default_max_backoff")]
    pub max_backoff_secs: f64,
}

fn default_key_env() -> String {
    "OPENAI_API_KEY".into()
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
            timeout_secs: default_timeout(),
            max_retries: default_retries(),
            backoff_secs: default_backoff(),
            max_backoff_secs: default_max_backoff(),
        }
    }
}

#[derive(Debug)]
pub struct OpenAiClient {
    cfg: OpenAiConfig,
    url: String,
    key: Option<String>,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    permits: Arc<Semaphore>,
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

/// One failed attempt: the error and, for 429/503, the server's wish.
struct Attempt {
    err: LlmError,
    retry_after: Option<Duration>,
}

impl OpenAiClient {
    pub fn new(cfg: OpenAiConfig) -> Result<Self, LlmError> {
        if cfg.concurrency == 0 {
            return Err(LlmError::Config("openai.concurrency must be ≥ 1".into()));
        }
        if cfg.timeout_secs.is_nan() || cfg.timeout_secs <= 0.0 {
            return Err(LlmError::Config("openai.timeout_secs must be > 0".into()));
        }
        let base = cfg.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(LlmError::Config(format!(
                "openai.base_url {base:?} must start with http:// or https://"
            )));
        }
        let url = format!("{base}/chat/completions");
        let key = std::env::var(&cfg.api_key_env)
            .ok()
            .filter(|k| !k.is_empty());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.timeout_secs))
            .pool_max_idle_per_host(cfg.concurrency)
            .build()
            .map_err(|e| LlmError::Config(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| LlmError::Config(e.to_string()))?;
        let permits = Arc::new(Semaphore::new(cfg.concurrency));
        Ok(Self {
            cfg,
            url,
            key,
            http,
            rt,
            permits,
        })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    async fn attempt(&self, req: &ChatRequest) -> Result<ChatResponse, Attempt> {
        let _permit = self.permits.acquire().await.map_err(|_| Attempt {
            err: LlmError::Interrupted,
            retry_after: None,
        })?;
        let started = Instant::now();
        let body = WireRequest {
            model: &self.cfg.model,
            messages: &req.messages,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            seed: req.seed,
        };
        let mut builder = self.http.post(&self.url).json(&body);
        if let Some(key) = &self.key {
            builder = builder.bearer_auth(key);
        }
        let fail = |err| Attempt {
            err,
            retry_after: None,
        };
        let resp = builder.send().await.map_err(|e| fail(self.transport(e)))?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            let body = resp.text().await.unwrap_or_default();
            return Err(Attempt {
                err: LlmError::Http {
                    status: status.as_u16(),
                    url: self.url.clone(),
                    body: truncate(&body, 300),
                },
                retry_after,
            });
        }
        let bytes = resp.bytes().await.map_err(|e| fail(self.transport(e)))?;
        let wire: WireResponse = serde_json::from_slice(&bytes).map_err(|e| {
            fail(LlmError::Malformed {
                url: self.url.clone(),
                message: format!("{e}; body starts {:?}", truncate_bytes(&bytes, 120)),
            })
        })?;
        let Some(choice) = wire.choices.into_iter().next() else {
            return Err(fail(LlmError::Malformed {
                url: self.url.clone(),
                message: "no choices in response".into(),
            }));
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
            latency: started.elapsed(),
            hidden_mean: None,
        })
    }

    fn transport(&self, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout {
                url: self.url.clone(),
                secs: self.cfg.timeout_secs,
            }
        } else if e.is_decode() || e.is_body() {
            LlmError::Malformed {
                url: self.url.clone(),
                message: e.to_string(),
            }
        } else {
            LlmError::Transport {
                url: self.url.clone(),
                message: error_chain(&e),
            }
        }
    }

    async fn chat_async(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let mut backoff = self.cfg.backoff_secs.max(0.0);
        let mut attempt = 0;
        loop {
            match self.attempt(req).await {
                Ok(mut r) => {
                    r.latency = started.elapsed();
                    return Ok(r);
                }
                Err(a) if a.err.is_transient() && attempt < self.cfg.max_retries => {
                    attempt += 1;
                    let wait = a
                        .retry_after
                        .unwrap_or(Duration::from_secs_f64(backoff))
                        .min(Duration::from_secs_f64(self.cfg.max_backoff_secs.max(0.0)));
                    tracing::debug!(attempt, error = %a.err, wait_s = wait.as_secs_f64(), "retrying");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2.0).min(self.cfg.max_backoff_secs);
                }
                Err(a) => return Err(a.err),
            }
        }
    }
}

impl ChatBackend for OpenAiClient {
    fn id(&self) -> BackendId {
        BackendId {
            backend: "openai".into(),
            model: self.cfg.model.clone(),
        }
    }

    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.rt.block_on(self.chat_async(req))
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

fn truncate_bytes(b: &[u8], n: usize) -> String {
    truncate(&String::from_utf8_lossy(&b[..b.len().min(n * 4)]), n)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
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
        assert_eq!(client.url, "http://localhost:8000/v1/chat/completions");
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
