//! `hsuga embed items <dataset>` and `hsuga serve-embeddings`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use hsuga_data::DatasetConfig;
use hsuga_text::{
    EmbeddingStore, MiniLm, OpenAiConfig, OpenAiEmbedder, Outcome, TextEmbedder, item_embeddings,
    pca, template_for,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{Globals, datasets};

#[derive(Args)]
pub struct EmbedArgs {
    #[command(subcommand)]
    command: EmbedCommand,
}

#[derive(Subcommand)]
enum EmbedCommand {
    /// Embed every item's text (dataset template) into the embedding store.
    Items(ItemsArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// all-MiniLM-L6-v2 in-process (fetch with `hsuga models fetch`).
    Local,
    /// An OpenAI-compatible /v1/embeddings server.
    Openai,
}

/// Which embedder to use.
#[derive(Args)]
struct EmbedderArgs {
    #[arg(long, value_enum, default_value_t = Backend::Local)]
    backend: Backend,
    #[command(flatten)]
    models_dir: super::models::ModelsDirArg,
    /// Server base URL for the openai back-end, e.g. http://127.0.0.1:8080/v1.
    #[arg(long, required_if_eq("backend", "openai"))]
    base_url: Option<String>,
    /// Model name for the openai back-end.
    #[arg(long, default_value = "all-minilm-l6-v2")]
    model: String,
    /// Environment variable with the API key (openai back-end).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    /// Texts per forward pass (local) or per request (openai) [default: 32 / 64].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Requests in flight (openai) [default: the transport's, 16].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Per-request timeout in seconds (openai) [default: the transport's, 120].
    #[arg(long)]
    timeout: Option<f64>,
    /// Retries per request (openai) [default: the transport's, 4].
    #[arg(long)]
    retries: Option<u32>,
}

impl EmbedderArgs {
    fn build(&self) -> Result<Arc<dyn TextEmbedder>> {
        Ok(match self.backend {
            Backend::Local => {
                let dir = self.models_dir.resolve();
                let m = MiniLm::load(&dir)?
                    .with_batch_size(self.batch_size.unwrap_or(MiniLm::DEFAULT_BATCH));
                Arc::new(m)
            }
            Backend::Openai => {
                let mut cfg = OpenAiConfig::new(
                    self.base_url.clone().expect("clap requires --base-url"),
                    &self.model,
                );
                cfg.transport.api_key_env = self.api_key_env.clone();
                if let Some(b) = self.batch_size {
                    cfg.batch_size = b;
                }
                // Unset flags keep the one set of transport defaults.
                let t = &mut cfg.transport;
                t.concurrency = self.concurrency.unwrap_or(t.concurrency);
                t.timeout_s = self.timeout.unwrap_or(t.timeout_s);
                t.max_retries = self.retries.unwrap_or(t.max_retries);
                Arc::new(OpenAiEmbedder::new(cfg)?)
            }
        })
    }
}

#[derive(Args)]
struct ItemsArgs {
    /// Dataset name (configs/datasets/<name>.toml) or config path.
    dataset: String,
    #[command(flatten)]
    embedder: EmbedderArgs,
    /// Recompute even when the stored embeddings are valid.
    #[arg(long)]
    force: bool,
    /// Also store a PCA projection to this many dimensions (LLM-ESR: the hidden size, 64).
    #[arg(long)]
    pca: Option<usize>,
    /// Write the rendered item texts as JSON lines (for benchmarks).
    #[arg(long)]
    dump_texts: Option<PathBuf>,
}

pub fn run(args: EmbedArgs, g: &Globals) -> Result<()> {
    match args.command {
        EmbedCommand::Items(a) => items(a, g),
    }
}

fn items(a: ItemsArgs, g: &Globals) -> Result<()> {
    let path = datasets::config_path(&a.dataset, &g.datasets_dir)?;
    let cfg = DatasetConfig::load(&path)?;
    let template = template_for(&cfg)?;
    let prepared = hsuga_data::prepare(&cfg, &g.cache_dir)
        .with_context(|| format!("preparing dataset {}", cfg.name))?;
    let dataset = &prepared.dataset;
    hsuga_text::require_item_text(dataset)?;
    if let Some(out) = &a.dump_texts {
        let texts = hsuga_text::render_items(dataset, &template)?.texts;
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
        );
        for t in &texts {
            serde_json::to_writer(&mut f, t)?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
        eprintln!("wrote {} item texts to {}", texts.len(), out.display());
    }
    let t_load = Instant::now();
    let embedder = a.embedder.build()?;
    let load_s = t_load.elapsed().as_secs_f64();
    let bar = ProgressBar::new(dataset.num_items as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} items ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    bar.set_message(format!("embedding {}", dataset.name));
    let t0 = Instant::now();
    let got = item_embeddings(
        dataset,
        &template,
        embedder.as_ref(),
        &g.cache_dir,
        a.force,
        &mut |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let e = &got.embeddings;
    let what = match got.outcome {
        Outcome::Loaded => "loaded (unchanged)",
        Outcome::Computed => "computed",
        Outcome::Recomputed => "recomputed (model, template or data changed)",
    };
    println!(
        "{}: {} items × {} dims {what} in {secs:.1} s{} (model {}, load {load_s:.1} s)",
        dataset.name,
        e.rows,
        e.dim,
        if got.outcome == Outcome::Loaded {
            String::new()
        } else {
            format!(", {:.0} items/s", e.rows as f64 / secs.max(1e-9))
        },
        embedder.model_id(),
    );
    if !got.fallback_items.is_empty() {
        println!(
            "  {} items had no text for the template and were embedded as \"item <raw id>\"",
            got.fallback_items.len()
        );
    }
    println!("  store: {}", got.store.dir().display());
    if let Some(k) = a.pca {
        let (y, p) = pca(e, k)?;
        let kept: f64 = p.explained_variance_ratio.iter().sum();
        let store = EmbeddingStore::new(got.store.dir().join(format!("pca-{k}")));
        let mut key = got.store.manifest()?.expect("store just written").key;
        key.model_id = format!("{}+pca{k}", key.model_id);
        key.dim = k;
        store.save(&key, &y, Default::default())?;
        println!(
            "  PCA to {k} dims keeps {:.1}% of the variance: {}",
            100.0 * kept,
            store.dir().display()
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[command(flatten)]
    models_dir: super::models::ModelsDirArg,
    /// Model name the server answers to.
    #[arg(long, default_value = "all-minilm-l6-v2")]
    model_name: String,
}

/// Serves the local MiniLM through the OpenAI embeddings API.
pub fn serve(a: ServeArgs) -> Result<()> {
    let dir = a.models_dir.resolve();
    let model: Arc<dyn TextEmbedder> = Arc::new(MiniLm::load(&dir)?);
    let router = hsuga_text::server::router(model, a.model_name.clone());
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.addr)
            .await
            .with_context(|| format!("binding {}", a.addr))?;
        eprintln!(
            "serving {} on http://{}/v1/embeddings (Ctrl-C stops)",
            a.model_name,
            listener.local_addr()?
        );
        tokio::select! {
            r = hsuga_text::server::serve(listener, router) => r.context("server")?,
            _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
        }
        anyhow::Ok(())
    })
}
