//! A run folder: resumes only on the semantic inputs it started on, records
//! the build that trained it, and is read back once finished.

use std::path::Path;

use hsuga_data::{Candidates, DatasetConfig, Prepared};
use hsuga_experiment::run_folder;
use hsuga_train::{Matrix, RunConfig, SemanticInputs};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn ml100k() -> (Prepared, Candidates, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let cfg = DatasetConfig::load(Path::new("../../configs/datasets/ml-100k.toml")).unwrap();
    let p = hsuga_data::prepare(&cfg, cache.path()).unwrap();
    let c = hsuga_data::candidates(&p, 100, 42).unwrap();
    (p, c, cache)
}

/// A `rows × dim` matrix of uniform noise, a stand-in for user embeddings.
fn noise(rows: usize, dim: usize, seed: u64) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Matrix {
        rows,
        dim,
        data: (0..rows * dim)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect(),
    }
}

#[test]
fn a_run_refuses_to_resume_on_other_semantic_inputs() {
    let (p, c, _cache) = ml100k();
    let out = tempfile::tempdir().unwrap();
    let cfg = RunConfig::from_toml(&format!(
        "name = \"fused\"\ndataset = \"ml-100k\"\nout_dir = \"{}\"\n\
         [model]\nmax_len = 20\n[method]\nfusion = \"gate\"\n[inputs]\nuser_semantic = {{ file = \"users.safetensors\" }}\n[train]\nepochs = 1\nprogress = false\n",
        out.path().display()
    ))
    .unwrap();
    let users = |seed| SemanticInputs {
        user_semantic: Some(noise(p.split.num_users(), 8, seed)),
        ..Default::default()
    };
    let first = run_folder::run(&cfg, &p, &c, &users(1), Default::default()).unwrap();
    // The report names the build that trained it; the curve is drawn.
    assert_eq!(first.build.as_deref(), Some(hsuga_experiment::BUILD));
    for f in ["config.toml", "curve.svg", "curve.png", "ranks.csv"] {
        assert!(first.dir.join(f).is_file(), "missing {f}");
    }
    assert!(hsuga_experiment::BUILD.starts_with(env!("CARGO_PKG_VERSION")));
    // "Interrupted" before the end: the finish marker is gone.
    std::fs::remove_file(first.dir.join("report.json")).unwrap();
    let e = run_folder::run(&cfg, &p, &c, &users(2), Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("other semantic inputs"), "{e}");
    // The same inputs resume (here: straight to the test of epoch 1).
    let again = run_folder::run(&cfg, &p, &c, &users(1), Default::default()).unwrap();
    assert_eq!(
        again.test[0].get(hsuga_eval::Metric::Ndcg(10)),
        first.test[0].get(hsuga_eval::Metric::Ndcg(10))
    );
    // A finished run is read back from its folder, build included.
    let stored = run_folder::run(&cfg, &p, &c, &users(1), Default::default()).unwrap();
    assert!(stored.reused);
    assert_eq!(stored.build, first.build);
}
