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
//!
//! Constrained output: a request that carries a [`JsonSchema`] is sent with
//! `response_format: {"type": "json_schema", …}` (unless the config says
//! `response_format = "text"`), which llama.cpp's server, vLLM and SGLang
//! turn into a grammar the answer must follow. A server that refuses the
//! field (400 or 422) gets the request again without it, and once that
//! succeeds the client stops sending it for the rest of the session; the
//! caller parses text either way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use hsuga_text::transport::{Failure, FailureKind, Leftover, Reject, Transport, TransportConfig};
use serde::{Deserialize, Serialize};

use crate::{
    BackendId, ChatBackend, ChatRequest, ChatResponse, Finish, JsonSchema, LlmError, Message,
    Usage, estimate_tokens,
};

/// `[backend]` settings for `kind = "openai"`: the model, whether answers
/// are constrained to the request's schema, and the transport's keys
/// ([`TransportConfig`]: `base_url`, `api_key_env`, `concurrency`,
/// `timeout_s`, `max_retries`, `backoff_s`, `max_backoff_s`) flat in the
/// same table, as the embedder takes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WrittenConfig")]
pub struct OpenAiConfig {
    pub model: String,
    /// Ours: `json_schema` (a small model's answers then always parse; a
    /// server without it falls back to text by itself).
    pub response_format: ResponseFormat,
    #[serde(flatten)]
    pub transport: TransportConfig,
}

/// How a request with a [`JsonSchema`] asks for its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// `response_format: {"type": "json_schema", "json_schema": {…}}`.
    #[default]
    JsonSchema,
    /// No `response_format`: the answer follows the prompt's text format.
    Text,
}

/// [`OpenAiConfig`] as written: its fields, the transport's, and whatever
/// else the table holds (refused by name in the conversion).
#[derive(Deserialize)]
struct WrittenConfig {
    model: String,
    #[serde(default)]
    response_format: ResponseFormat,
    #[serde(flatten)]
    transport: TransportConfig,
    #[serde(flatten)]
    unknown: Leftover,
}

impl TryFrom<WrittenConfig> for OpenAiConfig {
    type Error = serde::de::value::Error;

    fn try_from(w: WrittenConfig) -> Result<Self, Self::Error> {
        w.unknown.deny(&["model", "response_format"])?;
        Ok(Self {
            model: w.model,
            response_format: w.response_format,
            transport: w.transport,
        })
    }
}

impl OpenAiConfig {
    /// A config with defaults for everything but the URL and model.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            response_format: ResponseFormat::default(),
            transport: TransportConfig::new(base_url),
        }
    }
}

#[derive(Debug)]
pub struct OpenAiClient {
    cfg: OpenAiConfig,
    http: Transport,
    /// The server refused `response_format` and answered without it: not
    /// sent again by this client.
    schema_refused: AtomicBool,
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    max_tokens: u32,
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<WireFormat<'a>>,
}

/// `{"type": "json_schema", "json_schema": {"name", "strict", "schema"}}`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireFormat<'a> {
    JsonSchema { json_schema: WireSchema<'a> },
}

#[derive(Serialize)]
struct WireSchema<'a> {
    name: &'a str,
    strict: bool,
    schema: &'a serde_json::Value,
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
        let http = Transport::new(cfg.transport.clone(), "chat/completions")
            .map_err(|m| LlmError::Config(format!("openai: {m}")))?;
        Ok(Self {
            cfg,
            http,
            schema_refused: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    /// Whether the server refused `response_format` earlier in this session.
    pub fn schema_refused(&self) -> bool {
        self.schema_refused.load(Ordering::Relaxed)
    }

    /// The schema to send with `req`, if any.
    fn format_for<'r>(&self, req: &'r ChatRequest) -> Option<&'r JsonSchema> {
        match self.cfg.response_format {
            ResponseFormat::JsonSchema if !self.schema_refused() => req.schema.as_ref(),
            _ => None,
        }
    }

    async fn chat_async(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let schema = self.format_for(req);
        let mut r = match self.post(req, schema).await {
            // A server that does not take `response_format` (or not this
            // schema) refuses the request; without it, it may answer.
            Err(LlmError::Http { status, body, url })
                if schema.is_some() && matches!(status, 400 | 422) =>
            {
                let r = self.post(req, None).await?;
                if !self.schema_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        %url, status, body = %body,
                        "the server refused response_format; answers are parsed as text from now on"
                    );
                }
                r
            }
            other => other?,
        };
        r.latency = started.elapsed();
        Ok(r)
    }

    async fn post(
        &self,
        req: &ChatRequest,
        schema: Option<&JsonSchema>,
    ) -> Result<ChatResponse, LlmError> {
        let body = WireRequest {
            model: &self.cfg.model,
            messages: &req.messages,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            seed: req.seed,
            response_format: schema.map(|s| WireFormat::JsonSchema {
                json_schema: WireSchema {
                    name: &s.name,
                    strict: true,
                    schema: &s.schema,
                },
            }),
        };
        self.http
            .post(&body, |bytes| parse(bytes, req))
            .await
            .map_err(|f| self.error(f))
    }

    /// The transport's failure as this crate's error.
    /// A connection or body failure says how often it was tried, so a
    /// report shows the retries ran out.
    fn error(&self, f: Failure) -> LlmError {
        let url = f.url;
        let tries = |m: String| match f.attempts {
            n if n > 1 => format!("{m} (gave up after {n} attempts)"),
            _ => m,
        };
        match f.kind {
            FailureKind::Http { status, body } => LlmError::Http { status, url, body },
            FailureKind::Timeout => LlmError::Timeout {
                url,
                secs: f.timeout_s,
            },
            FailureKind::Connect(message) => LlmError::Transport {
                url,
                message: tries(message),
            },
            FailureKind::Body(message) | FailureKind::Rejected(message) => LlmError::Malformed {
                url,
                message: tries(message),
            },
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
        c.transport.base_url = "http://localhost:8000/v1/".into();
        c.transport.concurrency = 0;
        assert!(OpenAiClient::new(c.clone()).is_err());
        c.transport.concurrency = 2;
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
        let t = &c.transport;
        assert_eq!(
            (t.timeout_s, t.backoff_s, t.max_backoff_s),
            (7.5, 0.25, 4.0)
        );
        let c: OpenAiConfig =
            toml::from_str("base_url = \"http://h/v1\"\nmodel = \"m\"\ntimeout_s = 3.0\n").unwrap();
        assert_eq!(c.transport.timeout_s, 3.0);
    }

    /// The chat client's `[backend]` and the embedder's table take the same
    /// transport keys into one struct: the same lines give equal settings.
    #[test]
    fn chat_and_embedder_read_the_same_transport_keys_alike() {
        let keys = "base_url = \"http://h:1/v1\"\napi_key_env = \"MY_KEY\"\nconcurrency = 3\n\
                    timeout_s = 7.5\nmax_retries = 2\nbackoff_s = 0.25\nmax_backoff_s = 4.0\n";
        let chat: OpenAiConfig = toml::from_str(&format!("model = \"chat\"\n{keys}")).unwrap();
        let embed: hsuga_text::EmbedderConfig =
            toml::from_str(&format!("backend = \"openai\"\nmodel = \"emb\"\n{keys}")).unwrap();
        let hsuga_text::EmbedderConfig::Openai(embed) = embed else {
            panic!("{embed:?}")
        };
        let want = TransportConfig {
            base_url: "http://h:1/v1".into(),
            api_key_env: "MY_KEY".into(),
            concurrency: 3,
            timeout_s: 7.5,
            max_retries: 2,
            backoff_s: 0.25,
            max_backoff_s: 4.0,
        };
        assert_eq!(chat.transport, want);
        assert_eq!(embed.transport, want);
        // Left out, both fall back to the one set of defaults.
        let chat: OpenAiConfig =
            toml::from_str("model = \"c\"\nbase_url = \"http://h/v1\"").unwrap();
        let hsuga_text::EmbedderConfig::Openai(embed) =
            toml::from_str("backend = \"openai\"\nmodel = \"e\"\nbase_url = \"http://h/v1\"")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(chat.transport, embed.transport);
    }

    /// serde's `flatten` silently drops keys under no field; the chat config
    /// still refuses them, by name.
    #[test]
    fn unknown_key_in_the_chat_config_is_an_error_naming_it() {
        for key in ["retries", "timeout", "modle"] {
            let text = format!("model = \"m\"\nbase_url = \"http://h/v1\"\n{key} = 1\n");
            let e = toml::from_str::<OpenAiConfig>(&text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("unknown field `{key}`")), "{e}");
            assert!(e.contains("`max_retries`") && e.contains("`model`"), "{e}");
        }
    }

    #[test]
    fn chat_config_round_trips_through_toml_flat() {
        let mut c = OpenAiConfig::new("http://h:1/v1", "m");
        c.transport.concurrency = 64;
        let text = toml::to_string(&c).unwrap();
        assert!(
            text.contains("concurrency = 64") && !text.contains('['),
            "{text}"
        );
        assert_eq!(toml::from_str::<OpenAiConfig>(&text).unwrap(), c);
    }

    /// Constrained output is on unless the config says `text`.
    #[test]
    fn response_format_defaults_to_json_schema_and_can_be_text() {
        let base = "model = \"m\"\nbase_url = \"http://h/v1\"\n";
        let c: OpenAiConfig = toml::from_str(base).unwrap();
        assert_eq!(c.response_format, ResponseFormat::JsonSchema);
        let c: OpenAiConfig =
            toml::from_str(&format!("{base}response_format = \"text\"\n")).unwrap();
        assert_eq!(c.response_format, ResponseFormat::Text);
        let e = toml::from_str::<OpenAiConfig>(&format!("{base}response_format = \"json\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("json_schema") && e.contains("text"), "{e}");
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
