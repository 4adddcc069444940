//! Load on `hsuga serve` over loopback (issue 17's targets), in one
//! process: the service on its own tokio runtime, the clients on OS threads
//! with keep-alive HTTP/1.1 connections (a few lines of std networking, so
//! the generator adds no dependency).
//!
//! 1. An ML-100K SASRec run (the model settings of
//!    `configs/runs/ml-100k-sasrec.toml`, one epoch: serving cost does not
//!    depend on how long it trained) behind the service; 1, 8 and 64
//!    concurrent clients asking `GET /v1/users/{user}/recommendations?k=10`
//!    for random dataset users: requests/s and p50/p95/p99 latency. In the
//!    same run, the bare model's batched scoring throughput
//!    (`Run::score`, the model contract's all-item scoring) at batch sizes
//!    1, 8 and 64, and the ratio service / bare.
//! 2. An ML-100K SASRec + HSU fusion run with the `rules` back-end
//!    (`configs/runs/ml-100k-sasrec-hsu-gate.toml`, one epoch) under a mixed
//!    load for 60 s: 90% recommendation reads, 10% interaction writes (a
//!    third to 48 new users, so HSU stages complete and run in the
//!    background); errors, stages run, deepest HSU queue.
//! 3. Resident memory (VmRSS) of the process after loading and at the end.
//!
//! ```text
//! cargo bench -p hsuga-serve --bench serve_load -- [--seconds 10]
//!     [--mixed-seconds 60] [--out benches/serve_results.md]
//!     [--max-batch 128] [--window-ms 0] [--no-mixed] [--wrk]
//! cargo bench -p hsuga-serve --bench serve_load -- --run <run folder>
//!     [--binary target/release/hsuga] [--cache-dir DIR] [--window-ms 0]
//!     [--seconds 10] [--wrk] --out <file>
//! ```
//! The second form serves any finished run (e.g. Beauty SASRec) with the
//! `hsuga` binary as a process of its own, so the resident memory it
//! reports (`VmRSS`, `VmHWM`) is the server's alone; the clients and the
//! bare model run in the bench process on the same cores. With `--wrk` the
//! clients are Debian's `wrk` instead (one event-loop thread for all
//! connections, `benches/serve_wrk.lua` picking random users): on two cores
//! the bench's 64 client threads take CPU the server would otherwise get,
//! while `wrk` keeps 64 connections busy on a fraction of one core.
//! Needs MiniLM (`hsuga models fetch all-minilm-l6-v2`) for the fusion run;
//! the embedding caches of `$HSUGA_CACHE_DIR` (or `~/.cache/hsuga`) are
//! copied into the bench's own cache when present.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hsuga_serve::{BatchConfig, Limits, Options, Run, RunSource, Service};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `hsuga` binary's allocator setting, so the bench measures what it runs.
#[path = "../crates/cli/src/allocator.rs"]
#[allow(dead_code)]
mod allocator;

const TOKEN: &str = "serve-load-bench";

/// How to read the service / bare ratio and the latency at 64 clients.
const PADDING_NOTE: &str = "A forward pass left-pads every history to the batch's longest and pays for the padding. \"bare\" is `Run::score` on a fixed batch of random users (at ML-100K's max length 200, most batches pad to 200); \"bare, by length\" is what the service's scorer does (`hsuga_serve::batch::score_by_length`: rows sorted by length, cut into sub-batches where no row is padded past twice its length), and the ratio is taken over the better of the two. With N closed-loop clients always waiting, mean latency is N / throughput (Little's law): a p99 under 10 ms at 64 clients needs at least 6,400 requests/s, several times what the model itself scores on two cores.";

struct Args {
    seconds: f64,
    mixed_seconds: f64,
    out: PathBuf,
    /// The scorer's batching (in-process mode; `--window-ms` also goes to
    /// an external server).
    max_batch: usize,
    window_ms: f64,
    /// Skip the mixed-load phase (in-process mode).
    no_mixed: bool,
    /// External mode: serve this finished run folder with `binary` as its
    /// own process (so its resident memory is the server's alone).
    run: Option<PathBuf>,
    binary: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    /// External mode: load from `wrk` instead of the bench's own threads.
    wrk: bool,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seconds: 10.0,
        mixed_seconds: 60.0,
        out: repo().join("benches/serve_results.md"),
        max_batch: BatchConfig::default().max_batch,
        window_ms: 0.0,
        no_mixed: false,
        run: None,
        binary: None,
        cache_dir: None,
        wrk: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let flag = argv[i].clone();
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        let num = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0)
                .ok_or_else(|| format!("{flag}: expected seconds > 0, got {v:?}"))
        };
        match flag.as_str() {
            "--seconds" => a.seconds = num(&value)?,
            "--mixed-seconds" => a.mixed_seconds = num(&value)?,
            "--out" => a.out = PathBuf::from(value),
            "--max-batch" => {
                a.max_batch =
                    value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("--max-batch: expected a count > 0, got {value:?}")
                    })?;
            }
            "--window-ms" => {
                a.window_ms = value
                    .parse()
                    .ok()
                    .filter(|w: &f64| *w >= 0.0)
                    .ok_or_else(|| format!("--window-ms: expected ms >= 0, got {value:?}"))?;
            }
            "--no-mixed" => {
                a.no_mixed = true;
                i += 1;
                continue;
            }
            "--wrk" => {
                a.wrk = true;
                i += 1;
                continue;
            }
            "--run" => a.run = Some(PathBuf::from(value)),
            "--binary" => a.binary = Some(PathBuf::from(value)),
            "--cache-dir" => a.cache_dir = Some(PathBuf::from(value)),
            // `cargo bench` passes --bench to every bench binary.
            "--bench" => {
                i += 1;
                continue;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
        i += 2;
    }
    Ok(a)
}

fn copy_tree(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    let _ = std::fs::create_dir_all(to);
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            let _ = std::fs::copy(&p, to.join(e.file_name()));
        }
    }
}

fn source(cache: &Path) -> RunSource {
    RunSource {
        cache_dir: cache.to_path_buf(),
        models_dir: hsuga_text::fetch::default_models_dir(),
        hsu_configs: repo().join("configs/hsu"),
        resolve_dataset: Arc::new(|entry: &str| Ok(PathBuf::from(entry))),
    }
}

/// Trains one epoch of `extra` (method and inputs tables) on the model
/// settings of the README's ML-100K SASRec runs.
fn train(root: &Path, cache: &Path, name: &str, extra: &str) -> PathBuf {
    let dataset = repo().join("configs/datasets/ml-100k.toml");
    let cfg = hsuga_train::RunConfig::from_toml(&format!(
        "name = \"{name}\"\ndataset = \"{}\"\nout_dir = \"{}\"\nseed = 42\n\
         [model]\nbackbone = \"sasrec\"\nmax_len = 200\ndropout = 0.2\n\
         [train]\nepochs = 1\nprogress = false\n{extra}",
        dataset.display(),
        root.join("runs").display()
    ))
    .expect("bench run config");
    let dirs = hsuga_experiment::InputDirs {
        cache_dir: cache,
        models_dir: &hsuga_text::fetch::default_models_dir(),
        hsu_configs: &repo().join("configs/hsu"),
    };
    let resolve = |entry: &str| Ok(PathBuf::from(entry));
    hsuga_experiment::train_one(&cfg, &dirs, &resolve, Default::default())
        .unwrap_or_else(|e| panic!("training {name}: {e}"))
        .dir
}

/// A service on 127.0.0.1 (an OS-chosen port) on its own runtime.
struct Server {
    addr: SocketAddr,
    service: Arc<Service>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(run: &Path, cache: &Path, state: &Path, batch: BatchConfig) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let loaded = Run::load(run, &source(cache)).expect("loading the run");
        let service = Service::new(
            loaded,
            source(cache),
            Options {
                state: state.join("interactions.sqlite"),
                token: Some(TOKEN.into()),
                limits: Limits::default(),
                batch,
                hsu_queue: hsuga_serve::DEFAULT_HSU_QUEUE,
            },
        )
        .expect("starting the service");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding");
        let addr = listener.local_addr().expect("address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let svc = service.clone();
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let stop = async {
                    let _ = rx.await;
                };
                if let Err(e) = hsuga_serve::serve(listener, svc, stop).await {
                    eprintln!("serving: {e}");
                }
            });
        });
        Self {
            addr,
            service,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: SocketAddr,
    reader: Option<BufReader<TcpStream>>,
    last_body: Vec<u8>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            reader: None,
            last_body: Vec::new(),
        }
    }

    /// Sends one request and reads the answer; returns the status.
    fn call(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<u16, String> {
        if self.reader.is_none() {
            let s = TcpStream::connect(self.addr).map_err(|e| format!("connect: {e}"))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            self.reader = Some(BufReader::new(s));
        }
        let result = self.exchange(method, path, body);
        if result.is_err() {
            self.reader = None;
        }
        result
    }

    /// `GET path`'s body (the server's metrics, in external mode).
    fn fetch(&mut self, path: &str) -> Result<String, String> {
        self.call("GET", path, None)?;
        Ok(String::from_utf8_lossy(&self.last_body).into_owned())
    }

    fn exchange(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<u16, String> {
        let reader = self.reader.as_mut().ok_or("no connection")?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: bench\r\n");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        reader
            .get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("read: {e}"))?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("read: {e}"))?;
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    return Err("chunked answers are not read by this client".into());
                }
            }
        }
        let mut buf = vec![0u8; length.ok_or("no content-length")?];
        reader
            .read_exact(&mut buf)
            .map_err(|e| format!("read body: {e}"))?;
        self.last_body = buf;
        Ok(status)
    }
}

/// Latencies (µs) and outcomes of one load phase.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i] as f64 / 1000.0
    }
}

/// Runs `clients` threads for `seconds`, each calling `request` in a loop
/// on its own connection.
fn load(
    addr: SocketAddr,
    clients: usize,
    seconds: f64,
    request: impl Fn(&mut ChaCha8Rng, usize) -> (&'static str, String, Option<String>)
    + Send
    + Sync
    + 'static,
) -> (Tally, f64) {
    let request = Arc::new(request);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (request, stop) = (request.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = ChaCha8Rng::seed_from_u64(c as u64 + 1);
                let mut conn = Conn::new(addr);
                let mut t = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    let (method, path, body) = request(&mut rng, c);
                    let sent = Instant::now();
                    let outcome = conn.call(method, &path, body.as_deref());
                    let us = sent.elapsed().as_micros() as u64;
                    match outcome {
                        Ok(s) if (200..300).contains(&s) => t.latencies_us.push(us),
                        other => {
                            t.errors += 1;
                            if t.first_error.is_none() {
                                t.first_error = Some(format!("{method} {path}: {other:?}"));
                            }
                        }
                    }
                }
                t
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut all = Tally::default();
    for t in threads {
        all.merge(t.join().expect("client thread"));
    }
    (all, start.elapsed().as_secs_f64())
}

fn vm_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn cpu_model() -> String {
    let from_lscpu = std::process::Command::new("lscpu")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("Model name:").map(|m| m.trim().to_string()))
        });
    from_lscpu.unwrap_or_else(|| "unknown (no lscpu)".into())
}

/// The bare model: histories/s of `Run::score` at one batch size (or of
/// the service's length-sorted sub-batches, `by_length`).
fn bare_throughput(
    run: &Run,
    histories: &[Vec<u32>],
    batch: usize,
    seconds: f64,
    by_length: bool,
) -> f64 {
    let mut done = 0usize;
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed().as_secs_f64() < seconds {
        let rows: Vec<&[u32]> = (0..batch)
            .map(|k| histories[(i + k) % histories.len()].as_slice())
            .collect();
        if by_length {
            std::hint::black_box(hsuga_serve::batch::score_by_length(run, &rows, &[]));
        } else {
            std::hint::black_box(run.score(&rows, &[]));
        }
        done += batch;
        i += batch;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn metric(service: &Service, name: &str) -> f64 {
    metric_in(&service.metrics.render(), name)
}

fn metric_in(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// One row of the service-vs-bare table per client count: the bare model's
/// histories/s at a batch of that size, then the service under that many
/// closed-loop clients; `metrics` reads the server's Prometheus text.
fn levels(
    addr: SocketAddr,
    run: &Run,
    seconds: f64,
    wrk: bool,
    metrics: &dyn Fn() -> String,
    mut between: impl FnMut(),
) -> Vec<String> {
    let users = run.num_users();
    let max_len = run.max_len();
    let histories: Vec<Vec<u32>> = (0..users)
        .map(|u| {
            let h = &run.prepared.dataset.sequences[u];
            h[h.len().saturating_sub(max_len)..].to_vec()
        })
        .collect();
    let user_ids: Arc<Vec<String>> = Arc::new(run.prepared.dataset.user_ids.clone());
    // wrk's script reads the raw ids from a file.
    let users_file = wrk.then(|| {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), user_ids.join("\n") + "\n").expect("writing user ids");
        f
    });
    let mut rows = Vec::new();
    for clients in [1usize, 8, 64] {
        let bare = bare_throughput(run, &histories, clients, seconds.min(5.0), false);
        let sorted = bare_throughput(run, &histories, clients, seconds.min(5.0), true);
        between();
        let ids = user_ids.clone();
        let before = metrics();
        let level = if wrk {
            let users = users_file.as_ref().expect("written when wrk is on");
            wrk_load(addr, clients, seconds, users.path())
        } else {
            let (t, secs) = load(addr, clients, seconds, move |rng, _| {
                let u = &ids[rng.random_range(0..ids.len())];
                ("GET", format!("/v1/users/{u}/recommendations?k=10"), None)
            });
            Level {
                rps: t.latencies_us.len() as f64 / secs,
                p50: t.quantile_ms(0.5),
                p95: t.quantile_ms(0.95),
                p99: t.quantile_ms(0.99),
                errors: t.errors,
            }
        };
        let after = metrics();
        let delta = |name: &str| metric_in(&after, name) - metric_in(&before, name);
        let rows_sum = delta("hsuga_scoring_batch_rows_sum");
        let passes = delta("hsuga_scoring_batch_rows_count");
        let Level {
            rps,
            p50,
            p95,
            p99,
            errors,
        } = level;
        eprintln!(
            "clients {clients}: {rps:.0} req/s, p50 {p50:.2} ms, p99 {p99:.2} ms, bare {bare:.0} \
             histories/s ({sorted:.0} by length), errors {errors}",
        );
        rows.push(format!(
            "| {clients} | {rps:.0} | {p50:.2} | {p95:.2} | {p99:.2} | {:.1} | {bare:.0} | {sorted:.0} | {:.2} | {errors} |",
            if passes > 0.0 { rows_sum / passes } else { 0.0 },
            rps / bare.max(sorted),
        ));
        between();
    }
    rows
}

/// One load level's outcome, from either load generator.
struct Level {
    rps: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    /// Non-2xx answers and failed connections.
    errors: u64,
}

/// One level from `wrk` (one thread, `clients` keep-alive connections),
/// random users from `users` (one raw id per line) through
/// `benches/serve_wrk.lua`, whose `done` prints one `hsuga-wrk` line.
fn wrk_load(addr: SocketAddr, clients: usize, seconds: f64, users: &Path) -> Level {
    let out = std::process::Command::new("wrk")
        .args(["-t1", &format!("-c{clients}")])
        .arg(format!("-d{}s", seconds.ceil() as u64))
        .arg("-s")
        .arg(repo().join("benches/serve_wrk.lua"))
        .arg(format!("http://{addr}"))
        .env("HSUGA_WRK_USERS", users)
        .output()
        .expect("running wrk (Debian: apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("hsuga-wrk "))
        .unwrap_or_else(|| panic!("no hsuga-wrk line in wrk's output:\n{text}"));
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    let requests = field("requests");
    let errors = field("errors") as u64;
    Level {
        rps: (requests - errors as f64) / (field("duration_us") / 1e6),
        p50: field("p50_us") / 1e3,
        p95: field("p95_us") / 1e3,
        p99: field("p99_us") / 1e3,
        errors,
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
fn rss_of(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// External mode: `binary serve --run <run>` as a process of its own on
/// loopback; the clients and the bare model run in this process. Returns
/// the report's section.
fn external(args: &Args, run_dir: &Path, binary: &Path) -> String {
    let state = tempfile::tempdir().expect("temp dir");
    let mut cmd = std::process::Command::new(binary);
    cmd.current_dir(repo());
    if let Some(c) = &args.cache_dir {
        cmd.arg("--cache-dir").arg(c);
    }
    let mut child = cmd
        .args(["serve", "--addr", "127.0.0.1:0"])
        .arg("--run")
        .arg(run_dir)
        .arg("--state")
        .arg(state.path().join("interactions.sqlite"))
        .args(["--batch-window-ms", &args.window_ms.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("the server ended before serving")
            .expect("reading the server's stderr");
        eprintln!("server: {line}");
        if let Some(rest) = line.split_once(" on http://").map(|(_, r)| r) {
            break rest.split(';').next().unwrap().parse().expect("address");
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let (rss_loaded, hwm_loaded) = rss_of(pid);
    let cache = args
        .cache_dir
        .clone()
        .unwrap_or_else(hsuga_data::default_cache_dir);
    let src = RunSource {
        cache_dir: cache.clone(),
        models_dir: hsuga_text::fetch::default_models_dir(),
        hsu_configs: repo().join("configs/hsu"),
        resolve_dataset: Arc::new(|entry: &str| {
            let p = PathBuf::from(entry);
            Ok(if p.is_relative() && p.extension().is_some() {
                repo().join(p)
            } else if p.extension().is_none() {
                repo()
                    .join("configs/datasets")
                    .join(format!("{entry}.toml"))
            } else {
                p
            })
        }),
    };
    let run = Run::load(run_dir, &src).expect("loading the run for the bare model");
    // The server's RSS while the load runs: sampled every 100 ms.
    let peak_during = Arc::new(Mutex::new(0f64));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak_during.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                let (rss, _) = rss_of(pid);
                let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                *p = p.max(rss);
                drop(p);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let fetch_metrics = move || {
        let mut c = Conn::new(addr);
        c.fetch("/metrics").unwrap_or_default()
    };
    let mut idle = Vec::new();
    let mut ticks = Vec::new();
    let rows = levels(addr, &run, args.seconds, args.wrk, &fetch_metrics, || {
        idle.push(rss_of(pid).0);
        ticks.push((cpu_ticks(pid), Instant::now()));
    });
    // `between` runs just before and just after each level's load.
    let server_cpu: Vec<String> = ticks
        .chunks(2)
        .map(|w| {
            let (t0, i0) = w[0];
            let (t1, i1) = w[1];
            let cores = (t1 - t0) as f64 / clock_ticks() / (i1 - i0).as_secs_f64();
            format!("{cores:.2}")
        })
        .collect();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let (rss_end, hwm_end) = rss_of(pid);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    let peak_during = *peak_during.lock().unwrap_or_else(|e| e.into_inner());
    let idle_max = idle.iter().copied().fold(f64::NAN, f64::max);
    let cpu = cpu_model();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "## {name} ({backbone}, max length {max_len}; {items} items, {users} users): \
         service vs bare model\n\n\
         `{binary} serve --run {run_dir}` as its own process (batch window {window} ms), \
         `GET /v1/users/{{user}}/recommendations?k=10` for random dataset users from \
         {clients_from}, {secs:.0} s per level; \"bare\" is \
         `Run::score` in the bench process at a batch size equal to the number of \
         clients, measured just before each level. CPU: **{cpu}**, {cores} cores \
         visible, shared by server, clients and bare model.\n\n\
         | clients | requests/s | p50 ms | p95 ms | p99 ms | mean histories per forward | \
         bare histories/s | bare, by length | service / best bare | errors |\n\
         |---|---|---|---|---|---|---|---|---|---|\n{rows}\n\n\
         CPU the server process used during each level (utime + stime over the \
         level's wall time, in cores of the 2) at 1 / 8 / 64 clients: {server_cpu}.\n\n\
         Resident memory of the server process alone (`/proc/<pid>/status`):\n\n\
         | point | MiB |\n|---|---|\n\
         | VmRSS once serving (run loaded, idle) | {rss_loaded:.0} |\n\
         | VmRSS idle between levels (highest) | {idle_max:.0} |\n\
         | VmRSS under load (highest of 100 ms samples) | {peak_during:.0} |\n\
         | VmRSS after the levels | {rss_end:.0} |\n\
         | VmHWM (peak since start, loading included) at ready / at the end | \
         {hwm_loaded:.0} / {hwm_end:.0} |\n",
        name = run.config.name,
        backbone = run.config.model.kind().name(),
        max_len = run.max_len(),
        items = run.num_items(),
        users = run.num_users(),
        binary = binary.display(),
        run_dir = run_dir.display(),
        window = args.window_ms,
        secs = args.seconds,
        clients_from = if args.wrk {
            "`wrk` (one thread, one keep-alive connection per client, `benches/serve_wrk.lua`)"
        } else {
            "closed-loop clients in the bench process"
        },
        rows = rows.join("\n"),
        server_cpu = server_cpu.join(" / "),
    )
}

/// utime + stime of a process, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    num(11) + num(12)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn main() {
    allocator::keep_freed_memory();
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("serve_load: {e}");
            std::process::exit(2);
        }
    };
    if let Some(run) = args.run.clone() {
        let binary = args
            .binary
            .clone()
            .unwrap_or_else(|| repo().join("target/release/hsuga"));
        let section = external(&args, &run, &binary);
        match std::fs::write(&args.out, &section) {
            Ok(()) => eprintln!("serve_load: wrote {}", args.out.display()),
            Err(e) => {
                eprintln!("serve_load: writing {}: {e}", args.out.display());
                print!("{section}");
            }
        }
        return;
    }
    let batch = BatchConfig {
        window: Duration::from_secs_f64(args.window_ms / 1000.0),
        max_batch: args.max_batch,
        ..BatchConfig::default()
    };
    let root = tempfile::tempdir().expect("temp dir");
    let cache = root.path().join("cache");
    let user_cache = std::env::var_os("HSUGA_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hsuga")));
    if let Some(c) = user_cache {
        copy_tree(
            &c.join("embeddings/ml-100k"),
            &cache.join("embeddings/ml-100k"),
        );
    }
    let mut report = String::new();
    let cpu = cpu_model();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!("serve_load: CPU {cpu}, {cores} cores; training the runs");

    // 1. SASRec: service vs bare model.
    let sasrec = train(root.path(), &cache, "bench-sasrec", "");
    let state = root.path().join("state-sasrec");
    let server = Server::start(&sasrec, &cache, &state, batch);
    let rss_loaded = vm_rss_mib();
    let run = server.service.current();
    let svc = server.service.clone();
    let rows = levels(
        server.addr,
        &run,
        args.seconds,
        args.wrk,
        &move || svc.metrics.render(),
        || {},
    );
    let rss_after_sasrec = vm_rss_mib();
    drop(run);
    server.shutdown();

    if args.no_mixed {
        let section = format!(
            "## ML-100K SASRec, in process, max batch {}, window {} ms\n\n\
             | clients | requests/s | p50 ms | p95 ms | p99 ms | mean histories per forward | \
             bare histories/s | bare, by length | service / best bare | errors |\n\
             |---|---|---|---|---|---|---|---|---|---|\n{}\n",
            args.max_batch,
            args.window_ms,
            rows.join("\n")
        );
        match std::fs::write(&args.out, &section) {
            Ok(()) => eprintln!("serve_load: wrote {}", args.out.display()),
            Err(e) => {
                eprintln!("serve_load: writing {}: {e}", args.out.display());
                print!("{section}");
            }
        }
        return;
    }

    // 2. Mixed load on a fusion run with the rules back-end.
    let fusion = train(
        root.path(),
        &cache,
        "bench-sasrec-hsu-gate",
        "[method]\nfusion = \"gate\"\n\
         [inputs]\nitem_text = \"all-minilm-l6-v2\"\nuser_semantic = { hsu = \"rules\" }\n",
    );
    let state = root.path().join("state-fusion");
    let server = Server::start(&fusion, &cache, &state, batch);
    let rss_fusion_loaded = vm_rss_mib();
    let run = server.service.current();
    let ids: Arc<Vec<String>> = Arc::new(run.prepared.dataset.user_ids.clone());
    let items: Arc<Vec<String>> = Arc::new(run.prepared.dataset.item_ids.clone());
    drop(run);
    let event = Arc::new(AtomicU64::new(0));
    let deepest = Arc::new(Mutex::new(0f64));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (svc, deepest, watching) = (server.service.clone(), deepest.clone(), watching.clone());
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                let d = metric(&svc, "hsuga_hsu_queue_depth");
                let mut m = deepest.lock().unwrap_or_else(|p| p.into_inner());
                *m = m.max(d);
                drop(m);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mixed_clients = 8;
    let (t, secs) = load(
        server.addr,
        mixed_clients,
        args.mixed_seconds,
        move |rng, _| {
            let u = &ids[rng.random_range(0..ids.len())];
            if rng.random_range(0..10) != 0 {
                return ("GET", format!("/v1/users/{u}/recommendations?k=10"), None);
            }
            // A third of the writes go to 48 new users, so their stages
            // complete during the run.
            let user = if rng.random_range(0..3) == 0 {
                format!("bench-new-{}", rng.random_range(0..48))
            } else {
                u.clone()
            };
            let item = &items[rng.random_range(0..items.len())];
            let e = event.fetch_add(1, Ordering::Relaxed);
            (
                "POST",
                format!("/v1/users/{user}/interactions"),
                Some(format!(
                    "{{\"items\": [{{\"item\": \"{item}\", \"event_id\": \"bench-{e}\"}}]}}"
                )),
            )
        },
    );
    watching.store(false, Ordering::Relaxed);
    let _ = watcher.join();
    let svc = server.service.clone();
    let drain_start = Instant::now();
    while !svc.hsu_idle() && drain_start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stages_ok = metric(&svc, "hsuga_hsu_stages_total{outcome=\"ok\"}");
    let stages_failed = metric(&svc, "hsuga_hsu_stages_total{outcome=\"failed\"}");
    let stages_error = metric(&svc, "hsuga_hsu_stages_total{outcome=\"error\"}");
    let writes = metric(&svc, "hsuga_interactions_total{outcome=\"accepted\"}");
    let rss_end = vm_rss_mib();
    drop(svc);
    server.shutdown();
    let deepest = *deepest.lock().unwrap_or_else(|p| p.into_inner());
    let mixed_rps = t.latencies_us.len() as f64 / secs;
    eprintln!(
        "mixed: {mixed_rps:.0} req/s, errors {}, stages ok {stages_ok}",
        t.errors
    );

    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    report.push_str(&format!(
        "# `hsuga serve` under load (measured {date})\n\n\
         Produced by `cargo bench -p hsuga-serve --bench serve_load` (release; \
         `benches/serve_load.rs`). CPU: **{cpu}**, {cores} cores visible; the machine \
         was shared with other jobs, so absolute figures are lower than on an idle one. \
         Service and clients share one process and its cores (loopback, keep-alive \
         HTTP/1.1, one connection per client); batch window 0 (requests already queued \
         share a forward pass).\n\n\
         ## ML-100K SASRec (max length 200, hidden 64): service vs bare model\n\n\
         `GET /v1/users/{{user}}/recommendations?k=10` for random dataset users, \
         {secs:.0} s per level. \"bare\" is `Run::score` (the model contract's all-item \
         scoring, no HTTP, no top-K) at a batch size equal to the number of clients, \
         measured in the same run; the ratio is service requests/s over bare \
         histories/s.\n\n\
         | clients | requests/s | p50 ms | p95 ms | p99 ms | mean histories per forward | \
         bare histories/s | bare, by length | service / best bare | errors |\n\
         |---|---|---|---|---|---|---|---|---|---|\n{}\n\n{PADDING_NOTE}\n\n",
        rows.join("\n"),
        secs = args.seconds,
    ));
    report.push_str(&format!(
        "## Mixed load: ML-100K SASRec + HSU fusion (gate), `rules` back-end\n\n\
         {mixed_clients} clients for {secs:.0} s: 90% recommendation reads (random \
         dataset users), 10% interaction writes (one item each; a third to 48 new \
         users, so HSU stages complete and run in the background, each re-embedded \
         with MiniLM).\n\n\
         | measurement | value |\n|---|---|\n\
         | requests/s | {mixed_rps:.0} |\n\
         | p50 / p95 / p99 ms | {:.2} / {:.2} / {:.2} |\n\
         | errors (non-2xx or failed connections) | {} |\n\
         | interactions written | {writes:.0} |\n\
         | HSU stages run (ok / failed / call errors) | {stages_ok:.0} / {stages_failed:.0} / {stages_error:.0} |\n\
         | deepest HSU queue | {deepest:.0} |\n\n",
        t.quantile_ms(0.5),
        t.quantile_ms(0.95),
        t.quantile_ms(0.99),
        t.errors,
        secs = args.mixed_seconds,
    ));
    if let Some(e) = &t.first_error {
        report.push_str(&format!("First error: `{e}`\n\n"));
    }
    report.push_str(&format!(
        "## Resident memory (VmRSS of the whole process: service, clients, and the \
         training that preceded it)\n\n\
         | point | MiB |\n|---|---|\n\
         | SASRec run loaded and serving | {rss_loaded:.0} |\n\
         | after the SASRec load levels | {rss_after_sasrec:.0} |\n\
         | fusion run loaded (+ MiniLM for interests) | {rss_fusion_loaded:.0} |\n\
         | after the mixed load | {rss_end:.0} |\n"
    ));
    match std::fs::write(&args.out, &report) {
        Ok(()) => eprintln!("serve_load: wrote {}", args.out.display()),
        Err(e) => {
            eprintln!("serve_load: writing {}: {e}", args.out.display());
            print!("{report}");
        }
    }
}
