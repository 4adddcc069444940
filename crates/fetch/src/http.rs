//! One file from a URL, resumable and verified.
//!
//! Bytes go to `<dest>.part`. An interrupted transfer (a dropped
//! connection, a stall longer than the read timeout, a killed process)
//! leaves the `.part` file, and the next attempt, in this call or a later
//! one, asks for the rest with a `Range` request; a server that ignores the
//! range sends the whole file, which then replaces the part. Only a file
//! whose sha256 matches is renamed to `dest`, so `dest` existing means
//! complete and checked. Client errors (404, 403) are final; timeouts,
//! dropped connections, 429 and 5xx answers are retried, resuming.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};

use crate::{FetchError, Result, check_sha256};

/// How patient a download is.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes (not for the whole file).
    pub read_timeout: Duration,
    /// Further attempts after a transient failure, each resuming.
    pub retries: u32,
    /// First pause between attempts; doubled after each.
    pub backoff: Duration,
    /// A byte-count bar on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            retries: 3,
            backoff: Duration::from_secs(2),
            progress: true,
        }
    }
}

/// The partial file a download of `dest` writes into.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Downloads `url` to `dest`, checked against `sha256` when given; returns
/// the file's sha256. Safe to call from inside a tokio runtime (the
/// transfer runs on its own thread and runtime).
pub fn download(
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    opts: &HttpOptions,
) -> Result<String> {
    download_verified(url, dest, opts, |part| check_sha256(part, sha256, url))
}

/// [`download`] with the caller's own check of the complete `.part` file,
/// run before it is renamed to `dest`: for callers whose expected hash is
/// not a plain one (a hash recorded at an earlier download, a hash of the
/// decompressed bytes). `verify` returns the file's sha256; when it fails,
/// the part is removed (unless `verify` already did) and `dest` is never
/// created, so a killed process cannot leave an unchecked `dest` behind.
pub fn download_verified(
    url: &str,
    dest: &Path,
    opts: &HttpOptions,
    verify: impl FnOnce(&Path) -> Result<String>,
) -> Result<String> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| FetchError::io(parent, e))?;
    }
    let part = part_path(dest);
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| FetchError::io(&part, e))?;
            rt.block_on(fetch_with_retries(url, &part, opts))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(FetchError::Http {
                url: url.to_string(),
                msg: "the download thread panicked".into(),
            })
        })
    })?;
    let got = match verify(&part) {
        Ok(h) => h,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    std::fs::rename(&part, dest).map_err(|e| FetchError::io(dest, e))?;
    Ok(got)
}

/// Why one attempt ended.
enum Failure {
    /// Worth another attempt (resuming).
    Transient(String),
    Fatal(FetchError),
}

async fn fetch_with_retries(url: &str, part: &Path, opts: &HttpOptions) -> Result<()> {
    let http = |msg: String| FetchError::Http {
        url: url.to_string(),
        msg,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .read_timeout(opts.read_timeout)
        .build()
        .map_err(|e| http(format!("HTTP client: {e}")))?;
    let bar = if opts.progress {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("valid template"),
        );
        b.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
        b
    } else {
        ProgressBar::hidden()
    };
    let mut pause = opts.backoff;
    let mut attempt = 0;
    loop {
        match attempt_once(&client, url, part, opts, &bar).await {
            Ok(()) => {
                bar.finish_and_clear();
                return Ok(());
            }
            Err(Failure::Fatal(e)) => {
                bar.abandon();
                return Err(e);
            }
            Err(Failure::Transient(msg)) if attempt < opts.retries => {
                attempt += 1;
                tracing::warn!(%url, attempt, %msg, "download interrupted; resuming");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(Failure::Transient(msg)) => {
                bar.abandon();
                let kept = match std::fs::metadata(part) {
                    Ok(m) if m.len() > 0 => format!(
                        "; the {} bytes received are kept in {} and a later fetch resumes them",
                        m.len(),
                        part.display()
                    ),
                    _ => String::new(),
                };
                return Err(http(format!(
                    "{msg} (after {} attempts{kept})",
                    attempt + 1
                )));
            }
        }
    }
}

/// A reqwest error in words, without the URL (the caller names it once).
fn describe(e: &reqwest::Error, opts: &HttpOptions) -> String {
    // The innermost cause says what happened ("dns error: …", "connection
    // refused"); reqwest's own top line mostly repeats the URL.
    let mut cause = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(c) = next {
        cause = c.to_string();
        next = c.source();
    }
    if e.is_timeout() {
        format!(
            "timed out (no data for {} s; connect timeout {} s)",
            opts.read_timeout.as_secs_f64(),
            opts.connect_timeout.as_secs_f64()
        )
    } else if e.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        cause
    }
}

async fn attempt_once(
    client: &reqwest::Client,
    url: &str,
    part: &Path,
    opts: &HttpOptions,
    bar: &ProgressBar,
) -> std::result::Result<(), Failure> {
    let io = |e| Failure::Fatal(FetchError::io(part, e));
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut req = client.get(url);
    if have > 0 {
        req = req.header(RANGE, format!("bytes={have}-"));
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| Failure::Transient(describe(&e, opts)))?;
    let status = resp.status();
    let resumed = status == StatusCode::PARTIAL_CONTENT
        && resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(&format!("bytes {have}-")));
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        // The part is as long as the file or longer: start over.
        std::fs::remove_file(part).map_err(io)?;
        return Err(Failure::Transient(
            "the server refused to resume; starting over".into(),
        ));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(Failure::Transient(format!("HTTP {status}")));
    }
    if !status.is_success() {
        return Err(Failure::Fatal(FetchError::Http {
            url: url.to_string(),
            msg: format!("HTTP {status}"),
        }));
    }
    let start = if resumed { have } else { 0 };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(part)
        .map_err(io)?;
    let total = resp.content_length().map(|n| n + start);
    bar.set_length(total.unwrap_or(0));
    bar.set_position(start);
    let mut written = start;
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                file.write_all(&bytes).map_err(io)?;
                written += bytes.len() as u64;
                bar.set_position(written);
            }
            Ok(None) => break,
            Err(e) => {
                file.sync_all().map_err(io)?;
                return Err(Failure::Transient(describe(&e, opts)));
            }
        }
    }
    file.sync_all().map_err(io)?;
    match total {
        Some(t) if written < t => Err(Failure::Transient(format!(
            "the connection closed after {written} of {t} bytes"
        ))),
        _ => Ok(()),
    }
}
