//! Client for OpenAI-compatible `POST /v1/embeddings` servers (vLLM,
//! text-embeddings-inference, Ollama, llama.cpp server, hosted APIs, and
//! `hsuga serve-embeddings`).
//!
//! Texts are sent in batches of [`OpenAiConfig::batch_size`] through the
//! shared [`Transport`] (at most [`TransportConfig::concurrency`] requests in
//! flight, a timeout per attempt, timeouts, connection failures, 429 and 5xx
//! answers retried with exponential back-off honouring `Retry-After`); other
//! 4xx answers and malformed bodies fail at once. Every error names the request (URL, model,
//! batch number and text range) so a failure in a long run can be traced.
//! Answers are checked: one vector per input, every index present once, the
//! same dimension throughout, finite values.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::embedder::{TextEmbedder, check_texts};
use crate::error::{Result, TextError};
use crate::transport::{Leftover, Reject, Transport, TransportConfig, snippet};

/// Where and how to reach the server: the embedder's own keys, and the
/// transport's ([`TransportConfig`]: `base_url`, `api_key_env`,
/// `concurrency`, `timeout_s`, `max_retries`, `backoff_s`, `max_backoff_s`)
/// in the same flat table, as the chat client takes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WrittenConfig")]
pub struct OpenAiConfig {
    /// Model name sent with every request.
    pub model: String,
    /// Texts per request (ours; most servers accept up to 2048).
    pub batch_size: usize,
    /// Expected dimension; when unset, one probe request finds it.
    pub dim: Option<usize>,
    #[serde(flatten)]
    pub transport: TransportConfig,
}

/// [`OpenAiConfig`] as written: its fields, the transport's, and whatever
/// else the table holds (refused by name in the conversion).
#[derive(Deserialize)]
struct WrittenConfig {
    model: String,
    #[serde(default = "default_batch")]
    batch_size: usize,
    #[serde(default)]
    dim: Option<usize>,
    #[serde(flatten)]
    transport: TransportConfig,
    #[serde(flatten)]
    unknown: Leftover,
}

impl TryFrom<WrittenConfig> for OpenAiConfig {
    type Error = serde::de::value::Error;

    fn try_from(w: WrittenConfig) -> std::result::Result<Self, Self::Error> {
        w.unknown.deny(&["model", "batch_size", "dim"])?;
        Ok(Self {
            model: w.model,
            batch_size: w.batch_size,
            dim: w.dim,
            transport: w.transport,
        })
    }
}

fn default_batch() -> usize {
    64
}

impl OpenAiConfig {
    /// A config with defaults for everything but the URL and model.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            batch_size: default_batch(),
            dim: None,
            transport: TransportConfig::new(base_url),
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TextError::Config(format!("openai embedder: {m}")));
        if self.model.trim().is_empty() {
            return bad("model is empty");
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1");
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
    http: Transport,
}

/// The OpenAI-compatible embedding client. Blocking use goes through
/// [`TextEmbedder::embed`] (an internal runtime, created on first use; do not
/// call it from inside an async task); async code calls [`Self::embed_async`].
pub struct OpenAiEmbedder {
    inner: Arc<Inner>,
    dim: usize,
    id: String,
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
        let http = Transport::new(cfg.transport.clone(), "embeddings")
            .map_err(|m| TextError::Config(format!("openai embedder: {m}")))?;
        let id = format!(
            "openai:{}@{}",
            cfg.model,
            cfg.transport.base_url.trim_end_matches('/')
        );
        let dim = cfg.dim.unwrap_or(0);
        Ok(Self {
            inner: Arc::new(Inner { cfg, http }),
            dim,
            id,
        })
    }

    fn block_on<F: Future<Output = Result<T>>, T>(&self, f: F) -> Result<T> {
        self.inner
            .http
            .block_on(f)
            .map_err(|m| TextError::Config(format!("openai embedder: {m}")))?
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
        // The transport bounds the requests in flight.
        let mut set = tokio::task::JoinSet::new();
        for (b, chunk) in texts.chunks(bs).enumerate() {
            let me = self.clone();
            let chunk = chunk.to_vec();
            set.spawn(async move {
                let r = me.post_batch(b, b * bs, &chunk, dim).await;
                (b, r)
            });
        }
        let mut batches: Vec<Option<Vec<Vec<f32>>>> = vec![None; n.div_ceil(bs)];
        while let Some(joined) = set.join_next().await {
            let (b, r) = joined.map_err(|e| TextError::Remote {
                request: format!("POST {}", self.http.url()),
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
                context: format!("{} answer for text {i}", self.http.url()),
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
            self.http.url(),
            self.cfg.model,
            start + texts.len()
        );
        let body = Request {
            model: &self.cfg.model,
            input: texts,
            encoding_format: "float",
        };
        self.http
            .post(&body, |bytes| parse(bytes, texts.len(), dim))
            .await
            .map_err(|f| TextError::Remote {
                request,
                msg: f.to_string(),
            })
    }
}

/// Checks one answer: one finite vector per input, every index once.
fn parse(bytes: &[u8], n: usize, dim: Option<usize>) -> std::result::Result<Vec<Vec<f32>>, Reject> {
    let fatal = |msg: String| Reject { msg, retry: false };
    let parsed: Response = serde_json::from_slice(bytes).map_err(|e| {
        fatal(format!(
            "malformed answer (not an embeddings response: {e}): {}",
            snippet(bytes, 200)
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
