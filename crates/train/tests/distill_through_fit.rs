//! The self-distillation teacher carries no gradient, checked through the
//! real [`fit`] (the trainer's own teacher path, not a copy of it).
//!
//! The split is built so that some items are read only by teachers: every
//! user's last training item is theirs alone, so it is in no student's input
//! (a student reads its training sequence without the last item, which is
//! its last target) but it is in the whole sequence a neighbour's teacher
//! representation encodes. One epoch is one optimiser step (the batch holds
//! every user). Run once with `alpha > 0` and once with `alpha = 0`: the
//! ranking loss, the batch and the negatives are the same, and Adam updates
//! each weight from its own gradient alone, so a row that receives gradient
//! only through the teacher must come out of both runs identical. With a
//! teacher that tracks gradient, the distillation loss pulls those rows too.

use std::path::Path;

use hsuga_data::{Candidates, GroupRule, Groups, Split};
use hsuga_eval::Scorer;
use hsuga_model::burn::tensor::{Tensor, TensorData};
use hsuga_model::{Recommender, cpu};
use hsuga_train::{Job, Matrix, ModelScorer, RunConfig, SemanticInputs, fit, load_best};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// burn's device RNG is process-global: trainings take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const USERS: u32 = 8;
/// Items 1..=6 are shared; item `7 + u` is user `u`'s alone.
const SHARED: u32 = 6;
const ITEMS: u32 = SHARED + USERS;

fn own_item(u: u32) -> u32 {
    SHARED + 1 + u
}

/// Per user: three shared items, their own item (the last training item),
/// then shared validation and test items.
fn split() -> Split {
    let seqs: Vec<Vec<u32>> = (0..USERS)
        .map(|u| {
            let s = |k: u32| 1 + (u + k) % SHARED;
            vec![s(0), s(1), s(2), own_item(u), s(3), s(4)]
        })
        .collect();
    Split::leave_one_out(&seqs, ITEMS).unwrap()
}

/// Random unit user embeddings, for neighbour retrieval.
fn users() -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let dim = 4;
    let mut data: Vec<f32> = (0..USERS as usize * dim)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    for row in data.chunks_mut(dim) {
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= n);
    }
    Matrix {
        rows: USERS as usize,
        dim,
        data,
    }
}

fn config(teacher: &str, alpha: f64) -> RunConfig {
    RunConfig::from_toml(&format!(
        "name = \"x\"\ndataset = \"d.toml\"\n\
         [model]\nbackbone = \"sasrec\"\nhidden = 8\nmax_len = 8\nlayers = 1\nheads = 1\ndropout = 0.0\n\
         [train]\nepochs = 1\nbatch_size = 64\nlr = 0.01\nprogress = false\n\
         [method.distill]\nteacher = \"{teacher}\"\nalpha = {alpha}\ngroup_aware = false\nk = 2\n\
         [inputs]\nuser_semantic = {{ file = \"u.safetensors\" }}\n"
    ))
    .unwrap()
}

/// Every item's vector after one epoch (one step) of `fit` with `cfg`, read
/// back from the run folder.
fn item_rows_after_one_step(cfg: &RunConfig, split: &Split, dir: &Path) -> Vec<Vec<f32>> {
    let semantic = SemanticInputs {
        user_semantic: Some(users()),
        ..Default::default()
    };
    let candidates = Candidates::draw(split, 5, 1);
    let out = fit(&Job {
        model: &cfg.model,
        train: &cfg.train,
        eval: &cfg.eval,
        method: &cfg.method,
        semantic: &semantic,
        seed: 9,
        split,
        groups: &Groups::compute(split, GroupRule::Pareto { ratio: 0.2 }),
        candidates: &candidates,
        run_dir: Some(dir),
        device: cpu(),
        progress: Default::default(),
    })
    .unwrap();
    assert_eq!((out.epochs_run, out.best_epoch), (1, 1));
    let model = load_best(
        &cfg.model,
        &Default::default(),
        &Default::default(),
        ITEMS,
        dir,
        &cpu(),
    )
    .unwrap();
    item_vectors(&model, &cfg.model)
}

/// Each item's scoring vector (index = item id; 0 is padding), read through
/// the evaluation contract: the scores of the unit vectors `e_1 … e_H` are
/// the columns of the item table.
fn item_vectors(model: &Recommender, cfg: &hsuga_model::ModelConfig) -> Vec<Vec<f32>> {
    let batcher = hsuga_model::Batcher::new(cfg, ITEMS, &cpu());
    let scorer = ModelScorer::new(model, &batcher, None);
    let h = scorer.dim();
    let eye: Vec<f32> = (0..h * h)
        .map(|k| if k / h == k % h { 1.0 } else { 0.0 })
        .collect();
    let eye = Tensor::<2>::from_data(TensorData::new(eye, [h, h]), &cpu());
    let s = scorer.score_all(&eye);
    let n = ITEMS as usize;
    (0..=n)
        .map(|i| match i {
            0 => Vec::new(),
            _ => (0..h).map(|k| s[k * n + i - 1]).collect(),
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn teacher_carries_no_gradient(teacher: &str) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let split = split();
    let (on, off) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let with = item_rows_after_one_step(&config(teacher, 20.0), &split, on.path());
    let without = item_rows_after_one_step(&config(teacher, 0.0), &split, off.path());
    // Not vacuous: distillation moved the items students read.
    let shared = (1..=SHARED)
        .map(|i| max_diff(&with[i as usize], &without[i as usize]))
        .fold(0.0, f32::max);
    assert!(
        shared > 1e-3,
        "{teacher}: the distillation loss changed no student item ({shared})"
    );
    // Items only teachers read: exactly where the ranking loss put them.
    for u in 0..USERS {
        let i = own_item(u);
        let d = max_diff(&with[i as usize], &without[i as usize]);
        assert!(
            d <= 1e-7,
            "{teacher} teacher: item {i} (user {u}'s last training item, read by no student) \
             is {d} away from where alpha = 0 puts it: gradient flowed through the teacher"
        );
    }
}

#[test]
fn online_teacher_is_detached_in_fit() {
    teacher_carries_no_gradient("online");
}

#[test]
fn cached_teacher_is_detached_in_fit() {
    teacher_carries_no_gradient("cache");
}
