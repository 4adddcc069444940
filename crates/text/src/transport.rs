//! The one HTTP transport of hsuga's OpenAI-compatible clients: chat
//! (`hsuga_llm::openai`) and embeddings ([`crate::remote`]) both send their
//! requests through a [`Transport`], so they share one retry policy, and
//! both configs carry one [`TransportConfig`], so they share one set of keys
//! (issue 15: each had its own loop, and `timeout_secs` vs `timeout_s`).
//!
//! What it does for every request:
//! - at most [`TransportConfig::concurrency`] requests of one client in flight (a
//!   semaphore held per attempt, released while backing off);
//! - a timeout per attempt ([`TransportConfig::timeout_s`]);
//! - the API key from the environment variable [`TransportConfig::api_key_env`] as a
//!   bearer token (none when unset or blank), read once when the transport is
//!   built;
//! - retries of transient failures (timeouts, connection errors, 429 and 5xx
//!   answers, unreadable bodies, and answers the caller's check rejects as
//!   retryable) with exponential back-off: retry `n` (0-based) waits
//!   `backoff_s · 2ⁿ`, at least what the server's `Retry-After` asks (in
//!   seconds), and at most `max_backoff_s` — a server's wish beyond that
//!   would stall a long run, and the retry budget then fails the request with
//!   the server's own message. Other 4xx answers fail at once.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Environment variable read for the API key unless a config names another.
pub const DEFAULT_KEY_ENV: &str = "OPENAI_API_KEY";

/// How a client reaches its OpenAI-compatible server: the keys the chat
/// client's `[backend]` and the embedder's table share, one name each.
///
/// Clients embed it with `#[serde(flatten)]`, so users write these keys in
/// the client's own table beside `model` (as they always have). Flatten and
/// `deny_unknown_fields` do not combine in serde, so such a client also
/// flattens a [`Leftover`] and refuses what it collects; on its own (or
/// nested) this struct rejects unknown keys itself.
///
/// Defaults are ours, sized for the chat client, whose requests are single
/// generations a server batches and which can run for minutes; the
/// embedder's were 4 requests and 60 s before the two shared this struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConfig {
    /// Base URL including `/v1`, e.g. `http://127.0.0.1:8080/v1`; each
    /// client appends its endpoint.
    pub base_url: String,
    /// Environment variable holding the API key (none sent when unset or blank).
    #[serde(default = "default_key_env")]
    pub api_key_env: String,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per attempt, in seconds (`timeout_secs`, the chat client's old name,
    /// still loads).
    #[serde(default = "default_timeout", alias = "timeout_secs")]
    pub timeout_s: f64,
    /// Attempts after the first one.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First back-off in seconds; doubles each retry (old name `backoff_secs`).
    #[serde(default = "default_backoff", alias = "backoff_secs")]
    pub backoff_s: f64,
    /// Longest wait between attempts, in seconds, also capping `Retry-After`
    /// (old name `max_backoff_secs`).
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

impl TransportConfig {
    /// Every key this struct reads, for a flattening client's unknown-key
    /// message.
    pub const KEYS: &[&str] = &[
        "base_url",
        "api_key_env",
        "concurrency",
        "timeout_s",
        "max_retries",
        "backoff_s",
        "max_backoff_s",
    ];

    /// The defaults for everything but the URL.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key_env: default_key_env(),
            concurrency: default_concurrency(),
            timeout_s: default_timeout(),
            max_retries: default_retries(),
            backoff_s: default_backoff(),
            max_backoff_s: default_max_backoff(),
        }
    }

    /// `base_url` joined with a client's endpoint (`"embeddings"`,
    /// `"chat/completions"`), one slash between them.
    pub fn endpoint(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.base_url.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    /// Why these settings cannot work, naming the key.
    pub fn check(&self) -> Result<(), String> {
        let url = &self.base_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "base_url {url:?} must start with http:// or https://"
            ));
        }
        if self.concurrency == 0 {
            return Err("concurrency must be ≥ 1".into());
        }
        if !(self.timeout_s > 0.0 && self.timeout_s.is_finite()) {
            return Err(format!("timeout_s must be > 0 (got {})", self.timeout_s));
        }
        if !(self.backoff_s >= 0.0 && self.backoff_s.is_finite()) {
            return Err(format!("backoff_s must be ≥ 0 (got {})", self.backoff_s));
        }
        if !(self.max_backoff_s >= 0.0 && self.max_backoff_s.is_finite()) {
            return Err(format!(
                "max_backoff_s must be ≥ 0 (got {})",
                self.max_backoff_s
            ));
        }
        Ok(())
    }

    /// The wait before retry `retry` (0 = the first retry); see the module doc.
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self.backoff_s * 2f64.powi(retry.min(60) as i32);
        let wait = exp.max(retry_after.map_or(0.0, |d| d.as_secs_f64()));
        Duration::from_secs_f64(wait.min(self.max_backoff_s))
    }
}

/// The keys of a client's table that neither the client's own fields nor its
/// flattened [`TransportConfig`] took. Flatten it *last*: serde hands each
/// flattened field, in order, what the earlier ones left.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct Leftover(BTreeMap<String, serde::de::IgnoredAny>);

impl Leftover {
    /// An error naming the first unknown key and every known one (the
    /// client's `own` keys and [`TransportConfig::KEYS`]), worded like
    /// serde's own `deny_unknown_fields` message.
    pub fn deny<E: serde::de::Error>(&self, own: &[&str]) -> Result<(), E> {
        let Some(key) = self.0.keys().next() else {
            return Ok(());
        };
        let known: Vec<String> = own
            .iter()
            .chain(TransportConfig::KEYS)
            .map(|k| format!("`{k}`"))
            .collect();
        Err(E::custom(format!(
            "unknown field `{key}`, expected one of {}",
            known.join(", ")
        )))
    }
}

/// What went wrong with a request, after its last attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureKind {
    /// A non-2xx answer; `body` is its start.
    Http { status: u16, body: String },
    /// No answer within the per-attempt timeout.
    Timeout,
    /// No connection, or the request could not be sent.
    Connect(String),
    /// A 2xx answer whose body could not be read.
    Body(String),
    /// A 2xx answer the caller's check refused.
    Rejected(String),
}

/// A failed request: what happened on the last attempt, and how many there were.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub attempts: u32,
    /// Whether the last failure was transient (then the retries ran out).
    pub transient: bool,
    pub url: String,
    pub timeout_s: f64,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            FailureKind::Http { status, body } => {
                let reason = reqwest::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "HTTP {status} {reason}: {body}")?
            }
            FailureKind::Timeout => write!(f, "timed out after {} s", self.timeout_s)?,
            FailureKind::Connect(m) => write!(f, "connection failed: {m}")?,
            FailureKind::Body(m) => write!(f, "reading the answer failed: {m}")?,
            FailureKind::Rejected(m) => f.write_str(m)?,
        }
        if self.transient && self.attempts > 1 {
            write!(f, " (gave up after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

/// A caller's verdict on a 2xx body it cannot use.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub msg: String,
    /// Whether sending the same request again may give a usable answer.
    pub retry: bool,
}

/// One client's HTTP connection pool, key, limits and retry policy.
#[derive(Debug)]
pub struct Transport {
    url: String,
    key: Option<String>,
    http: reqwest::Client,
    permits: Arc<tokio::sync::Semaphore>,
    settings: TransportConfig,
    /// For blocking callers; built on first use so that a transport made and
    /// dropped inside async code never owns (and drops) a runtime there.
    runtime: OnceLock<tokio::runtime::Runtime>,
}

/// One failed attempt.
struct Attempt {
    kind: FailureKind,
    retry: bool,
    retry_after: Option<Duration>,
}

impl Transport {
    /// A transport that POSTs to `endpoint` under the config's `base_url`
    /// ([`TransportConfig::endpoint`]).
    pub fn new(settings: TransportConfig, endpoint: &str) -> Result<Self, String> {
        settings.check()?;
        let url = settings.endpoint(endpoint);
        let key = std::env::var(&settings.api_key_env)
            .ok()
            .filter(|k| !k.trim().is_empty());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(settings.timeout_s))
            .connect_timeout(Duration::from_secs_f64(settings.timeout_s.min(10.0)))
            .pool_max_idle_per_host(settings.concurrency)
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Self {
            url,
            key,
            http,
            permits: Arc::new(tokio::sync::Semaphore::new(settings.concurrency)),
            settings,
            runtime: OnceLock::new(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn settings(&self) -> &TransportConfig {
        &self.settings
    }

    /// Whether an API key was found in the environment.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// POSTs `body` as JSON, retrying as the module doc says, and returns
    /// what `check` makes of the first usable 2xx body.
    pub async fn post<B, T>(
        &self,
        body: &B,
        check: impl Fn(&[u8]) -> Result<T, Reject>,
    ) -> Result<T, Failure>
    where
        B: Serialize + ?Sized,
    {
        let mut retry = 0;
        loop {
            let outcome = {
                let _permit = self.permits.acquire().await.map_err(|_| Failure {
                    kind: FailureKind::Connect("the client was shut down".into()),
                    attempts: retry + 1,
                    transient: false,
                    url: self.url.clone(),
                    timeout_s: self.settings.timeout_s,
                })?;
                self.once(body, &check).await
            };
            match outcome {
                Ok(v) => return Ok(v),
                Err(a) if a.retry && retry < self.settings.max_retries => {
                    let wait = self.settings.backoff(retry, a.retry_after);
                    tracing::debug!(url = %self.url, retry, error = ?a.kind, wait_s = wait.as_secs_f64(), "retrying");
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                Err(a) => {
                    return Err(Failure {
                        kind: a.kind,
                        attempts: retry + 1,
                        transient: a.retry,
                        url: self.url.clone(),
                        timeout_s: self.settings.timeout_s,
                    });
                }
            }
        }
    }

    async fn once<B, T>(
        &self,
        body: &B,
        check: &impl Fn(&[u8]) -> Result<T, Reject>,
    ) -> Result<T, Attempt>
    where
        B: Serialize + ?Sized,
    {
        let mut req = self.http.post(&self.url).json(body);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| Attempt {
            kind: if e.is_timeout() {
                FailureKind::Timeout
            } else {
                FailureKind::Connect(error_chain(&e))
            },
            retry: true,
            retry_after: None,
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let bytes = resp.bytes().await.map_err(|e| Attempt {
            kind: if e.is_timeout() {
                FailureKind::Timeout
            } else {
                FailureKind::Body(error_chain(&e))
            },
            retry: true,
            retry_after,
        })?;
        if !status.is_success() {
            return Err(Attempt {
                kind: FailureKind::Http {
                    status: status.as_u16(),
                    body: snippet(&bytes, 300),
                },
                retry: status.as_u16() == 429 || status.is_server_error(),
                retry_after,
            });
        }
        check(&bytes).map_err(|r| Attempt {
            kind: FailureKind::Rejected(r.msg),
            retry: r.retry,
            retry_after: None,
        })
    }

    /// Runs `f` to completion for a blocking caller (not from inside an
    /// async task). Several threads may block on one transport at once.
    pub fn block_on<F: Future>(&self, f: F) -> Result<F::Output, String> {
        if self.runtime.get().is_none() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| format!("tokio runtime: {e}"))?;
            // Another thread may have won the race; then `rt` is dropped here,
            // outside any runtime.
            let _ = self.runtime.set(rt);
        }
        Ok(self.runtime.get().expect("set above").block_on(f))
    }
}

/// The start of a body, trimmed, for error messages.
pub fn snippet(bytes: &[u8], chars: usize) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(chars * 4)]);
    let s = s.trim();
    if s.chars().count() > chars {
        format!("{}…", s.chars().take(chars).collect::<String>())
    } else {
        s.to_string()
    }
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

    fn settings() -> TransportConfig {
        TransportConfig {
            api_key_env: "HSUGA_TEST_NO_SUCH_KEY".into(),
            concurrency: 1,
            timeout_s: 1.0,
            max_retries: 3,
            backoff_s: 0.5,
            max_backoff_s: 3.0,
            ..TransportConfig::new("http://127.0.0.1:9/v1")
        }
    }

    #[test]
    fn backoff_doubles_honours_retry_after_and_is_capped() {
        let s = settings();
        let secs = |r, ra: Option<f64>| s.backoff(r, ra.map(Duration::from_secs_f64)).as_secs_f64();
        assert_eq!(secs(0, None), 0.5);
        assert_eq!(secs(1, None), 1.0);
        assert_eq!(secs(2, None), 2.0);
        assert_eq!(secs(3, None), 3.0, "capped at max_backoff_s");
        assert_eq!(
            secs(0, Some(2.0)),
            2.0,
            "Retry-After longer than the back-off"
        );
        assert_eq!(
            secs(2, Some(0.0)),
            2.0,
            "Retry-After shorter than the back-off"
        );
        assert_eq!(secs(0, Some(100.0)), 3.0, "Retry-After capped too");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let bad = |f: fn(&mut TransportConfig)| {
            let mut s = settings();
            f(&mut s);
            Transport::new(s, "x").unwrap_err()
        };
        assert!(bad(|s| s.concurrency = 0).contains("concurrency"));
        assert!(bad(|s| s.timeout_s = 0.0).contains("timeout_s"));
        assert!(bad(|s| s.timeout_s = f64::NAN).contains("timeout_s"));
        assert!(bad(|s| s.backoff_s = -1.0).contains("backoff_s"));
        assert!(bad(|s| s.max_backoff_s = f64::INFINITY).contains("max_backoff_s"));
        let e = bad(|s| s.base_url = "localhost:9/v1".into());
        assert!(e.contains("base_url") && e.contains("http://"), "{e}");
    }

    #[test]
    fn endpoint_joins_with_one_slash() {
        for base in ["http://h:8/v1", "http://h:8/v1/", "http://h:8/v1//"] {
            let t = TransportConfig::new(base);
            assert_eq!(t.endpoint("embeddings"), "http://h:8/v1/embeddings");
            assert_eq!(
                t.endpoint("/chat/completions"),
                "http://h:8/v1/chat/completions"
            );
        }
    }

    /// On its own (a nested table) the struct fills its defaults and
    /// refuses unknown keys by name.
    #[test]
    fn parses_with_defaults_and_refuses_unknown_keys() {
        let t: TransportConfig = toml::from_str("base_url = \"http://h/v1\"").unwrap();
        assert_eq!(t, TransportConfig::new("http://h/v1"));
        assert_eq!(
            (
                t.api_key_env.as_str(),
                t.concurrency,
                t.timeout_s,
                t.max_retries
            ),
            ("OPENAI_API_KEY", 16, 120.0, 4)
        );
        assert_eq!((t.backoff_s, t.max_backoff_s), (0.5, 30.0));
        let e = toml::from_str::<TransportConfig>("base_url = \"http://h/v1\"\nretries = 2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `retries`"), "{e}");
        // KEYS lists exactly the fields (the flattening clients' messages
        // and their unknown-key check rely on it).
        let v = toml::Value::try_from(&t).unwrap();
        let mut written: Vec<&str> = v.as_table().unwrap().keys().map(|k| k.as_str()).collect();
        let mut keys = TransportConfig::KEYS.to_vec();
        written.sort_unstable();
        keys.sort_unstable();
        assert_eq!(written, keys);
    }
}
