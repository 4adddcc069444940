//! Running the grid, skipping finished runs and adopting identical runs
//! finished elsewhere.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use hsuga_data::{Candidates, DatasetConfig, Prepared, Split, candidates, prepare};
use hsuga_train::{InputsConfig, Pretrained, Progress, RunConfig, SemanticInputs};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::ExperimentError;
use crate::config::{ExperimentConfig, ResolvedMethod, for_seed};
use crate::inputs::{InputDirs, semantic_inputs};
use crate::report::{DatasetTable, report};

/// Where things are and how to find datasets.
pub struct RunOptions<'a> {
    pub cache_dir: &'a Path,
    /// Local model weights (the item text embedder is fetched here if missing).
    pub models_dir: &'a Path,
    /// Folder of HSU configs (`inputs.user_semantic = "hsu:<name>"`).
    pub hsu_configs: &'a Path,
    /// Turns a dataset entry (name or path) into a config path.
    pub resolve_dataset: &'a dyn Fn(&str) -> Result<PathBuf, String>,
    /// Per-epoch progress bars inside each run.
    pub progress: bool,
    /// Runs trained side by side, each on `cores / jobs` threads (0: one
    /// per core; `RAYON_NUM_THREADS` caps the cores). Small models use a
    /// second thread poorly (1.13–1.35× faster), so on a 2-core machine two
    /// 1-thread runs finish a grid sooner than one 2-thread run.
    pub jobs: usize,
    /// Table rows to train (empty: all). The report still shows every row
    /// that has finished runs, so a slow row can be left for later.
    pub only: &'a [String],
    /// Folders searched for finished runs of the same settings and inputs,
    /// copied instead of trained (see [`crate::adopt`]).
    pub reuse_from: &'a [PathBuf],
}

/// A run left to train, with indices into its [`Plan`].
struct Pending {
    label: String,
    cfg: RunConfig,
    data: usize,
    input: usize,
    cand: usize,
    /// Its inputs with the item table of its `method.pretrained` run added
    /// (LLMEmb); `None`: the shared `Plan::inputs` entry as it is.
    semantic: Option<SemanticInputs>,
    /// Its `method.pretrained` run is another pending run of the grid: it
    /// trains in the second stage, after that run has finished.
    waits: bool,
}

/// The runs left to train and everything they read, built before the first
/// run starts (one at a time: the embedders and HSU use every core).
struct Plan {
    prepared: Vec<Prepared>,
    /// Per dataset index, the matrices of one `[inputs]` table (methods
    /// sharing a table share its matrices).
    inputs: Vec<(usize, InputsConfig, SemanticInputs)>,
    /// Per dataset index and seed.
    cands: Vec<(usize, u64, Candidates)>,
    pending: Vec<Pending>,
    /// Runs copied from `reuse_from` instead of trained.
    adopted: usize,
}

/// Runs what is missing, then writes and returns the tables.
pub fn run(
    cfg: &ExperimentConfig,
    opts: &RunOptions<'_>,
) -> Result<Vec<DatasetTable>, ExperimentError> {
    let methods = only_rows(cfg, opts.only)?;
    let exp_dir = Path::new(&cfg.out_dir).join(&cfg.name);
    std::fs::create_dir_all(&exp_dir).map_err(|e| ExperimentError::io(&exp_dir, e))?;
    let written = toml::to_string(cfg).map_err(|e| ExperimentError::Config(e.to_string()))?;
    let file = exp_dir.join("experiment.toml");
    std::fs::write(&file, written).map_err(|e| ExperimentError::io(&file, e))?;

    // Check every dataset before the first run starts.
    let mut datasets = Vec::new();
    for entry in &cfg.datasets {
        let path = (opts.resolve_dataset)(entry).map_err(ExperimentError::Config)?;
        let dcfg = DatasetConfig::load(&path)
            .map_err(|e| ExperimentError::Config(format!("datasets entry {entry:?}: {e}")))?;
        datasets.push((path, dcfg));
    }
    let rows: Vec<(&str, &InputsConfig)> = methods
        .iter()
        .map(|m| (m.name.as_str(), &m.inputs))
        .collect();
    preflight(&rows, &datasets, opts.hsu_configs)?;
    let mut plan = plan(cfg, &methods, &datasets, &exp_dir, opts)?;
    let total = datasets.len() * methods.len() * cfg.seeds.len();
    let before = total - plan.pending.len() - plan.adopted;
    if before > 0 {
        eprintln!("{before} of {total} runs finished before");
    }
    if plan.adopted > 0 {
        eprintln!(
            "{} of {total} runs adopted from finished runs elsewhere ({} in each)",
            plan.adopted,
            crate::ADOPTED_FROM
        );
    }
    // Runs that read another pending run of the grid (`pretrained = { row
    // = … }`) train once every other run has finished.
    let (first, mut second): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut plan.pending)
        .into_iter()
        .partition(|p| !p.waits);
    train_all(&plan, &first, opts)?;
    for p in &mut second {
        p.semantic = with_pretrained(
            &plan.inputs[p.input].2,
            &p.cfg,
            &datasets[p.data].1.name,
            &plan.prepared[p.data].split,
            opts.resolve_dataset,
        )?;
    }
    train_all(&plan, &second, opts)?;
    report(&exp_dir)
}

/// `base` with the item table of the run that `cfg.method.pretrained`
/// names (LLMEmb's `E_srs`; CITIES's starting table, checked with
/// [`hsuga_train::cities::pretrained_table`]), or `None` when the method reads no trained
/// run. The run must be finished, on the same dataset (its `dataset` entry
/// resolves to a config of the same name) and fit the method
/// ([`hsuga_train::pretrained_items`]); every error names the row, the key
/// and the folder, and comes before this run trains.
pub fn with_pretrained(
    base: &SemanticInputs,
    cfg: &RunConfig,
    dataset: &str,
    split: &Split,
    resolve_dataset: &dyn Fn(&str) -> Result<PathBuf, String>,
) -> Result<Option<SemanticInputs>, ExperimentError> {
    let dir = match &cfg.method.pretrained {
        None => return Ok(None),
        Some(Pretrained::Run(dir)) => Path::new(dir),
        Some(Pretrained::Row(row)) => {
            return Err(ExperimentError::Config(format!(
                "method `{}`: method.pretrained = {{ row = \"{row}\" }} was not resolved to a \
                 run folder",
                cfg.name
            )));
        }
    };
    let fail = |msg: String| {
        ExperimentError::Config(format!(
            "method `{}`: method.pretrained = {{ run = \"{}\" }}: {msg}",
            cfg.name,
            dir.display()
        ))
    };
    let (stored, _) = crate::read_finished(dir).map_err(|e| fail(e.to_string()))?;
    let theirs = resolve_dataset(&stored.dataset)
        .ok()
        .and_then(|p| DatasetConfig::load(&p).ok())
        .map(|d| d.name);
    if theirs.as_deref() != Some(dataset) {
        return Err(fail(format!(
            "ran on dataset {:?} ({}), this run is on `{dataset}`",
            stored.dataset,
            theirs.map_or("which does not resolve".to_string(), |n| format!("`{n}`"))
        )));
    }
    let items = if cfg.method.reads_pretrained_backbone() {
        // CITIES, MELT: the whole backbone, with this row's [model].
        hsuga_train::cities::pretrained_table(&stored, dir, &cfg.model, split.num_items)
    } else {
        hsuga_train::pretrained_items(&stored, dir, split.num_items, cfg.model.hidden)
    }
    .map_err(|e| ExperimentError::Config(format!("method `{}`: {e}", cfg.name)))?;
    let mut s = base.clone();
    s.pretrained_items = Some(items);
    Ok(Some(s))
}

/// What can be checked against the datasets and HSU configs before any
/// work: a row embedding item text on a dataset without a `[text]`
/// template, or naming an HSU config that does not exist, fails here
/// rather than when its run comes up (possibly hours into a grid).
fn preflight(
    rows: &[(&str, &InputsConfig)],
    datasets: &[(PathBuf, DatasetConfig)],
    hsu_configs: &Path,
) -> Result<(), ExperimentError> {
    for &(name, inputs) in rows {
        let row = |msg: String| ExperimentError::Config(format!("method `{name}`: {msg}"));
        if let Some(name) = inputs.user_semantic.as_ref().and_then(|u| u.hsu_config()) {
            let f = hsu_configs.join(format!("{name}.toml"));
            if !f.is_file() {
                return Err(row(format!(
                    "inputs.user_semantic names HSU config `{name}`, but {} does not exist",
                    f.display()
                )));
            }
            if let Some(hsuga_train::UserSemantic::HsuHidden(_)) = &inputs.user_semantic {
                let hsu = hsuga_hsu::HsuConfig::load(&f)
                    .map_err(|e| row(format!("{}: {e}", f.display())))?;
                if !hsuga_hsu::pipeline::returns_hidden_states(&hsu.cfg.backend) {
                    return Err(row(format!(
                        "inputs.user_semantic = {{ hsu-hidden = \"{name}\" }} needs an in-process \
                         LLM (backend kind = \"local\"), but {} runs another back-end, which \
                         returns no hidden states",
                        f.display()
                    )));
                }
            }
        }
        if let Some(hsuga_train::ItemText::Embedder(id)) = &inputs.item_text {
            for (path, d) in datasets {
                let missing = match (&d.items, &d.text) {
                    (None, _) => Some("no item text (its config names no [items] source)"),
                    (_, None) => Some("no [text] template"),
                    _ => None,
                };
                if let Some(missing) = missing {
                    return Err(row(format!(
                        "inputs.item_text = \"{id}\" embeds item text, but dataset `{}` \
                         ({}) has {missing}; supply embeddings with \
                         item_text = {{ file = \"…\" }}",
                        d.name,
                        path.display()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// One run config end to end, as `hsuga train` runs it: the checks, the
/// semantic inputs, the candidates and the trainer of a grid's runs, so the
/// two commands cannot drift apart.
pub fn train_one(
    cfg: &RunConfig,
    dirs: &InputDirs<'_>,
    resolve_dataset: &dyn Fn(&str) -> Result<PathBuf, String>,
    progress: Progress,
) -> Result<crate::RunReport, ExperimentError> {
    cfg.validate()?;
    let path = resolve_dataset(&cfg.dataset).map_err(ExperimentError::Config)?;
    let dcfg = DatasetConfig::load(&path).map_err(|e| ExperimentError::Run {
        path: format!("run `{}`", cfg.name),
        message: format!("dataset = {:?}: {e}", cfg.dataset),
    })?;
    preflight(
        &[(cfg.name.as_str(), &cfg.inputs)],
        &[(path, dcfg.clone())],
        dirs.hsu_configs,
    )?;
    // Refuses a folder holding another config before any data work.
    if let Some(done) = crate::check_dir(cfg)? {
        return Ok(done);
    }
    let data = prepare(&dcfg, dirs.cache_dir)?;
    let mut semantic = semantic_inputs(&cfg.inputs, &dcfg, &data, dirs)?;
    if let Some(s) = with_pretrained(&semantic, cfg, &dcfg.name, &data.split, resolve_dataset)? {
        semantic = s;
    }
    let cands = candidates(&data, cfg.negatives, cfg.seed)?;
    let _span = tracing::info_span!("train", run = %cfg.name, seed = cfg.seed).entered();
    Ok(crate::run_folder::run(
        cfg, &data, &cands, &semantic, progress,
    )?)
}

/// The run folders of the named rows (all when none are named); a name
/// that is not a row is an error listing the rows.
fn only_rows(
    cfg: &ExperimentConfig,
    only: &[String],
) -> Result<Vec<ResolvedMethod>, ExperimentError> {
    if let Some(unknown) = only
        .iter()
        .find(|o| !cfg.methods.iter().any(|m| &m.name == *o))
    {
        let rows: Vec<&str> = cfg.methods.iter().map(|m| m.name.as_str()).collect();
        return Err(ExperimentError::Config(format!(
            "no row `{unknown}` in the experiment (rows: {})",
            rows.join(", ")
        )));
    }
    Ok(cfg
        .resolve()?
        .into_iter()
        .filter(|m| only.is_empty() || only.contains(&m.row))
        .collect())
}

/// Checks every run folder and builds what the runs left to train read.
fn plan(
    cfg: &ExperimentConfig,
    methods: &[ResolvedMethod],
    datasets: &[(PathBuf, DatasetConfig)],
    exp_dir: &Path,
    opts: &RunOptions<'_>,
) -> Result<Plan, ExperimentError> {
    let dirs = InputDirs {
        cache_dir: opts.cache_dir,
        models_dir: opts.models_dir,
        hsu_configs: opts.hsu_configs,
    };
    let mut prepared = Vec::new();
    let mut inputs: Vec<(usize, InputsConfig, SemanticInputs)> = Vec::new();
    // Per entry of `inputs`, its digest when runs may be adopted.
    let mut digests: Vec<Option<String>> = Vec::new();
    let finished = if opts.reuse_from.is_empty() {
        None
    } else {
        Some(crate::Finished::scan(opts.reuse_from)?)
    };
    let mut cands: Vec<(usize, u64, Candidates)> = Vec::new();
    let mut pending = Vec::new();
    let mut adopted = 0;
    for (d, (path, dcfg)) in datasets.iter().enumerate() {
        let data = prepare(dcfg, opts.cache_dir)?;
        for &seed in &cfg.seeds {
            for m in methods {
                let run_cfg = RunConfig {
                    name: m.name.clone(),
                    dataset: path.display().to_string(),
                    seed,
                    negatives: cfg.negatives,
                    out_dir: exp_dir.join(&dcfg.name).display().to_string(),
                    model: m.model.clone(),
                    method: for_seed(&m.method, &exp_dir.join(&dcfg.name), seed),
                    inputs: m.inputs.clone(),
                    eval: cfg.eval.clone(),
                    train: hsuga_train::TrainSettings {
                        progress: opts.progress,
                        ..m.train.clone()
                    },
                };
                // Also refuses a folder holding another config before any work.
                if crate::check_dir(&run_cfg)?.is_some() {
                    tracing::info!(dataset = %dcfg.name, method = %m.name, seed, "finished before, skipped");
                    continue;
                }
                // Methods sharing an `[inputs]` table share its matrices.
                let input = match inputs
                    .iter()
                    .position(|(i, c, _)| *i == d && c == &m.inputs)
                {
                    Some(at) => at,
                    None => {
                        let got = semantic_inputs(&m.inputs, dcfg, &data, &dirs).map_err(|e| {
                            ExperimentError::Config(format!("method `{}`: {e}", m.name))
                        })?;
                        digests.push(finished.as_ref().map(|_| got.digest()));
                        inputs.push((d, m.inputs.clone(), got));
                        inputs.len() - 1
                    }
                };
                if let (Some(finished), Some(digest)) = (&finished, &digests[input])
                    && crate::adopt(&run_cfg, digest, finished)?.is_some()
                {
                    adopted += 1;
                    continue;
                }
                let cand = match cands.iter().position(|(i, s, _)| *i == d && *s == seed) {
                    Some(at) => at,
                    None => {
                        cands.push((d, seed, candidates(&data, cfg.negatives, seed)?));
                        cands.len() - 1
                    }
                };
                pending.push(Pending {
                    label: format!("[{} · {} · seed {seed}]", dcfg.name, m.name),
                    cfg: run_cfg,
                    data: d,
                    input,
                    cand,
                    semantic: None,
                    waits: false,
                });
            }
        }
        // A run reading a trained run: after it when that one is pending
        // here, else read (and checked) now, before anything trains.
        let dirs_pending: Vec<PathBuf> = pending
            .iter()
            .map(|p: &Pending| crate::run_dir(&p.cfg))
            .collect();
        for p in pending.iter_mut().filter(|p| p.data == d) {
            let Some(Pretrained::Run(dir)) = &p.cfg.method.pretrained else {
                continue;
            };
            if dirs_pending.iter().any(|q| q == Path::new(dir)) {
                p.waits = true;
            } else {
                p.semantic = with_pretrained(
                    &inputs[p.input].2,
                    &p.cfg,
                    &dcfg.name,
                    &data.split,
                    opts.resolve_dataset,
                )?;
            }
        }
        prepared.push(data);
    }
    Ok(Plan {
        prepared,
        inputs,
        cands,
        pending,
        adopted,
    })
}

/// Trains the pending runs on `opts.jobs` workers, each with its own rayon
/// pool (burn's CPU kernels and matrix products run on the calling pool).
/// After a failure no new run starts; the first error is returned.
fn train_all(
    plan: &Plan,
    pending: &[Pending],
    opts: &RunOptions<'_>,
) -> Result<(), ExperimentError> {
    if pending.is_empty() {
        return Ok(());
    }
    // The global pool's size: the cores, unless RAYON_NUM_THREADS says less.
    let cores = rayon::current_num_threads();
    let jobs = match opts.jobs {
        0 => cores,
        n => n,
    }
    .min(pending.len());
    let threads = (cores / jobs).max(1);
    if jobs > 1 {
        eprintln!(
            "training {} runs, {jobs} at a time on {threads} thread(s) each",
            pending.len()
        );
    }
    let bars = MultiProgress::new();
    // Unlabelled lines above the bars (or on stderr when there is no terminal).
    let lines = Progress::shared(&bars, "");
    let say = |line: String| lines.println(&line);
    let overall = bars.add(if opts.progress {
        ProgressBar::new(pending.len() as u64)
    } else {
        ProgressBar::hidden()
    });
    overall.set_style(
        ProgressStyle::with_template("runs [{bar:30}] {pos}/{len} ({elapsed})")
            .expect("template")
            .progress_chars("=> "),
    );
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<ExperimentError>> = Mutex::new(None);
    let failed = || failure.lock().map_or(true, |f| f.is_some());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let pool = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
                    Ok(p) => p,
                    Err(e) => {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(ExperimentError::Config(format!("thread pool: {e}")));
                        }
                        return;
                    }
                };
                while !failed() {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(p) = pending.get(i) else { break };
                    say(format!("[{}/{}] {} started", i + 1, pending.len(), p.label));
                    let progress = Progress::shared(&bars, p.label.clone());
                    let got = pool.install(|| {
                        let _span = tracing::info_span!("run", run = %p.label).entered();
                        crate::run_folder::run(
                            &p.cfg,
                            &plan.prepared[p.data],
                            &plan.cands[p.cand].2,
                            p.semantic.as_ref().unwrap_or(&plan.inputs[p.input].2),
                            progress,
                        )
                    });
                    match got {
                        Ok(r) => say(format!(
                            "    {} test {}  (best epoch {}, {:.0} s)",
                            p.label,
                            r.test
                                .iter()
                                .map(|m| m.describe())
                                .collect::<Vec<_>>()
                                .join("  "),
                            r.best_epoch,
                            r.train_seconds,
                        )),
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(ExperimentError::Run {
                                    path: p.label.clone(),
                                    message: e.to_string(),
                                });
                            }
                        }
                    }
                    overall.inc(1);
                }
            });
        }
    });
    overall.finish_and_clear();
    match failure.into_inner() {
        Ok(None) => Ok(()),
        Ok(Some(e)) => Err(e),
        Err(_) => Err(ExperimentError::Config("a training worker panicked".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRID: &str = r#"
name = "t"
datasets = ["ml-100k"]
[[methods]]
name = "A"
model = { backbone = "sasrec" }
tune = { "train.lr" = [0.001, 0.01] }
[[methods]]
name = "B"
model = { backbone = "gru4rec" }
"#;

    fn folders(only: &[&str]) -> Result<Vec<String>, ExperimentError> {
        let cfg: ExperimentConfig = toml::from_str(GRID).unwrap();
        let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
        Ok(only_rows(&cfg, &only)?
            .into_iter()
            .map(|m| m.name)
            .collect())
    }

    #[test]
    fn only_keeps_every_folder_of_the_named_rows() {
        assert_eq!(folders(&[]).unwrap().len(), 3);
        let a = folders(&["A"]).unwrap();
        assert_eq!(a.len(), 2);
        assert!(a.iter().all(|f| f.starts_with("A@")), "{a:?}");
        assert_eq!(folders(&["B"]).unwrap(), vec!["B".to_string()]);
        let e = folders(&["B", "C"]).unwrap_err().to_string();
        assert!(e.contains("no row `C`") && e.contains("rows: A, B"), "{e}");
    }

    #[test]
    fn preflight_names_missing_hsu_configs_hidden_states_and_text() {
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let load = |d: &str| {
            let p = configs.join(format!("datasets/{d}.toml"));
            (p.clone(), DatasetConfig::load(&p).unwrap())
        };
        let inputs = |text: &str| -> InputsConfig { toml::from_str(text).unwrap() };
        let check = |i: &InputsConfig, d: &str| {
            preflight(&[("Row", i)], &[load(d)], &configs.join("hsu")).map_err(|e| e.to_string())
        };
        let ok = inputs("item_text = \"all-minilm-l6-v2\"\nuser_semantic = { hsu = \"rules\" }");
        check(&ok, "ml-100k").unwrap();
        let e = check(&ok, "fashion").unwrap_err();
        assert!(
            e.contains("method `Row`") && e.contains("has no item text"),
            "{e}"
        );
        let e = check(&inputs("user_semantic = { hsu = \"rulez\" }"), "ml-100k").unwrap_err();
        assert!(
            e.contains("HSU config `rulez`") && e.contains("does not exist"),
            "{e}"
        );
        let e = check(
            &inputs("user_semantic = { hsu-hidden = \"rules\" }"),
            "ml-100k",
        )
        .unwrap_err();
        assert!(
            e.contains("needs an in-process") && e.contains("rules.toml"),
            "{e}"
        );
        check(
            &inputs("user_semantic = { hsu-hidden = \"local-small\" }"),
            "ml-100k",
        )
        .unwrap();
    }
}
