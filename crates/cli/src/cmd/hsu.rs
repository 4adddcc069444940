//! `hsuga hsu` (run / resume / update the stage-wise interests),
//! `hsuga hsu stats`, and `hsuga interests` (one user's trail).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use hsuga_data::DatasetConfig;
use hsuga_hsu::{
    BackendConfig, DatasetRun, HsuConfig, ItemTemplate, Plan, Resolved, Shard, Store, UserSelection,
};

use crate::{Globals, datasets};

/// `writeln!` into a String (infallible).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HsuArgs {
    #[command(subcommand)]
    command: Option<HsuCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum HsuCommand {
    /// Operation frequencies, failures, tokens and time per stage and per user.
    Stats(StatsArgs),
    /// Write each user's final interests (JSON lines) and, for in-process LLM
    /// runs, the hidden-state-mean user embeddings (f32 matrix + manifest).
    Export(ExportArgs),
    /// How well the interests alone predict each user's validation item:
    /// HR@K / NDCG@K of ranking the stored validation candidates by cosine
    /// between the embedded interests and the items' text (runs or resumes
    /// HSU for the selected users first), beside the item-mean user vector.
    Eval(EvalArgs),
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Cut-off of HR@K and NDCG@K.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Stored negatives per user (as the experiments' `negatives`).
    #[arg(long, default_value_t = 100)]
    negatives: usize,
    /// Seed of the stored candidates.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    models_dir: crate::cmd::models::ModelsDirArg,
}

#[derive(Args)]
struct ExportArgs {
    #[arg(long)]
    dataset: String,
    #[arg(long)]
    variant: String,
    /// Output folder [default: <cache>/hsu/<dataset>-<variant>].
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    db: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// Dataset name (configs/datasets/<name>.toml) or config path.
    #[arg(long)]
    dataset: Option<String>,
    /// HSU run config (back-end, prompts, stages, ablation).
    #[arg(long, default_value = "configs/hsu/rules.toml")]
    config: PathBuf,
    /// Process only the users whose id hashes to shard i of n (e.g. 0/4);
    /// shards can run at once on one store.
    #[arg(long)]
    shard: Option<String>,
    /// Only N users: the first N in dataset order, or with --shortest the N
    /// with the shortest training histories (for quick small-model runs).
    #[arg(long)]
    users: Option<usize>,
    #[arg(long, requires = "users")]
    shortest: bool,
    /// Store [default: <cache>/hsu/<dataset>.sqlite].
    #[arg(long)]
    db: Option<PathBuf>,
    /// Override the stage length of the config.
    #[arg(long)]
    stage_length: Option<usize>,
    /// Recompute every stage stored as failed (unusable answers), however
    /// many runs failed it; without it a failed stage is retried until
    /// `engine.max_stage_runs` runs have failed it.
    #[arg(long)]
    retry_failed: bool,
}

#[derive(Args)]
struct StatsArgs {
    #[arg(long)]
    dataset: String,
    /// Variant to report [default: every variant in the store].
    #[arg(long)]
    variant: Option<String>,
    #[arg(long)]
    db: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct InterestsArgs {
    #[arg(long)]
    dataset: String,
    /// Raw user id, as in the dataset's files.
    #[arg(long)]
    user: String,
    /// Variant [default: the only one in the store, else "rules"].
    #[arg(long)]
    variant: Option<String>,
    #[arg(long)]
    db: Option<PathBuf>,
}

fn db_path(db: &Option<PathBuf>, dataset: &str, g: &Globals) -> Result<PathBuf> {
    if let Some(p) = db {
        return Ok(p.clone());
    }
    let path = datasets::config_path(dataset, &g.datasets_dir)?;
    let cfg = DatasetConfig::load(&path)?;
    Ok(hsuga_hsu::store::default_path(&g.cache_dir, &cfg.name))
}

/// The dataset's item template (`[text] template`), or titles only.
fn item_template(dataset: &str, g: &Globals) -> Result<ItemTemplate> {
    let path = datasets::config_path(dataset, &g.datasets_dir)?;
    let cfg = DatasetConfig::load(&path)?;
    ItemTemplate::for_dataset(&cfg).with_context(|| format!("dataset config {}", path.display()))
}

pub fn run(args: HsuArgs, g: &Globals) -> Result<()> {
    match args.command {
        Some(HsuCommand::Stats(s)) => stats(s, g),
        Some(HsuCommand::Export(e)) => export(e, g),
        Some(HsuCommand::Eval(e)) => eval(e, g),
        None => run_hsu(args.run, g),
    }
}

fn run_hsu(a: RunArgs, g: &Globals) -> Result<()> {
    let Some(dataset) = a.dataset else {
        bail!("--dataset is required (e.g. `hsuga hsu --dataset ml-100k`)");
    };
    let resolved: Resolved =
        HsuConfig::load(&a.config).with_context(|| format!("HSU config {}", a.config.display()))?;
    let shard = match &a.shard {
        Some(s) => Shard::parse(s)?,
        None => Shard::ALL,
    };
    let (dcfg, prepared) = datasets::load_with_config(&dataset, g)?;
    let db = match a.db {
        Some(p) => p,
        None => hsuga_hsu::store::default_path(&g.cache_dir, &dcfg.name),
    };
    if let BackendConfig::Rules(_) = resolved.cfg.backend {
        eprintln!(
            "note: back-end `rules` is an LLM-free approximation of HSU, not the paper's method"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_ctrl_c(stop.clone());
    let bar = indicatif::ProgressBar::hidden().with_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} {bar:40} {pos}/{len} users ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let on_start = |p: &Plan| {
        eprintln!(
            "hsu: {} users, stage length {}, variant {}, back-end {}, store {}",
            p.users,
            p.stage_length,
            resolved.cfg.variant,
            p.backend,
            p.store.display()
        );
        bar.set_length(p.users as u64);
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    };
    let progress = |done: usize, _total: usize| bar.set_position(done as u64);
    let mut req = DatasetRun::new(&resolved, &dcfg, &prepared, &db);
    req.shard = shard;
    req.users = match (a.users, a.shortest) {
        (None, _) => UserSelection::All,
        (Some(n), false) => UserSelection::First(n),
        (Some(n), true) => UserSelection::Shortest(n),
    };
    req.stage_length = a.stage_length;
    req.retry_failed = a.retry_failed;
    req.stop = Some(stop);
    req.on_start = Some(&on_start);
    req.progress = Some(&progress);
    let report = hsuga_hsu::run_dataset(&req)?.run;
    bar.finish_and_clear();
    println!(
        "{} users: {} done, {} failed, {} pending ({} with no training items); {} stages run, \
         {} reused, {} kept previous interests after unusable answers",
        report.users,
        report.users_done,
        report.users_failed,
        report.users_pending,
        report.users_empty,
        report.stages_run,
        report.stages_reused,
        report.stages_failed
    );
    println!(
        "{} calls, {} tokens in, {} tokens out, {:.2} s",
        report.calls, report.tokens_in, report.tokens_out, report.seconds
    );
    for e in &report.errors {
        eprintln!("  {e}");
    }
    if report.interrupted {
        eprintln!("interrupted: completed stages are stored; rerun the same command to resume");
    }
    unfinished(&report, &resolved)
}

/// `hsuga hsu eval`: the interests' own ranking quality on the validation
/// targets (the test targets are left alone, so that this can choose a
/// configuration), with the LLM-free item-mean vector and chance beside it.
fn eval(a: EvalArgs, g: &Globals) -> Result<()> {
    use hsuga_experiment::interest_quality::{item_mean, rank_quality};
    use hsuga_text::{MiniLm, TextEmbedder, fetch};

    let Some(dataset) = a.run.dataset.clone() else {
        bail!("--dataset is required (e.g. `hsuga hsu eval --dataset ml-100k`)");
    };
    if a.k == 0 {
        bail!("--k must be at least 1");
    }
    let resolved: Resolved = HsuConfig::load(&a.run.config)
        .with_context(|| format!("HSU config {}", a.run.config.display()))?;
    let (dcfg, prepared) = datasets::load_with_config(&dataset, g)?;
    let db = match &a.run.db {
        Some(p) => p.clone(),
        None => hsuga_hsu::store::default_path(&g.cache_dir, &dcfg.name),
    };
    let mut req = DatasetRun::new(&resolved, &dcfg, &prepared, &db);
    req.users = match (a.run.users, a.run.shortest) {
        (None, _) => UserSelection::All,
        (Some(n), false) => UserSelection::First(n),
        (Some(n), true) => UserSelection::Shortest(n),
    };
    req.stage_length = a.run.stage_length;
    req.retry_failed = a.run.retry_failed;
    let done = hsuga_hsu::run_dataset(&req)?;
    // Interests still being mined would be measured half-made.
    if done.run.users_pending > 0 {
        unfinished(&done.run, &resolved)?;
    }
    let variant = &resolved.cfg.variant;
    let index: std::collections::HashMap<&str, usize> = prepared
        .dataset
        .user_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let users: Vec<usize> = done.users.iter().map(|id| index[id.as_str()]).collect();
    let mut texts = hsuga_hsu::export::interest_texts(&done.store, variant, &done.users)?;
    let without = texts.iter().filter(|t| t.trim().is_empty()).count();
    for t in &mut texts {
        if t.trim().is_empty() {
            *t = hsuga_hsu::export::NO_INTERESTS.to_string();
        }
    }

    let models_dir = a.models_dir.resolve();
    fetch::ensure(&fetch::MINILM_L6_V2, &models_dir)?;
    let embedder = MiniLm::load(&models_dir)?;
    let template = hsuga_text::template_for(&dcfg)?;
    let items = hsuga_text::item_embeddings(
        &prepared.dataset,
        &template,
        &embedder,
        &g.cache_dir,
        false,
        &mut |_, _| {},
    )?
    .embeddings;
    let interests = embedder.embed(&texts)?;
    let split = &prepared.split;
    let cands = hsuga_data::candidates(&prepared, a.negatives, a.seed)?;
    let of_interests = rank_quality(&users, &interests, &items, split, &cands, a.k);
    let means: Vec<Vec<f32>> = users.iter().map(|&u| item_mean(u, &items, split)).collect();
    let of_item_mean = rank_quality(&users, &means, &items, split, &cands, a.k);
    let chance = (a.k as f64 / (1 + a.negatives) as f64).min(1.0);
    let k = a.k;
    println!(
        "{} users of {} ({} without interests), variant {variant}, validation targets \
         among {} stored negatives (seed {}), items embedded by {}:",
        users.len(),
        dcfg.name,
        without,
        a.negatives,
        a.seed,
        embedder.model_id()
    );
    println!("| user vector | HR@{k} | NDCG@{k} |\n|---|---:|---:|");
    println!(
        "| HSU interests (`{variant}`) | {:.4} | {:.4} |",
        of_interests.hr, of_interests.ndcg
    );
    println!(
        "| mean of training items' text | {:.4} | {:.4} |",
        of_item_mean.hr, of_item_mean.ndcg
    );
    println!("| chance | {chance:.4} | |");
    if let Some(path) = &a.json {
        let json = serde_json::json!({
            "dataset": dcfg.name,
            "variant": variant,
            "users": users.len(),
            "users_without_interests": without,
            "negatives": a.negatives,
            "seed": a.seed,
            "embedder": embedder.model_id(),
            "interests": of_interests,
            "item_mean": of_item_mean,
            "chance_hr": chance,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    unfinished(&done.run, &resolved)
}

/// A run that leaves any user unfinished or failed is not a success: a
/// script (or a person) must not take half-mined interests for a result.
fn unfinished(r: &hsuga_hsu::RunReport, cfg: &Resolved) -> Result<()> {
    let mut why = Vec::new();
    if r.users_pending > 0 {
        why.push(format!(
            "{} users pending (a call failed outright or the run was stopped; rerun to resume)",
            r.users_pending
        ));
    }
    if r.users_failed > 0 {
        why.push(format!(
            "{} users failed (a stage kept earlier interests after {} unusable answers; a \
             rerun retries it until {} runs have failed it, `--retry-failed` at once; \
             `hsuga hsu stats` shows the answers)",
            r.users_failed, cfg.cfg.engine.max_attempts, cfg.cfg.engine.max_stage_runs
        ));
    }
    if why.is_empty() {
        return Ok(());
    }
    bail!(
        "hsu: {} done, {} failed, {} pending: {}",
        r.users_done,
        r.users_failed,
        r.users_pending,
        why.join("; ")
    )
}

/// Ctrl-C sets the stop flag: stages in flight finish and are stored.
fn stop_on_ctrl_c(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nstopping after the stages in flight (Ctrl-C again to abort)");
                stop.store(true, Ordering::SeqCst);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    });
}

fn open_existing(db: &Path) -> Result<Store> {
    if !db.is_file() {
        bail!(
            "no HSU store at {} (run `hsuga hsu --dataset …` first, or pass --db)",
            db.display()
        );
    }
    Ok(Store::open(db)?)
}

fn export(a: ExportArgs, g: &Globals) -> Result<()> {
    let db = db_path(&a.db, &a.dataset, g)?;
    let store = open_existing(&db)?;
    // An unknown variant would export every user with empty interests.
    let variants = store.variants()?;
    if !variants.contains(&a.variant) {
        bail!(
            "the store {} holds no stages of variant `{}` (it holds: {})",
            db.display(),
            a.variant,
            if variants.is_empty() {
                "none".to_string()
            } else {
                variants.join(", ")
            }
        );
    }
    let prepared = datasets::load(&a.dataset, g)?;
    let out = a.out.unwrap_or_else(|| {
        g.cache_dir
            .join("hsu")
            .join(format!("{}-{}", prepared.dataset.name, a.variant))
    });
    let files =
        hsuga_hsu::export::write_exports(&out, &store, &a.variant, &prepared.dataset.user_ids)?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}

fn stats(a: StatsArgs, g: &Globals) -> Result<()> {
    let db = db_path(&a.db, &a.dataset, g)?;
    let store = open_existing(&db)?;
    let variants = match a.variant {
        Some(v) => vec![v],
        None => store.variants()?,
    };
    if variants.is_empty() {
        bail!("the store {} holds no stages yet", db.display());
    }
    let all: Vec<hsuga_hsu::Stats> = variants
        .iter()
        .map(|v| hsuga_hsu::stats(&store, v))
        .collect::<std::result::Result<_, _>>()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for s in all {
            println!("{s}");
        }
    }
    Ok(())
}

pub fn interests(a: InterestsArgs, g: &Globals) -> Result<()> {
    let db = db_path(&a.db, &a.dataset, g)?;
    let store = open_existing(&db)?;
    let variant = match a.variant {
        Some(v) => v,
        None => {
            let vs = store.variants()?;
            match vs.as_slice() {
                [one] => one.clone(),
                _ if vs.iter().any(|v| v == "rules") => "rules".into(),
                _ => bail!(
                    "several variants in the store ({}); pick one with --variant",
                    vs.join(", ")
                ),
            }
        }
    };
    let rows = store.user_stages(&variant, &a.user)?;
    if rows.is_empty() {
        bail!(
            "no stages stored for user {:?} in variant {variant}",
            a.user
        );
    }
    // Item texts for the trail.
    let template = item_template(&a.dataset, g)?;
    let prepared = datasets::load(&a.dataset, g)?;
    let ds = &prepared.dataset;
    let index: std::collections::HashMap<&str, u32> = ds
        .item_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i as u32 + 1))
        .collect();
    let mut out = String::new();
    outln!(
        out,
        "user {}  variant {variant}  back-end {}:{}",
        a.user,
        rows[0].backend,
        rows[0].model
    );
    for t in hsuga_hsu::trail(&rows) {
        outln!(
            out,
            "\n── stage {} ── operation: {}{}",
            t.stage + 1,
            t.op,
            if t.status == "ok" {
                String::new()
            } else {
                format!("  [{}]", t.status)
            }
        );
        for id in &t.items {
            let text = index
                .get(id.as_str())
                .map(|&i| template.render(ds, i))
                .unwrap_or_else(|| format!("item {id}"));
            outln!(out, "  • {text}");
        }
        if !t.explanation.is_empty() {
            outln!(out, "  explanation: {}", one_line(&t.explanation, 300));
        }
        outln!(out, "  interests:");
        for x in &t.interests {
            let mark = if t.added.contains(x) && t.stage > 0 {
                "+"
            } else {
                " "
            };
            outln!(out, "   {mark} {x}");
        }
        for x in &t.removed {
            outln!(out, "   - {x}");
        }
    }
    print_all(&out)
}

/// Prints, treating a closed pipe (`| head`) as success.
fn print_all(s: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(s.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn one_line(s: &str, n: usize) -> String {
    let t: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.chars().count() > n {
        format!("{}…", t.chars().take(n).collect::<String>())
    } else {
        t
    }
}
