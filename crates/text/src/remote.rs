//! Client for OpenAI-compatible `POST /v1/embeddings` servers (vLLM,
//! text-embeddings-inference, Ollama, llama.cpp server, hosted APIs, and
//! `hsuga serve-embeddings`).
//!
//! Texts are sent in batches of [`OpenAiConfig::batch_size`], at most
//! [`OpenAiConfig::concurrency`] requests in flight. Each request has a
//! timeout; timeouts, connection failures, 429 and 5xx answers are retried
//! with exponential back-off (honouring `Retry-After`), other 4xx answers and
//! malformed bodies fail at once. Every error names the request (URL, model,
//! batch number and text range) so a failure in a long run can be traced.
//! Answers are checked: one vector per input, every index present once, the
//! same dimension throughout, finite values.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::embedder::{TextEmbedder, check_texts};
use crate::error::{Result, TextError};

/// Where and how to reach the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Base URL including `/v1`, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Model name sent with every request.
    pub model: String,
    /// Environment variable holding the API key (none sent when unset or empty).
    #[serde(default = "default_key_env")]
    pub api_key_env: String,
    /// Texts per request (ours; most servers accept up to 2048).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Requests in flight at once (ours).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per-request timeout in seconds (ours).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Retries after the first attempt (ours).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First back-off in seconds; doubles per retry, capped at 30 s (ours).
    #[serde(default = "default_backoff")]
    pub backoff_s: f64,
    /// Expected dimension; when unset, one probe request finds it.
    #[serde(default)]
    pub dim: Option<usize>,
}

fn default_key_env() -> String {
    "OPENAI_API_KEY".into()
}
fn default_batch() -> usize {
    64
}
fn default_concurrency() -> usize {
    4
}
fn default_timeout() -> f64 {
    60.0
}
fn default_retries() -> u32 {
    4
}
fn default_backoff() -> f64 {
    0.5
}

impl OpenAiConfig {
    /// A config with defaults for everything but the URL and model.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: default_key_env(),
            batch_size: default_batch(),
            concurrency: default_concurrency(),
            timeout_s: default_timeout(),
            max_retries: default_retries(),
            backoff_s: default_backoff(),
            dim: None,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TextError::Config(format!("openai embedder: {m}")));
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return bad("base_url must start with http:// or https://");
        }
        if self.model.trim().is_empty() {
            return bad("model is empty");
        }
        if self.batch_size == 0 || self.concurrency == 0 {
            return bad("batch_size and concurrency must be at least 1");
        }
        if self.timeout_s.is_nan()
            || self.timeout_s <= 0.0
            || self.backoff_s.is_nan()
            || self.backoff_s < 0.0
        {
            return bad("timeout_s must be > 0 and backoff_s >= 0");
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    embedding: Vec<f32>,
}

struct Inner {
    cfg: OpenAiConfig,
    url: String,
    key: Option<String>,
    client: reqwest::Client,
}

/// The OpenAI-compatible embedding client. Blocking use goes through
/// [`TextEmbedder::embed`] (an internal runtime, created on first use; do not
/// call it from inside an async task); async code calls [`Self::embed_async`].
pub struct OpenAiEmbedder {
    inner: Arc<Inner>,
    dim: usize,
    id: String,
    runtime: OnceLock<tokio::runtime::Runtime>,
}

/// One failed attempt: whether to try again, and after how long at least.
struct Attempt {
    msg: String,
    retry: bool,
    retry_after: Option<Duration>,
}

impl OpenAiEmbedder {
    /// Builds the client; when `cfg.dim` is unset, sends one probe request
    /// (blocking) to learn the dimension.
    pub fn new(cfg: OpenAiConfig) -> Result<Self> {
        let mut me = Self::unprobed(cfg)?;
        if me.dim == 0 {
            let probe = vec!["dimension probe".to_string()];
            let v = me.block_on(me.inner.clone().embed_all(probe, None))?;
            me.dim = v[0].len();
        }
        Ok(me)
    }

    /// [`Self::new`] for async callers.
    pub async fn connect(cfg: OpenAiConfig) -> Result<Self> {
        let mut me = Self::unprobed(cfg)?;
        if me.dim == 0 {
            let probe = vec!["dimension probe".to_string()];
            let v = me.inner.clone().embed_all(probe, None).await?;
            me.dim = v[0].len();
        }
        Ok(me)
    }

    fn unprobed(cfg: OpenAiConfig) -> Result<Self> {
        cfg.validate()?;
        let key = std::env::var(&cfg.api_key_env)
            .ok()
            .filter(|k| !k.trim().is_empty());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.timeout_s))
            .connect_timeout(Duration::from_secs_f64(cfg.timeout_s.min(10.0)))
            .build()
            .map_err(|e| TextError::Config(format!("http client: {e}")))?;
        let url = format!("{}/embeddings", cfg.base_url.trim_end_matches('/'));
        let id = format!(
            "openai:{}@{}",
            cfg.model,
            cfg.base_url.trim_end_matches('/')
        );
        let dim = cfg.dim.unwrap_or(0);
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                url,
                key,
                client,
            }),
            dim,
            id,
            runtime: OnceLock::new(),
        })
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        let rt = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime")
        });
        rt.block_on(f)
    }

    /// Embeds texts: batched, concurrent, retried; checks every answer.
    pub async fn embed_async(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        check_texts(texts)?;
        let dim = (self.dim > 0).then_some(self.dim);
        self.inner.clone().embed_all(texts.to_vec(), dim).await
    }
}

impl TextEmbedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.block_on(self.embed_async(texts))
    }
}

impl Inner {
    async fn embed_all(
        self: Arc<Self>,
        texts: Vec<String>,
        dim: Option<usize>,
    ) -> Result<Vec<Vec<f32>>> {
        let n = texts.len();
        let bs = self.cfg.batch_size;
        let sem = Arc::new(tokio::sync::Semaphore::new(self.cfg.concurrency));
        let mut set = tokio::task::JoinSet::new();
        for (b, chunk) in texts.chunks(bs).enumerate() {
            let me = self.clone();
            let sem = sem.clone();
            let chunk = chunk.to_vec();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore open");
                let r = me.post_batch(b, b * bs, &chunk, dim).await;
                (b, r)
            });
        }
        let mut batches: Vec<Option<Vec<Vec<f32>>>> = vec![None; n.div_ceil(bs)];
        while let Some(joined) = set.join_next().await {
            let (b, r) = joined.map_err(|e| TextError::Remote {
                request: format!("POST {}", self.url),
                msg: format!("request task failed: {e}"),
            })?;
            // Dropping the set aborts the batches still running.
            batches[b] = Some(r?);
        }
        let mut out = Vec::with_capacity(n);
        for b in batches {
            out.extend(b.expect("every batch joined"));
        }
        // All batches must agree on the dimension.
        if let Some(first) = out.first().map(Vec::len)
            && let Some((i, v)) = out.iter().enumerate().find(|(_, v)| v.len() != first)
        {
            return Err(TextError::DimensionMismatch {
                context: format!("{} answer for text {i}", self.url),
                expected: first,
                found: v.len(),
            });
        }
        Ok(out)
    }

    async fn post_batch(
        &self,
        batch: usize,
        start: usize,
        texts: &[String],
        dim: Option<usize>,
    ) -> Result<Vec<Vec<f32>>> {
        let request = format!(
            "POST {} (model {}, batch {batch}: texts {start}..{})",
            self.url,
            self.cfg.model,
            start + texts.len()
        );
        let body = Request {
            model: &self.cfg.model,
            input: texts,
            encoding_format: "float",
        };
        let attempts = self.cfg.max_retries + 1;
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tracing::warn!(%request, attempt, error = %last, "retrying");
            }
            match self.try_once(&body, texts.len(), dim).await {
                Ok(v) => return Ok(v),
                Err(a) if a.retry && attempt + 1 < attempts => {
                    let base = self.cfg.backoff_s * 2f64.powi(attempt as i32);
                    let mut wait = Duration::from_secs_f64(base.min(30.0));
                    if let Some(ra) = a.retry_after {
                        wait = wait.max(ra.min(Duration::from_secs(60)));
                    }
                    last = a.msg;
                    tokio::time::sleep(wait).await;
                }
                Err(a) => {
                    let msg = if a.retry {
                        format!("{} (gave up after {attempts} attempts)", a.msg)
                    } else {
                        a.msg
                    };
                    return Err(TextError::Remote { request, msg });
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    async fn try_once(
        &self,
        body: &Request<'_>,
        n: usize,
        dim: Option<usize>,
    ) -> std::result::Result<Vec<Vec<f32>>, Attempt> {
        let fatal = |msg: String| Attempt {
            msg,
            retry: false,
            retry_after: None,
        };
        let mut req = self.client.post(&self.url).json(body);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    format!("timed out after {} s", self.cfg.timeout_s)
                } else if e.is_connect() {
                    format!("connection failed: {e}")
                } else {
                    format!("request failed: {e}")
                };
                return Err(Attempt {
                    msg: what,
                    retry: true,
                    retry_after: None,
                });
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Err(Attempt {
                    msg: format!("HTTP {status}: reading body failed: {e}"),
                    retry: true,
                    retry_after,
                });
            }
        };
        if !status.is_success() {
            let snippet = snippet(&bytes);
            let retry = status.as_u16() == 429 || status.is_server_error();
            return Err(Attempt {
                msg: format!("HTTP {status}: {snippet}"),
                retry,
                retry_after,
            });
        }
        let parsed: Response = serde_json::from_slice(&bytes).map_err(|e| {
            fatal(format!(
                "malformed answer (not an embeddings response: {e}): {}",
                snippet(&bytes)
            ))
        })?;
        if parsed.data.len() != n {
            return Err(fatal(format!(
                "answer has {} embeddings for {n} inputs",
                parsed.data.len()
            )));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
        for item in parsed.data {
            if item.index >= n || out[item.index].is_some() {
                return Err(fatal(format!(
                    "answer has a bad or repeated index {}",
                    item.index
                )));
            }
            if item.embedding.is_empty() || item.embedding.iter().any(|x| !x.is_finite()) {
                return Err(fatal(format!(
                    "embedding {} is empty or not finite",
                    item.index
                )));
            }
            if let Some(d) = dim
                && item.embedding.len() != d
            {
                return Err(fatal(format!(
                    "embedding {} has dimension {}, expected {d}",
                    item.index,
                    item.embedding.len()
                )));
            }
            out[item.index] = Some(item.embedding);
        }
        Ok(out
            .into_iter()
            .map(|v| v.expect("all indices filled"))
            .collect())
    }
}

fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s.to_string()
    }
}
