//! Helpers shared by the real-data training tests.

use std::path::{Path, PathBuf};

use hsuga_data::{Candidates, DatasetConfig, Phase, Prepared};
use hsuga_eval::{Metric, Protocol, Scorer, evaluate};
use hsuga_model::{Backbone, ModelConfig};
use hsuga_train::{
    Job, Matrix, MethodConfig, Outcome, RunConfig, SemanticInputs, TrainSettings, fit,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Scores every item by its training popularity, whoever the user is.
struct Popularity(Vec<u32>);

impl Scorer for Popularity {
    type Encoded = usize;
    fn num_items(&self) -> usize {
        self.0.len() - 1
    }
    fn encode(&self, users: &[usize], _: &[&[u32]]) -> usize {
        users.len()
    }
    fn score_candidates(&self, _: &usize, candidates: &[Vec<u32>]) -> Vec<f32> {
        candidates
            .iter()
            .flat_map(|r| r.iter().map(|&i| self.0[i as usize] as f32))
            .collect()
    }
    fn score_all(&self, b: &usize) -> Vec<f32> {
        (0..*b)
            .flat_map(|_| self.0[1..].iter().map(|&p| p as f32))
            .collect()
    }
}

/// Test NDCG@10 of ranking by training popularity: the floor a model must
/// beat, through the same evaluation path as the models.
pub fn popularity_ndcg(p: &Prepared, c: &Candidates) -> f64 {
    popularity_at(p, c, Phase::Test)
}

/// Validation NDCG@10 of ranking by training popularity (the floor a
/// learning test compares its selected epoch with).
#[allow(dead_code)] // not every test binary compares on validation
pub fn popularity_valid(p: &Prepared, c: &Candidates) -> f64 {
    popularity_at(p, c, Phase::Valid)
}

fn popularity_at(p: &Prepared, c: &Candidates, phase: Phase) -> f64 {
    let pop = Popularity(p.split.train_popularity());
    evaluate(
        &pop,
        &p.split,
        &p.groups,
        c,
        phase,
        Protocol::Sampled,
        512,
        |_, _| {},
    )
    .sampled
    .expect("sampled protocol")
    .mean(Metric::Ndcg(10))
}

/// burn's device RNG is process-global: trainings in one test binary take
/// turns.
#[allow(dead_code)]
pub fn turn() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A short-window SASRec (the project's hidden 64): a CPU-test budget, not
/// the paper's.
#[allow(dead_code)]
pub fn small() -> ModelConfig {
    ModelConfig {
        max_len: 20,
        dropout: 0.2,
        ..ModelConfig::from(Backbone::Sasrec)
    }
}

/// `epochs` epochs, no progress bars, every other setting the default.
#[allow(dead_code)]
pub fn settings(epochs: usize) -> TrainSettings {
    TrainSettings {
        epochs,
        progress: false,
        ..TrainSettings::default()
    }
}

/// `rows × dim` random Gaussian directions (Box–Muller), unit-normalised:
/// item "text" without a model download.
#[allow(dead_code)] // not every test binary embeds items
pub fn gaussian(rows: usize, dim: usize, seed: u64) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut normal = || {
        let u: f32 = rng.random::<f32>().max(1e-7);
        let v: f32 = rng.random();
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let mut data: Vec<f32> = (0..rows * dim).map(|_| normal()).collect();
    // Unit rows, as text embedders (MiniLM, OpenAI) return them.
    for row in data.chunks_mut(dim) {
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= n);
    }
    Matrix { rows, dim, data }
}

/// ML-100K prepared in a fresh cache, with seed 42's 100 negatives per user.
#[allow(dead_code)]
pub fn ml100k() -> (Prepared, Candidates, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let cfg = DatasetConfig::load(Path::new("../../configs/datasets/ml-100k.toml")).unwrap();
    let p = hsuga_data::prepare(&cfg, cache.path()).unwrap();
    let c = hsuga_data::candidates(&p, 100, 42).unwrap();
    (p, c, cache)
}

/// One seed-42 `fit` on ML-100K with [`settings`]`(epochs)`, in memory or
/// in `dir`.
#[allow(dead_code)]
pub fn run(
    p: &Prepared,
    c: &Candidates,
    model: &ModelConfig,
    method: &MethodConfig,
    semantic: &SemanticInputs,
    epochs: usize,
    dir: Option<&Path>,
) -> Outcome {
    let train = settings(epochs);
    fit(&job(p, c, model, &train, method, semantic, dir)).unwrap()
}

/// A seed-42 training job on the ML-100K split, in memory or in `dir`.
#[allow(dead_code)]
pub fn job<'a>(
    p: &'a Prepared,
    c: &'a Candidates,
    model: &'a ModelConfig,
    train: &'a TrainSettings,
    method: &'a MethodConfig,
    semantic: &'a SemanticInputs,
    dir: Option<&'a Path>,
) -> Job<'a> {
    Job {
        model,
        train,
        eval: Box::leak(Box::default()),
        method,
        semantic,
        seed: 42,
        split: &p.split,
        groups: &p.groups,
        candidates: c,
        run_dir: dir,
        device: hsuga_model::cpu(),
        progress: Default::default(),
    }
}

/// A plain backbone run that a system starting from a trained run (CITIES,
/// MELT) reads through `method.pretrained`: its folder, the config it
/// would have stored, its item table and its outcome.
#[allow(dead_code)]
pub struct Source {
    pub dir: PathBuf,
    pub stored: RunConfig,
    pub items: Matrix,
    pub out: Outcome,
}

/// Trains `m` plainly for `epochs` into `CARGO_TARGET_TMPDIR/<name>`.
#[allow(dead_code)]
pub fn train_source(
    p: &Prepared,
    c: &Candidates,
    m: ModelConfig,
    epochs: usize,
    name: &str,
) -> Source {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let t = settings(epochs);
    let (plain, none) = (MethodConfig::default(), SemanticInputs::default());
    let out = fit(&job(p, c, &m, &t, &plain, &none, Some(&dir))).unwrap();
    let stored = plain_run_config(m.clone(), t);
    let items =
        hsuga_train::cities::pretrained_table(&stored, &dir, &m, p.split.num_items).unwrap();
    Source {
        dir,
        stored,
        items,
        out,
    }
}

/// The config a plain seed-42 ML-100K backbone run stores: what a system
/// reading it through `method.pretrained` checks against.
#[allow(dead_code)]
pub fn plain_run_config(model: ModelConfig, train: TrainSettings) -> RunConfig {
    RunConfig {
        name: "sasrec".into(),
        dataset: "ml-100k".into(),
        seed: 42,
        negatives: 100,
        out_dir: "runs".into(),
        model,
        train,
        eval: Default::default(),
        method: MethodConfig::default(),
        inputs: Default::default(),
    }
}
